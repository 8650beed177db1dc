"""Choosing the steady filter per style (``backend.style.steady_choice``): the weakest filter of the
ladder that brings a styled run's flicker under the bound, measured on the training frames."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.style.fit import FitSettings
from backend.style.steady import SteadyFilter
from backend.style.steady_choice import LAST_RESORT, PROBE_MARGIN, STEADY_LADDER, choose_steady, flicker_ratio
from backend.style.translator import TranslatorConfig
from tests.edit.unseen_looks import posterised_ink


def _drifting_shot(t: int = 24, size: int = 32) -> torch.Tensor:
    """(t, 3, size, size): a smooth image that brightens slowly (an avatar that barely moves)."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    img = torch.stack([0.5 * x, 0.5 * y, 0.3 * x * y])
    return torch.stack([img + 0.002 * i for i in range(t)])


def test_flicker_ratio_compares_the_styled_change_with_the_renders() -> None:
    plain = _drifting_shot()
    assert flicker_ratio(plain * 2, plain) == pytest.approx(2.0, rel=1e-4)
    still = plain[:1].expand(4, -1, -1, -1)
    assert flicker_ratio(still, still) == 0.0
    assert flicker_ratio(plain[:4], still) == float("inf")


def test_a_look_that_keeps_the_renders_change_keeps_the_weakest_filter() -> None:
    plain = _drifting_shot()
    choice = choose_steady(plain * 0.8, plain)  # a tone map: the styled change is 0.8x the render's
    assert choice.steady == STEADY_LADDER[0]
    assert len(choice.ratios) == 1 and choice.ratios[0] <= 1.2
    assert choice.raw == pytest.approx(0.8, rel=1e-3) and choice.frames == 24


def test_a_shimmering_look_gets_the_weakest_filter_that_meets_the_bound() -> None:
    """Per-frame shimmer on a render that barely moves flickers over twice as much as the render
    unfiltered; each wider filter averages more of it away (this shimmer is so easy to average
    that the bound is set below 1 to need more than the first filter), and the choice stops at the
    first that meets the bound."""
    plain = _drifting_shot()
    gen = torch.Generator().manual_seed(0)
    styled = plain * 0.8 + 0.004 * torch.randn(plain.shape, generator=gen)
    choice = choose_steady(styled, plain, bound=0.65)
    assert choice.raw > 2
    assert choice.ratios[-1] <= 0.65 < min(choice.ratios[:-1])
    assert 1 < len(choice.ratios) <= len(STEADY_LADDER)
    assert choice.steady == STEADY_LADDER[len(choice.ratios) - 1]
    assert list(choice.ratios) == sorted(choice.ratios, reverse=True)  # stronger filters, less flicker


def test_where_no_filter_meets_the_bound_the_strongest_is_kept() -> None:
    plain = _drifting_shot()
    gen = torch.Generator().manual_seed(1)
    styled = plain + 0.1 * torch.randn(plain.shape, generator=gen)
    choice = choose_steady(styled, plain, bound=1.2)
    n = len(STEADY_LADDER) + len(LAST_RESORT)
    assert choice.steady == LAST_RESORT[-1] and len(choice.ratios) == n
    assert choice.ratios[len(STEADY_LADDER) - 1] > 1.2 + PROBE_MARGIN  # the ladder's end: a predicted miss
    assert choice.ratios[-1] > 1.2
    d = choice.to_dict()
    assert d["steady"] == LAST_RESORT[-1].to_dict() and len(d["ratios"]) == n


def test_the_last_resort_is_taken_only_where_the_ladders_end_predicts_a_miss() -> None:
    """Over the bound by no more than the probe's margin at the ladder's end: the ladder's strongest
    is kept (the target itself is still met there); over it by more: the last resort."""
    plain = _drifting_shot()
    gen = torch.Generator().manual_seed(0)
    styled = plain * 0.8 + 0.004 * torch.randn(plain.shape, generator=gen)
    end = choose_steady(styled, plain, bound=1e-6, last_resort=()).ratios[-1]  # the ladder's strongest
    near = choose_steady(styled, plain, bound=end - PROBE_MARGIN / 2)
    assert near.steady == STEADY_LADDER[-1] and len(near.ratios) == len(STEADY_LADDER)
    far = choose_steady(styled, plain, bound=end - 2 * PROBE_MARGIN)
    assert far.steady == LAST_RESORT[0] and len(far.ratios) == len(STEADY_LADDER) + 1
    assert far.ratios[-1] < far.ratios[-2]  # the last resort steadies more


@pytest.mark.parametrize(("styled", "plain", "ladder", "bound"), [
    (torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), STEADY_LADDER, 1.2),  # one frame
    (torch.zeros(4, 3, 8, 8), torch.zeros(4, 3, 8, 6), STEADY_LADDER, 1.2),  # shapes differ
    (torch.zeros(4, 3, 8, 8), torch.zeros(4, 3, 8, 8), (), 1.2),  # no filter
    (torch.zeros(4, 3, 8, 8), torch.zeros(4, 3, 8, 8), STEADY_LADDER, 0.0),  # no bound
])
def test_bad_runs_are_refused(styled: torch.Tensor, plain: torch.Tensor, ladder: tuple[SteadyFilter, ...],
                              bound: float) -> None:
    with pytest.raises(ValueError):
        choose_steady(styled, plain, ladder, bound)


