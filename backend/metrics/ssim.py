"""SSIM (Wang et al. 2004) in torch: Gaussian window 11x11, sigma 1.5, K1=0.01, K2=0.03.

Matches ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=...)`` away from the borders; this version pads by
reflection so every pixel counts (the tests compare with scikit-image on the valid region).
Used both as a metric (uint8 images) and inside the fallback perceptual loss (tensors).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

WINDOW = 11
SIGMA = 1.5


def _gaussian_taps(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(WINDOW,) the normalised 1-D Gaussian; the 2-D window is its outer product."""
    x = torch.arange(WINDOW, device=device, dtype=torch.float64) - (WINDOW - 1) / 2
    g = torch.exp(-(x**2) / (2 * SIGMA**2))
    return (g / g.sum()).to(dtype)


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-pixel SSIM.

    Args:
        x, y: (B, C, H, W) images on the same scale.
        data_range: max - min of that scale (1.0 for [0, 1], 2.0 for [-1, 1], 255 for uint8).
    Returns:
        (B, C, H, W) SSIM values in [-1, 1]; 1 where the images agree.
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ssim needs two (B,C,H,W) tensors of one shape, got {tuple(x.shape)}, "
                         f"{tuple(y.shape)}")
    c = x.shape[1]
    pad = WINDOW // 2
    mode = "reflect" if min(x.shape[-2:]) > pad else "replicate"
    # the five local means in one pass: the Gaussian is separable, so a row pass and a column
    # pass over the padded planes give the 11 x 11 window's sums with 22 taps instead of 121
    planes = torch.cat([x, y, x * x, y * y, x * y], 1)
    g, n = _gaussian_taps(x.device, x.dtype), planes.shape[1]
    padded = F.pad(planes, (pad, pad, pad, pad), mode=mode)
    rows = F.conv2d(padded, g.view(1, 1, 1, WINDOW).expand(n, -1, -1, -1), groups=n)
    blurred = F.conv2d(rows, g.view(1, 1, WINDOW, 1).expand(n, -1, -1, -1), groups=n)
    mx, my, exx, eyy, exy = blurred.split(c, 1)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    sxx = exx - mx * mx
    syy = eyy - my * my
    sxy = exy - mx * my
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM per image: (B, C, H, W) x2 -> (B,)."""
    return ssim_map(x, y, data_range).mean(dim=(1, 2, 3))


def ssim_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two (H, W, 3) uint8 RGB images (channels averaged)."""
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    ta = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].double()
    tb = torch.from_numpy(np.ascontiguousarray(b)).permute(2, 0, 1)[None].double()
    return float(ssim(ta, tb, data_range=255.0)[0])
