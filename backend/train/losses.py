"""Stage-1 losses: masked texture L1, output L1, gradient loss, GAN losses with lazy R1.

Images are (B, 3, H, W) tensors in [-1, 1]; masks are (B, 1, H, W) in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from backend.metrics.ssim import ssim


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error inside ``mask`` (per masked pixel and channel); 0 when the mask is empty."""
    m = mask.expand_as(pred)
    return (torch.abs(pred - target) * m).sum() / m.sum().clamp_min(1.0)


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences along x and y: (B,C,H,W-1), (B,C,H-1,W)."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def gradient_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the image gradients of ``pred`` and ``target`` (per image, (B,))."""
    pgx, pgy = image_gradients(pred)
    tgx, tgy = image_gradients(target)
    return (torch.abs(pgx - tgx).mean(dim=(1, 2, 3)) + torch.abs(pgy - tgy).mean(dim=(1, 2, 3)))


def ssim_gradient_distance(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The documented LPIPS fallback: ``(1 - SSIM) / 2 + gradient L1``, per image (B,).

    Both terms are 0 for identical images; SSIM is computed on [-1, 1] inputs (data range 2).
    """
    p, t = pred.float(), target.float()
    return (1.0 - ssim(p, t, data_range=2.0)) / 2 + gradient_l1(p, t)


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
