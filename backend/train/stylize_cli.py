"""`emo-avatar stylize SUBJECT --frame N --look cartoon|pencil|oil|watercolor -o ref.png`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from backend.images import write_png
from backend.looks import LOOKS, stylize_image

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("subject", type=Path, help="subject folder (from `emo-avatar track`)")
    parser.add_argument("--frame", type=int, default=0, help="frame to stylise (default 0)")
    parser.add_argument("--look", choices=LOOKS, default="cartoon", help="stylisation filter")
    parser.add_argument("-o", "--output", type=Path, required=True, help="reference image to write (.png)")


def stylize_subject_frame(subject: Path, frame: int, look: str, output: Path) -> Path:
    """Stylise frame ``frame`` of ``subject`` with ``look`` and write it to ``output`` (PNG)."""
    from backend.data.subject import Subject

    rgb = Subject.open(subject).frame(frame)
    out = stylize_image(rgb, look)
    if output.suffix.lower() != ".png":
        output = output.with_suffix(".png")
        log.info("writing PNG: %s", output)
    write_png(output, out, fsync=True)
    return output


def run(args: argparse.Namespace) -> int:
    try:
        out = stylize_subject_frame(args.subject, args.frame, args.look, args.output)
    except (FileNotFoundError, IndexError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"wrote {out} ({args.look} look of frame {args.frame}); edit with: "
        f"emo-avatar edit {args.subject} --reference {out} --frame {args.frame} -o STYLE"
    )
    return 0
