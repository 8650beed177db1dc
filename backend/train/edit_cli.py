"""`emo-avatar edit SUBJECT --reference IMAGE [--frame N] [--reference IMAGE --frame N ...]
[--method translator|skips] [--steps S] [--steady-motion] [--dither] [--clip CKPT] [--clip-arch NAME]
-o STYLE`: stage-2 editing from the command line (1-4 keyframes; the paper's skips method takes
one)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("subject", type=Path, help="subject folder with a trained avatar (emo-avatar train)")
    parser.add_argument(
        "--reference",
        type=Path,
        required=True,
        action="append",
        help="stylised version of the matching --frame (paint one, or make one with `emo-avatar "
        "stylize`); repeat with --frame for up to 4 keyframes",
    )
    parser.add_argument(
        "--frame", type=int, action="append", default=None,
        help="the subject frame the reference before it stylises (default 0 for a single reference)",
    )
    parser.add_argument(
        "--method", choices=("translator", "skips"), default="translator",
        help="translator (default): a style translator fitted on the keyframes and run after the "
        "generator; skips: the paper's skip-only fine-tune with region-aware PatchNCE (one keyframe)",
    )
    parser.add_argument("--steps", type=int, default=None, help="optimisation steps (default: per preset)")
    parser.add_argument(
        "--steady-motion", action="store_true",
        help="steady the style over time along the motion: moving strokes stay as crisp as each frame "
        "draws them (no faded second outline), at a higher render cost (translator only)",
    )
    parser.add_argument(
        "--dither", action="store_true",
        help="where the references are a dither of a few inks (an error-diffused or stippled print): "
        "dot every frame with the references' inks instead of giving a smooth tone; the dots cost "
        "PSNR against the look (translator only)",
    )
    parser.add_argument(
        "--clip",
        type=Path,
        default=None,
        metavar="CHECKPOINT",
        help="local open_clip checkpoint for the PatchNCE embeddings (never downloaded); "
        "without it the CUT fallback (network's own features + MLP heads) is used",
    )
    parser.add_argument(
        "--clip-arch",
        default=None,
        metavar="NAME",
        help="open_clip architecture of --clip (a config name such as ViT-B-32, or a "
        "model-config .json); default: inferred from the checkpoint",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="style file to write (default SUBJECT/styles/<name>.style)",
    )
    parser.add_argument("--name", default=None, help="style name (default: the output's stem, else 'style')")
    parser.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: CUDA when present)")
    parser.add_argument("--seed", type=int, default=0)


def _progress(update) -> None:
    if update.step == update.total or update.step % max(update.total // 20, 1) == 0:
        eta = f"  eta {update.eta:.0f} s" if update.eta is not None else ""
        loss = update.losses.get("total")
        shown = f"  loss {loss:.3f}" if loss is not None else ""
        print(f"\redit {update.step}/{update.total}{shown}{eta}   ", end="", file=sys.stderr, flush=True)
        if update.step == update.total:
            print(file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from backend.progress import Cancelled
    from backend.train.checkpoint import CheckpointError
    from backend.train.clip_encoder import ClipLoadError
    from backend.train.keyframes import pair_keyframes
    from backend.train.reference import ReferenceError
    from backend.train.stage2 import edit_avatar

    output = args.output
    if output is not None and output.suffix != ".style":
        output = output.with_suffix(".style")
        print(f"note: writing {output} (style files end in .style)", file=sys.stderr)
    name = args.name or (output.stem if output is not None else "style")
    try:
        keyframes = pair_keyframes(args.reference, args.frame or [])
        path = edit_avatar(
            args.subject,
            keyframes=keyframes,
            method=args.method,
            steady_motion=args.steady_motion,
            dither=args.dither,
            steps=args.steps,
            out_path=output,
            name=name,
            clip_checkpoint=args.clip,
            clip_arch=args.clip_arch,
            device=args.device,
            seed=args.seed,
            progress=_progress,
        )
    except Cancelled:
        print("edit stopped; no style written", file=sys.stderr)
        return 130
    except (
        FileNotFoundError,
        IndexError,
        ReferenceError,
        ClipLoadError,
        CheckpointError,
        ValueError,
        RuntimeError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"wrote {path}\n  metrics: {path.with_name(path.stem + '.metrics.json')}\n"
        f"  contact sheet: {path.with_name(path.stem + '.contact.png')}\n"
        f"  use it: emo-avatar render {args.subject} ... --style {path}"
    )
    return 0
