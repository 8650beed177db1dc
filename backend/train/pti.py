"""Few-shot PTI initialisation (paper 3.2.1) on the subject's 4 extreme-pose frames.

1. Pivots: with G frozen, optimise one latent ``w_i`` per frame (start: G's mean latent,
   broadcast to all layers) to minimise L2 + perceptual between ``G.synthesis(w_i)`` and frame i.
2. Tuning: with the pivots fixed, tune G's synthesis weights on the same loss at those pivots.
3. The avatar's single ``w_pivot`` becomes the centroid of the pivots (the paper observes that
   latents between extreme poses stay on the face manifold), broadcast to (1, n_latent, style_dim).

With a pretrained StyleGAN2 (``load_stylegan2_checkpoint``) this is PTI proper; with a randomly
initialised G it is a warm start that teaches G the subject's colours and layout before stage 1.
The returned record says which and goes into the checkpoint meta.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from backend.optim import adam
from backend.progress import EtaClock, ProgressFn, ProgressUpdate, StopFn, check_cancel

log = logging.getLogger(__name__)

NOISE_MODE = "const"
"""PTI and rendering use the generator's stored noise buffers: deterministic output."""


@dataclass
class PTIResult:
    """What PTI did. ``losses`` are (stage, step, loss) samples for the loss curve."""

    mode: str  # "pti" (pretrained G) or "warm-start" (random G)
    w_steps: int
    g_steps: int
    final_loss: float
    seconds: float
    losses: list[tuple[str, int, float]] = field(default_factory=list)

    def to_meta(self) -> dict[str, Any]:
        return {"mode": self.mode, "w_steps": self.w_steps, "g_steps": self.g_steps,
                "final_loss": self.final_loss, "seconds": round(self.seconds, 2)}


def _recon_loss(img: torch.Tensor, target: torch.Tensor, perceptual: torch.nn.Module) -> torch.Tensor:
    return F.mse_loss(img, target) + perceptual(img, target).mean()


def _fit(G: torch.nn.Module, latents: torch.Tensor, targets: torch.Tensor, perceptual: torch.nn.Module,
         opt: torch.optim.Optimizer, steps: int, stage: str, first: int,
         history: list[tuple[str, int, float]], report: Callable[[int, float], None],
         should_stop: StopFn | None) -> None:
    """``steps`` steps of ``opt`` on the reconstruction loss of ``G.synthesis`` at ``latents``
    ((N, style_dim), broadcast to every layer) against ``targets`` (N, 3, S, S).

    Each step's loss is appended to ``history`` as (stage, first + step, loss) and reported as
    step ``first + step + 1`` of the whole run; ``should_stop`` is checked before every step.
    """
    for step in range(steps):
        check_cancel(should_stop)
        img = G.synthesis(G.broadcast(latents), noise_mode=NOISE_MODE)
        loss = _recon_loss(img, targets, perceptual)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_v = loss.item()
        history.append((stage, first + step, loss_v))
        report(first + step + 1, loss_v)


def run_pti(avatar: torch.nn.Module, targets: torch.Tensor, perceptual: torch.nn.Module, w_steps: int,
            g_steps: int, lr_w: float, lr_g: float, pretrained: bool, progress: ProgressFn | None = None,
            should_stop: StopFn | None = None, seed: int = 0) -> PTIResult:
    """Run few-shot PTI in place on ``avatar.generator`` and set ``avatar.w_pivot``.

    Args:
        avatar: an ``EmoAvatar`` (uses ``generator`` and ``w_pivot``).
        targets: (4, 3, S, S) extreme-pose frames in [-1, 1] on the avatar's device.
        perceptual: (B,3,S,S) x2 -> (B,) distance (LPIPS or its fallback).
        w_steps, g_steps: optimisation steps of each phase.
        lr_w, lr_g: Adam learning rates of each phase.
        pretrained: whether G was loaded from a pretrained StyleGAN2 file (only changes the record).
        progress, should_stop: reporting and cooperative cancellation (raises ``Cancelled``).
        seed: seeds the mean-latent estimate.
    """
    t0 = time.monotonic()
    G = avatar.generator
    mode = "pti" if pretrained else "warm-start"
    log.info("few-shot PTI on %d extreme-pose frames (%s): %d pivot steps, %d generator steps", len(targets),
             "pretrained StyleGAN2" if pretrained else "random-init generator, warm start", w_steps, g_steps)
    history: list[tuple[str, int, float]] = []
    total = w_steps + g_steps
    clock = EtaClock(total)

    def report(step: int, loss: float) -> None:
        if progress is not None:
            progress(ProgressUpdate("pti", step, total, {"pti": loss}, clock.eta(step)))

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w_avg = G.mean_latent(512, generator=gen)  # (1, style_dim)
    w = w_avg.repeat(len(targets), 1).clone().requires_grad_(True)

    # phase 1: pivots, G frozen
    req = [p.requires_grad for p in G.parameters()]
    G.requires_grad_(False)
    opt_w = adam([w], lr=lr_w, betas=(0.9, 0.999))
    _fit(G, w, targets, perceptual, opt_w, w_steps, "pivot", 0, history, report, should_stop)
    for p, r in zip(G.parameters(), req, strict=True):
        p.requires_grad_(r)

    # phase 2: tune G's synthesis at the fixed pivots (mapping untouched: w is fixed)
    pivots = w.detach()
    params = [p for n, p in G.named_parameters() if not n.startswith("style.")]
    opt_g = adam(params, lr=lr_g, betas=(0.9, 0.999))
    _fit(G, pivots, targets, perceptual, opt_g, g_steps, "generator", w_steps, history, report, should_stop)
    loss_v = history[-1][2] if history else float("nan")

    with torch.no_grad():
        centroid = G.broadcast(pivots.mean(0, keepdim=True))  # (1, n_latent, style_dim)
        avatar.w_pivot.copy_(centroid.to(avatar.w_pivot.dtype))
    result = PTIResult(mode, w_steps, g_steps, loss_v, time.monotonic() - t0, history)
    log.info("PTI done in %.1f s, final loss %.4f", result.seconds, loss_v)
    return result
