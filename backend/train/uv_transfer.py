"""Carry the reference's face to other poses through the tracked UV map (stage-2 supervision).

The reference is a stylised version of frame N, so every face pixel of it shows a known surface
point: the UV coordinate of frame N at that pixel. At another frame k the same surface point is
where frame k's UV map has the same (u, v). ``transfer_reference`` builds, for frame k, the image
the reference *would* show there: each face pixel of k takes the colour of the frame-N face pixel
with the nearest UV (exact nearest neighbour, ``torch.cdist``), and is marked invalid when that
surface point is not visible at frame N (nearest UV farther than a few texel spacings).

This gives the edit a pixel target at poses other than N on the face region, which keeps the
learned style from over-fitting the pixel grid of frame N (noise at held-out poses).
"""

from __future__ import annotations

import torch


def _face_points(uv: torch.Tensor, threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, H, W) UV map -> (n, 2) UV coordinates and (n,) flat pixel indices of the face pixels."""
    cov = uv[2].flatten()
    idx = torch.nonzero(cov > threshold).flatten()
    return uv[:2].flatten(1)[:, idx].T.contiguous(), idx


def transfer_reference(
    ref: torch.Tensor, uv_ref: torch.Tensor, uv_k: torch.Tensor, max_gap: float = 2.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference (of frame N) re-posed to frame k on the face region.

    Args:
        ref: (3, H, W) reference image (any range), pixel-aligned with ``uv_ref``.
        uv_ref: (3, H, W) [u, v, coverage] of frame N; uv_k: (3, H, W) of frame k.
        max_gap: a pixel of k is valid when its nearest frame-N UV is within ``max_gap`` times the
            median nearest-neighbour spacing of frame N's own UV samples (else the point is hidden
            at frame N).
    Returns:
        target (3, H, W) (zeros where invalid) and valid (1, H, W) float mask in {0, 1}.
    """
    c, h, w = ref.shape
    target = ref.new_zeros(c, h * w)
    valid = ref.new_zeros(1, h * w)
    p_ref, i_ref = _face_points(uv_ref.float())
    p_k, i_k = _face_points(uv_k.float())
    if len(p_ref) < 2 or len(p_k) == 0:
        return target.reshape(c, h, w), valid.reshape(1, h, w)
    with torch.no_grad():
        self_d = torch.cdist(p_ref, p_ref)
        self_d.fill_diagonal_(float("inf"))
        spacing = self_d.min(1).values.median().clamp_min(1e-6)
        d, nn_idx = torch.cdist(p_k, p_ref).min(1)
    ok = d <= max_gap * spacing
    src = ref.reshape(c, -1)[:, i_ref[nn_idx[ok]]]
    target[:, i_k[ok]] = src
    valid[:, i_k[ok]] = 1.0
    return target.reshape(c, h, w), valid.reshape(1, h, w)
