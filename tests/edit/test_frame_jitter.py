"""Frame-locked jitter (``backend.style.frame_jitter``): rows a look moves by their own fixed amounts
are read off a keyframe, taken out of the fit's references and put back on every rendered frame."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from backend.looks import LOOKS, stylize_image
from backend.style.fit import FitSettings, fit_translator
from backend.style.frame_jitter import FrameJitter, find_frame_jitter, read_shifts
from backend.style.translator import TranslatorConfig, translator_from_state, translator_state
from tests.edit import unseen_looks
from tests.edit.test_screen import _t
from tests.face.conftest import astronaut

SIZE = 128


def _jittered(rgb: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """``rgb`` softened and warmed (a look), each row y moved right by ``shifts[y]`` px."""
    look = cv2.GaussianBlur(rgb, (0, 0), 0.6).astype(np.float32) * np.array([1.05, 1.0, 0.9], np.float32)
    return np.clip(unseen_looks._move_lines(look, shifts, "rows"), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("pattern", ["random", "every second row"])
def test_the_rows_own_shifts_are_read_off_a_keyframe(pattern: str) -> None:
    photo = astronaut(SIZE)
    truth = (np.random.default_rng(5).uniform(-1.2, 1.2, SIZE) if pattern == "random"
             else np.where(np.arange(SIZE) % 2 == 1, 1.5, 0.0))  # an interlacing fault
    jitter, rows, cols = find_frame_jitter(_t(photo)[None], _t(_jittered(photo, truth))[None])
    assert jitter is not None and rows.found and not cols.found
    assert rows.read > 0.8 * SIZE and rows.agreement > 0.9
    moved = rows.shifts.numpy() != 0  # rows read as moved: read where the truth moved them
    assert np.abs(rows.shifts.numpy()[moved] - truth[moved]).mean() < 0.15  # px
    assert np.abs(rows.shifts.numpy() - truth).mean() < 0.25
    assert jitter.cols == (0.0,) * SIZE  # columns keep their place
    # the same shifts down the columns are read along them
    down = find_frame_jitter(_t(photo.transpose(1, 0, 2).copy())[None],
                             _t(_jittered(photo, truth).transpose(1, 0, 2).copy())[None])[0]
    assert down is not None and down.rows == (0.0,) * SIZE
    assert np.allclose(down.cols, jitter.rows)


@pytest.mark.parametrize("look", [*LOOKS, "posterised_ink", "cool_halftone", "chromatic_glitch", "pixel_art",
                                  "neon_edges", "warm_tiles"])
def test_looks_that_keep_their_rows_have_no_jitter(look: str) -> None:
    photo = astronaut(SIZE)
    ref = stylize_image(photo, look) if look in LOOKS else getattr(unseen_looks, look)(photo)
    jitter, rows, cols = find_frame_jitter(_t(photo)[None], _t(ref)[None])
    assert jitter is None, (rows.to_dict(), cols.to_dict())
    # a whole picture moved (the glitch's channels, a uniform shift) is not a jitter either
    moved = np.roll(ref, 2, axis=1)
    assert find_frame_jitter(_t(photo)[None], _t(moved)[None])[0] is None


def test_apply_and_remove_undo_each_other_and_bad_input_is_refused() -> None:
    image = torch.rand(1, 3, 32, 32)
    whole = FrameJitter(tuple(float(v) for v in np.random.default_rng(1).integers(-2, 3, 32)), (0.0,) * 32)
    moved = whole.apply(image)
    d = int(whole.rows[7])
    assert torch.allclose(moved[0, :, 7, 2:-2], image[0, :, 7, 2 - d:30 - d])  # row 7 moved right by d
    assert torch.allclose(whole.remove(moved)[..., 2:-2], image[..., 2:-2], atol=1e-6)  # whole px: exact
    rows = tuple(np.random.default_rng(1).uniform(-1, 1, 32).tolist())
    jitter = FrameJitter(rows, (0.0,) * 32)
    smooth = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8), size=(32, 32), mode="bicubic",
                                             align_corners=True)
    back = jitter.remove(jitter.apply(smooth))
    assert (back - smooth)[..., 2:-2].abs().mean() < 0.01  # sub-pixel: up to the interpolation's blur
    assert FrameJitter.from_dict(jitter.to_dict()).rows == pytest.approx(rows, abs=1e-4)
    with pytest.raises(ValueError, match="32x32 px frames cannot move 16x32"):
        jitter.apply(torch.zeros(1, 3, 32, 16))
    for bad in (None, {"rows": [0.1]}, {"rows": [0.0, 9.0], "cols": [0.0, 0.0]},
                {"rows": ["a", 1], "cols": [0, 0]}):
        with pytest.raises(ValueError, match="frame jitter"):
            FrameJitter.from_dict(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="frame-aligned"):
        read_shifts(torch.zeros(1, 3, 32, 32), torch.zeros(2, 3, 32, 32))


def test_the_fit_takes_the_jitter_out_and_the_translator_puts_it_back() -> None:
    photo = astronaut(SIZE)
    truth = np.random.default_rng(5).uniform(-1.2, 1.2, SIZE)
    source, ref = _t(photo)[None], _t(_jittered(photo, truth))[None]
    settings = replace(FitSettings(steps=30, batch=2, patch=48, frame_jitter=True),
                       net=TranslatorConfig(width=8, blocks=1, refine=4))
    result = fit_translator(source, ref, settings, seed=0)
    net = result.translator
    assert net.frame_jitter is not None and result.jitter["rows"]["found"]
    plain = fit_translator(source, ref, replace(settings, frame_jitter=False), seed=0)
    assert plain.translator.frame_jitter is None and plain.jitter is None
    # a look that keeps its rows is fitted as without the option, to the bit
    toon = _t(stylize_image(photo, "cartoon"))[None]
    looked, off = (fit_translator(source, toon, replace(settings, frame_jitter=on), seed=0)
                   for on in (True, False))
    assert looked.translator.frame_jitter is None and not looked.jitter["rows"]["found"]
    assert all(torch.equal(a, b) for a, b in zip(looked.translator.state_dict().values(),
                                                 off.translator.state_dict().values(), strict=True))
    with torch.no_grad():
        out = net(source)
        assert torch.allclose(out, net.frame_jitter.apply(net.forward_reference(source)), atol=1e-4)
        # patches while fitting (their frame positions given) are never moved
        pos = torch.zeros(1, 2, SIZE, SIZE)
        assert torch.equal(net(source, positions=pos), net.forward_reference(source, positions=pos))
    again = translator_from_state(translator_state(net))
    assert again.frame_jitter == net.frame_jitter
    assert translator_from_state(translator_state(plain.translator)).frame_jitter is None
