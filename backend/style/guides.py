"""Guide channels a style translator may read besides the render: derived from the UV map.

Guides tell the translator where the face surface is, so a reference that treats skin differently
from hair and background (as painters do) can be learned. They carry no texel coordinates: lines
must follow each frame's own image structure, not points on the face.
"""

from __future__ import annotations

import torch

MAX_GUIDES = 1


def uv_guides(uv: torch.Tensor, n: int) -> torch.Tensor | None:
    """The first ``n`` guide channels of a UV map batch.

    Args:
        uv: (B, 3, H, W) float (u, v, coverage), coverage in [0, 1].
        n: guide channels wanted (0 .. MAX_GUIDES). Channel 0 is the face coverage in [-1, 1].
    Returns:
        (B, n, H, W) float, or None for ``n == 0``.
    Raises:
        ValueError: ``n`` out of range.
    """
    if not 0 <= n <= MAX_GUIDES:
        raise ValueError(f"a translator takes 0..{MAX_GUIDES} guide channels, not {n}")
    if n == 0:
        return None
    return uv[:, 2:3] * 2.0 - 1.0
