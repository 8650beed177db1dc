"""Frame-locked screens: found in a reference, kept out of the translator, added to every frame."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from backend.looks import stylize_image
from backend.style.fit import FitSettings, fit_translator
from backend.style.screen import SCREEN_CHANNELS, detect_screen, screen_channels, screen_parts
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


def test_a_colour_grille_that_cancels_in_the_grey_gets_a_direction_and_its_phase() -> None:
    """An RGB aperture grille (each colour's columns a third of a period after the last) has no
    grey: with ``colour`` (``TranslatorConfig.screen_colour``, what a fit now sets) its direction is
    found on the channels' magnitudes, with the phase of its strongest channel, beside a grey line
    screen; a grey screen's phases do not depend on its channels' weights."""
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32)
    grille = np.stack([np.cos(2 * np.pi * (xx / 5.0 - k / 3)) for k in range(3)])
    grille *= 0.3
    rows = 0.2 * np.sin((yy + 0.5 * xx) * 0.8)
    layer = torch.from_numpy(grille + rows[None]).float()
    assert float(layer.mean(0).sub(torch.from_numpy(rows).float()).abs().max()) < 1e-5  # no grey grille
    ch = screen_channels(layer, plane=True, colour=True)
    waves = [np.cos(2 * np.pi * xx / 5.0), np.sin((yy + 0.5 * xx) * 0.8)]
    found = [max(abs(np.corrcoef(ch[i].flatten().numpy(), w.flatten())[0, 1]) for i in (1, 2, 3, 4))
             for w in waves]
    assert min(found) > 0.9, found  # both directions have a phase pair
    parts = screen_parts(layer, colour=True)
    red_grille = torch.from_numpy(grille[0]).float()
    assert max(np.corrcoef(parts[k * 3].flatten().numpy(), red_grille.flatten())[0, 1] for k in (0, 1)) > 0.95
    # what is left (where the directions cross) is the peaks' leakage: a period of 5 px does not divide 64
    assert float(parts[6:].std()) < 0.2 * float(layer.std())
    # a grey screen's phases are the grey's, whatever the channels' weights
    grey = np.sin((xx + yy) * 0.9)
    weighted = torch.from_numpy(np.stack([0.3 * grey, 0.2 * grey, 0.1 * grey])).float()
    same = torch.from_numpy(np.stack([0.2 * grey] * 3)).float()
    assert torch.allclose(screen_channels(weighted, plane=True, colour=True)[1:],
                          screen_channels(same, plane=True, colour=True)[1:], atol=1e-5)
    # a style written before (no ``screen_colour``) finds its directions on the grey, as it was fitted
    assert TranslatorConfig.from_dict({"width": 12, "screen_input": 5}).screen_colour == 0
    grey_only = screen_channels(layer, plane=True)
    # the grey alone gives the grille no phase (a direction it does not find is zeros)
    grille_r = [abs(float(np.dot(grey_only[i].flatten().numpy(), waves[0].flatten())))
                / (float(grey_only[i].norm()) * float(np.linalg.norm(waves[0])) + 1e-9) for i in (1, 2, 3, 4)]
    assert max(grille_r) < 0.5, grille_r


def test_a_style_with_the_single_screen_channel_still_renders() -> None:
    net = StyleTranslator(TranslatorConfig(width=8, blocks=1, screen_input=1))
    net.set_screen(torch.from_numpy(np.stack([_line_screen(SIZE)] * 3)).float() * 0.1)
    back = translator_from_state(translator_state(net))
    x = _t(draw_frame(0, SIZE)[0])[None]
    assert back(x).shape == x.shape and torch.equal(back(x), net(x))


def _hatch(size: int, direction: int, phase: float = 0.0) -> np.ndarray:
    """(size, size) binary hatch in {0, 1} along x + direction * y, period about 4.9 px."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    return (np.sin((xx + direction * yy) * 0.9 + phase) > 0.3).astype(np.float32)


def test_screen_parts_split_a_crosshatch_into_its_directions() -> None:
    """Each part is one direction with its harmonics (a binary hatch is not a sine), strongest
    first; the parts add up to the screen; a missing direction is zeros."""
    a, b = _hatch(SIZE, 1), _hatch(SIZE, -1, 1.0)
    a, b = a - a.mean(), b - b.mean()
    hatch = torch.from_numpy(np.stack([0.3 * a + 0.15 * b] * 3)).float()
    parts = screen_parts(hatch)
    assert parts.shape == (9, SIZE, SIZE)
    assert torch.allclose(parts[:3] + parts[3:6] + parts[6:], hatch, atol=1e-5)
    for part, wave in ((parts[0], 0.3 * a), (parts[3], 0.15 * b)):
        assert np.corrcoef(part.flatten().numpy(), wave.flatten())[0, 1] > 0.9
    one = screen_parts(torch.from_numpy(np.stack([0.3 * a] * 3)).float())
    assert one[3:6].abs().max() == 0 and np.corrcoef(one[0].flatten().numpy(), a.flatten())[0, 1] > 0.9


def test_a_hatch_direction_only_the_darks_carry_is_found_beside_the_strong_one() -> None:
    """A crosshatch whose second direction covers only a small dark area: its peak is weak, but
    it has the strong direction's period, so it is part of the screen."""
    frame = _frames()[0]
    grey = frame.astype(np.float32).mean(-1) / 255
    dark = np.zeros_like(grey)
    dark[8:24, 8:30] = 1.0  # a small dark patch carries the second direction
    ink = 0.5 * _hatch(SIZE, 1) + 0.5 * dark * _hatch(SIZE, -1)
    ref = np.clip(255 * (0.3 + 0.6 * grey) * (1 - 0.7 * ink), 0, 255)
    ref = ref[..., None].repeat(3, -1).astype(np.uint8)
    layer = detect_screen(_t(ref), _t(frame)[None])
    assert layer is not None
    spec = torch.fft.fft2(layer.double().mean(0)).abs()
    f = round(0.9 * SIZE / (2 * np.pi))  # the hatch's frequency index along each axis
    assert spec[f, f] > 0 and spec[f, -f % SIZE] > 0.1 * spec[f, f], (spec[f, f], spec[f, -f % SIZE])


def _shadow_hatch(rgb: np.ndarray) -> np.ndarray:
    """A look whose hatch darkens only the shadows: marks scaled by how dark the pixel is."""
    g = rgb.astype(np.float32).mean(-1, keepdims=True) / 255
    ink = np.clip((0.6 - g) * 3, 0, 1) * _hatch(rgb.shape[0], 1)[..., None]
    return np.clip(255 * (0.2 + 0.8 * g) * (1 - 0.7 * ink), 0, 255).repeat(3, -1).astype(np.uint8)


def test_screen_gates_draw_the_marks_only_where_the_look_does() -> None:
    """Fitted on one frame, a translator with screen gates keeps the lights of unseen frames
    clean and hatches their shadows; the plain screen adds the keyframe's average hatch everywhere."""
    frames = _frames()
    train, unseen = frames[0], frames[1:]
    x = torch.stack([_t(f) for f in unseen])
    gt = torch.stack([_t(_shadow_hatch(f)) for f in unseen])
    light = (x.mean(1, keepdim=True) > 0.3).expand_as(gt)  # grey above 0.65: no marks in the look
    errors = {}
    for gates in (2, 0):
        net = TranslatorConfig(width=8, blocks=1, screen_gates=gates, screen_head=16 if gates else 0)
        settings = FitSettings(steps=200, batch=4, patch=32, lr=3e-3, net=net)
        res = fit_translator(_t(train)[None], _t(_shadow_hatch(train))[None], settings, seed=1)
        assert res.translator.cfg.screen_gates == gates and res.translator.screen.numel() > 0
        assert res.translator.cfg.screen_colour == 1  # a new fit finds colour directions too
        with torch.no_grad():
            err = (res.translator(x).clamp(-1, 1) - gt).abs()
        errors[gates] = (float(err.mean()), float(err[light].mean()))
        if gates:
            back = translator_from_state(translator_state(res.translator))
            assert torch.equal(back(x[:1]), res.translator(x[:1]))
    assert errors[2][0] < 0.95 * errors[0][0], errors
    assert errors[2][1] < 0.6 * errors[0][1], errors


def test_plane_phase_follows_a_binary_hatch_across_the_whole_frame() -> None:
    """The period of a binary hatch (4.9 px here) does not divide the frame, so its FFT peak
    leaks and the analytic signal's phase bends; the fitted plane wave stays within a third of a
    radian of the true phase everywhere (a sixteenth of a period)."""
    size = 128
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    phase = (xx + yy) * 0.9 + 0.4
    hatch = (np.sin(phase) > 0.3).astype(np.float32)
    layer = torch.from_numpy(np.stack([0.3 * (hatch - hatch.mean())] * 3)).float()

    def worst_error(est: np.ndarray, sign: int) -> float:
        """Largest phase error after the best constant offset (the phasor may be the mirror's)."""
        err = np.angle(est * np.exp(-1j * sign * phase))
        return float(np.abs(np.angle(np.exp(1j * (err - np.angle(np.mean(np.exp(1j * err))))))).max())

    worst = {}
    for plane in (True, False):
        ch = screen_channels(layer, plane=plane)
        est = ch[1].double().numpy() + 1j * ch[2].double().numpy()
        worst[plane] = min(worst_error(est, 1), worst_error(est, -1))
    assert worst[True] < 0.35 < worst[False], worst
