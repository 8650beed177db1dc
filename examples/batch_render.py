"""Headless batch render of a shot with the Emo-Avatar add-on.

    blender -b shot.blend -P examples/batch_render.py -- --frames 1 48 --style ink
    python examples/batch_render.py --blend shot.blend --frames 1 48     # with the bpy module

The scene must hold an imported subject rig (or pass --subject ID to import one). Frames are
written to --output (default: the add-on's frames folder) and added to the sequencer as an image
strip; --save writes the .blend with the strip. Prints a JSON summary; exit code 0 when every
frame arrived. Uses the blocking path of the add-on API (timers never fire in background mode).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpy
from _emo_blender import emo_api, install_extension, script_args


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--blend", help="open this .blend first (bpy-module runs; blender -b opens it itself)")
    ap.add_argument("--install", metavar="ZIP", help="install + enable this extension zip first")
    ap.add_argument("--connection-file", help="backend connection file (default: the add-on preferences)")
    ap.add_argument("--subject", help="import this subject's rig first (from the backend)")
    ap.add_argument("--frames", nargs=2, type=int, metavar=("START", "END"), help="default: the scene range")
    ap.add_argument("--style", default=None, help="style name (default: the un-styled avatar)")
    ap.add_argument("--output", default=None, help="frames folder")
    ap.add_argument("--channel", type=int, default=None, help="sequencer channel")
    ap.add_argument(
        "--uv",
        choices=("BLENDER", "BACKEND"),
        default="BLENDER",
        help="UV maps from a Cycles UV pass (default) or rasterised by the backend",
    )
    ap.add_argument("--save", help="save the .blend (with the new strip) here")
    args = ap.parse_args(script_args())

    if args.install:
        install_extension(args.install)
    if args.blend and bpy.data.filepath != os.path.abspath(args.blend):
        bpy.ops.wm.open_mainfile(filepath=args.blend)
    emo = emo_api()
    info = emo.connect(args.connection_file)
    print(f"connected to {info['server']} ({info['device']})", file=sys.stderr)
    scene = bpy.context.scene
    if args.subject:
        emo.import_subject(args.subject, scene=scene)
    start, end = args.frames or (scene.frame_start, scene.frame_end)
    shot = emo.render_shot(
        scene,
        start,
        end,
        style=args.style,
        wait=True,
        output_dir=args.output,
        channel=args.channel,
        uv_source=args.uv,
    )
    if args.save:
        bpy.ops.wm.save_as_mainfile(filepath=os.path.abspath(args.save), copy=True)
    emo.disconnect()
    summary = {
        "job_id": shot.job_id,
        "state": shot.state,
        "frames": len(shot.frames_done),
        "expected": shot.total,
        "strip": shot.strip_name,
        "folder": str(shot.folder),
        "error": shot.error,
    }
    print(json.dumps(summary))
    return 0 if shot.state == "done" and len(shot.frames_done) == shot.total else 1


if __name__ == "__main__":
    code = main()
    if bpy.app.background and "--" in sys.argv:  # inside `blender -b`: leave with the right status
        sys.stdout.flush()
        os._exit(code)
    sys.exit(code)