def test_the_probe_frames_are_training_frames_of_the_longest_shot() -> None:
    from backend.train.translator_edit import steady_probe_frames

    train = np.array([i for i in range(40) if i % 10])  # 0, 10, 20, 30 held out
    assert steady_probe_frames(train, 40, (12,)) == [i for i in range(12, 40) if i % 10]
    assert steady_probe_frames(train, 40, (12,), limit=5) == [12, 13, 14, 15, 16]
    assert steady_probe_frames(train, 40, ()) == train.tolist()


def test_the_edit_chooses_and_records_the_filter(edit_subject: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """With ``steady_bound`` the fitted translator carries the chosen filter and the style's meta
    says how it was chosen, measured on the training frames of the subject's shot; without it the
    settings' filter is kept and nothing is measured. Where the strongest filter is taken, the log
    points to the option that keeps moving strokes crisp."""
    from backend.data.subject import Subject
    from backend.train.data import load_subject_tensors
    from backend.train.keyframes import Keyframe
    from backend.train.translator_edit import prepare_translator_edit as prepare
    from backend.train.translator_edit import steady_probe_frames, translator_style_meta

    subject = Subject.open(edit_subject)
    keyframes = [Keyframe(posterised_ink(subject.frame(3)), 3)]
    settings = FitSettings(steps=4, batch=2, patch=16, steady=SteadyFilter(), steady_bound=1e-3,
                           net=TranslatorConfig(width=8, blocks=1))
    job = prepare(edit_subject, keyframes, settings=settings)
    with caplog.at_level(logging.INFO, logger="backend.train.translator_edit"):
        tight = job.run()  # nothing flickers under 0.001x: the strongest filter
    assert "--steady-motion" in caplog.text
    tensors = load_subject_tensors(edit_subject, job.inputs.shape[-1])
    probe = steady_probe_frames(tensors.train_ids, subject.n_frames, subject.cuts)
    assert len(probe) >= 8 and not set(probe) & set(tensors.heldout_ids.tolist())
    assert tight.translator.steady == LAST_RESORT[-1]
    meta = translator_style_meta(job, tight, "x", 0)["steady_choice"]
    assert meta["steady"] == LAST_RESORT[-1].to_dict() and meta["frames"] == len(probe)
    assert len(meta["ratios"]) == len(STEADY_LADDER) + len(LAST_RESORT)
    assert meta["ratios"][-1] < meta["ratios"][0]

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="backend.train.translator_edit"):
        loose = prepare(edit_subject, keyframes, settings=replace(settings, steady_bound=100.0)).run()
    assert "--steady-motion" not in caplog.text
    assert loose.translator.steady == SteadyFilter() and len(loose.steady_choice.ratios) == 1
    fixed = prepare(edit_subject, keyframes, settings=replace(settings, steady_bound=0.0))
    kept = fixed.run()
    assert kept.translator.steady == SteadyFilter() and kept.steady_choice is None
    assert translator_style_meta(fixed, kept, "x", 0)["steady_choice"] is None


def test_an_edit_steadied_along_the_motion_tries_only_such_filters(edit_subject: Path) -> None:
    """``steady_motion``: the settings' filter and every step the choice tries warp along the
    motion, and the style file carries the one chosen."""
    from backend.data.subject import Subject
    from backend.style.translator import translator_from_state
    from backend.train.keyframes import Keyframe
    from backend.train.style import load_style
    from backend.train.translator_edit import prepare_translator_edit, translator_style_meta

    subject = Subject.open(edit_subject)
    keyframes = [Keyframe(posterised_ink(subject.frame(3)), 3)]
    settings = FitSettings(steps=4, batch=2, patch=16, steady=SteadyFilter(), steady_bound=1e-3,
                           net=TranslatorConfig(width=8, blocks=1))
    job = prepare_translator_edit(edit_subject, keyframes, settings=settings, steady_motion=True)
    assert job.settings.steady == SteadyFilter(motion=True)
    result = job.run()  # nothing flickers under 0.001x: the strongest filter, along the motion
    assert result.translator.steady == replace(LAST_RESORT[-1], motion=True)
    meta = translator_style_meta(job, result, "x", 0)["steady_choice"]
    assert meta["steady"]["motion"] is True
    assert len(meta["ratios"]) == len(STEADY_LADDER) + len(LAST_RESORT)
    assert meta["ratios"][-1] < meta["ratios"][0]

    from backend.train.stage2 import edit_avatar

    with pytest.raises(ValueError, match="translator method only"):
        edit_avatar(edit_subject, keyframes=keyframes, method="skips", steady_motion=True)
    style = edit_avatar(edit_subject, keyframes=keyframes, steps=2, name="along", steady_motion=True,
                        write_metrics=False)
    assert translator_from_state(load_style(style).translator).steady == SteadyFilter(motion=True)


def test_too_few_training_frames_in_one_shot_keep_the_settings_filter(edit_subject: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A subject whose longest shot has fewer training frames than ``MIN_PROBE_FRAMES`` cannot
    measure a flicker: the settings' filter is kept and the meta says nothing was chosen."""
    import backend.train.translator_edit as te
    from backend.data.subject import Subject
    from backend.train.keyframes import Keyframe

    subject = Subject.open(edit_subject)
    settings = FitSettings(steps=2, batch=2, patch=16, steady=SteadyFilter(), steady_bound=1e-3,
                           net=TranslatorConfig(width=8, blocks=1))
    job = te.prepare_translator_edit(edit_subject, [Keyframe(posterised_ink(subject.frame(3)), 3)],
                                     settings=settings)
    monkeypatch.setattr(te, "MIN_PROBE_FRAMES", subject.n_frames + 1)
    result = job.run()
    assert result.steady_choice is None and result.translator.steady == SteadyFilter()
    assert te.translator_style_meta(job, result, "x", 0)["steady_choice"] is None
