"""Per-frame corrections of tracking errors, learned with the avatar (joint refinement).

A tracked frame's UV map and expression curves carry its tracker's errors: a mesh a pixel off, a
mouth coefficient a little low. Trained as they are, the avatar has to average such frames and
blurs. Here every training frame gets a small affine of its UV coordinates and an offset of its
expression window, both zero at first, learned with the avatar and kept small by an L2 penalty.
Only training uses them: held-out frames and every render see the tracked inputs unchanged, as
a new pose or a keyed curve will.
"""

from __future__ import annotations

import torch
from torch import nn


class FrameCorrections(nn.Module):
    """Per-frame UV affine and expression offset.

    Args:
        n_frames: T, frames of the subject (indexed by frame id).
        n_expr: K, expression coefficients per frame.
    Parameters:
        uv_affine: (T, 2, 3) change of (u, v) as a linear map of (u - 0.5, v - 0.5, 1), in UV units.
        expr_offset: (T, K) added to every entry of the frame's expression window.
    """

    def __init__(self, n_frames: int, n_expr: int) -> None:
        super().__init__()
        self.uv_affine = nn.Parameter(torch.zeros(n_frames, 2, 3))
        self.expr_offset = nn.Parameter(torch.zeros(n_frames, n_expr))

    def forward(self, ids: torch.Tensor, uv: torch.Tensor, windows: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Correct a batch.

        Args:
            ids: (B,) frame ids.
            uv: (B, 3, H, W) [u, v, coverage].
            windows: (B, window, K) expression windows.
        Returns:
            (uv, windows) of the same shapes with the frames' corrections applied (coverage unchanged).
        """
        a = self.uv_affine[ids]  # (B, 2, 3)
        centred = uv[:, :2] - 0.5
        shift = torch.einsum("bij,bjhw->bihw", a[:, :, :2], centred) + a[:, :, 2, None, None]
        uv = torch.cat([uv[:, :2] + shift * uv[:, 2:3], uv[:, 2:3]], dim=1)
        return uv, windows + self.expr_offset[ids][:, None, :]

    def penalty(self, ids: torch.Tensor) -> torch.Tensor:
        """Mean square of the batch frames' corrections (scalar)."""
        return self.uv_affine[ids].pow(2).mean() + self.expr_offset[ids].pow(2).mean()
