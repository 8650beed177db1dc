"""The translator's stability term: consecutive renders aligned by their flow, and the excess change."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from backend.style.fit import FitSettings, fit_translator
from backend.style.stability import frame_pairs, stability_loss
from backend.style.translator import TranslatorConfig
from backend.train.translator_edit import unlabeled_frames
from tests.edit.conftest import N_FRAMES, draw_frame
from tests.edit.unseen_looks import posterised_ink


def _t(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1).float()[None] / 127.5 - 1


def _textured(size: int, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).random((size, size, 3)).astype(np.float32)
    return (cv2.GaussianBlur(noise, (0, 0), 2.0) * 255 * 3 - 255).clip(0, 255).astype(np.uint8)


def test_frame_pairs_align_the_earlier_frame_on_the_later() -> None:
    before = _textured(64, 0)
    now = cv2.warpAffine(before, np.float32([[1, 0, 2], [0, 1, 1]]), (64, 64), borderMode=cv2.BORDER_REFLECT)
    pairs = frame_pairs(_t(now), _t(before))
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))
    assert pairs.current.shape == pairs.earlier_warped.shape == (1, 3, 64, 64)
    assert pairs.trusted[inner].mean() > 0.9
    moved = (pairs.earlier_warped - pairs.current)[inner].abs().mean()
    still = (_t(before) - pairs.current)[inner].abs().mean()
    assert moved < 0.25 * still, (moved, still)


def test_frame_pairs_refuse_stacks_of_other_shapes() -> None:
    with pytest.raises(ValueError, match="two"):
        frame_pairs(torch.zeros(2, 3, 16, 16), torch.zeros(1, 3, 16, 16))


def test_stability_loss_counts_only_the_change_beyond_the_inputs_where_trusted() -> None:
    a = torch.zeros(1, 3, 8, 8)
    b = a + 0.1
    trusted = torch.ones(1, 1, 8, 8)
    assert stability_loss(a, a + 0.1, a, b, trusted) == 0  # as much change as the inputs: free
    assert stability_loss(a, a - 0.05, a, b, trusted) == 0
    assert torch.isclose(stability_loss(a, a + 0.3, a, b, trusted), torch.tensor(0.2))
    trusted[..., :4] = 0
    out = a.clone()
    out[..., :2] = 5.0  # only where the flow is not trusted
    assert stability_loss(out, a, a, a, trusted) == 0


def test_a_line_one_pixel_off_costs_a_third_of_a_tone_change_over_as_many_pixels() -> None:
    """The flow aligns a crisp line to within a pixel at best; such a miss must not read as flicker."""
    still, trusted = torch.zeros(1, 3, 12, 12), torch.ones(1, 1, 12, 12)
    line, moved, tone = still.clone(), still.clone(), still.clone()
    line[..., 5], moved[..., 6] = 1.0, 1.0  # a dark line that moved by one pixel
    tone[..., 5:7] = 1.0  # the same two columns of each row changing tone
    shifted = stability_loss(line, moved, still, still, trusted)
    flipped = stability_loss(tone, still, still, still, trusted)
    assert torch.isclose(flipped, torch.tensor(2 / 12))
    assert torch.isclose(shifted, flipped / 3)


def _shimmer(rgb: np.ndarray, seed: int) -> np.ndarray:
    """The same frame with a render's small frame-to-frame noise (about 2 levels)."""
    noise = np.random.default_rng(seed).normal(0, 2.5, rgb.shape).astype(np.float32)
    return (rgb.astype(np.float32) + cv2.GaussianBlur(noise, (0, 0), 0.7)).clip(0, 255).astype(np.uint8)


