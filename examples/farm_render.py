"""One render-farm task: render task I of N of a shot with the headless CLI.

Any farm manager (Flamenco, Deadline, OpenCue, a shell loop) splits a shot into tasks by calling
this script once per task, on any machine that sees the subject folder:

    python examples/farm_render.py SUBJECT --curves shot.csv --task 3 --tasks 10 -o /farm/shot010
    # equivalent to:  emo-avatar render SUBJECT --curves shot.csv --frames A:B -o /farm/shot010

Frames are named by frame number and written atomically; frames that already exist are
skipped, so a failed or pre-empted task can be re-run safely and tasks never collide.

Farms that read Open Job Description (AWS Deadline Cloud, `openjd run`) take the backend's own
job template instead: `emo-avatar farm-bundle SUBJECT --curves shot.csv -o BUNDLE` writes a job
bundle whose tasks render whole batches of the shot with `emo-avatar farm-chunk`, pixel for pixel
the frames of one `emo-avatar render` of the shot (docs/td-guide.md, "Render farms").
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from backend.render_cli import load_curves
from protocol.errors import CurveError


def task_frames(frame_start: int, n_frames: int, task: int, tasks: int) -> tuple[int, int]:
    """Frame numbers [first, end) of task ``task`` (0-based) when ``n_frames`` are split into ``tasks``."""
    if tasks < 1:
        raise ValueError(f"--tasks must be at least 1, got {tasks}")
    if not 0 <= task < tasks:
        raise ValueError(f"--task must be in 0..{tasks - 1}, got {task}")
    per = -(-n_frames // tasks)  # ceil
    first = frame_start + min(task * per, n_frames)
    return first, frame_start + min((task + 1) * per, n_frames)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("subject", type=Path)
    ap.add_argument("--curves", type=Path, required=True)
    ap.add_argument("--task", type=int, required=True, help="this task's index, 0-based")
    ap.add_argument("--tasks", type=int, required=True, help="how many tasks the shot is split into")
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--style", type=Path, default=None)
    args = ap.parse_args()

    try:  # the same reader and checks as `emo-avatar render` (.csv, .json, .npz)
        curves = load_curves(args.curves)
        first, end = task_frames(curves.frame_start, curves.n_frames, args.task, args.tasks)
    except (FileNotFoundError, ValueError, CurveError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if first == end:
        print(f"task {args.task}: no frames (the shot has {curves.n_frames})")
        return 0
    cmd = [sys.executable, "-m", "backend.cli", "render", str(args.subject), "--curves", str(args.curves),
           "--frames", f"{first}:{end}", "-o", str(args.out)]
    if args.style:
        cmd += ["--style", str(args.style)]
    print(f"task {args.task}/{args.tasks}: frames {first}..{end - 1}", flush=True)
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
