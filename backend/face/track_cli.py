"""`emo-avatar track VIDEO -o SUBJECT [--size 256] [--max-frames N] [--overwrite]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backend.progress import Cancelled, ProgressUpdate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", type=Path, help="portrait video (mp4, avi, mov, ...) or a folder of images")
    parser.add_argument("-o", "--output", type=Path, required=True, help="subject folder to create")
    parser.add_argument("--size", type=int, default=256, help="crop side in pixels (default 256)")
    parser.add_argument("--max-frames", type=int, default=None, help="use only the first N frames")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing subject folder")
    parser.add_argument("--preview", type=Path, default=None, metavar="PNG",
                        help="also write a contact sheet (landmarks, rig and UV maps on a few crops)")


def print_progress(update: ProgressUpdate, stream=None) -> None:
    """One self-overwriting progress line: stage, phase, step/total, percent, eta."""
    stream = sys.stderr if stream is None else stream
    pct = 100.0 * update.step / max(update.total, 1)
    eta = f" eta {update.eta:4.0f}s" if update.eta is not None else ""
    end = "\n" if update.step >= update.total else ""
    line = f"{update.stage}: {update.message:<9} {update.step:>6}/{update.total} {pct:5.1f}%{eta}"
    stream.write(f"\r{line}   {end}")
    stream.flush()


def run(args: argparse.Namespace) -> int:
    from backend.data.subject import Subject
    from backend.face.track import TrackError, track_video

    try:
        out = track_video(args.video, args.output, size=args.size, max_frames=args.max_frames,
                          overwrite=args.overwrite, progress=print_progress)
    except (TrackError, FileExistsError) as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    except Cancelled:
        print("\ncancelled; nothing was written", file=sys.stderr)
        return 130
    s = Subject.open(out)
    m = s.meta
    print(f"subject {s.subject_id}: {s.n_frames} frames ({m['frames_used']} used, "
          f"{len(m['frames_dropped'])} dropped, {len(m['frames_interpolated'])} interpolated), "
          f"{s.size}px, {len(s.expression_names)} expression curves -> {out}")
    if args.preview is not None:
        from backend.face.overlay import subject_contact_sheet

        print(f"preview: {subject_contact_sheet(out, args.preview)}")
    return 0