def test_stability_term_keeps_a_posterising_look_from_amplifying_shimmer(
        caplog: pytest.LogCaptureFixture) -> None:
    """A posterising look turns a render's faint shimmer into flipping tones. Fitted with pairs of
    shimmering copies of training frames, the translator changes less beyond the shimmer itself
    between shimmering copies of frames it never saw, and reproduces the look on them as well."""
    size = 64
    frames = [draw_frame(t, size)[0] for t in range(N_FRAMES)]
    key, train, unseen = frames[0], frames[1:N_FRAMES:2], frames[2:N_FRAMES:2]
    pairs = frame_pairs(torch.cat([_t(_shimmer(f, 2 * i)) for i, f in enumerate(train)]),
                        torch.cat([_t(_shimmer(f, 2 * i + 1)) for i, f in enumerate(train)]))
    settings = FitSettings(steps=300, batch=4, patch=32, net=TranslatorConfig(width=8, blocks=1),
                           temporal_batch=4, temporal_patch=32, temporal_above=0.0)
    a = torch.cat([_t(_shimmer(f, 100 + i)) for i, f in enumerate(unseen)])
    b = torch.cat([_t(_shimmer(f, 200 + i)) for i, f in enumerate(unseen)])
    gt = torch.cat([_t(posterised_ink(f)) for f in unseen])
    everywhere = torch.ones_like(a[:, :1])
    excess, error = {}, {}
    for weight in (0.0, 4.0):
        with caplog.at_level(logging.INFO, logger="backend.style.fit"):
            net = fit_translator(_t(key), _t(posterised_ink(key)), replace(settings, temporal=weight),
                                 seed=1, pairs=pairs).translator
        with torch.no_grad():
            ya, yb = net(a).clamp(-1, 1), net(b).clamp(-1, 1)
        excess[weight] = float(stability_loss(ya, yb, a, b, everywhere))
        error[weight] = float((ya - gt).abs().mean())
    assert excess[4.0] < 0.75 * excess[0.0], excess
    assert error[4.0] < 1.1 * error[0.0], error


def test_without_the_term_the_pairs_change_nothing() -> None:
    f = draw_frame(0, 32)[0]
    settings = FitSettings(steps=6, batch=2, patch=16, net=TranslatorConfig(width=8, blocks=1))
    pairs = frame_pairs(_t(draw_frame(10, 32)[0]), _t(draw_frame(9, 32)[0]))
    plain = fit_translator(_t(f), _t(posterised_ink(f)), settings, seed=3)
    given = fit_translator(_t(f), _t(posterised_ink(f)), settings, seed=3, pairs=pairs)
    forced = replace(settings, temporal=1.0, temporal_from=0.5, temporal_above=0.0)
    on = fit_translator(_t(f), _t(posterised_ink(f)), forced, seed=3, pairs=pairs)
    same = zip(plain.translator.parameters(), given.translator.parameters(), strict=True)
    assert all(torch.equal(p, q) for p, q in same)
    assert "stable" not in plain.history[-1] and on.history[-1]["stable"] >= 0
    assert "stable" not in on.history[2] and "stable" in on.history[3]


def test_the_edit_pairs_each_unlabeled_frame_with_a_training_neighbour(edit_subject: Path) -> None:
    """Each pair is an unlabeled training frame and the training frame before it in the video (or
    after, where that one is held out), both rendered, the neighbour warped onto the frame."""
    from backend.data.subject import Subject
    from backend.train.data import load_subject_tensors
    from backend.train.keyframes import Keyframe
    from backend.train.translator_edit import neighbour_frames, prepare_translator_edit

    subject = Subject.open(edit_subject)
    train, held = subject.split()
    pool = unlabeled_frames(np.asarray(train), [3], 6)
    near = neighbour_frames(subject, np.asarray(train), pool)
    assert [f for f, _ in near] == [f for f in pool if f - 1 in train or f + 1 in train]
    assert all(abs(f - n) == 1 and n in train and n not in held for f, n in near)
    assert 0 in held and 2 in train  # every 10th frame is held out: frame 1's neighbour comes after it
    assert neighbour_frames(subject, np.asarray(train), [1, 5]) == [(1, 2), (5, 4)]

    settings = FitSettings(steps=4, batch=2, patch=16, pseudo_frames=6, temporal=1.0, temporal_patch=16,
                           temporal_above=0.0, net=TranslatorConfig(width=8, blocks=1))
    job = prepare_translator_edit(edit_subject, [Keyframe(posterised_ink(subject.frame(3)), 3)],
                                  settings=settings)
    tensors = load_subject_tensors(edit_subject, job.inputs.shape[-1])
    assert job.pairs is not None and len(job.pairs) == len(near)
    assert torch.equal(job.pairs.current, job.unlabeled[0][[pool.index(f) for f, _ in near]])
    assert job.pairs.trusted.mean() > 0.5
    assert tensors.frames.shape[-1] == job.pairs.current.shape[-1]
    fitted = job.run()
    assert "stable" in fitted.history[-1] and fitted.amplification > 0
    off = prepare_translator_edit(edit_subject, [Keyframe(posterised_ink(subject.frame(3)), 3)],
                                  settings=replace(settings, temporal=0.0))
    assert off.pairs is None


