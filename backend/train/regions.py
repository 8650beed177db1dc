"""Face / hair+background / torso regions of a frame, from its UV map.

The UV map's coverage channel marks the face (the rasterised face mesh). Below the chin line
(the lowest face row) and outside the face is the torso (neck, shoulders, clothes); every
other pixel is hair or background. A frame-based refinement (hair vs. background) is not
attempted: on portrait crops both share the border of the image and a flat split is enough
for the region-aware PatchNCE, which only needs each region of the reference matched with the
same region of the render.
"""

from __future__ import annotations

import numpy as np
import torch

FACE = 0
HAIR_BACKGROUND = 1
TORSO = 2
REGION_NAMES = {FACE: "face", HAIR_BACKGROUND: "hair/background", TORSO: "torso"}

COVERAGE_THRESHOLD = 0.5


def face_mask(uv: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(3, H, W) or (H, W, 3) [u, v, coverage] map -> (H, W) bool, coverage > 0.5."""
    t = torch.as_tensor(np.asarray(uv) if not isinstance(uv, torch.Tensor) else uv)
    if t.ndim != 3 or 3 not in (t.shape[0], t.shape[-1]):
        raise ValueError(f"UV map must be (3, H, W) or (H, W, 3), got {tuple(t.shape)}")
    coverage = t[2] if t.shape[0] == 3 else t[..., 2]
    return coverage.float() > COVERAGE_THRESHOLD


def region_map(uv: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Label every pixel FACE, HAIR_BACKGROUND or TORSO.

    Args:
        uv: one frame's UV map, (3, H, W) or (H, W, 3) float, channels [u, v, coverage].
    Returns:
        (H, W) int64 region ids. Without face pixels everything is HAIR_BACKGROUND.
    """
    face = face_mask(uv)
    h, w = face.shape
    out = torch.full((h, w), HAIR_BACKGROUND, dtype=torch.long)
    rows = torch.nonzero(face.any(dim=1)).flatten()
    if rows.numel() == 0:
        return out
    chin = int(rows.max())
    below = torch.arange(h)[:, None] > chin
    out[below.expand(h, w)] = TORSO
    out[face] = FACE
    return out


def region_fractions(regions: torch.Tensor) -> dict[str, float]:
    """Share of pixels per region name (for logs and metrics)."""
    n = regions.numel()
    return {name: float((regions == r).sum()) / n for r, name in REGION_NAMES.items()}
