"""The position grade: a palette that changes across the frame, and a vignette that is flat in the
middle, are learned from one keyframe and hold on other frames; an untrained grade changes nothing;
style files keep it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.imaging.coords import position_channels
from backend.style.fit import FitSettings, fit_translator
from backend.style.position_grade import (
    POSITION_SHARE,
    PositionGrade,
    control_weights,
    grade_basis,
    position_share,
)
from backend.style.translator import (
    StyleTranslator,
    TranslatorConfig,
    translator_from_state,
    translator_state,
)
from tests.edit.conftest import draw_frame
from tests.edit.test_screen import _t

SIZE = 64


def across(rgb: np.ndarray) -> np.ndarray:
    """A look whose palette turns from left to right: the image as it is at the left edge, its
    channels reversed (red <-> blue) at the right edge, blended in between."""
    img = rgb.astype(np.float32)
    t = np.linspace(0.0, 1.0, rgb.shape[1], dtype=np.float32)[None, :, None]
    return np.clip(img * (1 - t) + img[..., ::-1] * t, 0, 255).astype(np.uint8)


def vignette(rgb: np.ndarray) -> np.ndarray:
    """An oval vignette, flat over the middle (where the face is) and down to a quarter at the corners."""
    img = rgb.astype(np.float32)
    x, y = position_channels(*rgb.shape[:2])[0].numpy()
    v = np.clip(1.15 - 0.6 * (x ** 2 + 1.3 * y ** 2), 0.25, 1)[..., None]
    return np.clip(img * v, 0, 255).astype(np.uint8)


def test_positions_and_control_weights() -> None:
    pos = position_channels(3, 5)
    assert pos.shape == (1, 2, 3, 5)
    assert pos[0, 0, 0].tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]  # x across, y down
    assert pos[0, 1, :, 0].tolist() == [-1.0, 0.0, 1.0]
    w = control_weights(pos, 3)  # control points at -1, 0, 1 on both axes
    assert w.shape == (1, 9, 3, 5)
    assert torch.allclose(w.sum(1), torch.ones(1, 3, 5))
    assert w[0, 0, 0, 0] == 1 and w[0, 8, 2, 4] == 1  # the corners are control points
    assert w[0, :, 1, 1].tolist() == [0, 0, 0, 0.5, 0.5, 0, 0, 0, 0]  # halfway between two
    assert torch.allclose(grade_basis(pos, 3).sum(1), torch.zeros(1, 3, 5), atol=1e-6)  # no global change


def test_an_untrained_grade_is_the_identity() -> None:
    rgb = torch.rand(2, 3, 8, 8) * 2 - 1
    grade = PositionGrade(5)
    assert torch.equal(grade(rgb, position_channels(8, 8)), rgb)
    net = StyleTranslator(TranslatorConfig(width=8, blocks=1, grade=5)).eval()
    with torch.no_grad():
        assert torch.equal(net(rgb), rgb)


def _fit_and_score(look, grade: int) -> tuple[float, float]:
    """Fit on frame 0's look only; mean absolute error on 3 frames the fit never saw ([-1, 1]
    units): over the whole frame, and over the middle of the frame (x^2 + 1.3 y^2 < 0.25)."""
    frames = [draw_frame(t, SIZE)[0] for t in (0, 7, 13, 19)]
    cfg = TranslatorConfig(width=8, blocks=1, grade=grade)
    net = fit_translator(_t(frames[0])[None], _t(look(frames[0]))[None],
                         FitSettings(steps=500, batch=4, patch=32, net=cfg), seed=0).translator
    with torch.no_grad():
        error = net(torch.stack([_t(f) for f in frames[1:]])) - torch.stack([_t(look(f)) for f in frames[1:]])
    x, y = position_channels(SIZE, SIZE)[0]
    middle = x ** 2 + 1.3 * y ** 2 < 0.25
    error = error.abs().mean(1)
    return float(error.mean()), float(error[:, middle].mean())


def test_a_palette_across_the_frame_is_learned_from_one_keyframe() -> None:
    """With the grade the translator gives each side of the frame its own colours; without it, it
    can only learn their average."""
    without, with_grade = _fit_and_score(across, 0)[0], _fit_and_score(across, 5)[0]
    assert with_grade < 0.2 * without, (with_grade, without)  # measured: 0.017 against 0.129
    assert with_grade < 0.025, with_grade  # about 3 levels of 255 on average


def test_a_vignette_flat_over_the_face_is_learned_and_keeps_the_middle() -> None:
    """The corners darken as the keyframe's do, and the middle, where the look changes nothing,
    keeps its tone (a quadratic polynomial of the position could not: 0.026 in the middle)."""
    (without, without_middle), (whole, middle) = _fit_and_score(vignette, 0), _fit_and_score(vignette, 5)
    assert whole < 0.6 * without, (whole, without)  # measured: 0.033 against 0.068
    assert middle < 0.015, (middle, without_middle)  # measured: 0.0115 (without a grade: 0.009)


def test_style_files_keep_the_grade_and_older_files_have_none() -> None:
    net = StyleTranslator(TranslatorConfig(width=8, blocks=1, grade=5)).eval()
    with torch.no_grad():
        net.grade.matrix.normal_(0, 0.1)
        net.grade.offset.normal_(0, 0.1)
    blob = translator_state(net)
    again = translator_from_state(blob)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(again(x), net(x))
        assert (net(x) - x).abs().max() > 0.01
    old = translator_state(StyleTranslator(TranslatorConfig(width=8, blocks=1)))
    old["config"].pop("grade")  # a style written before the grade
    assert translator_from_state(old).grade is None


def test_only_looks_that_change_across_the_frame_get_a_grade() -> None:
    """``position_share`` is high for the palette across the frame and the vignette, near 0 for
    looks that do the same everywhere (a channel swap the pixel features explain exactly, an
    inverted posterisation); the fit leaves the grade out of those."""
    frame = draw_frame(0, SIZE)[0]
    shares = {look.__name__: position_share(_t(frame), _t(look(frame))) for look in (across, vignette)}
    swapped, posterised = np.ascontiguousarray(frame[..., ::-1]), 255 - (frame // 64) * 64
    shares |= {"swap": position_share(_t(frame), _t(swapped)),
               "posterised": position_share(_t(frame), _t(posterised))}
    assert shares["across"] > 0.9 and shares["vignette"] > 0.7, shares  # measured: 0.94, 0.73
    assert shares["swap"] < 0.05 and shares["posterised"] < 0.25, shares
    cfg = TranslatorConfig(width=8, blocks=1, grade=5)
    kept = fit_translator(_t(frame)[None], _t(vignette(frame))[None],
                          FitSettings(steps=1, batch=1, patch=32, net=cfg), seed=0)
    dropped = fit_translator(_t(frame)[None], _t(posterised)[None],
                             FitSettings(steps=1, batch=1, patch=32, net=cfg), seed=0)
    assert kept.translator.cfg.grade == 5 and kept.translator.grade is not None
    assert dropped.translator.cfg.grade == 0 and dropped.translator.grade is None
    assert kept.position_share == shares["vignette"] and dropped.position_share == shares["posterised"]
    assert shares["posterised"] < POSITION_SHARE < shares["vignette"]
    plain = FitSettings(steps=1, batch=1, patch=32, net=TranslatorConfig(width=8, blocks=1))
    never = fit_translator(_t(frame)[None], _t(vignette(frame))[None], plain, seed=0)
    assert never.position_share is None  # settings without a grade do not measure


def test_with_the_texture_probe_the_share_is_measured_once(caplog: pytest.LogCaptureFixture) -> None:
    """The texture probe's fit and the fit that goes on from it decide on the grade with one
    measurement of ``position_share`` (logged once), and the probe's net has the fit's grade."""
    frame = draw_frame(0, SIZE)[0]
    cfg = TranslatorConfig(width=8, blocks=1, grade=5)
    settings = FitSettings(steps=4, batch=1, patch=32, texture_steps=2, texture_warm_start=True,
                           learned_texture=True, net=cfg)  # the edit's: a found texture leaves the targets
    with caplog.at_level("INFO", logger="backend.style.fit"):
        fitted = fit_translator(_t(frame)[None], _t(vignette(frame))[None], settings, seed=0)
    measured = [r for r in caplog.records if "depends on the frame position" in r.getMessage()]
    assert len(measured) == 1, [r.getMessage() for r in measured]
    assert fitted.position_share == position_share(_t(frame), _t(vignette(frame)))
    assert fitted.translator.grade is not None and fitted.texture is not None  # the probe ran
    assert any("goes on from the first fit's 2 steps" in r.getMessage() for r in caplog.records)
