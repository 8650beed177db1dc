"""Separable Gaussian blur of image tensors (any device)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_blur(x: torch.Tensor, sigma: float, padding: str = "replicate") -> torch.Tensor:
    """(B, C, H, W) -> the same, blurred by a Gaussian of ``sigma`` px (radius 3 sigma), each
    channel on its own; ``padding``: ``F.pad``'s mode at the borders ("replicate", "reflect")."""
    r = max(1, int(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).view(1, 1, 1, -1).expand(x.shape[1], 1, 1, -1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode=padding), k, groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, r, r), mode=padding), k.transpose(2, 3), groups=x.shape[1])
