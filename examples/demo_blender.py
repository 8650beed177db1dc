"""The demo's headless Blender session: install the extension, import the subject rig, put a
Live Link Face performance on it, render the shot over ZeroMQ into a VSE strip, and render the
sequencer to MP4.

Runs with the ``bpy`` module (``python examples/demo_blender.py ...``, as ``make demo`` does) or
inside Blender (``blender -b -P examples/demo_blender.py -- ...``). It only talks to the backend
through the add-on, exactly as an animator's Blender would; ``emo-avatar serve`` must be running.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADDON_MODULE = "bl_ext.user_default.emo_avatar"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connection-file", type=Path, required=True)
    p.add_argument("--subject", required=True, help="subject id in the backend's workdir")
    p.add_argument("--style", default=None, help="style name (default: unstyled)")
    p.add_argument("--curves", type=Path, required=True, help="Live Link Face CSV or curves JSON")
    p.add_argument("--out", type=Path, required=True, help="folder for frames/, shot.mp4, blender.json")
    p.add_argument("--frames", type=int, default=None, help="render only the first N frames")
    p.add_argument("--addon-zip", type=Path, default=None, help="built extension (default: build it)")
    return p.parse_args(argv)


def isolate_blender_user_dirs(out: Path) -> None:
    """Keep the demo's extension install out of the user's own Blender configuration."""
    for var, sub in (("BLENDER_USER_EXTENSIONS", "extensions"), ("BLENDER_USER_CONFIG", "config"),
                     ("BLENDER_USER_SCRIPTS", "scripts"), ("BLENDER_USER_DATAFILES", "datafiles")):
        os.environ.setdefault(var, str(out / "blender_user" / sub))


def build_addon(out: Path) -> Path:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "build_addon.py"), "--output-dir", str(out / "dist"),
         "--wheel-cache", str(ROOT / ".cache" / "wheels")],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"build_addon.py failed:\n{proc.stdout}\n{proc.stderr}")
    return Path([line for line in proc.stdout.split() if line.endswith(".zip")][-1])


def install_addon(zip_path: Path):
    import bpy

    if ADDON_MODULE not in sys.modules:
        result = bpy.ops.extensions.package_install_files(
            filepath=str(zip_path), repo="user_default", enable_on_install=True)
        if result != {"FINISHED"}:
            raise SystemExit(f"installing {zip_path} failed: {result}")
    return importlib.import_module(f"{ADDON_MODULE}.api")


def render_sequencer_to_mp4(scene, path: Path, size: int) -> None:
    """Render the VSE (only the strip, not the 3-D scene) to an H.264 MP4."""
    scene.render.use_sequencer = True
    scene.render.use_compositing = False
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "FFMPEG"
    scene.render.ffmpeg.format = "MPEG4"
    scene.render.ffmpeg.codec = "H264"
    scene.render.ffmpeg.constant_rate_factor = "HIGH"
    scene.render.filepath = str(path)
    import bpy

    bpy.ops.render.render(animation=True, scene=scene.name)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    isolate_blender_user_dirs(args.out)
    import bpy

    timings: dict[str, float] = {}
    t0 = time.monotonic()
    emo = install_addon(args.addon_zip or build_addon(args.out))
    timings["install_s"] = time.monotonic() - t0

    t0 = time.monotonic()
    info = emo.connect(args.connection_file, timeout=60)
    print(f"  [blender] connected to {info['server']} on {info['device']}", flush=True)
    scene = bpy.context.scene
    head = emo.import_subject(args.subject, scene=scene, frame_start=1, with_curves=False)
    performance = _read_performance(args.curves)
    # the shot runs at the performance's own rate (else the add-on retimes it to the scene's 24 fps)
    rig = importlib.import_module(f"{ADDON_MODULE}.rig")
    rig.set_scene_fps(scene, performance.fps)
    dropped = emo.import_curves(args.curves, head, frame_start=1)
    n_frames = head.get("emo_curve_frames") or performance.n_frames
    if args.frames:
        n_frames = min(n_frames, args.frames)
    scene.frame_start, scene.frame_end = 1, n_frames
    timings["rig_s"] = time.monotonic() - t0
    print(f"  [blender] rig '{head.name}' with {len(dropped)} ARKit curves the subject lacks "
          f"(dropped), {n_frames} frames", flush=True)

    t0 = time.monotonic()
    frames_dir = args.out / "frames"
    # the MP4 is the sequencer's output: show the backend's pixels as delivered (Standard view)
    shot = emo.render_shot(scene, 1, n_frames, style=args.style, wait=True, rig_object=head,
                           output_dir=str(frames_dir), set_standard_view=True)
    timings["render_s"] = time.monotonic() - t0
    if shot.state != "done":
        raise SystemExit(f"render job {shot.job_id} ended {shot.state}: {shot.error}")
    print(f"  [blender] {len(shot.frames_done)} frames in strip '{shot.strip_name}' "
          f"({timings['render_s'] / max(n_frames, 1):.2f} s/frame)", flush=True)

    t0 = time.monotonic()
    size = int(head.get("emo_size", 0)) or _first_frame_size(frames_dir)
    render_sequencer_to_mp4(scene, args.out / "shot.mp4", size)
    timings["encode_s"] = time.monotonic() - t0
    emo.disconnect()
    facts = {"frames": len(shot.frames_done), "strip": shot.strip_name, "job_id": shot.job_id,
             "prefix": shot.prefix,
             "style": args.style, "fps": round(rig.scene_fps(scene), 3),
             **{k: round(v, 2) for k, v in timings.items()}}
    (args.out / "blender.json").write_text(json.dumps(facts, indent=2))
    return 0


def _read_performance(path: Path):
    """The performance as ``protocol.curves.Curves`` (the repo's protocol/, also inside Blender)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from protocol.curves import read_curves

    return read_curves(path)


def _first_frame_size(folder: Path) -> int:
    import bpy

    first = sorted(folder.glob("*.png"))[0]
    img = bpy.data.images.load(str(first), check_existing=True)
    return int(img.size[0])


if __name__ == "__main__":
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    sys.exit(main(argv))
