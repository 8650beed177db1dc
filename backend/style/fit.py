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
        blur: each input patch is blurred with a Gaussian of sigma uniform in [0, blur] px (the
            target is not): renders are softer than the frames the references were painted on.
        noise: std of Gaussian noise added to input patches (units of the [-1, 1] range); a
            translator that ignores small changes of its input flickers less.
        warp: random rotation (up to warp x 30 degrees) and scaling (1 +- warp) applied to input
            and target alike, so one keyframe's eyes and mouth are seen at other angles and sizes.
        flip: mirror half of the patches left-right (a look whose marks are not mirror-symmetric,
            such as a diagonal line screen, wants False).
        screen: look for a frame-locked periodic pattern in the targets (``backend.style.screen``);
            when every target has one, it is taken out of the targets, and the fitted translator
            adds it to every frame.
        parts_weight: how much more the eye and mouth boxes of the keyframes count in the loss
            than the rest of the frame (read by the caller that builds ``weights``).
        net: translator size.
    """

    steps: int = 600
    batch: int = 8
    patch: int = 64
    lr: float = 3e-3
    w_grad: float = 1.0
    blur: float = 0.0
    noise: float = 0.0
    warp: float = 0.0
    flip: bool = True
    screen: bool = True
    parts_weight: float = 1.0
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


def _weighted_l1(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return F.l1_loss(a, b)
    return ((a - b).abs() * weight).mean() / weight.mean().clamp_min(1e-8)


def patch_loss(out: torch.Tensor, target: torch.Tensor, w_grad: float,
               weight: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 + ``w_grad`` x L1 of the image gradients, each pixel weighted by ``weight`` (B, 1, H, W)
    when given (normalised by its mean); returns (loss, {"l1", "grad"})."""
    wx = wy = None
    if weight is not None:
        wx, wy = weight[..., :, 1:], weight[..., 1:, :]
    l1 = _weighted_l1(out, target, weight)
    (ox, oy), (tx, ty) = image_gradients(out), image_gradients(target)
    grad = _weighted_l1(ox, tx, wx) + _weighted_l1(oy, ty, wy)
    return l1 + w_grad * grad, {"l1": l1.item(), "grad": grad.item()}


def sample_patches(inputs: torch.Tensor, targets: torch.Tensor, n: int, size: int,
                   gen: torch.Generator, flip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random aligned crops (with random horizontal flips) of the pairs.

    Args:
        inputs: (P, Cin, H, W) network inputs (RGB + guides).
        targets: (P, Ct, H, W): RGB, then any per-pixel channels that travel with them (weights).
        size: crop side (<= H, W).
    Returns:
        (n, Cin, size, size), (n, Ct, size, size).
    """
    p, _, h, w = inputs.shape
    which = torch.randint(p, (n,), generator=gen)
    ys = torch.randint(h - size + 1, (n,), generator=gen)
    xs = torch.randint(w - size + 1, (n,), generator=gen)
    flips = (torch.rand(n, generator=gen) < 0.5) & flip
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


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image of (B, C, H, W) with its own Gaussian sigma (B,) in px (0 = unchanged)."""
    radius = max(1, int(torch.ceil(3 * sigma.max()).item())) if float(sigma.max()) > 0 else 0
    if radius == 0:
        return x
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    s = sigma.to(x).clamp_min(1e-3)[:, None]
    k = torch.exp(-0.5 * (t[None] / s) ** 2)
    k = k / k.sum(1, keepdim=True)  # (B, K)
    b, c, h, w = x.shape
    xp = F.pad(x.reshape(1, b * c, h, w), (radius, radius, radius, radius), mode="replicate")
    kx = k.repeat_interleave(c, 0)[:, None, None, :]
    ky = k.repeat_interleave(c, 0)[:, None, :, None]
    y = F.conv2d(F.conv2d(xp, kx, groups=b * c), ky, groups=b * c)
    return y.reshape(b, c, h, w)


def random_warp(xin: torch.Tensor, xt: torch.Tensor, amount: float,
                gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random rotation (+-amount x 30 deg) and scale (1 +- amount) for each input/target pair.

    xin (B, Cin, S, S), xt (B, 3, S, S) -> same shapes (bilinear, border padding).
    """
    b = xin.shape[0]
    angle = (torch.rand(b, generator=gen) * 2 - 1) * amount * torch.pi / 6
    scale = 1 + (torch.rand(b, generator=gen) * 2 - 1) * amount
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros(b)], 1),
                         torch.stack([sin, cos, torch.zeros(b)], 1)], 1).to(xin)
    grid = F.affine_grid(theta, list(xin.shape), align_corners=False)
    warp = lambda im: F.grid_sample(im, grid, mode="bilinear", padding_mode="border",  # noqa: E731
                                    align_corners=False)
    return warp(xin), warp(xt)


def augment(xin: torch.Tensor, xt: torch.Tensor, s: FitSettings,
            gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``FitSettings``' warp, then blur and noise on the input's RGB channels only."""
    if s.warp > 0:
        xin, xt = random_warp(xin, xt, s.warp, gen)
    if s.blur > 0 or s.noise > 0:
        rgb = xin[:, :3]
        if s.blur > 0:
            rgb = gaussian_blur(rgb, torch.rand(rgb.shape[0], generator=gen) * s.blur)
        if s.noise > 0:
            rgb = rgb + torch.randn(rgb.shape, generator=gen).to(rgb) * s.noise
        xin = torch.cat([rgb, xin[:, 3:]], 1)
    return xin, xt


def fit_translator(inputs: torch.Tensor, targets: torch.Tensor, settings: FitSettings | None = None,
                   seed: int = 0, progress: ProgressFn | None = None,
                   should_stop: StopFn | None = None, weights: torch.Tensor | None = None) -> FitResult:
    """Train a ``StyleTranslator`` that maps ``inputs`` to ``targets``.

    Args:
        inputs: (P, 3 + guides, H, W) in [-1, 1] (RGB first, then ``settings.net.guides`` guides).
        targets: (P, 3, H, W) in [-1, 1], pixel-aligned with ``inputs``.
        settings: see ``FitSettings``.
        seed: patch sampling and initialisation.
        progress / should_stop: ``backend.progress`` callbacks; a stop raises ``Cancelled``.
        weights: (P, 1, H, W) >= 0, how much each target pixel counts in the loss (None: equally).
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
    if weights is not None and (weights.shape[0] != targets.shape[0] or weights.shape[1] != 1
                                or weights.shape[-2:] != targets.shape[-2:]):
        raise ValueError(f"weights must be (P, 1, H, W) like the targets, got {tuple(weights.shape)}")
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
    paired = targets if weights is None else torch.cat([targets, weights.to(targets)], 1)
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
        xin, xt = augment(*sample_patches(inputs, paired, s.batch, size, gen, s.flip), s, gen)
        xt, xw = (xt[:, :3], xt[:, 3:]) if weights is not None else (xt, None)
        g = 3 + s.net.guides
        guides = xin[:, 3:g] if s.net.guides else None
        out = net(xin[:, :3], guides, xin[:, g:] if net_cfg.screen_input else None)
        loss, parts = patch_loss(out, xt, s.w_grad, xw)
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
