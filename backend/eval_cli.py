"""`emo-avatar eval SUBJECT [--checkpoint CKPT] [--max-frames N] [--no-landmarks] [--no-identity]
[--references [--budget-steps N]]` and `emo-avatar eval SUBJECT --style S [--look LOOK]
[--reference IMG --frame N] [--shot-frames N]`.

Without ``--style``: held-out PSNR/SSIM, face-region PSNR/SSIM, mouth/eye errors, Laplacian-pyramid
L1, LPIPS, sharpness difference, F-LMD and identity distance -> SUBJECT/avatar/metrics.json
(section "eval") and a contact sheet PNG (``backend.metrics.evaluate``). ``--references`` also
trains the DNR baseline and the "no PTI init" / "no flow" ablations with the same budget
(``backend.train.references``), prints their table and writes it to
``SUBJECT/avatar/references.md`` and metrics.json ("references").

With ``--style``: the style measured against ground truth (``backend.metrics.style_eval``): with
``--look`` (a built-in name, or ``FILE.py:FUNCTION`` / ``package.module:FUNCTION`` for a look of
one's own, ``backend.looks.load_look``) the look applied to the real held-out frames is the ground
truth, and the post-filter
bound is measured in the same run; without it only what needs no look is reported. The result
goes to ``<style>.eval.json`` (keyed by look), ``<style>.eval.png`` and metrics.json
("style_eval"), and a table is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from backend.looks import LOOKS

    parser.add_argument("subject", type=Path, help="subject folder with a trained avatar/")
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: SUBJECT/avatar/checkpoint.pt")
    parser.add_argument("--style", type=Path, default=None,
                        help="measure this .style file (styled vs unstyled renders, against --look)")
    parser.add_argument("--look", default=None, metavar="LOOK",
                        help=f"with --style: the look applied to the real held-out frames as ground "
                             f"truth: a built-in one ({', '.join(LOOKS)}), or FILE.py:FUNCTION or "
                             "package.module:FUNCTION for a look function (uint8 RGB -> uint8 RGB)")
    parser.add_argument("--reference", type=Path, default=None,
                        help="with --style: the style's reference image (default: the one its meta names)")
    parser.add_argument("--frame", type=int, default=None,
                        help="with --reference: the frame it stylises (default: the style's)")
    parser.add_argument("--shot-frames", type=int, default=None,
                        help="with --style: at most N frames in the expression/flicker shot")
    parser.add_argument("--max-frames", type=int, default=None, help="evaluate at most N held-out frames")
    parser.add_argument("--no-landmarks", action="store_true", help="skip F-LMD (MediaPipe)")
    parser.add_argument("--no-identity", action="store_true", help="skip the dlib identity distance")
    parser.add_argument("--device", default=None)
    parser.add_argument("--references", action="store_true",
                        help="also train + score the DNR baseline and the no-PTI / no-flow ablations")
    parser.add_argument("--budget-steps", type=int, default=None,
                        help="steps of every reference run (default: the avatar checkpoint's step)")


def run(args: argparse.Namespace) -> int:
    if args.style is not None:
        return run_style(args)
    if args.look is not None or args.reference is not None:
        print("error: --look and --reference measure a style; add --style STYLE", file=sys.stderr)
        return 2
    from backend.metrics.evaluate import evaluate

    try:
        result = evaluate(args.subject, checkpoint=args.checkpoint, device=args.device,
                          max_frames=args.max_frames, landmarks=not args.no_landmarks,
                          identity=not args.no_identity)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    keys = ("frames", "psnr_db", "ssim", "face_psnr_db", "face_ssim", "mouth_l1", "eyes_l1", "lap_l1",
            "face_lap_l1", "lpips", "sd", "sharpness_signed", "f_lmd_px", "f_lmd_frames", "identity_distance",
            "identity_note")
    print(json.dumps({k: result.get(k) for k in keys}, indent=2))
    if args.references:
        return run_references_cli(args)
    return 0


def run_style(args: argparse.Namespace) -> int:
    from backend.looks import load_look
    from backend.metrics.style_eval import eval_json_path, evaluate_style, format_table

    if args.references:
        print("error: --references compares the subject's own avatar; drop --style", file=sys.stderr)
        return 2
    try:
        look = None if args.look is None else load_look(args.look)
        result = evaluate_style(args.subject, args.style, look, checkpoint=args.checkpoint,
                                device=args.device, max_frames=args.max_frames, shot_frames=args.shot_frames,
                                reference=args.reference, reference_frame=args.frame,
                                identity=not args.no_identity)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    print(f"wrote {eval_json_path(args.style)}")
    return 0


def run_references_cli(args: argparse.Namespace) -> int:
    from backend.metrics.metrics_file import update_metrics_json
    from backend.paths import avatar_dir
    from backend.train.references import markdown_table, run_references
    from protocol.fileio import atomic_write_text

    if args.checkpoint is not None:
        print("error: --references compares the subject's own avatar; drop --checkpoint", file=sys.stderr)
        return 2
    try:
        rows = run_references(args.subject, budget_steps=args.budget_steps, device=args.device,
                              max_frames=args.max_frames, landmarks=not args.no_landmarks,
                              identity=not args.no_identity)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = markdown_table(rows)
    print(table)
    out = avatar_dir(args.subject)
    atomic_write_text(out / "references.md", table)
    update_metrics_json(out / "metrics.json", "references", {"rows": rows, "table": table})
    return 0
