"""Benchmark: stage-1 training wall time until held-out PSNR >= 28 dB at 128 px (target <= 10 min).

    python bench/train.py            # full: train the `cpu` preset until 28 dB or --budget s (600)
    python bench/train.py --quick    # < 60 s: short budget, PSNR trajectory + honest extrapolation

Data: the embedded synthetic sample (``backend.data.sample.synthesize_sample``, the tiny clip in
quick mode) tracked to a 128 px subject; made once and cached in ``--workdir`` (its time is not
counted). Measured in the same run:

* baseline: a generator-only training step (StyleGAN2 synthesis at the pivot, L1, Adam) of the
  same preset and batch - the floor any stage-1 step pays;
* the full stage-1 step (texture + deformer + skips + generator + perceptual + patch GAN);
* wall time from start (PTI included) to the first held-out PSNR evaluation >= 28 dB.

When the budget ends first, the PSNR trajectory is fitted as ``a + b * ln(step)`` and the step
and time at 28 dB are extrapolated - printed as an extrapolation, never as a measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_DB = 28.0


def make_subject(workdir: Path, quick: bool) -> tuple[Path, float]:
    """The tracked 128 px sample subject (cached); returns (folder, seconds spent making it)."""
    from backend.data.sample import synthesize_sample
    from backend.face.track import track_video

    subject = workdir / ("subject_tiny128" if quick else "subject_full128")
    if (subject / "meta.json").is_file():
        return subject, 0.0
    t0 = time.monotonic()
    video = synthesize_sample(workdir / ("sample_tiny" if quick else "sample_full"), tiny=quick)
    track_video(video, subject, size=128, overwrite=True)
    return subject, time.monotonic() - t0


def generator_step_rate(preset_name: str, n_expr: int, steps: int) -> float:
    """Steps/s of a generator-only training step at the preset's size and batch."""
    from backend.model.avatar import EmoAvatar
    from backend.optim import adam
    from backend.train.presets import get_preset

    p = get_preset(preset_name)
    avatar = EmoAvatar(p.avatar_config(n_expr))
    G = avatar.generator
    opt = adam(G.parameters(), lr=p.lr_g)
    target = torch.rand(p.batch, 3, p.size, p.size) * 2 - 1

    def one() -> None:
        img = G.synthesis(avatar.w_pivot.detach().expand(p.batch, -1, -1), noise_mode="const")
        loss = (img - target).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    one()  # warm-up
    t0 = time.monotonic()
    for _ in range(steps):
        one()
    return steps / (time.monotonic() - t0)


