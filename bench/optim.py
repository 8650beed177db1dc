"""Benchmark of one Adam step on the backend's models: torch's default CPU implementation (one
tensor at a time) against the fused kernel ``backend.optim.adam`` picks.

    .venv/bin/python bench/optim.py            # 200 steps per row, 3 rounds
    .venv/bin/python bench/optim.py --quick    # 20 steps per row, 1 round

Rows: the style translator of the `cpu` edit, the `cpu` preset's avatar and its patch
discriminator, with random gradients. The two implementations alternate within each round, so
drift of the machine's speed falls on both. Median ms per step and the ratio fused / default.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def models() -> dict:
    """The three models by row name (torch.nn.Module each)."""
    from backend.model.avatar import EmoAvatar
    from backend.style.translator import StyleTranslator
    from backend.train.presets import get_preset
    from backend.train.stage1 import make_discriminator
    from backend.train.translator_edit import CPU_FIT

    cfg = get_preset("cpu").avatar_config(52)
    return {"style translator (cpu edit)": StyleTranslator(replace(CPU_FIT.net, guides=2, source_flag=1)),
            "avatar (cpu preset)": EmoAvatar(cfg),
            "patch discriminator (cpu preset)": make_discriminator(cfg)}


def step_ms(opt, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step()
    return (time.perf_counter() - t0) / steps * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    import torch

    from backend.optim import adam

    steps, rounds = (20, 1) if args.quick else (200, 3)
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {steps} steps x {rounds} rounds")
    print("| model | tensors | values | default ms/step | fused ms/step | fused / default |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, net in models().items():
        params = [p for p in net.parameters() if p.requires_grad]
        for p in params:
            p.grad = torch.randn_like(p)
        default = torch.optim.Adam(params, lr=1e-4, betas=(0.9, 0.99))
        fused = adam(params, lr=1e-4, betas=(0.9, 0.99))
        assert fused.defaults["fused"], "backend.optim.adam did not fuse on this device"
        for opt in (default, fused):  # warm-up: each allocates its state on its first step
            step_ms(opt, 5)
        a, b = [], []
        for _ in range(rounds):
            a.append(step_ms(default, steps))
            b.append(step_ms(fused, steps))
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"| {name} | {len(params)} | {sum(p.numel() for p in params):,} | {ma:.2f} | {mb:.2f} | "
              f"{mb / ma:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
