"""`emo-avatar farm-chunk SUBJECT --curves FILE --shot FIRST-LAST --batches EXPR --output DIR
[--batch N] [--style S] [--uv DIR] [--resolution PX] [--device D]`: one task of the ``render-shot``
job template.

A shot ``FIRST-LAST`` (frame numbers of the curves file, ends inclusive) is cut into batches of
``--batch`` frames starting at FIRST: batch ``k`` holds frames ``FIRST + k*N .. FIRST + k*N + N-1``
(the last one is cut at LAST). ``--batches`` lists the first frames of this task's batches, as an
Open Job Description ``CHUNK[INT]`` parameter over ``FIRST-LAST:N`` hands them over
(``"1001-1041:8"``, ``"1001,1009"``). A task therefore renders whole batches of the shot: every
frame has the same batch neighbours as in one ``emo-avatar render --frames FIRST:LAST+1 --batch N``
of the shot (on CPU a frame's pixels can depend on them by one 8-bit level), so any chunking
gives the same pixels and no frame is rendered twice.

Before any work: the ranges, the curves, the subject and its checkpoint, the style, the UV maps
and the output folder (a probe file must be writable) are checked, before torch is even imported;
each failure is one ``error:`` line and exit code 2 within a fraction of a second, with nothing
rendered or written. Every frame is written atomically to ``DIR/NNNNNN.png``, replacing what an
earlier attempt of the task left: a re-run task is idempotent.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from backend.farm.outputs import OutputFolderError, check_output_folder
from backend.farm.ranges import RangeError, format_range, parse_range
from backend.paths import checkpoint_path

log = logging.getLogger(__name__)

MAX_RESOLUTION = 4096
"""Largest ``--resolution`` (the templates' ``Resolution`` maxValue)."""

DONE_PREFIX = "farm-chunk wrote"
"""Start of the summary line a finished chunk prints: ``farm-chunk wrote N frames: A-B -> DIR``."""


def _resolution(text: str) -> int:
    """argparse type: 0 (the avatar's own size) or a side of 8..MAX_RESOLUTION px."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value != 0 and not 8 <= value <= MAX_RESOLUTION:
        raise argparse.ArgumentTypeError(f"must be 0 (the avatar's size) or 8..{MAX_RESOLUTION}, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from backend.render_cli import _positive_int

    parser.add_argument("subject", type=Path, help="subject folder with a trained avatar/")
    parser.add_argument("--curves", type=Path, required=True, help="expression curves (.json, .csv or .npz)")
    parser.add_argument("--shot", required=True, metavar="FIRST-LAST",
                        help="the shot's frame numbers (inclusive); batches start at FIRST")
    parser.add_argument("--batches", required=True, metavar="EXPR",
                        help="first frames of this task's batches, e.g. 1001-1041:8 or 1001,1017")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="output folder for NNNNNN.png frames")
    parser.add_argument("--style", default="",
                        help="a .style file or a style name of the subject; empty: none")
    parser.add_argument("--uv", default="", metavar="DIR",
                        help="per-frame UV maps NNNNNN.npy (Blender's UV pass); empty: rasterise the rig")
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: SUBJECT/avatar/checkpoint.pt")
    parser.add_argument("--batch", type=_positive_int, default=8, help="frames per forward pass")
    parser.add_argument("--resolution", type=_resolution, default=0,
                        help="output side in px (resampled); 0: the avatar's own size")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")


def parse_shot(text: str) -> tuple[int, int]:
    """``"FIRST-LAST"`` -> (FIRST, LAST); a single number is a one-frame shot.

    Raises:
        RangeError: not one contiguous range.
    """
    frames = parse_range(text)
    if frames != list(range(frames[0], frames[-1] + 1)):
        raise RangeError(f"--shot {text!r}: give the shot as one range FIRST-LAST")
    return frames[0], frames[-1]


def task_frames(shot: tuple[int, int], batch: int, starts: list[int]) -> list[int]:
    """Frame numbers of the batches that start at ``starts`` (sorted), cut at the shot's end.

    Args:
        shot: (FIRST, LAST) frame numbers of the shot, inclusive.
        batch: frames per batch.
        starts: first frames of the task's batches.
    Raises:
        RangeError: a start outside the shot or off the batch grid ``FIRST + k*batch``.
    """
    first, last = shot
    off = [s for s in starts if not first <= s <= last or (s - first) % batch]
    if off:
        raise RangeError(f"--batches: {format_range(off)} are not first frames of batches of {batch} in the "
                         f"shot {first}-{last} (expected {first}, {first + batch}, ...)")
    return [f for s in sorted(starts) for f in range(s, min(s + batch, last + 1))]


def resize_frame(rgb: np.ndarray, side: int) -> np.ndarray:
    """(S, S, 3) uint8 -> (side, side, 3) uint8 (area when shrinking, Lanczos when enlarging)."""
    import cv2

    if side == 0 or side == rgb.shape[0]:
        return rgb
    interp = cv2.INTER_AREA if side < rgb.shape[0] else cv2.INTER_LANCZOS4
    return cv2.resize(rgb, (side, side), interpolation=interp)


def run(args: argparse.Namespace) -> int:
    from backend.render_cli import load_curves, load_uv_dir, resolve_style, write_frames
    from protocol.errors import CurveError

    subject: Path = args.subject
    ckpt = args.checkpoint or checkpoint_path(subject)
    try:
        shot = parse_shot(args.shot)
        frames = task_frames(shot, args.batch, parse_range(args.batches))
        curves = load_curves(args.curves)
        start, n = curves.frame_start, curves.n_frames
        if shot[0] < start or shot[1] >= start + n:
            raise ValueError(f"--shot {args.shot} reaches outside the curves file {args.curves} "
                             f"(frames {start}-{start + n - 1})")
        if not subject.is_dir():
            raise FileNotFoundError(f"subject folder {subject} not found")
        if not Path(ckpt).is_file():
            raise FileNotFoundError(f"no checkpoint at {ckpt} (train the subject first)")
        style = resolve_style(subject, Path(args.style)) if args.style else None
        if style is not None and not style.is_file():
            raise FileNotFoundError(f"style file {style} not found")
        uv_dir = Path(args.uv) if args.uv else None
        if uv_dir is not None and not uv_dir.is_dir():
            raise FileNotFoundError(f"--uv {uv_dir}: not a folder")
        out = check_output_folder(args.output, create=True)
        # torch and the model are loaded only once every input passed: a refused task takes no
        # more than Python's start-up
        from backend.render import Renderer, conform_names

        device = None if args.device in ("", "auto") else args.device
        renderer = Renderer.from_checkpoint(ckpt, device=device, style=style, subject=subject)
        values = conform_names(curves.values, curves.names, renderer.names)
        rows = [f - start for f in frames]
        uv = pose = scale = None
        if uv_dir is not None:
            uv = load_uv_dir(uv_dir, frames)
        else:
            pose, scale = renderer.curves_pose(curves.head_pose, curves.head_scale, n=n)
    except (FileNotFoundError, ValueError, CurveError, OutputFolderError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    code = write_frames(renderer, values, rows, start, out, uv=uv, pose=pose, scale=scale, batch=args.batch,
                        finish=lambda rgb: resize_frame(rgb, args.resolution))
    if code:
        return code
    dt = time.monotonic() - t0
    print(f"{DONE_PREFIX} {len(frames)} frames: {format_range(frames)} -> {out} "
          f"({dt:.2f} s, {len(frames) / max(dt, 1e-9):.1f} frames/s, {renderer.forward.status})", flush=True)
    return 0
