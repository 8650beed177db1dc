"""Frame-locked screens: found in a reference, kept out of the translator, added to every frame."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from backend.looks import stylize_image
from backend.style.fit import FitSettings, fit_translator
from backend.style.screen import SCREEN_CHANNELS, detect_screen, screen_channels
from backend.style.translator import (
    StyleTranslator,
    TranslatorConfig,
    translator_from_state,
    translator_state,
)
from tests.edit.conftest import N_FRAMES, draw_frame
from tests.edit.unseen_looks import cool_halftone, posterised_ink

SIZE = 64


def _t(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 127.5 - 1


def _line_screen(size: int) -> np.ndarray:
    """(size, size) diagonal line screen in [-1, 1], period about 4.8 px, fixed in the frame."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    return np.sin((xx + yy) * 1.3)


def _screened(rgb: np.ndarray, amplitude: float = 30.0) -> np.ndarray:
    return np.clip(rgb.astype(np.float32) + amplitude * _line_screen(rgb.shape[0])[..., None], 0, 255).astype(
        np.uint8)


def _frames() -> list[np.ndarray]:
    return [draw_frame(t, SIZE)[0] for t in range(0, N_FRAMES, 4)]


def test_a_screen_printed_over_the_frame_is_found_with_its_phase() -> None:
    frame = _frames()[0]
    layer = detect_screen(_t(_screened(frame)), _t(frame)[None])
    assert layer is not None and layer.shape == (3, SIZE, SIZE)
    truth = torch.from_numpy(_line_screen(SIZE))
    corr = torch.corrcoef(torch.stack([layer.mean(0).flatten(), truth.flatten()]))[0, 1]
    assert corr > 0.9, corr


def test_looks_without_a_screen_and_stripes_of_the_content_give_none() -> None:
    frame = _frames()[0]
    for look in (posterised_ink, lambda rgb: stylize_image(rgb, "cartoon")):
        assert detect_screen(_t(look(frame)), _t(frame)[None]) is None
    striped = _screened(frame)  # stripes in the source itself are content, not a screen
    assert detect_screen(_t(posterised_ink(striped)), _t(striped)[None]) is None


def test_fitted_translator_prints_the_screen_on_unseen_frames_and_stores_it() -> None:
    frames = _frames()
    train, unseen = frames[0], frames[1:]
    base = FitSettings(steps=150, batch=4, patch=32, lr=3e-3, net=TranslatorConfig(width=8, blocks=1))
    errors = {}
    for screen in (True, False):
        settings = replace(base, screen=screen)
        res = fit_translator(_t(train)[None], _t(cool_halftone(train))[None], settings, seed=1)
        assert (res.translator.screen.numel() > 0) == screen
        with torch.no_grad():
            out = res.translator(torch.stack([_t(f) for f in unseen]))
        gt = torch.stack([_t(cool_halftone(f)) for f in unseen])
        errors[screen] = float((out.clamp(-1, 1) - gt).abs().mean())
        if screen:
            back = translator_from_state(translator_state(res.translator))
            x = _t(unseen[0])[None]
            assert torch.equal(back(x), res.translator(x))
    assert errors[True] < 0.8 * errors[False], errors


def test_screen_channels_give_each_hatch_direction_its_phase() -> None:
    """A crosshatch screen: the layer, then a unit phasor per direction that follows that
    direction's lines (strongest first); a one-direction screen leaves the second pair zero."""
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32)
    a, b = np.sin((xx + yy) * 0.9), np.sin((xx - yy) * 0.9 + 1.0)
    hatch = torch.from_numpy(np.stack([0.3 * a + 0.15 * b] * 3)).float()
    ch = screen_channels(hatch)
    assert ch.shape == (SCREEN_CHANNELS, SIZE, SIZE)
    for (c, s), wave in ((ch[1:3], a), (ch[3:5], b)):
        assert torch.allclose(c**2 + s**2, torch.ones(SIZE, SIZE), atol=0.05)
        assert abs(np.corrcoef(s.flatten().numpy(), wave.flatten())[0, 1]) > 0.9 or \
            abs(np.corrcoef(c.flatten().numpy(), wave.flatten())[0, 1]) > 0.9
    one = screen_channels(torch.from_numpy(np.stack([0.3 * a] * 3)).float())
    assert one[3:].abs().max() == 0 and one[1:3].abs().max() > 0.9
    assert torch.equal(screen_channels(hatch, 1), ch[:1])  # styles written before the phases


def test_a_style_with_the_single_screen_channel_still_renders() -> None:
    net = StyleTranslator(TranslatorConfig(width=8, blocks=1, screen_input=1))
    net.set_screen(torch.from_numpy(np.stack([_line_screen(SIZE)] * 3)).float() * 0.1)
    back = translator_from_state(translator_state(net))
    x = _t(draw_frame(0, SIZE)[0])[None]
    assert back(x).shape == x.shape and torch.equal(back(x), net(x))
