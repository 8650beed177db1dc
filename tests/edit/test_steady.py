"""The steady filter (``backend.style.steady``): styled frames are averaged where the unstyled render
holds still, and left as they are where it moves or changes."""

from __future__ import annotations

import pytest
import torch

from backend.style.steady import SteadyFilter, SteadyRun, grey, grey_change, steady_frames


def _still_shot(t: int = 12, size: int = 32) -> torch.Tensor:
    """(t, 3, size, size): one smooth image repeated (an avatar that holds still)."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    img = torch.stack([0.5 * x, 0.5 * y, 0.3 * x * y])
    return img.expand(t, -1, -1, -1).clone()


def _change(frames: torch.Tensor) -> float:
    return float((frames[1:] - frames[:-1]).abs().mean())


def test_flicker_on_a_still_render_is_averaged_away() -> None:
    plain = _still_shot()
    gen = torch.Generator().manual_seed(0)
    styled = plain * 0.8 + 0.1 * torch.randn(plain.shape, generator=gen)  # the look + per-frame shimmer
    out = steady_frames(styled, plain, SteadyFilter(radius=3, sigma=0.05, tau=1.5))
    assert out.shape == styled.shape
    assert _change(out) < 0.45 * _change(styled)
    # the look itself stays: averaging only removes what differs from frame to frame
    assert float((out - plain * 0.8).abs().mean()) < 0.6 * float((styled - plain * 0.8).abs().mean())


def test_a_change_in_the_render_keeps_each_frames_own_styled_pixels() -> None:
    """A blink: the eye region of the render goes dark at frame 6 and stays dark; each frame's
    styled eye must be its own (no fade across the change), while the still rest is averaged."""
    plain = _still_shot()
    plain[6:, :, 8:16, 8:16] = -0.9
    gen = torch.Generator().manual_seed(1)
    styled = plain.clone() + 0.05 * torch.randn(plain.shape, generator=gen)
    styled[6:, :, 8:16, 8:16] = -1.0  # the styled blink: ink black
    styled[:6, :, 8:16, 8:16] = 0.7  # open: a light fill
    out = steady_frames(styled, plain, SteadyFilter(radius=3, sigma=0.05, tau=1.5))
    eye = (slice(None), slice(None), slice(9, 15), slice(9, 15))  # inside the change, off its rim
    assert torch.allclose(out[:6][eye], styled[:6][eye], atol=0.06)
    assert torch.allclose(out[6:][eye], styled[6:][eye], atol=0.06)
    rest = (slice(None), slice(None), slice(20, 32), slice(20, 32))
    assert _change(out[rest]) < 0.5 * _change(styled[rest])


def test_a_moving_edge_is_not_smeared() -> None:
    """A dark edge moving 2 px a frame: the render changes around it, so the filter leaves the
    styled edge where each frame drew it."""
    t, size = 8, 32
    plain = torch.full((t, 3, size, size), 0.6)
    styled = torch.full((t, 3, size, size), 0.8)
    for i in range(t):
        plain[i, :, :, 4 + 2 * i:7 + 2 * i] = -0.6
        styled[i, :, :, 4 + 2 * i:7 + 2 * i] = -1.0
    out = steady_frames(styled, plain, SteadyFilter())
    assert float((out - styled).abs().max()) < 1e-3


def test_frames_given_in_pieces_are_filtered_as_the_whole_run() -> None:
    gen = torch.Generator().manual_seed(2)
    plain = _still_shot(t=11) + 0.02 * torch.randn(11, 3, 32, 32, generator=gen)
    styled = plain + 0.1 * torch.randn(11, 3, 32, 32, generator=gen)
    f = SteadyFilter(radius=3, sigma=0.05, tau=1.5)
    whole = steady_frames(styled, plain, f)
    run = SteadyRun(f)
    parts = [run.add(plain[a:b], styled[a:b]) for a, b in ((0, 1), (1, 5), (5, 6), (6, 11))]
    assert [len(p) for p in parts] == [0, 2, 1, 5]  # a frame is given out once 3 frames follow it
    got = torch.cat([*parts, run.finish()])
    assert torch.allclose(got, whole, atol=1e-6)
    run = SteadyRun(f)
    run.add(torch.zeros(4, 3, 8, 8), torch.zeros(4, 3, 8, 8))
    with pytest.raises(ValueError, match="px after"):
        run.add(torch.zeros(2, 3, 16, 16), torch.zeros(2, 3, 16, 16))


def test_one_frame_and_bad_shapes() -> None:
    one = torch.rand(1, 3, 8, 8)
    assert torch.equal(steady_frames(one, one, SteadyFilter()), one)
    with pytest.raises(ValueError, match="shape"):
        steady_frames(torch.rand(3, 3, 8, 8), torch.rand(3, 3, 8, 9), SteadyFilter())
    with pytest.raises(ValueError, match="shape"):
        steady_frames(torch.rand(3, 8, 8), torch.rand(3, 8, 8), SteadyFilter())


def test_grey_change_is_the_largest_in_each_pixels_neighbourhood() -> None:
    a = torch.zeros(1, 3, 4, 6)
    b = a.clone()
    b[0, :, 1, 1] = 1.0  # one pixel changes by half the [-1, 1] range in every channel
    d = grey_change(grey(a), grey(b))
    assert d.shape == (1, 1, 4, 6)
    assert torch.equal(d[0, 0, :3, :3], torch.full((3, 3), 0.5))  # the pixel and its 8 neighbours
    assert float(d.sum()) == pytest.approx(0.5 * 9)
    gen = torch.Generator().manual_seed(3)
    a, b = torch.rand(2, 1, 7, 9, generator=gen), torch.rand(2, 1, 7, 9, generator=gen)  # odd sides
    assert torch.equal(grey_change(a, b), torch.nn.functional.max_pool2d((a - b).abs(), 3, 1, 1))


def test_every_pixel_is_weighed_alike() -> None:
    """A shot moved by one pixel is filtered into the same frames moved by one pixel: no pixel
    grid coarser than the frame's (weights shared by 2x2 blocks drew a comb along moving edges)."""
    t, size = 8, 24
    gen = torch.Generator().manual_seed(5)
    x = torch.linspace(-1, 1, size)
    plain = torch.stack([torch.tanh(4 * (x[None, :] - 0.1 * i + 0.3 * x[:, None])).expand(3, -1, -1) * 0.7
                         for i in range(t)])  # a soft edge sliding under a tenth of the frame a frame
    styled = torch.sign(plain) * 0.9 + 0.1 * torch.randn(plain.shape, generator=gen)
    f = SteadyFilter(radius=3, sigma=0.12, tau=2.0)
    out = steady_frames(styled, plain, f)
    moved = steady_frames(styled.roll(1, dims=-1), plain.roll(1, dims=-1), f)
    inner = (..., slice(3, size - 2))  # away from the rolled-over column and its neighbours
    assert torch.allclose(moved[inner], out.roll(1, dims=-1)[inner], atol=1e-6)
    assert float((out - styled).abs().mean()) > 0.02  # and the shot was filtered at all


def test_settings_round_trip_and_bad_values() -> None:
    f = SteadyFilter(radius=2, sigma=0.07, tau=1.0)
    assert SteadyFilter.from_dict(f.to_dict()) == f
    assert SteadyFilter.from_dict({}) == SteadyFilter()
    for bad in ({"radius": 0}, {"radius": 99}, {"sigma": 0}, {"tau": -1}, {"sigma": "x"}):
        with pytest.raises(ValueError, match="steady filter"):
            SteadyFilter.from_dict(bad)
    with pytest.raises(ValueError, match="dict"):
        SteadyFilter.from_dict([1, 2])  # type: ignore[arg-type]
