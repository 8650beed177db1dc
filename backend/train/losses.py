"""Stage-1 losses: masked texture L1, output L1, gradient loss, GAN losses with lazy R1.

Images are (B, 3, H, W) tensors in [-1, 1]; masks are (B, 1, H, W) in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from backend.metrics.perceptual import gradient_l1, image_gradients, ssim_gradient_distance

__all__ = ["d_logistic_loss", "g_nonsaturating_loss", "gradient_l1", "image_gradients", "masked_l1",
           "r1_penalty", "ssim_gradient_distance"]


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error inside ``mask`` (per masked pixel and channel); 0 when the mask is empty."""
    m = mask.expand_as(pred)
    return (torch.abs(pred - target) * m).sum() / m.sum().clamp_min(1.0)


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
