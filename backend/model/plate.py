"""The background plate: one still image of what surrounds the face in the training frames.

The skip encoder sees the deformed texture, the UV map and the mesh mask; outside the face mesh all
three are zero, so hair, neck, clothes and background have no input there and the generator has to
paint them from its constant and the padding. The plate gives those pixels a picture: the per-pixel
median of the training frames where the mesh does not cover the pixel (the face moves on, the room
stays), the median of all training frames where the mesh always covers it.
"""

from __future__ import annotations

import torch

MESH_COVERED = 0.5
"""Coverage at and above which a pixel counts as face mesh (UV coverage channel, [0, 1])."""


def background_plate(frames: torch.Tensor, coverage: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """Median background of training frames.

    Args:
        frames: (N, 3, H, W) RGB in [-1, 1], training frames only.
        coverage: (N, 1, H, W) mesh coverage in [0, 1] of the same frames.
        chunk: rows processed at a time (bounds the memory of the masked median).
    Returns:
        (3, H, W) in [-1, 1]: at each pixel the lower median over the frames where the mesh leaves
        it uncovered, or over all frames where it is covered in every frame.
    """
    if frames.ndim != 4 or frames.shape[1] != 3 or coverage.shape != (frames.shape[0], 1, *frames.shape[2:]):
        raise ValueError(f"frames (N, 3, H, W) and coverage (N, 1, H, W) expected, got "
                         f"{tuple(frames.shape)} and {tuple(coverage.shape)}")
    if frames.shape[0] == 0:
        raise ValueError("a background plate needs at least one frame")
    h = frames.shape[2]
    out = torch.empty(3, h, frames.shape[3], dtype=frames.dtype)
    for y in range(0, h, chunk):
        f = frames[:, :, y:y + chunk].float()
        free = coverage[:, :, y:y + chunk] < MESH_COVERED  # (N, 1, h', W)
        n_free = free.sum(0)  # (1, h', W)
        # uncovered samples keep their value, covered ones go to +inf and sort last; the median's
        # rank is taken among the uncovered ones (all frames where there are none)
        masked = torch.where(free, f, torch.full_like(f, float("inf")))
        ranked = torch.sort(masked, dim=0).values
        rank_free = ((n_free - 1).clamp(min=0) // 2).expand(3, -1, -1)[None]
        med_free = ranked.gather(0, rank_free).squeeze(0)
        med_all = f.median(dim=0).values
        out[:, y:y + chunk] = torch.where(n_free > 0, med_free, med_all).to(out.dtype)
    return out
