"""The background plate (median around the face) and the motion-modulated skip encoder."""

from __future__ import annotations

import pytest
import torch

from backend.model import AvatarConfig, EmoAvatar
from backend.model.plate import background_plate
from backend.model.skips import SkipEncoder


def test_plate_is_the_median_where_the_mesh_leaves_the_pixel_free() -> None:
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(5, 3, 6, 4, generator=g) * 2 - 1
    cover = torch.zeros(5, 1, 6, 4)
    cover[:3, :, :2] = 1  # rows 0-1: covered in frames 0-2, free in 3 and 4
    cover[:, :, 5] = 1  # row 5: covered in every frame
    plate = background_plate(frames, cover, chunk=4)
    assert plate.shape == (3, 6, 4)
    # two free frames: the lower median is the smaller value
    assert torch.equal(plate[:, :2], torch.minimum(frames[3, :, :2], frames[4, :, :2]))
    assert torch.equal(plate[:, 2:5], frames[:, :, 2:5].median(0).values)
    assert torch.equal(plate[:, 5], frames[:, :, 5].median(0).values)


def test_plate_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="coverage"):
        background_plate(torch.zeros(2, 3, 4, 4), torch.zeros(2, 1, 4, 5))
    with pytest.raises(ValueError, match="at least one frame"):
        background_plate(torch.zeros(0, 3, 4, 4), torch.zeros(0, 1, 4, 4))


def test_film_starts_as_the_plain_encoder_and_then_follows_the_motion() -> None:
    chans = {32: 8, 16: 16, 8: 16}
    torch.manual_seed(0)
    plain = SkipEncoder(5, 32, chans, min_res=8, channel_max=16)
    torch.manual_seed(0)
    film = SkipEncoder(5, 32, chans, min_res=8, channel_max=16, motion_dim=4)
    x = torch.randn(2, 5, 32, 32)
    motion = torch.randn(2, 4)
    a, b = plain(x), film(x, motion)
    assert all(torch.equal(a[r], b[r]) for r in a)  # zero-initialised modulation
    with torch.no_grad():
        for lin in film.film:
            lin.weight.normal_()
    c = film(x, motion)
    d = film(x, torch.cat([motion[:1], motion[:1]]))
    assert not torch.allclose(c[32][1], d[32][1])  # frame 1's output changes with its motion
    assert torch.equal(c[32][0], d[32][0])
    with pytest.raises(ValueError, match="pass motion"):
        film(x)


def test_avatar_with_plate_and_film_renders_and_saves_the_plate() -> None:
    cfg = AvatarConfig.tiny(n_expr=6, plate=True, skip_film=True)
    m = EmoAvatar(cfg)
    assert m.skips.stem.in_channels == cfg.tex_channels + 6
    with torch.no_grad():
        m.plate.fill_(0.5)
    state = m.state_dict()
    assert torch.equal(state["plate"], torch.full((1, 3, cfg.size, cfg.size), 0.5))
    again = EmoAvatar(cfg)
    again.load_state_dict(state)
    c = torch.linspace(0, 1, cfg.size)
    v, u = torch.meshgrid(c, c, indexing="ij")
    uv = torch.stack([u, v, ((u - 0.5) ** 2 + (v - 0.5) ** 2 < 0.1).float()])[None].repeat(2, 1, 1, 1)
    win = torch.randn(2, cfg.window, cfg.n_expr)
    assert torch.equal(m(uv, win).image, again(uv, win).image)
    assert "plate" not in EmoAvatar(AvatarConfig.tiny(n_expr=6)).state_dict()
