"""`emo-avatar sample -o DIR [--tiny] [--seed N]`: write the synthetic sample clip + ground truth."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backend.progress import ProgressUpdate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", required=True, type=Path, help="output folder (created if missing)")
    parser.add_argument(
        "--tiny", action="store_true", help="2 s, 160 px head-and-shoulders clip for quick tests"
    )
    parser.add_argument("--seed", type=_seed, default=0, help="jitters event timing and size (default 0)")


def _seed(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"seed must be >= 0, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    from backend.data.sample import GROUND_TRUTH_NAME, synthesize_sample

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        print(f"error: {out} exists and is not a folder", file=sys.stderr)
        return 2

    def show(update: ProgressUpdate) -> None:
        if update.step == update.total or update.step % 25 == 0:
            end = "\n" if update.step == update.total else ""
            print(f"\rsample: frame {update.step}/{update.total}", end=end, file=sys.stderr, flush=True)

    try:
        video = synthesize_sample(out, tiny=args.tiny, seed=args.seed, progress=show)
    except OSError as e:
        print(f"\nerror: cannot write the sample to {out}: {e}", file=sys.stderr)
        return 1
    except RuntimeError as e:  # no face in the photo, no mp4v encoder
        print(f"\nerror: {e}", file=sys.stderr)
        return 1
    print(f"wrote {video} and {out / GROUND_TRUTH_NAME}")
    return 0
