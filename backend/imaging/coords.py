"""Pixel coordinates as image channels."""

from __future__ import annotations

import torch


def position_channels(h: int, w: int, like: torch.Tensor | None = None) -> torch.Tensor:
    """(1, 2, h, w): x and y of every pixel centre, normalised to [-1, 1] across the frame
    (device and dtype of ``like`` when given)."""
    kw = {} if like is None else {"device": like.device, "dtype": like.dtype}
    ys = torch.linspace(-1.0, 1.0, h, **kw) if h > 1 else torch.zeros(1, **kw)
    xs = torch.linspace(-1.0, 1.0, w, **kw) if w > 1 else torch.zeros(1, **kw)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy])[None]
