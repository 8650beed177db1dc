"""Benchmark of stage-2 editing at the `cpu` preset (128 px): wall time and style metrics.

    .venv/bin/python bench/edit.py --quick            # < 60 s: a few steps, extrapolated
    .venv/bin/python bench/edit.py                    # the full edit (preset step count)
    .venv/bin/python bench/edit.py --subject SUBJECT  # a real trained subject (metrics then mean something)

Without ``--subject`` a synthetic 128 px subject is drawn and a freshly initialised `cpu`-preset
avatar is saved as its checkpoint: the wall time does not depend on the weights, but the style
metrics of an untrained avatar say nothing about quality, and the table says so. The baseline,
measured in the same run on the same subject, is a stage-1 training step of the same preset.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

TARGET_S = 120.0


def _synthetic(tmp: Path, size: int) -> Path:
    spec = importlib.util.spec_from_file_location("edit_fixtures", ROOT / "tests" / "edit" / "conftest.py")
    fx = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fx)
    subject = fx.make_subject(tmp / "subject", size=size, n_frames=40)
    from backend.model.avatar import EmoAvatar
    from backend.paths import checkpoint_path
    from backend.train.checkpoint import save_checkpoint
    from backend.train.presets import get_preset
    from backend.train.stage1 import make_discriminator

    torch.manual_seed(0)
    cfg = get_preset("cpu").avatar_config(len(fx.NAMES))
    avatar = EmoAvatar(cfg)
    meta = {"config": cfg.to_dict(), "preset": "cpu", "subject_id": subject.name, "size": size}
    save_checkpoint(checkpoint_path(subject), avatar.state_dict(), meta,
                    {"disc": make_discriminator(cfg).state_dict()})
    return subject


def stage1_step_seconds(subject: Path, steps: int, out: Path) -> float:
    """Mean seconds of a real stage-1 training step (`cpu` preset) after one warm-up step."""
    from backend.device import pick_device
    from backend.train.data import load_subject_tensors
    from backend.train.perceptual import build_perceptual
    from backend.train.presets import get_preset
    from backend.train.stage1 import Stage1Trainer

    dev = pick_device("cpu")
    p = get_preset("cpu")
    data = load_subject_tensors(subject, p.size)
    trainer = Stage1Trainer(p, data, dev, build_perceptual(device=dev), 0, out)
    trainer.step()
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    return (time.perf_counter() - t0) / steps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few steps only (< 60 s), extrapolated")
    ap.add_argument("--subject", type=Path, default=None, help="trained subject (default: synthetic)")
    ap.add_argument("--frame", type=int, default=3)
    ap.add_argument("--look", default="cartoon")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

    from backend.data.subject import Subject
    from backend.train.stage2 import edit_settings, prepare_edit
    from backend.train.style import save_style
    from backend.train.stylize import stylize_image

    tmp = Path(tempfile.mkdtemp(prefix="bench_edit_"))
    t = time.perf_counter()
    subject = args.subject or _synthetic(tmp, 128)
    setup_s = time.perf_counter() - t
    ref = stylize_image(Subject.open(subject).frame(args.frame), args.look)

    base_steps = 2 if args.quick else 5
    s1_before = stage1_step_seconds(subject, base_steps, tmp / "stage1")

    t = time.perf_counter()
    job = prepare_edit(subject, ref, frame=args.frame, device="cpu")
    prepare_s = time.perf_counter() - t
    full_steps = job.settings.steps
    run_steps = 4 if args.quick else full_steps
    job.settings = replace(job.settings, steps=run_steps)
    stamps: list[float] = []
    t_run = time.perf_counter()
    result = job.run(seed=0, progress=lambda _u: stamps.append(time.perf_counter()))
    # median step time without the first step (one-off optimiser / autograd warm-up)
    diffs = [b - a for a, b in itertools.pairwise(stamps)]
    per_step = statistics.median(diffs) if diffs else stamps[0] - t_run
    first_step = stamps[0] - t_run
    edit_total = prepare_s + first_step + per_step * (full_steps - 1)
    s1_after = stage1_step_seconds(subject, base_steps, tmp / "stage1b")
    s1 = (s1_before + s1_after) / 2

    from backend.metrics.style_metrics import write_style_report

    out = tmp / "styles" / "bench.style"
    meta = {"subject_id": "bench", "checkpoint_sha256": job.checkpoint_sha256,
            "encoder": job.encoder.description}
    save_style(out, job.avatar, meta)
    t = time.perf_counter()
    metrics = write_style_report(out, job.avatar, job.tensors, job.ref, args.frame, meta,
                                 base_skips=job.base_skips, history=result.history, device=job.device)
    metrics_s = time.perf_counter() - t

    load = os.getloadavg()[0]
    kind = "trained subject" if args.subject else "synthetic subject, untrained weights (timing only)"
    sd, tc = metrics["style_distance"], metrics["temporal"]
    label = "extrapolated" if args.quick else "measured"
    verdict = "meets" if edit_total <= TARGET_S else "MISSES"
    ratio = f"{tc['ratio']:.2f}" if tc["ratio"] is not None else "n/a"
    rows = [
        ("stage-1 training step (baseline, batch 4; before / after the edit)",
         f"{s1 * 1000:.0f} ms ({s1_before * 1000:.0f} / {s1_after * 1000:.0f})", "1.00"),
        (f"stage-2 edit step (median of {max(len(diffs), 1)})", f"{per_step * 1000:.0f} ms",
         f"{per_step / s1:.2f}"),
        ("first edit step (warm-up)", f"{first_step * 1000:.0f} ms", f"{first_step / s1:.2f}"),
        ("prepare (load, freeze, encoder, caches)", f"{prepare_s:.1f} s", f"{prepare_s / s1:.1f}"),
        (f"full edit, {full_steps} steps ({label})",
         f"{edit_total:.1f} s ({verdict} the {TARGET_S:.0f} s target)", f"{edit_total / s1:.0f}"),
        ("metrics + contact sheet", f"{metrics_s:.1f} s", f"{metrics_s / s1:.1f}"),
        ("face colour-histogram distance to ref., before -> after",
         f"{sd['histogram_before']:.3f} -> {sd['histogram_after']:.3f}", ""),
        ("face Gram distance to ref., before -> after",
         f"{sd['gram_before']:.3f} -> {sd['gram_after']:.3f}", ""),
        ("temporal change styled / unstyled",
         f"{tc['styled']:.4f} / {tc['unstyled']:.4f} (ratio {ratio})", ""),
        ("F-LMD styled vs unstyled (px)", str(metrics["identity"]["f_lmd_styled_vs_unstyled"]), ""),
    ]
    print(f"\n## Stage-2 edit, `cpu` preset (128 px), {torch.get_num_threads()} threads, "
          f"load avg {load:.1f} on {os.cpu_count()} cores\n")
    print(f"Subject: {kind}; encoder: {job.encoder.description}; trains {job.trainable:,} of "
          f"{job.total:,} parameters; {edit_settings('cpu').steps} steps per edit.\n")
    print("| measure | value | in stage-1 steps |")
    print("|---|---|---|")
    for name, value, rel in rows:
        print(f"| {name} | {value} | {rel} |")
    print(f"\n(setup {setup_s:.1f} s; outputs in {tmp}; "
          f"last losses: {json.dumps(metrics['losses']['last'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
