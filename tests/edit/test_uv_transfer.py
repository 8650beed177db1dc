"""The reference re-posed through UV maps: same pose = the reference itself, moved pose = moved face."""

from __future__ import annotations

import torch

from backend.train.uv_transfer import transfer_reference


def _uv_map(size: int, x0: int, y0: int, side: int) -> torch.Tensor:
    """(3, size, size) UV map of a square face of ``side`` px at (x0, y0), u/v spanning [0, 1]."""
    uv = torch.zeros(3, size, size)
    ramp = (torch.arange(side, dtype=torch.float32) + 0.5) / side
    uv[0, y0 : y0 + side, x0 : x0 + side] = ramp[None, :]
    uv[1, y0 : y0 + side, x0 : x0 + side] = ramp[:, None]
    uv[2, y0 : y0 + side, x0 : x0 + side] = 1.0
    return uv


def test_same_pose_gives_the_reference_on_the_face() -> None:
    gen = torch.Generator().manual_seed(0)
    ref = torch.rand(3, 24, 24, generator=gen)
    uv = _uv_map(24, 4, 6, 12)
    target, valid = transfer_reference(ref, uv, uv)
    face = uv[2:3] > 0.5
    assert torch.equal(valid.bool(), face)
    assert torch.equal(target * valid, ref * valid)
    assert target[:, ~face[0]].abs().sum() == 0


def test_moved_face_carries_its_pixels_and_hidden_points_are_invalid() -> None:
    gen = torch.Generator().manual_seed(1)
    ref = torch.rand(3, 32, 32, generator=gen)
    uv_ref = _uv_map(32, 4, 4, 12)
    uv_k = _uv_map(32, 15, 9, 12)  # the same face 11 px right, 5 px down
    target, valid = transfer_reference(ref, uv_ref, uv_k)
    assert valid[:, 9:21, 15:27].all() and valid.sum() == 144
    assert torch.allclose(target[:, 9:21, 15:27], ref[:, 4:16, 4:16])
    # a face whose UVs lie outside what frame N shows has no target
    uv_far = uv_k.clone()
    uv_far[:2] = uv_far[:2] * 0.1 + 5.0 * uv_far[2:3]
    _, none = transfer_reference(ref, uv_ref, uv_far)
    assert none.sum() == 0