def extrapolate(points: list[tuple[int, float]]) -> tuple[float | None, str]:
    """Step at which a + b ln(step) reaches TARGET_DB, from (step, psnr) points."""
    pts = [(s, v) for s, v in points if s > 0]
    if len(pts) < 2:
        return None, "fewer than 2 PSNR samples: no fit"
    x = np.log([s for s, _ in pts])
    y = np.array([v for _, v in pts])
    if np.ptp(x) == 0:
        return None, "all samples at one step: no fit"
    b, a = np.polyfit(x, y, 1)
    if b <= 0:
        return None, f"PSNR not rising over the samples (slope {b:.2f} dB per e-fold): no fit"
    return float(math.exp((TARGET_DB - a) / b)), f"fit {a:.2f} + {b:.2f} ln(step) over {len(pts)} samples"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="< 60 s: short budget and extrapolation")
    ap.add_argument("--budget", type=float, default=None, help="training seconds (default 600, quick 30)")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "emo_bench_train")
    ap.add_argument("--eval-every", type=int, default=None, help="steps between held-out PSNR evaluations")
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    from backend.data.subject import Subject
    from backend.progress import Cancelled, ProgressUpdate
    from backend.train.presets import get_preset
    from backend.train.stage1 import train_avatar

    torch.set_num_threads(max(1, torch.get_num_threads()))
    budget = args.budget or (25.0 if args.quick else 600.0)
    eval_every = args.eval_every or (5 if args.quick else 100)  # the preset's own interval is 250
    args.workdir.mkdir(parents=True, exist_ok=True)
    subject, make_s = make_subject(args.workdir, args.quick)
    subj = Subject.open(subject)
    n_train, n_held = (len(x) for x in subj.split())
    preset = get_preset(args.preset)
    overrides = {"pti_w_steps": 2, "pti_g_steps": 2} if args.quick else {}

    gen_rate = generator_step_rate(args.preset, len(subj.expression_names), 3 if args.quick else 10)

    load0 = os.getloadavg()[0]
    t0 = time.monotonic()
    samples: list[tuple[int, float, float]] = []  # (step, psnr, elapsed)
    train_start: list[float] = []
    in_train: list[bool] = []
    reached: list[tuple[int, float, float]] = []

    def progress(u: ProgressUpdate) -> None:
        if u.stage == "pti":  # stage 1 starts when the last PTI step reports
            train_start[:] = [time.monotonic()]
        elif not in_train:
            in_train.append(True)
        if "heldout_psnr_db" in u.losses:
            v = u.losses["heldout_psnr_db"]
            samples.append((u.step, v, time.monotonic() - t0))
            if v >= TARGET_DB and not reached:
                reached.append(samples[-1])

    def stop() -> bool:  # PTI always completes; the budget may end the run from the first stage-1 step
        return bool(reached) or (bool(in_train) and time.monotonic() - t0 > budget)

    out = args.workdir / "run"
    with contextlib.suppress(Cancelled):  # the stop predicate ends the run; the checkpoint is saved
        train_avatar(subject, preset=args.preset, steps=10**6, out_dir=out, progress=progress,
                     should_stop=stop, preview_every=eval_every, preset_overrides=overrides, device="cpu")
    total = time.monotonic() - t0
    from backend.train.checkpoint import read_checkpoint

    meta = read_checkpoint(out / "checkpoint.pt")["meta"]
    steps_done = int(meta["step"])
    train_s = total - (train_start[0] - t0 if train_start else 0.0)
    full_rate = steps_done / max(train_s, 1e-9)
    pti_s = float(meta["pti"].get("seconds", 0.0))
    if not reached and (not samples or samples[-1][0] != steps_done):  # final held-out PSNR (EMA avatar)
        from backend.metrics.evaluate import evaluate

        final = evaluate(subject, checkpoint=out / "checkpoint.pt", device="cpu", landmarks=False,
                         out_dir=out)
        samples.append((steps_done, final["psnr_db"], total))

    print(f"\n## bench/train.py ({'quick' if args.quick else 'full'}), preset `{args.preset}` "
          f"({preset.size} px, batch {preset.batch}), {torch.get_num_threads()} threads\n")
    print(f"subject: {subject.name} ({n_train} train / {n_held} held-out frames); "
          f"perceptual: {meta['perceptual']}; G init: {meta['stylegan_init']['kind']}"
          + (f"; subject made in {make_s:.0f} s (not counted)" if make_s else ""))
    print(f"machine load (1-min average) at start / end: {load0:.1f} / {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores (times are only comparable on an idle machine)")
    print("\n| step kind | steps/s | ratio vs generator-only |\n|---|---:|---:|")
    print(f"| generator-only (baseline) | {gen_rate:.3f} | 1.00 |")
    print(f"| full stage-1 step (incl. evals, previews) | {full_rate:.3f} | {full_rate / gen_rate:.2f} |")
    print("\n| held-out PSNR trajectory | step | elapsed s |\n|---|---:|---:|")
    for s, v, e in samples:
        print(f"| {v:.2f} dB | {s} | {e:.1f} |")
    print("\n| result | value |\n|---|---|")
    print(f"| PTI ({meta['pti']['w_steps']}+{meta['pti']['g_steps']} steps) | {pti_s:.1f} s |")
    print(f"| steps done / wall time | {steps_done} / {total:.1f} s |")
    if reached:
        s, v, e = reached[0]
        print(f"| **measured** time to {TARGET_DB:.0f} dB | **{e:.1f} s** (step {s}, {v:.2f} dB); "
              f"target <= 600 s: {'met' if e <= 600 else 'missed'} |")
    else:
        step28, how = extrapolate([(s, v) for s, v, _ in samples])
        if step28 is None:
            print(f"| time to {TARGET_DB:.0f} dB | not reached in {budget:.0f} s; {how} |")
        else:
            pti_full = preset.pti_w_steps + preset.pti_g_steps
            pti_ran = sum(overrides.values()) or pti_full
            t28 = pti_s * pti_full / pti_ran + step28 / full_rate
            print(f"| time to {TARGET_DB:.0f} dB | not reached in {budget:.0f} s; **extrapolated** "
                  f"~{step28:.0f} steps ~{t28 / 60:.1f} min with full PTI ({how}) - an estimate, "
                  "not a measurement |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
