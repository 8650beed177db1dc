"""Fitting the style translator: warped patches and the unlabeled video frames of the edit."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from backend.style.fit import FitSettings, fit_translator, sample_patches
from backend.style.translator import TranslatorConfig
from backend.train.translator_edit import unlabeled_frames
from tests.edit.conftest import N_FRAMES, draw_frame, tone_map
from tests.edit.unseen_looks import posterised_ink


def _t(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1).float()[None] / 127.5 - 1


def test_warped_patches_keep_input_and_target_aligned() -> None:
    gen = torch.Generator().manual_seed(0)
    ramp = torch.linspace(-1, 1, 48).expand(48, 48)  # changes along x only
    inputs = torch.stack([ramp, ramp * 0.5, -ramp, torch.rand(48, 48)])[None].repeat(2, 1, 1, 1)
    targets = 0.1 - 0.5 * inputs[:, :3]  # a pointwise look: any resampling keeps it exact
    xin, xt = sample_patches(inputs, targets, 16, 32, gen, warp=1.0, max_deg=30, max_scale=0.2)
    assert xin.shape == (16, 4, 32, 32) and xt.shape == (16, 3, 32, 32)
    assert torch.allclose(xt, 0.1 - 0.5 * xin[:, :3], atol=1e-5)
    assert (xin[:, 0, 1:] - xin[:, 0, :-1]).abs().mean() > 1e-3  # rotated: the ramp now changes along y
    crops, _ = sample_patches(inputs, targets, 16, 32, torch.Generator().manual_seed(0))
    assert torch.equal(crops[:, 0, 1:], crops[:, 0, :-1])  # axis-aligned crops of it do not


def test_unlabeled_frames_are_spread_training_frames_without_the_keyframes() -> None:
    train = np.array([0, 1, 2, 3, 5, 6, 8, 9])  # 4 and 7 are held out
    assert unlabeled_frames(train, [0, 5], 3) == [1, 3, 9]
    assert unlabeled_frames(train, [0, 5], 100) == [1, 2, 3, 6, 8, 9]
    assert unlabeled_frames(train, [0], 0) == []


def _render(rgb: np.ndarray) -> np.ndarray:
    """A 'render' of a frame in a domain the keyframe pair never shows: darker and softer."""
    return (cv2.GaussianBlur(rgb, (0, 0), 0.8) * 0.55).astype(np.uint8)


def test_unlabeled_pairs_teach_renders_what_the_photograph_gets(caplog: pytest.LogCaptureFixture) -> None:
    """The keyframe pair is a photograph only; unlabeled (render, photograph) pairs of other frames
    teach the translator to give a render what it gives the photograph of the same frame, which it
    then does on renders of frames none of the pairs contains."""
    size = 64
    frames = [draw_frame(t, size)[0] for t in range(N_FRAMES)]
    key, train, unseen = frames[0], frames[1:N_FRAMES:2], frames[2:N_FRAMES:2]
    unlabeled = (torch.cat([_t(_render(f)) for f in train]), torch.cat([_t(f) for f in train]))
    settings = FitSettings(steps=400, batch=4, patch=32, lr=3e-3, net=TranslatorConfig(width=8, blocks=1),
                           pseudo_from=0.5, pseudo_share=0.5)
    gt = torch.cat([_t(posterised_ink(f)) for f in unseen])
    renders = torch.cat([_t(_render(f)) for f in unseen])
    errors = {}
    for name, extra in (("keyframe only", None), ("with unlabeled", unlabeled)):
        with caplog.at_level(logging.INFO, logger="backend.style.fit"):
            res = fit_translator(_t(key), _t(posterised_ink(key)), settings, seed=1, unlabeled=extra)
        with torch.no_grad():
            errors[name] = float((res.translator(renders).clamp(-1, 1) - gt).abs().mean())
    assert "12 unlabeled frame(s) join at step 200" in caplog.text
    assert errors["with unlabeled"] < 0.7 * errors["keyframe only"], errors


def test_unlabeled_pairs_need_a_share_to_join(caplog: pytest.LogCaptureFixture) -> None:
    f = draw_frame(0, 32)[0]
    settings = replace(FitSettings(steps=4, batch=2, patch=16, net=TranslatorConfig(width=8, blocks=1)),
                       pseudo_share=0.0)
    with caplog.at_level(logging.INFO, logger="backend.style.fit"):
        fit_translator(_t(f), _t(posterised_ink(f)), settings, unlabeled=(_t(f), _t(f)))
    assert "unlabeled" not in caplog.text


def test_translator_edit_adds_unlabeled_training_frames(edit_subject: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """The edit renders some stage-1 training frames (never a held-out one or a keyframe) and fits
    with them; the style file records the settings."""
    from backend.data.subject import Subject
    from backend.train.data import load_subject_tensors
    from backend.train.keyframes import Keyframe
    from backend.train.translator_edit import prepare_translator_edit

    frame = 3
    ref = posterised_ink(Subject.open(edit_subject).frame(frame))
    settings = FitSettings(steps=6, batch=2, patch=16, warp=0.5, ema=0.9, pseudo_frames=5,
                           net=TranslatorConfig(width=8, blocks=1))
    job = prepare_translator_edit(edit_subject, [Keyframe(ref, frame)], settings=settings)
    tensors = load_subject_tensors(edit_subject, job.inputs.shape[-1])
    renders, real = job.unlabeled
    assert renders.shape == real.shape == (5, 3, *job.inputs.shape[-2:])
    ids = unlabeled_frames(tensors.train_ids, [frame], 5)
    assert frame not in ids and not set(ids) & set(tensors.heldout_ids.tolist())
    assert torch.equal(real, tensors.frames[ids])
    with caplog.at_level(logging.INFO, logger="backend.style.fit"):
        res = job.run()
    assert res.steps_done == 6 and "5 unlabeled frame(s) join at step 3" in caplog.text


def test_bfloat16_fitting_learns_the_look_as_float32_fitting_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """``FitSettings.bf16`` autocasts the forward while fitting where the CPU has bfloat16; the
    fitted translator (float32 weights) scores on unseen frames as the float32 fit does. Where the
    CPU has no native bfloat16 (forced off here) the setting changes nothing, to the bit."""
    import backend.style.inference_plan as plans

    size = 64
    frames = [draw_frame(t, size)[0] for t in range(N_FRAMES)]
    key, unseen = frames[0], frames[1:N_FRAMES:3]
    settings = FitSettings(steps=200, batch=4, patch=32, lr=3e-3, net=TranslatorConfig(width=8, blocks=1,
                                                                                      refine=4))
    src = torch.cat([_t(f) for f in unseen])
    gt = torch.cat([_t(posterised_ink(f)) for f in unseen])

    def fitted(bf16: bool) -> torch.nn.Module:
        fit = fit_translator(_t(key), _t(posterised_ink(key)), replace(settings, bf16=bf16), seed=1)
        return fit.translator

    full, low = fitted(False), fitted(True)
    with torch.no_grad():
        identity = (src - gt).abs().mean()
        err32, err16 = (full(src) - gt).abs().mean(), (low(src) - gt).abs().mean()
    assert all(p.dtype == torch.float32 for p in low.parameters())
    assert err32 < 0.7 * identity and err16 < 0.7 * identity  # both learned the look
    assert abs(err16 - err32) < 0.1 * err32, (err16, err32)
    monkeypatch.setattr(plans, "_BF16", False)
    a, b = fitted(False), fitted(True)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_without_render_pairs_the_edit_fits_the_photographs_only(edit_subject: Path) -> None:
    """``render_pairs`` off: each reference is paired with its video frame alone, no unlabeled
    pairs are passed, and the stability term still gets its render pairs. ``keyframe_renders``
    off: the references as with ``render_pairs`` off, the unlabeled pairs as by default."""
    from backend.data.subject import Subject
    from backend.train.keyframes import Keyframe
    from backend.train.translator_edit import prepare_translator_edit, translator_style_meta

    subject = Subject.open(edit_subject)
    keyframes = [Keyframe(posterised_ink(subject.frame(f)), f) for f in (3, 7)]
    settings = FitSettings(steps=4, batch=2, patch=16, pseudo_frames=6, temporal=1.0, temporal_patch=16,
                           temporal_above=0.0, net=TranslatorConfig(width=8, blocks=1))
    both = prepare_translator_edit(edit_subject, keyframes, settings=settings)
    real = prepare_translator_edit(edit_subject, keyframes, settings=replace(settings, render_pairs=False))
    assert both.inputs.shape[0] == 4 and both.unlabeled is not None
    assert real.inputs.shape[0] == 2 and real.unlabeled is None
    assert torch.equal(real.inputs, both.inputs[both.pairs_of("real")])  # the video frames
    assert torch.equal(real.targets, both.targets[both.pairs_of("real")])
    assert real.pairs_of("real") == [0, 1]
    assert real.pairs is not None and torch.equal(real.pairs.current, both.pairs.current)
    fitted = real.run()
    assert "stable" in fitted.history[-1]
    assert translator_style_meta(real, fitted, "x", 0)["trained_on"] == ["real"]
    assert translator_style_meta(both, both.run(), "x", 0)["trained_on"] == ["render", "real"]
    unlabeled_only = prepare_translator_edit(edit_subject, keyframes,
                                             settings=replace(settings, keyframe_renders=False))
    assert torch.equal(unlabeled_only.inputs, real.inputs) and unlabeled_only.pairs_of("real") == [0, 1]
    assert all(torch.equal(a, b) for a, b in zip(unlabeled_only.unlabeled, both.unlabeled, strict=True))
    fitted = unlabeled_only.run()
    assert translator_style_meta(unlabeled_only, fitted, "x", 0)["trained_on"] == ["real"]


def test_the_source_flag_tells_renders_from_photographs(edit_subject: Path) -> None:
    """``source_flag`` on a tone map: the renders paired with targets (the keyframes' and the
    unlabeled frames') read ``RENDER``, the video frames ``PHOTOGRAPH``; the stability pairs are
    renders as the renderer shows them, ``PHOTOGRAPH``. The style keeps the flag. On a look that
    draws lines the edit drops it (``settings_for_look``)."""
    from backend.data.subject import Subject
    from backend.style.tonal import TONAL_SHARE
    from backend.style.translator import PHOTOGRAPH, RENDER, translator_from_state, translator_state
    from backend.train.keyframes import Keyframe
    from backend.train.translator_edit import prepare_translator_edit, translator_style_meta

    subject = Subject.open(edit_subject)
    keyframes = [Keyframe(tone_map(subject.frame(f)), f) for f in (3, 7)]
    settings = FitSettings(steps=4, batch=2, patch=16, pseudo_frames=6, temporal=1.0, temporal_patch=16,
                           temporal_above=0.0, net=TranslatorConfig(width=8, blocks=1, source_flag=1))
    job = prepare_translator_edit(edit_subject, keyframes, settings=settings)
    assert job.settings == settings and job.tonal_share > TONAL_SHARE
    plain = prepare_translator_edit(edit_subject, keyframes, settings=replace(settings, net=TranslatorConfig(
        width=8, blocks=1)))
    assert job.inputs.shape[1] == 4 and torch.equal(job.inputs[:, :3], plain.inputs)
    assert (job.inputs[job.pairs_of("render"), 3] == RENDER).all()
    assert (job.inputs[job.pairs_of("real"), 3] == PHOTOGRAPH).all()
    renders, real = job.unlabeled
    assert (renders[:, 3] == RENDER).all() and (real[:, 3] == PHOTOGRAPH).all()
    for stack in (job.pairs.current, job.pairs.earlier_warped, job.pairs.earlier):
        assert stack.shape[1] == 4 and (stack[:, 3] == PHOTOGRAPH).all()
    fitted = job.run()
    assert "stable" in fitted.history[-1]
    assert translator_from_state(translator_state(fitted.translator)).cfg.source_flag == 1
    assert translator_style_meta(job, fitted, "x", 0)["tonal_share"] == job.tonal_share
    drawn = [Keyframe(posterised_ink(subject.frame(f)), f) for f in (3, 7)]
    lines = prepare_translator_edit(edit_subject, drawn, settings=settings)
    assert lines.settings.net.source_flag == 0 and lines.tonal_share < TONAL_SHARE
    assert lines.inputs.shape[1] == 3 and lines.unlabeled[0].shape[1] == 3
