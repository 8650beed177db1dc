"""Benchmark of stage-2 editing at the `cpu` preset (128 px): wall time and style metrics.

    .venv/bin/python bench/edit.py --quick            # a few steps, the rest extrapolated (labelled)
    .venv/bin/python bench/edit.py                    # whole edits, wall time measured
    .venv/bin/python bench/edit.py --subject SUBJECT  # a real trained subject

Both methods are timed: the default style translator and the paper's skip-only edit. Without
``--subject`` a synthetic 128 px subject is drawn and a freshly initialised `cpu`-preset avatar is
saved as its checkpoint: the wall time does not depend on the weights. Quality is bench/style.py's
job. The baseline, measured in the same run on the same subject, is a stage-1 training step of
the same preset.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
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


def time_edit(method: str, subject: Path, ref, frame: int, quick: bool) -> dict:
    """Wall time of one edit's preparation and loop (``method``: translator | skips).

    Without ``quick`` the whole loop runs and its wall time is measured. With ``quick`` only a few
    steps run and the loop's time is extrapolated from their median (the table says so); where the
    settings have a stability term, it is made to join halfway in those steps as in an edit whose
    look needs it, and the steps before and after are extrapolated each from their own median.
    """
    from backend.train.keyframes import Keyframe
    from backend.train.stage2 import prepare_edit
    from backend.train.translator_edit import prepare_translator_edit

    t = time.perf_counter()
    if method == "translator":
        job = prepare_translator_edit(subject, [Keyframe(ref, frame)], device="cpu")
    else:
        job = prepare_edit(subject, ref, frame=frame, device="cpu")
    prepare_s = time.perf_counter() - t
    full_steps = job.settings.steps
    stable = method == "translator" and job.settings.temporal > 0 and job.pairs is not None
    if quick:
        job.settings = replace(job.settings, steps=min(6, full_steps), temporal_above=0.0)
    stamps: list[float] = []
    t_run = time.perf_counter()
    job.run(seed=0, progress=lambda _u: stamps.append(time.perf_counter()))
    run_s = time.perf_counter() - t_run
    diffs = [b - a for a, b in itertools.pairwise(stamps)]
    per_step = statistics.median(diffs) if diffs else run_s
    if quick and stable and len(diffs) >= 4:
        joins = round(job.settings.temporal_from * job.settings.steps)  # step index in the short run
        full_joins = round(job.settings.temporal_from * full_steps)
        before, after = statistics.median(diffs[:joins - 1]), statistics.median(diffs[joins - 1:])
        run_s = (stamps[0] - t_run) + before * (full_joins - 1) + after * (full_steps - full_joins)
    elif quick:
        run_s = (stamps[0] - t_run) + per_step * (full_steps - 1)
    return {"method": method, "prepare_s": prepare_s, "run_s": run_s, "total_s": prepare_s + run_s,
            "per_step_s": per_step, "steps": full_steps, "label": "extrapolated" if quick else "measured"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few steps only, the rest extrapolated (labelled)")
    ap.add_argument("--subject", type=Path, default=None, help="trained subject (default: synthetic)")
    ap.add_argument("--frame", type=int, default=3)
    ap.add_argument("--look", default="cartoon")
    ap.add_argument("--methods", default="translator,skips")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

    from backend.data.subject import Subject
    from backend.looks import stylize_image

    tmp = Path(tempfile.mkdtemp(prefix="bench_edit_"))
    subject = args.subject or _synthetic(tmp, 128)
    ref = stylize_image(Subject.open(subject).frame(args.frame), args.look)
    base_steps = 2 if args.quick else 5
    s1_before = stage1_step_seconds(subject, base_steps, tmp / "stage1")
    rows = [time_edit(m, subject, ref, args.frame, args.quick) for m in args.methods.split(",")]
    s1_after = stage1_step_seconds(subject, base_steps, tmp / "stage1b")
    s1 = (s1_before + s1_after) / 2

    load = os.getloadavg()[0]
    kind = "trained subject" if args.subject else "synthetic subject, untrained weights (timing only)"
    print(f"\n## Stage-2 edit, `cpu` preset (128 px), {torch.get_num_threads()} threads, "
          f"load avg {load:.1f} on {os.cpu_count()} cores; {kind}\n")
    print("| measure | wall time | in stage-1 steps | target |")
    print("|---|---|---|---|")
    print(f"| stage-1 training step (baseline, batch 4; before / after) | {s1 * 1000:.0f} ms "
          f"({s1_before * 1000:.0f} / {s1_after * 1000:.0f}) | 1.00 | |")
    for r in rows:
        verdict = "met" if r["total_s"] <= TARGET_S else "missed"
        print(f"| {r['method']}: one step (median) | {r['per_step_s'] * 1000:.0f} ms | "
              f"{r['per_step_s'] / s1:.2f} | |")
        print(f"| {r['method']}: prepare | {r['prepare_s']:.1f} s | {r['prepare_s'] / s1:.1f} | |")
        print(f"| {r['method']}: whole edit, {r['steps']} steps ({r['label']}) | {r['total_s']:.1f} s | "
              f"{r['total_s'] / s1:.0f} | <= {TARGET_S:.0f} s: {verdict} |")
    print(f"\n(outputs in {tmp}; quality is measured by bench/style.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
