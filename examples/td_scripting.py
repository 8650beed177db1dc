"""Scripting the Emo-Avatar add-on: what a TD's pipeline script does, step by step.

    blender -b -P examples/td_scripting.py -- --subject anna --curves my_performance.csv
    python examples/td_scripting.py --install dist/emo_avatar-0.1.0.zip --subject anna --frames 8

1. connect to the backend and list its subjects and jobs;
2. import a subject rig (from the backend, or --folder: a subject folder on disk);
3. load a Live Link Face CSV (or JSON) performance onto the rig, then add a keyframe by hand;
4. export the rig's curves as JSON (every curve) and Live Link Face CSV (ARKit curves only);
5. render the first --frames frames asynchronously (``wait=False``) and wait for the shot.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpy
from _emo_blender import emo_api, install_extension, script_args

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--install", metavar="ZIP", help="install + enable this extension zip first")
    ap.add_argument("--connection-file", help="backend connection file (default: the add-on preferences)")
    ap.add_argument("--subject", help="subject id on the backend")
    ap.add_argument("--folder", help="import the rig from this subject folder instead of the backend")
    ap.add_argument("--curves", default=str(HERE / "curves" / "performance_livelinkface.csv"))
    ap.add_argument("--frames", type=int, default=8, help="frames to render (0: skip rendering)")
    ap.add_argument("--out", default=str(Path.cwd() / "td_out"), help="folder for curves and frames")
    args = ap.parse_args(script_args())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.install:
        install_extension(args.install)
    emo = emo_api()

    # 1. connect
    info = emo.connect(args.connection_file)
    print(f"backend: {info['server']} on {info['device']} (protocol {info['proto']})")
    for s in emo.subjects():
        print(f"  subject {s['subject_id']}: trained={s['has_avatar']} styles={s['styles']}")
    print(f"  {len(emo.jobs())} jobs in the backend's journal")

    # 2. the rig: head mesh + one shape key per expression + tracked curves + camera
    scene = bpy.context.scene
    head = emo.import_subject(args.subject, folder=args.folder, scene=scene, frame_start=1)
    print(f"rig {head.name}: {len(head.data.shape_keys.key_blocks) - 1} shape keys")

    # 3. a performance onto the rig, then one hand-made key on top
    dropped = emo.import_curves(args.curves, head, frame_start=1)
    if dropped:
        print(f"the rig has no shape key for {len(dropped)} curves of the file: {', '.join(dropped[:8])}...")
    key = head.data.shape_keys.key_blocks["jawOpen"]
    key.value = 0.8
    key.keyframe_insert("value", frame=3)

    # 4. curves out
    end = scene.frame_start + max(args.frames, 1) - 1
    emo.export_curves(out / "shot.json", head, scene.frame_start, end, scene)
    left_out = emo.export_curves(out / "shot.csv", head, scene.frame_start, end, scene)
    print(f"wrote {out / 'shot.json'} and {out / 'shot.csv'} (CSV left out {len(left_out)} non-ARKit curves)")

    # 5. render asynchronously, then wait (in the UI the timer would apply the frames meanwhile)
    summary = {}
    if args.frames > 0:
        shot = emo.render_shot(scene, scene.frame_start, end, wait=False, output_dir=str(out / "frames"))
        print(f"render job {shot.job_id} submitted; waiting")
        emo.wait_shot(shot, timeout=1800)
        summary = {"state": shot.state, "frames": len(shot.frames_done), "strip": shot.strip_name}
        print(f"render {shot.state}: {len(shot.frames_done)} frames in strip '{shot.strip_name}'")
    emo.disconnect()
    print(json.dumps(summary))
    return 0 if not summary or summary["state"] == "done" else 1


if __name__ == "__main__":
    code = main()
    if bpy.app.background and "--" in sys.argv:
        sys.stdout.flush()
        os._exit(code)
    sys.exit(code)
