"""Frame-locked cell lattices: found in a reference, every cell of every rendered frame flat."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from backend.looks import LOOKS, stylize_image
from backend.style.fit import FitSettings, fit_translator
from backend.style.lattice import (
    CELL_RECOLOUR,
    CellMap,
    Lattice,
    cell_mean,
    cell_recolour_share,
    detect_lattice,
    lattice_of_keyframes,
    patch_cells,
)
from backend.style.translator import (
    StyleTranslator,
    TranslatorConfig,
    translator_from_state,
    translator_state,
)
from tests.edit import unseen_looks
from tests.edit.conftest import N_FRAMES, draw_frame
from tests.edit.test_screen import _t

SIZE = 128


def pixelate(rgb: np.ndarray, cells: int) -> np.ndarray:
    """The usual pixelation filter: area-average to ``cells`` x ``cells``, nearest-neighbour back
    up (at 128 px and 21 cells a cell is 6.095 px, so cell sides are 6 or 7 px)."""
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (cells, cells), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def _cells_are_flat(image: torch.Tensor, lattice: Lattice, tol: float = 1e-4) -> float:
    """Share of ``lattice``'s cells over which (3, H, W) ``image`` is constant."""
    h, w = image.shape[-2:]
    cells = CellMap.of(lattice.cell_index(h, w))
    spread = (image[None] - cell_mean(image[None], cells)).abs().amax(1).reshape(-1)
    worst = torch.zeros(cells.count.shape[0]).scatter_reduce(0, cells.index, spread, "amax")
    return float((worst <= tol).float().mean())


@pytest.mark.parametrize("cells", [16, 21, 25])
def test_pixelation_is_found_with_its_real_period_and_offset(cells: int) -> None:
    frame = draw_frame(3, SIZE)[0]
    lattice = detect_lattice(_t(pixelate(frame, cells)), _t(frame))
    assert lattice is not None
    assert lattice.period == pytest.approx((SIZE / cells, SIZE / cells), abs=0.03)
    assert _cells_are_flat(_t(pixelate(frame, cells)), lattice) == 1.0  # each found cell is one of the look's


def test_tiles_with_grout_keep_the_grout_line_apart_from_the_tile() -> None:
    frame = draw_frame(3, SIZE)[0]
    tiles = pixelate(frame, 16).astype(np.float32)
    grout = (np.arange(SIZE) % 8 == 0)
    tiles[grout] *= 0.45
    tiles[:, grout] *= 0.45
    ref = _t(tiles.astype(np.uint8))
    lattice = detect_lattice(ref, _t(frame))
    assert lattice is not None and lattice.line == (True, True)
    assert _cells_are_flat(ref, lattice) == 1.0
    plain = detect_lattice(_t(pixelate(frame, 16)), _t(frame))
    assert plain is not None and plain.line == (False, False)


def test_looks_without_cells_and_photographs_find_no_lattice() -> None:
    frame = draw_frame(3, SIZE)[0]
    looks = [lambda x, n=n: stylize_image(x, n) for n in LOOKS] + [
        unseen_looks.posterised_ink, unseen_looks.cool_halftone, unseen_looks.warm_crosshatch,
        unseen_looks.blue_dot_halftone, unseen_looks.canvas_grade, unseen_looks.neon_edges,
        unseen_looks.emboss_grey, unseen_looks.pop_flat, unseen_looks.soft_pastel]
    assert detect_lattice(_t(frame)) is None
    for look in looks:
        assert detect_lattice(_t(look(frame)), _t(frame)) is None


def test_content_that_is_blocky_itself_needs_no_lattice() -> None:
    blocky = pixelate(draw_frame(3, SIZE)[0], 16)
    assert detect_lattice(_t(blocky)) is not None
    assert detect_lattice(_t(blocky), source=_t(blocky)) is None


def test_cell_mean_averages_each_cell_and_keeps_patches_apart() -> None:
    lattice = Lattice((8, 8), (4.0, 4.0), (0.0, 0.0))
    x = torch.arange(2 * 3 * 64, dtype=torch.float32).reshape(2, 3, 8, 8).requires_grad_(True)
    out = cell_mean(x, CellMap.of(lattice.cell_index(8, 8)))
    assert torch.allclose(out[1, 2, :4, 4:], x[1, 2, :4, 4:].mean().expand(4, 4))
    out.sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x))  # the mean passes every pixel's gradient once
    same = torch.zeros(2, 8, 8)  # both crops numbered alike: still two cells each, not shared
    same[:, :, 4:] = 1
    batch = cell_mean(x.detach(), patch_cells(same))
    assert torch.allclose(batch[0, 0, :, :4], x[0, 0, :, :4].mean().expand(8, 4))
    assert torch.allclose(batch[1, 0, :, :4], x[1, 0, :, :4].mean().expand(8, 4))


