"""Stage-1 losses: masked texture L1, output L1, gradient loss, Laplacian-pyramid L1, focal
frequency loss, GAN losses with lazy R1.

Images are (B, 3, H, W) tensors in [-1, 1]; masks are (B, 1, H, W) in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from backend.metrics.perceptual import gradient_l1, image_gradients, ssim_gradient_distance

__all__ = ["d_logistic_loss", "focal_frequency_loss", "g_nonsaturating_loss", "gradient_l1",
           "image_gradients", "laplacian_l1", "masked_l1", "r1_penalty", "ssim_gradient_distance"]

_BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)
"""The 5-tap binomial filter of ``cv2.pyrDown`` (``backend.metrics.pyramid``), before normalising."""


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error inside ``mask`` (per masked pixel and channel); 0 when the mask is empty."""
    m = mask.expand_as(pred)
    return (torch.abs(pred - target) * m).sum() / m.sum().clamp_min(1.0)


def _pyr_down(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H/2, W/2): the separable 5x5 binomial blur (reflected borders), then
    every second pixel, as ``cv2.pyrDown``."""
    k = torch.tensor(_BINOMIAL, dtype=x.dtype, device=x.device)
    k = (k / k.sum()).view(1, 1, 1, 5).expand(x.shape[1], 1, 1, 5)
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="reflect"), k, groups=x.shape[1])
    x = F.conv2d(F.pad(x, (0, 0, 2, 2), mode="reflect"), k.transpose(2, 3), groups=x.shape[1])
    return x[:, :, ::2, ::2]


def laplacian_l1(pred: torch.Tensor, target: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """Laplacian-pyramid L1 (Bojanowski et al. 2018): the mean over ``levels`` bands of each band's
    mean absolute difference, so fine detail weighs as much as colour. Bands are the difference
    to the bilinearly upsampled next level; the last band is the low-pass residual. Stops early
    when a side would fall under 8 px. (B, C, H, W) pair -> scalar, in the inputs' units."""
    d = pred - target  # the pyramid is linear: decompose the difference once
    total, bands = d.new_zeros(()), 0
    for _ in range(levels - 1):
        if min(d.shape[-2:]) // 2 < 8:
            break
        down = _pyr_down(d)
        up = F.interpolate(down, size=d.shape[-2:], mode="bilinear", align_corners=False)
        total = total + torch.abs(d - up).mean()
        bands += 1
        d = down
    return (total + torch.abs(d).mean()) / (bands + 1)


def focal_frequency_loss(pred: torch.Tensor, target: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Focal frequency loss (Jiang et al. 2021): the squared distance between the images' 2-D
    spectra (orthonormal FFT per channel), each frequency weighted by its own distance to the
    power ``alpha``, normalised by the image's largest weight and detached, so the frequencies the
    output gets most wrong, often fine detail, weigh most. (B, C, H, W) pair -> scalar, in squared
    input units (the FFT is orthonormal, so a flat weight of 1 gives the mean squared error)."""
    diff = torch.fft.fft2(pred.float(), norm="ortho") - torch.fft.fft2(target.float(), norm="ortho")
    dist = diff.real ** 2 + diff.imag ** 2  # (B, C, H, W)
    with torch.no_grad():
        weight = dist.sqrt() ** alpha
        weight = weight / weight.flatten(2).amax(-1).clamp_min(1e-12)[..., None, None]
    return (weight * dist).mean()


def feature_matching_l1(fake: list[torch.Tensor], real: list[torch.Tensor]) -> torch.Tensor:
    """Discriminator feature matching (pix2pixHD): the mean over layers of the L1 between the
    features of the output and of its own frame (paired, same condition); the real features are
    targets (detached). Lists of (B, C_i, H_i, W_i) -> scalar."""
    return sum(torch.abs(f - r.detach()).mean() for f, r in zip(fake, real, strict=True)) / len(fake)


def d_logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating discriminator loss: softplus(-D(real)) + softplus(D(fake))."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: softplus(-D(fake))."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_input: torch.Tensor) -> torch.Tensor:
    """R1: squared gradient norm of D on real inputs, mean over the batch."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_input, create_graph=True)
    return grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()


def lazy_r1(disc: Callable[..., torch.Tensor], frames: torch.Tensor, cond: torch.Tensor, gamma: float,
            every: int) -> tuple[torch.Tensor, float]:
    """Stage 1's lazy R1 term: (gamma / 2 x R1 x ``every``, to backpropagate once every ``every``
    steps, and the raw R1) of ``disc(frames, cond)`` on (B, 3, H, W) real frames."""
    real = frames.detach().requires_grad_(True)
    r1 = r1_penalty(disc(real, cond), real)
    return gamma / 2 * r1 * every, r1.item()
