"""Dispersed-dot looks: the palette found in a reference, the fit unchanged, the dots drawn last
by the renderer with the palette, fixed in the frame."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.imaging.convert import luma
from backend.looks import LOOKS, stylize_image
from backend.style.fit import FitSettings, fit_translator
from backend.style.palette_dither import (
    DOT_SHARE,
    PaletteDither,
    find_palette,
)
from backend.style.translator import TranslatorConfig, translator_from_state, translator_state
from tests.edit import unseen_looks
from tests.edit.conftest import draw_frame
from tests.edit.test_screen import _t
from tests.face.conftest import astronaut

SIZE = 128


def _touching(dots: np.ndarray) -> float:
    """Share of the True pixels of (H, W) ``dots`` with a True pixel among their 4 neighbours
    (the frame's edge wraps)."""
    near = np.zeros_like(dots)
    for shift, axis in ((1, 0), (-1, 0), (1, 1), (-1, 1)):
        near |= np.roll(dots, shift, axis)
    return float((dots & near).sum() / dots.sum())


def _palette_of(image: np.ndarray) -> set[tuple[int, int, int]]:
    return {tuple(int(v) for v in c) for c in np.unique(image.reshape(-1, 3), axis=0)}


@pytest.mark.parametrize("look", ["error_diffusion", "stipple_dots", "atkinson_three_ink"])
def test_a_dithered_photo_is_found_with_its_own_colours(look: str) -> None:
    ref = getattr(unseen_looks, look)(astronaut(SIZE))
    found, share = find_palette(_t(ref)[None])
    assert found is not None and share >= DOT_SHARE
    own = np.asarray(sorted(_palette_of(ref), key=lambda c: luma(np.asarray(c))), np.float32) / 255
    assert found.colours.shape == own.shape
    assert np.abs(found.colours - own).max() < 1 / 255 + 1e-6  # the look's inks, darkest first


@pytest.mark.parametrize("look", ["woodcut_ink", "brush_ink", "xdog_sketch", "console_green", "pop_flat"])
def test_few_colour_line_print_and_flat_looks_are_not_dithers(look: str) -> None:
    ref = getattr(unseen_looks, look)(astronaut(SIZE))
    found, share = find_palette(_t(ref)[None])
    assert found is None and share < DOT_SHARE


def test_a_photographic_look_has_no_palette() -> None:
    found, share = find_palette(_t(stylize_image(astronaut(SIZE), LOOKS[0]))[None])
    assert found is None and share == 0.0


def test_the_dots_take_only_palette_colours_in_the_proportions_of_the_tone() -> None:
    colours = np.array([[0.05, 0.22, 0.25], [0.96, 0.95, 0.91]], np.float32)
    dither = PaletteDither(colours)
    for level in (0, 30, 70, 128, 200, 255):
        dots = dither.apply(np.full((SIZE, SIZE, 3), level, np.uint8))
        assert _palette_of(dots) <= {tuple(round(float(v) * 255) for v in c) for c in colours}
        paper = float((dots.astype(int).sum(-1) > 3 * 128).mean())
        tone = np.clip((level / 255 - dither.greys[0]) / (dither.greys[1] - dither.greys[0]), 0, 1)
        assert paper == pytest.approx(tone, abs=0.002)  # a flat tone: its share of paper dots
    ramp = np.repeat(np.linspace(0, 255, SIZE)[None, :, None], SIZE, 0).repeat(3, 2).round().astype(np.uint8)
    bands = (dither.apply(ramp).astype(int).sum(-1) > 3 * 128).reshape(SIZE, SIZE // 16, 16).mean((0, 2))
    tones = np.clip((ramp[0, :, 0] / 255 - dither.greys[0]) / (dither.greys[1] - dither.greys[0]), 0, 1)
    assert np.abs(bands - tones.reshape(-1, 16).mean(1)).max() < 0.03  # and across a ramp, band by band
    # the threshold map is blue noise: the darkest 15 % of its thresholds lie apart (0.3 % touch
    # another, none at 10 %), where white noise's touch about half the time
    assert _touching(dither.threshold_map(SIZE, SIZE) < 0.15) < 0.01
    assert _touching(np.random.default_rng(0).random((SIZE, SIZE)) < 0.15) > 0.4


def test_the_dots_are_fixed_in_the_frame_and_by_the_seed() -> None:
    dither = PaletteDither(np.array([[0, 0, 0], [1, 1, 1]], np.float32), seed=3)
    frame = np.full((SIZE, SIZE, 3), 128, np.uint8)
    again = PaletteDither.from_dict(dither.to_dict())
    assert np.array_equal(dither.apply(frame), again.apply(frame))  # another process, the same dots
    assert not np.array_equal(dither.apply(frame), PaletteDither(dither.colours, seed=4).apply(frame))


@pytest.mark.parametrize("bad", [{"colours": [[0, 0, 0]]}, {"colours": [[1, 1, 1], [0, 0, 0]]},
                                 {"colours": "black"}, {"colours": [[0, 0, 0], [1, 1, 1]], "seed": 0.5},
                                 {"colours": [[0, 0], [1, 1]]}, []])
def test_a_bad_stored_palette_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="dither"):
        PaletteDither.from_dict(bad)  # type: ignore[arg-type]


def test_the_fit_finds_the_inks_and_is_otherwise_the_fit_without_dots() -> None:
    frames = [draw_frame(t, SIZE)[0] for t in range(2)]
    settings = replace(FitSettings(steps=30, batch=2, patch=48, dither=True),
                       net=TranslatorConfig(width=8, blocks=1, refine=4))
    source = _t(frames[0])[None]
    nets = {}
    for name, look, dots in (("dither", unseen_looks.error_diffusion, True),
                             ("cartoon", lambda f: stylize_image(f, LOOKS[0]), False)):
        ref = _t(look(frames[0]))[None]
        result = fit_translator(source, ref, settings, seed=0)
        off = fit_translator(source, ref, replace(settings, dither=False), seed=0)
        assert (result.translator.dither is not None) == dots and off.translator.dither is None
        assert (result.dot_share >= DOT_SHARE) == dots and off.dot_share is None
        pairs = zip(result.translator.state_dict().values(), off.translator.state_dict().values(),
                    strict=True)
        assert all(torch.equal(a, b) for a, b in pairs)  # the network is fitted the same either way
        nets[name] = result.translator
    again = translator_from_state(translator_state(nets["dither"]))
    assert np.array_equal(again.dither.colours, nets["dither"].dither.colours)
    assert again.dither.seed == nets["dither"].dither.seed
    assert translator_from_state(translator_state(nets["cartoon"])).dither is None  # no palette: none stored


def test_an_edit_asked_to_dither_keeps_the_references_inks_in_its_style(edit_subject: Path) -> None:
    """``edit_avatar(dither=True)`` (``--dither``, the service's and the add-on's ``dither``): the
    style file carries the palette its renders are dotted with, and the meta says why."""
    from backend.data.subject import Subject
    from backend.train.keyframes import Keyframe
    from backend.train.stage2 import edit_avatar
    from backend.train.style import load_style

    subject = Subject.open(edit_subject)
    reference = unseen_looks.error_diffusion(subject.frame(3))
    keyframes = [Keyframe(reference, 3)]
    with pytest.raises(ValueError, match="translator method only"):
        edit_avatar(edit_subject, keyframes=keyframes, method="skips", dither=True)
    style = load_style(edit_avatar(edit_subject, keyframes=keyframes, steps=2, name="dots", dither=True,
                                   write_metrics=False))
    net = translator_from_state(style.translator)
    inks = np.asarray(sorted(_palette_of(reference), key=lambda c: luma(np.asarray(c))), np.float32) / 255
    assert net.dither is not None and np.abs(net.dither.colours - inks).max() < 1 / 255 + 1e-6
    assert style.meta["dither_dot_share"] >= DOT_SHARE
    assert np.allclose(style.meta["dither_palette"], net.dither.colours)
    plain = load_style(edit_avatar(edit_subject, keyframes=keyframes, steps=2, name="smooth",
                                   write_metrics=False))
    assert translator_from_state(plain.translator).dither is None and plain.meta["dither_dot_share"] is None