def test_lattice_scales_with_the_frame_and_refuses_nonsense() -> None:
    lattice = Lattice((128, 128), (6.095, 6.095), (0.3, 0.3))
    assert int(lattice.cell_index(128, 128).max()) + 1 == 22 * 22
    assert int(lattice.cell_index(256, 256).max()) + 1 == 22 * 22  # the same cells, twice as large
    assert Lattice.from_dict(lattice.to_dict()) == lattice
    for bad in ({"size": [128, 128], "period": [0.5, 6]},
                {"size": [128, 128], "period": [6, 6], "offset": [7, 0]},
                {"size": "x", "period": [6, 6], "offset": [0, 0]}):
        with pytest.raises(ValueError):
            Lattice.from_dict(bad)


def test_fitted_translator_renders_flat_cells_on_unseen_frames_and_keeps_them_in_the_style_file() -> None:
    frames = [draw_frame(t, SIZE)[0] for t in range(N_FRAMES)]
    ref = pixelate(frames[0], 21)
    settings = replace(FitSettings(steps=40, batch=2, patch=48, warp=0.5),
                       net=TranslatorConfig(width=8, blocks=1))
    result = fit_translator(_t(frames[0])[None], _t(ref)[None], settings, seed=0)
    net = result.translator
    assert net.lattice is not None
    with torch.no_grad():
        out = net(torch.stack([_t(f) for f in frames[5:9]]))  # the inference plan
        reference_out = net.forward_reference(torch.stack([_t(f) for f in frames[5:9]]))
    assert torch.allclose(out, reference_out, atol=1e-4)
    assert all(_cells_are_flat(o, net.lattice) == 1.0 for o in out)
    again = translator_from_state(translator_state(net))
    assert again.lattice == net.lattice
    with torch.no_grad():
        big = again(torch.nn.functional.interpolate(torch.stack([_t(frames[6])]), size=(256, 256)))
    assert _cells_are_flat(big[0], again.lattice) == 1.0  # the lattice scaled to a 256 px render
    plain = StyleTranslator(TranslatorConfig(width=8, blocks=1))
    assert "lattice" not in translator_state(plain)
    assert translator_from_state(translator_state(plain)).lattice is None  # styles written before


def test_the_recolour_share_tells_a_cell_palette_from_a_graded_pixelation() -> None:
    frame = draw_frame(0, SIZE)[0]
    for look, recolours in ((lambda f: pixelate(f, 21), False), (unseen_looks.warm_tiles, False),
                            (unseen_looks.pixel_art, True), (unseen_looks.console_green, True)):
        target, sources = _t(look(frame))[None], [_t(frame)[None]]
        lattice = lattice_of_keyframes(target, sources)
        assert lattice is not None
        assert (cell_recolour_share(target, sources, lattice) >= CELL_RECOLOUR) == recolours


def test_the_cell_input_is_on_only_for_a_look_that_recolours_its_cells_and_reads_each_cells_mean() -> None:
    frames = [draw_frame(t, SIZE)[0] for t in range(N_FRAMES)]
    settings = replace(FitSettings(steps=20, batch=2, patch=48, cell_input=True),
                       net=TranslatorConfig(width=8, blocks=1, refine=4))
    source = _t(frames[0])[None]
    result = fit_translator(source, _t(unseen_looks.pixel_art(frames[0]))[None], settings, seed=0)
    net = result.translator
    assert net.lattice is not None and net.cfg.cell_input == 1 and result.cell_recolour >= CELL_RECOLOUR
    graded = fit_translator(source, _t(pixelate(frames[0], 21))[None], settings, seed=0)
    assert graded.translator.lattice is not None and graded.translator.cfg.cell_input == 0
    assert graded.cell_recolour < CELL_RECOLOUR
    cartoon = _t(stylize_image(frames[0], LOOKS[0]))[None]
    plain = fit_translator(source, cartoon, settings, seed=0)
    assert plain.translator.lattice is None and plain.translator.cfg.cell_input == 0
    assert plain.cell_recolour is None
    off = fit_translator(source, cartoon, replace(settings, cell_input=False), seed=0).translator
    weights = zip(plain.translator.state_dict().values(), off.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in weights)  # without a lattice the option changes nothing
    again = translator_from_state(translator_state(net))
    assert again.cfg.cell_input == 1 and again.lattice == net.lattice
    # the network sees each cell's mean colour only: two frames whose pixels differ only within
    # their cells come out the same, and other cell means give another output
    with torch.no_grad():
        image = _t(frames[7])[None]
        cells = again.cell_map(SIZE, SIZE, image.device)
        means = cell_mean(image, cells)
        wave = torch.sin(torch.arange(SIZE * SIZE, dtype=torch.float32)).reshape(1, 1, SIZE, SIZE)
        stirred = means + 0.3 * (wave - cell_mean(wave.expand(1, 3, -1, -1), cells))
        assert (stirred - image).abs().max() > 0.2
        for forward in (again, again.forward_reference):  # the inference plan and the op-by-op forward
            assert (forward(image) - forward(stirred)).abs().max() < 1e-4
        assert (again(image) - again(torch.flip(image, (-1,)))).abs().max() > 0.05
