"""`emo-avatar import-tracking NPZ -o SUBJECT [--video VIDEO] [--overwrite]`.

The npz keys are documented in ``backend.face.import_tracking`` and docs/tracking.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("npz", type=Path, help="npz with expressions, pose, uv (+ frames or video)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="subject folder to create")
    parser.add_argument("--video", type=Path, default=None,
                        help="video or image folder with the crops (instead of the npz's frames/video)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing subject folder")


def run(args: argparse.Namespace) -> int:
    from backend.data.subject import Subject
    from backend.face.import_tracking import TrackingImportError, import_tracking
    from backend.face.track_cli import print_progress

    try:
        out = import_tracking(args.npz, args.output, video=args.video, overwrite=args.overwrite,
                              progress=print_progress)
    except (TrackingImportError, FileExistsError) as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    s = Subject.open(out)
    print(f"subject {s.subject_id}: {s.n_frames} frames, {s.size}px, {len(s.expression_names)} "
          f"expression curves -> {out}")
    return 0
