"""The position grade: a palette that changes across the frame is learned from one keyframe and
holds on other frames; an untrained grade changes nothing; style files keep it."""

from __future__ import annotations

import numpy as np
import torch

from backend.style.fit import FitSettings, fit_translator
from backend.style.position_grade import PositionGrade, monomial_count, monomials, position_channels
from backend.style.translator import StyleTranslator, TranslatorConfig, translator_from_state, translator_state
from tests.edit.conftest import draw_frame
from tests.edit.test_screen import _t

SIZE = 64


def across(rgb: np.ndarray) -> np.ndarray:
    """A look whose palette turns from left to right: the image as it is at the left edge, its
    channels reversed (red <-> blue) at the right edge, blended in between."""
    img = rgb.astype(np.float32)
    t = np.linspace(0.0, 1.0, rgb.shape[1], dtype=np.float32)[None, :, None]
    return np.clip(img * (1 - t) + img[..., ::-1] * t, 0, 255).astype(np.uint8)


def test_positions_and_monomials() -> None:
    pos = position_channels(3, 5)
    assert pos.shape == (1, 2, 3, 5)
    assert pos[0, 0, 0].tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]  # x across, y down
    assert pos[0, 1, :, 0].tolist() == [-1.0, 0.0, 1.0]
    assert monomial_count(1) == 2 and monomial_count(2) == 5
    m = monomials(pos, 2)
    x, y = pos[:, 0], pos[:, 1]
    for k, want in enumerate((x, y, x * x, x * y, y * y)):
        assert torch.equal(m[:, k], want)


def test_an_untrained_grade_is_the_identity() -> None:
    rgb = torch.rand(2, 3, 8, 8) * 2 - 1
    grade = PositionGrade(2)
    assert torch.equal(grade(rgb, position_channels(8, 8)), rgb)
    net = StyleTranslator(TranslatorConfig(width=8, blocks=1, grade=2)).eval()
    with torch.no_grad():
        assert torch.equal(net(rgb), rgb)


def test_a_palette_across_the_frame_is_learned_from_one_keyframe() -> None:
    """Fitted on frame 0 only, scored on frames the fit never saw: with the grade the translator
    gives each side of the frame its own colours; without it, it can only learn their average."""
    frames = [draw_frame(t, SIZE)[0] for t in (0, 7, 13, 19)]
    inputs, targets = _t(frames[0])[None], _t(across(frames[0]))[None]
    errors = {}
    for degree in (0, 2):
        cfg = TranslatorConfig(width=8, blocks=1, grade=degree)
        net = fit_translator(inputs, targets, FitSettings(steps=500, batch=4, patch=32, net=cfg), seed=0).translator
        with torch.no_grad():
            out = net(torch.stack([_t(f) for f in frames[1:]]))
        truth = torch.stack([_t(across(f)) for f in frames[1:]])
        errors[degree] = float((out - truth).abs().mean())
    assert errors[2] < 0.3 * errors[0], errors  # measured: 0.024 against 0.129
    assert errors[2] < 0.04, errors  # about 5 levels of 255 on average


def test_style_files_keep_the_grade_and_older_files_have_none() -> None:
    net = StyleTranslator(TranslatorConfig(width=8, blocks=1, grade=2)).eval()
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
