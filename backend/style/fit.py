"""Fitting the style translator on keyframe pairs: random patches, L1 + gradient L1, Adam.

Each keyframe pair is (input, target): the avatar's unstyled render of a frame and the artist's
reference for that frame (pixel-aligned). The real video frame of the same keyframe can be added
as a second input for the same target: the translator then learns the look from both the sharp
photograph and the avatar's render, which makes it less sensitive to how sharp a render is.

Training on small random patches (with flips) rather than whole frames is what makes one or a
few keyframes enough (Texler et al. 2020): the network cannot memorise where things are, only
how local appearance maps to the look.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F

from backend.progress import EtaClock, ProgressFn, ProgressUpdate, StopFn, check_cancel
from backend.style.screen import screen_channel, screen_of_keyframes
from backend.style.translator import StyleTranslator, TranslatorConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitSettings:
    """Hyper-parameters of ``fit_translator``.

    Attributes:
        steps: Adam steps.
        batch: patches per step.
        patch: patch side in pixels (clamped to the image size).
        lr: Adam learning rate (cosine-decayed to lr/20).
        w_grad: weight of the L1 between image gradients (keeps lines crisp).
        screen: look for a frame-locked periodic pattern in the targets (``backend.style.screen``);
            when every target has one, it is taken out of the targets, and the fitted translator
            adds it to every frame.
        net: translator size.
    """

    steps: int = 600
    batch: int = 8
    patch: int = 64
    lr: float = 3e-3
    w_grad: float = 1.0
    screen: bool = True
    net: TranslatorConfig = field(default_factory=TranslatorConfig)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FitResult:
    """The fitted translator (eval mode, no grad), its loss history and the wall time (s)."""

    translator: StyleTranslator
    history: list[dict[str, float]]
    seconds: float
    steps_done: int


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences along x and y of (B, C, H, W): (B, C, H, W-1), (B, C, H-1, W)."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def patch_loss(out: torch.Tensor, target: torch.Tensor,
               w_grad: float) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 + ``w_grad`` x L1 of the image gradients; returns (loss, {"l1", "grad"})."""
    l1 = F.l1_loss(out, target)
    (ox, oy), (tx, ty) = image_gradients(out), image_gradients(target)
    grad = F.l1_loss(ox, tx) + F.l1_loss(oy, ty)
    return l1 + w_grad * grad, {"l1": l1.item(), "grad": grad.item()}


def sample_patches(inputs: torch.Tensor, targets: torch.Tensor, n: int, size: int,
                   gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random aligned crops (with random horizontal flips) of the pairs.

    Args:
        inputs: (P, Cin, H, W) network inputs (RGB + guides).
        targets: (P, 3, H, W).
        size: crop side (<= H, W).
    Returns:
        (n, Cin, size, size), (n, 3, size, size).
    """
    p, _, h, w = inputs.shape
    which = torch.randint(p, (n,), generator=gen)
    ys = torch.randint(h - size + 1, (n,), generator=gen)
    xs = torch.randint(w - size + 1, (n,), generator=gen)
    flips = torch.rand(n, generator=gen) < 0.5
    xin, xt = [], []
    for i in range(n):
        k, y, x = int(which[i]), int(ys[i]), int(xs[i])
        a = inputs[k, :, y:y + size, x:x + size]
        b = targets[k, :, y:y + size, x:x + size]
        if flips[i]:
            a, b = a.flip(-1), b.flip(-1)
        xin.append(a)
        xt.append(b)
    return torch.stack(xin), torch.stack(xt)


def fit_translator(inputs: torch.Tensor, targets: torch.Tensor, settings: FitSettings | None = None,
                   seed: int = 0, progress: ProgressFn | None = None,
                   should_stop: StopFn | None = None) -> FitResult:
    """Train a ``StyleTranslator`` that maps ``inputs`` to ``targets``.

    Args:
        inputs: (P, 3 + guides, H, W) in [-1, 1] (RGB first, then ``settings.net.guides`` guides).
        targets: (P, 3, H, W) in [-1, 1], pixel-aligned with ``inputs``.
        settings: see ``FitSettings``.
        seed: patch sampling and initialisation.
        progress / should_stop: ``backend.progress`` callbacks; a stop raises ``Cancelled``.
    Returns:
        FitResult.
    Raises:
        ValueError: shapes that do not match.
    """
    s = settings or FitSettings()
    if inputs.ndim != 4 or targets.ndim != 4 or inputs.shape[0] != targets.shape[0]:
        raise ValueError(f"inputs {tuple(inputs.shape)} and targets {tuple(targets.shape)} must be "
                         "(P, C, H, W) with the same P")
    if inputs.shape[-2:] != targets.shape[-2:] or targets.shape[1] != 3:
        raise ValueError(f"targets must be (P, 3, H, W) like inputs, got {tuple(targets.shape)}")
    if inputs.shape[1] != 3 + s.net.guides:
        raise ValueError(f"inputs have {inputs.shape[1]} channels, the translator takes 3 + {s.net.guides}")
    screen = None
    if s.screen:
        screen = screen_of_keyframes(targets.cpu(), [x[None, :3].cpu() for x in inputs])
        if screen is not None:
            log.info("style translator: frame-locked screen found in the references (peak %.3f), "
                     "kept as a fixed layer", float(screen.abs().amax()))
            targets = targets - screen.to(targets)
            ch = screen_channel(screen).to(inputs)
            inputs = torch.cat([inputs, ch[None].expand(inputs.shape[0], 1, *ch.shape[-2:])], 1)
    net_cfg = replace(s.net, screen_input=1 if screen is not None else 0)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = StyleTranslator(net_cfg).to(inputs.device).train()
    opt = torch.optim.Adam(net.parameters(), lr=s.lr, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=s.steps, eta_min=s.lr / 20)
    size = min(s.patch, inputs.shape[-1], inputs.shape[-2])
    size -= size % 4
    clock = EtaClock(s.steps)
    history: list[dict[str, float]] = []
    t0 = time.monotonic()
    step = 0
    for step in range(s.steps):
        check_cancel(should_stop)
        xin, xt = sample_patches(inputs, targets, s.batch, size, gen)
        g = 3 + s.net.guides
        guides = xin[:, 3:g] if s.net.guides else None
        out = net(xin[:, :3], guides, xin[:, g:] if net_cfg.screen_input else None)
        loss, parts = patch_loss(out, xt, s.w_grad)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        parts["total"] = loss.item()
        history.append(parts)
        if progress is not None:
            progress(ProgressUpdate("edit", step + 1, s.steps, parts, clock.eta(step + 1)))
        if step == 0 or (step + 1) % max(s.steps // 10, 1) == 0:
            log.info("translator step %d/%d  %s", step + 1, s.steps,
                     "  ".join(f"{k} {v:.4f}" for k, v in parts.items()))
    net.eval().requires_grad_(False)
    net.set_screen(screen)
    return FitResult(translator=net, history=history, seconds=time.monotonic() - t0, steps_done=step + 1)
