"""Head coordinates: the UV map's affine extension over the whole frame (``AvatarConfig.head_coords``),
and the head texture sampled there (``AvatarConfig.head_texture``)."""

from __future__ import annotations

import dataclasses

import torch

from backend.imaging.coords import position_channels
from backend.model import AvatarConfig, EmoAvatar
from backend.model.head_coords import (
    HEAD_TEXTURE_U,
    HEAD_TEXTURE_V,
    head_coordinates,
    head_texture_grid,
    head_texture_mask,
)


def _disc_uv(size: int, shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, S, S) UV map of an affine face on a disc, and its (2, S, S) affine (u, v) everywhere."""
    g = position_channels(size, size)[0]
    u = 0.5 + 0.8 * (g[0] - shift) + 0.1 * g[1]
    v = 0.5 - 0.05 * (g[0] - shift) + 0.45 * g[1]
    cover = (((g[0] - shift) ** 2 + g[1] ** 2) < 0.3).float()
    return torch.stack([u * cover, v * cover, cover]), torch.stack([u, v])


def test_an_affine_face_is_extended_exactly_and_moves_with_the_head() -> None:
    uv0, full0 = _disc_uv(32, 0.0)
    uv1, full1 = _disc_uv(32, 0.3)  # the head moved right
    empty = torch.zeros(3, 32, 32)
    coords = head_coordinates(torch.stack([uv0, uv1, empty]))
    assert coords.shape == (3, 2, 32, 32)
    assert torch.allclose(coords[0], full0, atol=1e-4) and torch.allclose(coords[1], full1, atol=1e-4)
    outside = uv0[2] == 0
    assert coords[0, 0][outside].min() < -0.1 and coords[0, 0][outside].max() > 1.1  # beyond the mesh
    assert torch.equal(coords[2], torch.zeros(2, 32, 32))  # no mesh: a flat map


def test_the_skip_encoder_gets_two_more_channels_and_renders() -> None:
    cfg = dataclasses.replace(AvatarConfig.tiny(n_expr=6), head_coords=True)
    avatar = EmoAvatar(cfg)
    uv = torch.rand(2, 3, cfg.size, cfg.size)
    win = torch.rand(2, cfg.window, 6)
    feats, mask, _ = avatar.sample_features(uv, win)
    skip_in = avatar.skip_input(feats, uv, mask)
    assert skip_in.shape[1] == cfg.tex_channels + 3 + 2
    assert torch.allclose(skip_in[:, -2:], head_coordinates(uv))
    assert avatar(uv, win).image.shape == (2, 3, cfg.size, cfg.size)


def test_the_head_texture_reaches_pixels_outside_the_mesh_and_moves_with_the_head() -> None:
    cfg = dataclasses.replace(AvatarConfig.tiny(n_expr=6), head_texture=4)
    avatar = EmoAvatar(cfg)
    uv0, _ = _disc_uv(cfg.size, 0.0)
    uv1, _ = _disc_uv(cfg.size, 4 * 2 / (cfg.size - 1))  # 4 px to the right (corner-aligned grid)
    uv = torch.stack([uv0, uv1])
    feats, mask, _ = avatar.sample_features(uv, torch.rand(2, cfg.window, 6))
    skip_in = avatar.skip_input(feats, uv, mask)
    assert skip_in.shape[1] == cfg.tex_channels + 3 + 4
    head = skip_in[:, -4:]
    outside = uv0[2] == 0
    assert head[0][:, outside].abs().sum() > 0  # features where the face texture gives none
    # the same texel follows the head, 4 px further right in frame 1
    grid = head_texture_grid(head_coordinates(uv))
    assert torch.allclose(grid[1, :, 12], grid[0, :, 8], atol=1e-4)
    assert torch.allclose(skip_in[1, -4:, :, 12], skip_in[0, -4:, :, 8], atol=1e-4)
    # the texture spans HEAD_TEXTURE_U x HEAD_TEXTURE_V; below the chin and beyond it: no features
    corners = torch.tensor([[HEAD_TEXTURE_U[0], HEAD_TEXTURE_V[0]], [HEAD_TEXTURE_U[1], HEAD_TEXTURE_V[1]],
                            [0.5, HEAD_TEXTURE_V[1] + 0.1]]).T.reshape(1, 2, 1, 3)
    g = head_texture_grid(corners)
    assert torch.allclose(g[0, 0, :2], torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))
    assert head_texture_mask(g).flatten().tolist() == [1.0, 1.0, 0.0]
    below = head_texture_mask(grid)[:, 0] == 0
    assert below.any() and torch.equal(skip_in[:, -4:].permute(1, 0, 2, 3)[:, below],
                                       torch.zeros(4, int(below.sum())))
    assert avatar(uv, torch.rand(2, cfg.window, 6)).image.shape == (2, 3, cfg.size, cfg.size)
