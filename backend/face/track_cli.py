"""`emo-avatar track VIDEO -o SUBJECT [--size 256] [--framing face|head|bust] [--follow-face]
[--frames A:B,...] [--person N | --all-people] [--max-frames N] [--overwrite]` and
`emo-avatar track --list-people VIDEO`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backend.face.framing import DEFAULT_FRAMING, FRAMINGS
from backend.progress import Cancelled, ProgressUpdate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", type=Path, help="portrait video (mp4, avi, mov, ...) or a folder of images")
    parser.add_argument("-o", "--output", type=Path, default=None, help="subject folder to create")
    parser.add_argument("--list-people", action="store_true",
                        help="only list the people in VIDEO (frame ranges) and write a thumbnail sheet")
    parser.add_argument("--sheet", type=Path, default=None, metavar="PNG",
                        help="thumbnail sheet of --list-people (default: VIDEO_NAME.people.png here)")
    parser.add_argument("--frames", default=None, metavar="A:B[,C:D...]",
                        help="keep only these source frames (B excluded, like Python slices)")
    parser.add_argument("--person", type=int, default=None, metavar="N",
                        help="keep person N as --list-people numbers them (default: the one on screen "
                             "longest)")
    parser.add_argument("--all-people", action="store_true",
                        help="keep every face, also when the people cannot be told apart")
    parser.add_argument("--framing", choices=list(FRAMINGS), default=DEFAULT_FRAMING,
                        help="crop, fitted per shot: " + ", ".join(f"{k} ({v[0]:g} face heights)" for k, v in
                                                                    FRAMINGS.items())
                        + f"; default {DEFAULT_FRAMING}")
    parser.add_argument("--follow-face", action="store_true",
                        help="re-fit the crop within a shot where the face moves, so a moving face keeps "
                             "the framing's size; costs held-out quality on the measured real clip, see "
                             "docs/tracking.md")
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


def list_people(args: argparse.Namespace) -> int:
    """Print each person's frames on screen and ranges; write the thumbnail sheet."""
    from backend.face.scan import frame_ranges_text, people_sheet, scan_video
    from backend.face.video_io import VideoError, probe

    try:
        info = probe(args.video)
        scan = scan_video(args.video, info, args.max_frames, progress=print_progress)
    except VideoError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    except Cancelled:
        print("\ncancelled", file=sys.stderr)
        return 130
    people = scan.people
    n = len(scan.points)
    print(f"{args.video.name}: {n} frames, {len(scan.cuts)} shot cuts, {len(people.people)} "
          f"{'person' if len(people.people) == 1 else 'people'} (told apart by {people.signal})")
    for p in people.people:
        print(f"  person {p.index}: {p.n_frames} frames on screen: {frame_ranges_text(p.frames)}")
    if people.undecided:
        print("  cannot be told apart with confidence: " + ", ".join(
            f"{a} and {b}" if a != b else f"{a} (may be two people)" for a, b in people.undecided))
    sheet = args.sheet or Path(f"{args.video.name}.people.png")
    print(f"thumbnails: {people_sheet(scan, sheet)}")
    return 0


def run(args: argparse.Namespace) -> int:
    from backend.data.subject import Subject
    from backend.face.track import TrackError, track_video

    if args.list_people:
        return list_people(args)
    if args.output is None:
        print("error: -o/--output SUBJECT is required (or --list-people)", file=sys.stderr)
        return 2
    try:
        out = track_video(args.video, args.output, size=args.size, max_frames=args.max_frames,
                          overwrite=args.overwrite, progress=print_progress, frames=args.frames,
                          person=args.person, all_people=args.all_people,
                          framing=args.framing, follow_face=args.follow_face)
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
    kept = ", ".join(f"{sh['source_frames'][0]}:{sh['source_frames'][1]}" for sh in m["shots"])
    print(f"kept source frames {kept} (person {'+'.join(map(str, m['people']['kept']))} of "
          f"{len(m['people']['people'])}, {m['framing']} framing)")
    for lo in m["frames_left_out"]:
        print(f"left out {lo['start']}:{lo['stop']}: {lo['reason']}")
    if args.preview is not None:
        from backend.face.overlay import subject_contact_sheet

        print(f"preview: {subject_contact_sheet(out, args.preview)}")
    return 0
