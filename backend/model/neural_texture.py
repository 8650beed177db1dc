"""The neural texture: a learned multi-channel texture stored as a Laplacian pyramid (paper 3.2.2).

UV convention (shared by the whole model): a UV map is (B, 3, H, W) float with channels
``[u, v, coverage]``; ``u`` runs left->right along the texture's width and ``v`` top->bottom along
its rows (row 0 of the texture tensor is ``v = 0``), both in [0, 1]; coverage is 1 where the face
mesh covers the pixel and 0 elsewhere (soft values allowed). The grid for ``grid_sample`` is
``2 * uv - 1`` (``align_corners=False``, border padding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def uv_to_grid(uv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a UV map into a sampling grid and a mask.

    Args:
        uv: (B, 3, H, W) [u, v, coverage].
    Returns:
        grid (B, H, W, 2) in [-1, 1] (x = u, y = v), mask (B, 1, H, W) in [0, 1].
    """
    if uv.ndim != 4 or uv.shape[1] != 3:
        raise ValueError(f"uv map must be (B, 3, H, W) [u, v, coverage], got {tuple(uv.shape)}")
    grid = uv[:, :2].permute(0, 2, 3, 1) * 2.0 - 1.0
    mask = uv[:, 2:3].clamp(0.0, 1.0)
    return grid, mask


def sample(tex: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup: tex (B or 1, C, h, w), grid (B, H, W, 2) -> (B, C, H, W)."""
    if tex.shape[0] != grid.shape[0]:
        tex = tex.expand(grid.shape[0], -1, -1, -1)
    return F.grid_sample(tex, grid.to(tex.dtype), mode="bilinear", padding_mode="border", align_corners=False)


class NeuralTexture(nn.Module):
    """Learned texture with ``channels`` channels as a Laplacian pyramid.

    Level ``l`` (parameter ``levels[l]``, shape (1, channels, size / 2**l, size / 2**l)) holds the
    band of detail at that scale; a lookup samples every level at the same UVs and sums them (the
    coarse levels give smooth, fast-learning colour; the fine levels the detail - as in DNR's
    mipmap-like texture hierarchy).

    Args:
        channels: texture channels (12 in the paper; 0..2 are trained to match RGB).
        size: finest level side in texels.
        levels: number of pyramid levels.
        init_std: std of the random initialisation (a non-zero texture gives the flow a gradient).
    """

    def __init__(self, channels: int = 12, size: int = 256, levels: int = 4, init_std: float = 0.1) -> None:
        super().__init__()
        if size >> (levels - 1) < 1:
            raise ValueError(f"{levels} pyramid levels need size >= {2 ** (levels - 1)}, got {size}")
        self.channels = channels
        self.size = size
        self.levels = nn.ParameterList(
            [nn.Parameter(torch.randn(1, channels, size >> lvl, size >> lvl) * init_std)
             for lvl in range(levels)]
        )

    def sample(self, grid: torch.Tensor) -> torch.Tensor:
        """Sum of the bilinear lookups of all levels. grid (B, H, W, 2) in [-1, 1] -> (B, channels, H, W)."""
        out = sample(self.levels[0], grid)
        for level in list(self.levels)[1:]:
            out = out + sample(level, grid)
        return out

    def collapse(self, size: int | None = None) -> torch.Tensor:
        """The summed texture at ``size`` texels per side (default: finest). Returns (1, channels, s, s).

        Each level is resized bilinearly (anti-aliased when shrinking) and summed.
        """
        s = size or self.size
        out = None
        for level in self.levels:
            lv = level if level.shape[-1] == s else F.interpolate(
                level, size=(s, s), mode="bilinear", align_corners=False, antialias=level.shape[-1] > s)
            out = lv if out is None else out + lv
        assert out is not None
        return out
