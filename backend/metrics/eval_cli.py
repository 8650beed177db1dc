"""`emo-avatar eval SUBJECT [--checkpoint CKPT] [--style STYLE] [--max-frames N] [--no-landmarks]`:
held-out PSNR / SSIM / LPIPS / sharpness difference / F-LMD -> SUBJECT/avatar/metrics.json
(section "eval") and a contact sheet PNG."""

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
    return 0
