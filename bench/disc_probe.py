"""Can the patch discriminator tell a trained avatar's renders from its frames? A probe.

    .venv/bin/python bench/disc_probe.py SUBJECT [--steps 600] [--beta1 0,0.9] [--lr 0.002]
                                         [--every 100] [--r1 0,1] [--threads 1]

Loads ``SUBJECT/avatar/checkpoint.pt`` (its preset, discriminator architecture and training
frames), freezes the avatar, and trains a *fresh* patch discriminator of the same architecture
alone: each step one batch of training frames (real) against the avatar's EMA renders of the
same frames and UV maps (fake), the logistic loss of stage 1, one Adam step, and stage 1's lazy
R1 penalty on the real frames every ``r1_every`` steps at each gamma of ``--r1`` (0: none). One
run per pair of an Adam first-moment decay in ``--beta1`` and an R1 gamma, all with the same
seed, so the same batches. Prints, every ``--every`` steps, the loss averaged over the last
``--every`` steps (2 ln 2 = 1.386 is chance) and the share of patch logits on the right side of 0
(0.5 is chance).

A discriminator that cannot separate a frozen avatar's renders within stage 1's adversarial
steps cannot steer a generator that moves under it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def probe(subject: Path, steps: int, beta1: float, r1_gamma: float, lr: float | None,
          every: int) -> list[tuple[int, float, float]]:
    """(step, mean loss, mean accuracy) every ``every`` steps for one fresh discriminator."""
    import torch

    from backend.model.config import AvatarConfig
    from backend.optim import adam
    from backend.train import losses
    from backend.train.checkpoint import load_avatar
    from backend.train.data import TrainSampler, load_subject_tensors
    from backend.train.presets import PRESETS
    from backend.train.stage1 import make_discriminator, seed_everything

    avatar, meta = load_avatar(subject / "avatar" / "checkpoint.pt")
    preset = PRESETS[meta["preset"]]
    data = load_subject_tensors(subject, preset.size)
    seed_everything(0)
    disc = make_discriminator(AvatarConfig.from_dict(meta["config"]))
    opt = adam(disc.parameters(), lr=lr or preset.lr_d, betas=(beta1, 0.99))
    sampler = TrainSampler(data.train_ids, preset.batch, 0, 0, 1)
    out, window = [], []
    for step in range(1, steps + 1):
        frames, uv, win = data.batch(sampler.next(), torch.device("cpu"))
        with torch.no_grad():
            fake = avatar(uv, win).image.float()
        real_logits, fake_logits = disc(frames, uv), disc(fake, uv)
        loss = losses.d_logistic_loss(real_logits, fake_logits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if r1_gamma > 0 and preset.r1_every > 0 and step % preset.r1_every == 0:
            r1_loss, _ = losses.lazy_r1(disc, frames, uv, r1_gamma, preset.r1_every)
            opt.zero_grad(set_to_none=True)
            r1_loss.backward()
            opt.step()
        acc = ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean()).item() / 2
        window.append((loss.item(), acc))
        if step % every == 0:
            mean = np.mean(window, axis=0)
            out.append((step, float(mean[0]), float(mean[1])))
            window = []
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("subject", type=Path)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--beta1", default="0,0.9", help="comma-separated Adam first-moment decays")
    ap.add_argument("--r1", default="0", help="comma-separated R1 gammas (0: no R1)")
    ap.add_argument("--lr", type=float, default=None, help="default: the checkpoint preset's lr_d")
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    runs = {(b, g): probe(args.subject, args.steps, float(b), float(g), args.lr, args.every)
            for b in args.beta1.split(",") for g in args.r1.split(",")}
    print("| steps | " + " | ".join(f"beta1 {b}, R1 {g}: loss / accuracy" for b, g in runs) + " |")
    print("|---:|" + "---|" * len(runs))
    for i, (step, *_) in enumerate(next(iter(runs.values()))):
        print(f"| {step - args.every + 1}-{step} | "
              + " | ".join(f"{r[i][1]:.3f} / {r[i][2]:.2f}" for r in runs.values()) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
