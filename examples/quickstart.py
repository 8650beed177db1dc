"""Quickstart with the Python API: a video becomes a subject, then an avatar, then frames.

    .venv/bin/python examples/quickstart.py --out out/quickstart              # cpu preset, ~10 min
    .venv/bin/python examples/quickstart.py --out /tmp/qs --preset tiny        # seconds, for a try

Uses the embedded sample video unless ``--video`` names your own portrait clip, and drives the
avatar with the sample Live Link Face performance unless ``--curves`` names another file.
Writes ``OUT/frames/NNNNNN.png`` (named by frame number, the same pixels as ``emo-avatar render``)
and ``OUT/quickstart.mp4``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2

from backend.data.sample import synthesize_sample
from backend.face.track import track_video
from backend.images import write_png
from backend.paths import frame_file_name
from backend.render import Renderer
from backend.train.presets import PRESETS, get_preset
from backend.train.stage1 import train_avatar
from protocol.curves import read_curves

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--video", type=Path, default=None, help="portrait video (default: the sample)")
    ap.add_argument("--curves", type=Path, default=HERE / "curves" / "performance_livelinkface.csv")
    ap.add_argument("--preset", default="cpu", choices=list(PRESETS))
    ap.add_argument("--frames", type=int, default=None, help="render only the first N frames")
    args = ap.parse_args()

    video = args.video or synthesize_sample(args.out / "sample", tiny=args.preset == "tiny")
    subject = args.out / "subject"
    if not (subject / "meta.json").exists():
        track_video(video, subject, size=get_preset(args.preset).size)  # 1. track
    checkpoint = train_avatar(subject, preset=args.preset, resume=True)  # 2. train (resumes)

    renderer = Renderer.from_checkpoint(checkpoint)  # 3. render the performance
    curves = read_curves(args.curves).conform(renderer.names)
    print(f"curves: {curves.n_frames} frames; not in this subject's rig: {', '.join(curves.dropped)}")
    # the head rests at the subject's median pose and size unless the curves move or scale it
    # (rad + cm around that rest pose, relative size: as `emo-avatar render` reads them)
    pose, scale = renderer.curves_pose(curves.head_pose, curves.head_scale, n=curves.n_frames)
    values, pose, scale = curves.values[: args.frames], pose[: args.frames], scale[: args.frames]
    frames_dir = args.out / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(args.out / "quickstart.mp4"), cv2.VideoWriter_fourcc(*"mp4v"),
                             curves.fps, (renderer.size, renderer.size))
    for i, rgb in enumerate(renderer.render(values, pose=pose, scale=scale)):
        write_png(frames_dir / frame_file_name(curves.frame_start + i), rgb)  # named by frame number
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        writer.write(bgr)
    writer.release()
    print(f"wrote {len(values)} frames to {frames_dir} and {args.out / 'quickstart.mp4'}")


if __name__ == "__main__":
    main()
