"""The steady filter along the motion (``backend.style.steady_motion``): neighbours are warped onto
each frame along the unstyled renders' optical flow, so a moving stroke is averaged with itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.style.steady import SteadyFilter, SteadyRun, steady_frames, steady_run
from backend.style.steady_motion import MotionRun, consecutive_flows, grey_uint8, sample
from tests.edit.test_steady import _still_shot

SIZE = 64
SPEED = 2  # px a frame


def _sliding_shot(t: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A smooth random texture sliding ``SPEED`` px a frame to the right, its thresholded look, and
    that look with a shimmer of its own in every frame: (plain, clean styled, styled), each
    (t, 3, SIZE, SIZE) in [-1, 1]."""
    gen = torch.Generator().manual_seed(seed)
    wide = torch.nn.functional.avg_pool2d(torch.rand(1, 1, SIZE, SIZE + SPEED * t, generator=gen) * 2 - 1,
                                          7, 1, 3)
    wide = wide / wide.abs().max() * 0.8
    frames = [wide[..., SPEED * (t - i):SPEED * (t - i) + SIZE] for i in range(t)]
    plain = torch.cat(frames).expand(-1, 3, -1, -1)
    clean = torch.sign(plain) * 0.9
    styled = clean + 0.25 * torch.randn(clean.shape, generator=gen)
    return plain.contiguous(), clean, styled


def _inner(x: torch.Tensor) -> torch.Tensor:
    return x[..., 8:-8, 8:-8]  # off the borders, where the flow has nothing to follow


def test_the_flow_follows_a_sliding_texture_and_composes() -> None:
    plain, _, _ = _sliding_shot(t=3)
    g8 = grey_uint8(plain.mean(1, keepdim=True) * 0.5 + 0.5)
    fwd, bwd = consecutive_flows(g8[:-1], g8[1:])
    assert fwd.shape == bwd.shape == (2, 2, SIZE, SIZE)
    assert float(_inner(fwd[:, 0]).median()) == pytest.approx(SPEED, abs=0.1)  # right
    assert float(_inner(bwd[:, 0]).median()) == pytest.approx(-SPEED, abs=0.1)
    assert float(_inner(fwd[:, 1]).abs().median()) < 0.1
    two = fwd[:1] + sample(fwd[1:], fwd[:1])  # frame 0 -> 1, then 1 -> 2 read where 0 -> 1 lands
    assert float(_inner(two[:, 0]).median()) == pytest.approx(2 * SPEED, abs=0.2)
    # frame 2 read along the composed flow is frame 0
    back = sample(plain[2:3], two)
    assert float(_inner(back - plain[:1]).abs().mean()) < 0.02


def test_moving_strokes_are_steadied_without_a_second_outline() -> None:
    """Each frame's shimmer is averaged away along the motion, and the strokes stay where and as
    dark as the look draws them; the filter without motion, as wide, smears them instead."""
    plain, clean, styled = _sliding_shot()
    f = SteadyFilter(radius=4, sigma=0.3, tau=2.5)
    along = steady_frames(styled, plain, SteadyFilter(radius=4, sigma=0.3, tau=2.5, motion=True))
    still = steady_frames(styled, plain, f)
    err_raw = float(_inner(styled - clean).abs().mean())
    err_along = float(_inner(along - clean).abs().mean())
    err_still = float(_inner(still - clean).abs().mean())
    assert err_along < 0.5 * err_raw
    assert err_along < 0.6 * err_still
    # crisp: the filtered strokes keep most of the look's contrast
    assert float(_inner(along).abs().mean()) > 0.8 * 0.9


def test_a_change_that_is_no_motion_keeps_each_frames_own_pixels() -> None:
    """A blink on a still render: the eye's styled pixels stay each frame's own."""
    plain = _still_shot(t=10, size=SIZE)
    plain[5:, :, 24:40, 24:40] = -0.9
    styled = plain.clone()
    styled[5:, :, 24:40, 24:40] = -1.0
    styled[:5, :, 24:40, 24:40] = 0.7
    out = steady_frames(styled, plain, SteadyFilter(radius=3, sigma=0.05, tau=1.5, motion=True))
    eye = (slice(None), slice(None), slice(27, 37), slice(27, 37))
    assert torch.allclose(out[eye], styled[eye], atol=0.06)


def test_frames_given_in_pieces_are_filtered_as_the_whole_run() -> None:
    plain, _, styled = _sliding_shot(t=13, seed=1)
    f = SteadyFilter(radius=3, sigma=0.2, tau=1.5, motion=True)
    whole = steady_frames(styled, plain, f)
    run = steady_run(f)
    assert isinstance(run, MotionRun)
    assert isinstance(steady_run(SteadyFilter()), SteadyRun)
    parts = [run.add(plain[a:b], styled[a:b]) for a, b in ((0, 1), (1, 5), (5, 6), (6, 13))]
    assert [len(p) for p in parts] == [0, 2, 1, 7]  # a frame is given out once 3 frames follow it
    got = torch.cat([*parts, run.finish()])
    assert torch.equal(got, whole)
    # a frame's pixels come from its own neighbours only: a shorter run gives its inner frames alike
    assert torch.equal(steady_frames(styled[2:11], plain[2:11], f)[3:6], whole[5:8])
    run = steady_run(f)
    run.add(torch.zeros(4, 3, 8, 8), torch.zeros(4, 3, 8, 8))
    with pytest.raises(ValueError, match="px after"):
        run.add(torch.zeros(2, 3, 16, 16), torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match="shape"):
        steady_frames(torch.rand(3, 3, 8, 8), torch.rand(3, 3, 8, 9), f)


def test_one_frame_an_empty_run_and_frames_too_small_for_a_flow() -> None:
    one = torch.rand(1, 3, 8, 8) * 2 - 1
    f = SteadyFilter(motion=True)
    assert torch.equal(steady_frames(one, one, f), one)
    assert steady_run(f).finish().numel() == 0
    gen = torch.Generator().manual_seed(4)
    plain, styled = torch.rand(2, 6, 3, 8, 8, generator=gen) * 2 - 1  # no flow: the filter without motion
    still = SteadyFilter(radius=2, sigma=0.5, tau=1.5)
    assert torch.allclose(steady_frames(styled, plain, SteadyFilter(2, 0.5, 1.5, motion=True)),
                          steady_frames(styled, plain, still), atol=1e-6)


def test_the_option_is_stored_and_older_settings_have_it_off() -> None:
    f = SteadyFilter(radius=5, sigma=0.2, tau=3.0, motion=True)
    assert f.to_dict()["motion"] is True
    assert SteadyFilter.from_dict(f.to_dict()) == f
    assert SteadyFilter.from_dict({"radius": 5, "sigma": 0.2, "tau": 3.0}).motion is False
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match="motion"):
            SteadyFilter.from_dict({"motion": bad})


def test_grey_for_the_flow_is_rounded_into_bytes() -> None:
    g = torch.tensor([0.0, 0.5, 1.0, 1.2, -0.1]).view(1, 1, 1, 5)
    assert np.array_equal(grey_uint8(g), np.array([[[0, 128, 255, 255, 0]]], np.uint8))
