"""`emo-avatar eval SUBJECT [--checkpoint CKPT] [--style STYLE] [--max-frames N] [--no-landmarks]
[--references [--budget-steps N]]`:
held-out PSNR / SSIM / LPIPS / sharpness difference / F-LMD -> SUBJECT/avatar/metrics.json
(section "eval") and a contact sheet PNG. ``--references`` also trains the DNR baseline and the
"no PTI init" / "no flow" ablations with the same budget (``backend.train.references``), prints
their table and writes it to ``SUBJECT/avatar/references.md`` and metrics.json ("references")."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("subject", type=Path, help="subject folder with a trained avatar/")
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: SUBJECT/avatar/checkpoint.pt")
    parser.add_argument("--style", type=Path, default=None, help="evaluate with a .style file applied")
    parser.add_argument("--max-frames", type=int, default=None, help="evaluate at most N held-out frames")
    parser.add_argument("--no-landmarks", action="store_true", help="skip F-LMD (MediaPipe)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--references", action="store_true",
                        help="also train + score the DNR baseline and the no-PTI / no-flow ablations")
    parser.add_argument("--budget-steps", type=int, default=None,
                        help="steps of every reference run (default: the avatar checkpoint's step)")


def run(args: argparse.Namespace) -> int:
    from backend.metrics.evaluate import evaluate

    try:
        result = evaluate(args.subject, checkpoint=args.checkpoint, device=args.device, style=args.style,
                          max_frames=args.max_frames, landmarks=not args.no_landmarks)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    keys = ("frames", "psnr_db", "ssim", "lpips", "sd", "sharpness_signed", "f_lmd_px", "f_lmd_frames")
    print(json.dumps({k: result.get(k) for k in keys}, indent=2))
    if args.references:
        return run_references_cli(args)
    return 0


def run_references_cli(args: argparse.Namespace) -> int:
    from backend.paths import avatar_dir
    from backend.train.references import markdown_table, run_references
    from backend.train.stage1 import update_metrics_json
    from protocol.fileio import atomic_write_text

    if args.checkpoint is not None or args.style is not None:
        print("error: --references compares the subject's own avatar; drop --checkpoint/--style",
              file=sys.stderr)
        return 2
    try:
        rows = run_references(args.subject, budget_steps=args.budget_steps, device=args.device,
                              max_frames=args.max_frames, landmarks=not args.no_landmarks)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = markdown_table(rows)
    print(table)
    out = avatar_dir(args.subject)
    atomic_write_text(out / "references.md", table)
    update_metrics_json(out / "metrics.json", "references", {"rows": rows, "table": table})
    return 0