def test_the_term_joins_only_where_the_translator_amplifies_the_change(
        caplog: pytest.LogCaptureFixture) -> None:
    """Halfway through, the fit measures how much more the translator changes between the pairs'
    frames than the renders do; at or below ``temporal_above`` it goes on without the term."""
    f = draw_frame(0, 32)[0]
    pairs = frame_pairs(_t(draw_frame(10, 32)[0]), _t(draw_frame(9, 32)[0]))
    settings = FitSettings(steps=6, batch=2, patch=16, temporal=1.0, net=TranslatorConfig(width=8, blocks=1))
    runs, logs = {}, {}
    for above in (0.0, 1e6):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="backend.style.fit"):
            runs[above] = fit_translator(_t(f), _t(posterised_ink(f)),
                                         replace(settings, temporal_above=above), seed=3, pairs=pairs)
        logs[above] = caplog.text
    joined, skipped = runs[0.0], runs[1e6]
    assert joined.amplification == skipped.amplification > 0  # measured the same way, at step 3
    assert "stable" in joined.history[3] and "the stability term joins at step 3" in logs[0.0]
    assert all("stable" not in h for h in skipped.history) and "no stability term" in logs[1e6]


def test_the_pairs_carry_the_frame_positions_of_a_position_grade() -> None:
    """A look whose colour changes across the frame gets a position grade; the pairs then carry the
    same position channels as the keyframes, and the term runs on them."""
    f = _t(draw_frame(0, 32)[0])
    ramp = torch.linspace(-0.8, 0.8, 32).view(1, 1, 1, 32)
    pairs = frame_pairs(_t(draw_frame(10, 32)[0]), _t(draw_frame(9, 32)[0]))
    settings = FitSettings(steps=6, batch=2, patch=16, temporal=1.0, temporal_above=0.0,
                           net=TranslatorConfig(width=8, blocks=1, grade=3))
    fit = fit_translator(f, (f * 0.5 + ramp).clamp(-1, 1), settings, seed=0, pairs=pairs)
    assert fit.translator.cfg.grade == 3 and fit.amplification > 0
    assert "stable" in fit.history[-1]


def test_a_look_made_of_frame_locked_cells_gets_no_stability_term() -> None:
    """Cells fixed in the frame are averaged flat in fitting and rendering; the pairs are not used."""
    from tests.edit.test_lattice import pixelate

    f = draw_frame(0, 128)[0]
    pairs = frame_pairs(_t(draw_frame(10, 128)[0]), _t(draw_frame(9, 128)[0]))
    settings = FitSettings(steps=4, batch=2, patch=64, temporal=1.0, temporal_above=0.0,
                           net=TranslatorConfig(width=8, blocks=1))
    fit = fit_translator(_t(f), _t(pixelate(f, 16)), settings, seed=0, pairs=pairs)
    assert fit.translator.lattice is not None
    assert fit.amplification is None and all("stable" not in h for h in fit.history)
