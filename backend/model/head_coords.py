"""Head coordinates over the whole frame: the UV map extended past the face mesh.

The UV map says where each face pixel sits on the face, and nothing outside the mesh: hair, ears
and the head's outline get no input telling them where the head is this frame, so the generator
has to infer it from the mesh's edge. Hair and outline moving with the head are where most of
the face box's error is. This module fits, per frame, the affine map from image position to
(u, v) over the mesh's pixels (weighted by coverage) and evaluates it everywhere: two smooth
channels that move, turn and scale with the head and reach every pixel of the frame.

Computed from the UV map alone, so a render driven from Blender's UV pass gets them too.
``head_texture_grid`` turns them into a sampling grid for a neural texture that covers the head
around the face (``AvatarConfig.head_texture``).
"""

from __future__ import annotations

import torch

from backend.imaging.coords import position_channels

RIDGE = 1e-4
"""Added to the normal equations' diagonal, so a frame with (almost) no mesh gives a flat map."""
HEAD_TEXTURE_U = (-0.4, 1.4)
"""The head texture's extent across the face (u, UV units): 0.4 of a face texture past the mesh on
either side (hair, ears)."""
HEAD_TEXTURE_V = (-0.6, 1.05)
"""Its extent down the face (v, UV units, 0 at the top of the face texture): 0.6 above it (hair)
and only 0.05 below the chin, so the neck, the body and the room, which do not turn with the
head, get no head features (a texture reaching half a face below the chin dragged a bust framing's
body along with the head: docs/training.md)."""


def head_coordinates(uv: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) the (u, v) of each pixel under the frame's best affine fit to the mesh.

    Args:
        uv: (B, 3, H, W) [u, v, coverage]; u, v in [0, 1] on the mesh, coverage in [0, 1].
    Returns:
        The fitted (u, v), in UV units: equal to the UV map where it is affine, extended linearly
        beyond the mesh (so outside [0, 1] away from the face). Zero for a frame without a mesh.
    """
    b, _, h, w = uv.shape
    dtype = torch.float64 if uv.dtype == torch.float64 else torch.float32
    xy = position_channels(h, w, torch.empty(0, device=uv.device, dtype=dtype))[0]
    grid = torch.cat([xy, torch.ones_like(xy[:1])]).reshape(3, h * w)  # (3, N): x, y, 1
    weight = uv[:, 2].reshape(b, 1, h * w).to(dtype)  # (B, 1, N)
    target = uv[:, :2].reshape(b, 2, h * w).to(dtype)  # (B, 2, N)
    weighted = grid[None] * weight  # (B, 3, N)
    normal = weighted @ grid.T + RIDGE * torch.eye(3, device=uv.device, dtype=dtype)  # (B, 3, 3)
    rhs = weighted @ target.transpose(1, 2)  # (B, 3, 2)
    coef = torch.linalg.solve(normal, rhs)  # (B, 3, 2)
    fitted = coef.transpose(1, 2) @ grid  # (B, 2, N)
    return fitted.reshape(b, 2, h, w).to(uv.dtype)


def head_texture_grid(head: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) head coordinates (UV units) -> (B, H, W, 2) ``grid_sample`` grid, [-1, 1] over
    the head texture's extent (``HEAD_TEXTURE_U`` x ``HEAD_TEXTURE_V``); pixels outside it fall
    outside [-1, 1], where ``head_texture_mask`` is 0."""
    lo = head.new_tensor([HEAD_TEXTURE_U[0], HEAD_TEXTURE_V[0]]).view(1, 2, 1, 1)
    hi = head.new_tensor([HEAD_TEXTURE_U[1], HEAD_TEXTURE_V[1]]).view(1, 2, 1, 1)
    return ((head - lo) / (hi - lo) * 2.0 - 1.0).permute(0, 2, 3, 1)


def head_texture_mask(grid: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 2) ``head_texture_grid`` -> (B, 1, H, W): 1 inside the head texture, 0 outside."""
    return (grid.abs() <= 1.0).all(dim=-1, keepdim=True).permute(0, 3, 1, 2).to(grid.dtype)
