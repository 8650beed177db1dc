"""Frame-locked mosaics of any cell shape (``backend.style.frame_partition``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from backend.looks import LOOKS, stylize_image
from backend.style.fit import FitSettings, fit_translator
from backend.style.frame_partition import (
    LATTICE_MAX_WITHIN,
    FramePartition,
    find_partition,
    read_partition,
    split_merged,
)
from backend.style.lattice import Lattice, within_cell_share
from backend.style.translator import (
    StyleTranslator,
    TranslatorConfig,
    translator_from_state,
    translator_state,
)
from tests.edit import unseen_looks
from tests.edit.conftest import N_FRAMES, draw_frame
from tests.edit.test_lattice import _cells_are_flat
from tests.edit.test_screen import _t

SIZE = 128


def voronoi_cells(size: int, seed: int) -> np.ndarray:
    """(size, size): the cells of a crystallise filter, 300 seeded points fixed in the frame."""
    return unseen_looks._voronoi_cells(size, size, 300, seed)


def shaded(rgb: np.ndarray) -> np.ndarray:
    """The test portrait (a few flat colours) with smooth shading, so neighbouring crystals differ."""
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[:h, :w] / h
    shade = 50 * np.stack([np.sin(5 * xx + 1), np.cos(4 * yy), np.sin(3 * (xx + yy))], axis=2)
    return (rgb * 0.7 + shade + 40).clip(0, 255).astype(np.uint8)


def crystallise(rgb: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Each of the frame-locked ``cells`` filled with the mean colour of ``rgb`` under it."""
    return unseen_looks._unit8(unseen_looks._fill_cells(rgb, cells))


def test_a_crystallised_frame_is_found_and_each_found_cell_lies_in_one_crystal() -> None:
    frame = shaded(draw_frame(3, SIZE)[0])
    crystals = voronoi_cells(SIZE, seed=1)
    partition, evidence = find_partition(_t(crystallise(frame, crystals))[None])
    assert partition is not None and evidence[0].found and evidence[0].flat > 0.99
    labels, look = partition.labels.numpy(), crystallise(frame, crystals)
    for cell in np.unique(labels):  # a found cell is one colour: it never joins two different crystals
        assert len(np.unique(look[labels == cell].reshape(-1, 3), axis=0)) == 1
    assert partition.cells >= 0.9 * len(np.unique(crystals))  # and hardly merge neighbours


def test_photographs_fills_dithers_and_screens_are_not_mosaics() -> None:
    frame = draw_frame(3, SIZE)[0]
    looks = [lambda x, n=n: stylize_image(x, n) for n in LOOKS] + [
        unseen_looks.posterised_ink, unseen_looks.pop_flat, unseen_looks.kmeans_comic, unseen_looks.cel_canny,
        unseen_looks.error_diffusion, unseen_looks.blue_dot_halftone, unseen_looks.woodcut_ink,
        unseen_looks.brush_ink, unseen_looks.newsprint_comic, unseen_looks.crt_scanlines]
    for picture in (frame, shaded(frame)):
        assert find_partition(_t(picture)[None])[0] is None
        for look in looks:
            partition, evidence = find_partition(_t(look(picture))[None])
            assert partition is None and not evidence[0].found


def test_crystals_with_lead_lines_between_them_are_a_mosaic_with_the_lead_apart() -> None:
    frame = shaded(draw_frame(3, SIZE)[0])
    crystals = voronoi_cells(SIZE, seed=1)
    glass = crystallise(frame, crystals)
    lead = unseen_looks._walls(crystals)
    glass[lead] = (20, 18, 16)  # thin lines of one colour over the whole frame
    partition, evidence = find_partition(_t(glass)[None], [_t(frame)[None]])
    assert partition is not None and evidence[0].big == 0.0  # however far the lines reach
    labels = partition.labels.numpy()
    assert not np.isin(labels[~lead], np.unique(labels[lead])).any()  # no cell holds lead and glass


def test_superpixels_drawn_along_the_picture_are_not_frame_locked() -> None:
    frame = shaded(draw_frame(3, SIZE)[0])
    slic = _t(unseen_looks.slic_mosaic(frame))
    unchecked = find_partition(slic[None])  # small flat cells: a mosaic, by their shape alone
    assert unchecked[0] is not None
    partition, evidence = find_partition(slic[None], [_t(frame)[None]])
    assert partition is None and evidence[0].walls_on_edges >= 1.4  # but their walls follow its edges
    crystals = find_partition(_t(crystallise(frame, voronoi_cells(SIZE, seed=1)))[None], [_t(frame)[None]])
    assert crystals[0] is not None and crystals[1][0].walls_on_edges < 1.2


def test_two_keyframes_split_the_cells_where_they_disagree() -> None:
    frame = shaded(draw_frame(3, SIZE)[0])
    a, b = voronoi_cells(SIZE, seed=1), voronoi_cells(SIZE, seed=2)
    partition, evidence = find_partition(torch.stack([_t(crystallise(frame, a)), _t(crystallise(frame, b))]))
    assert partition is not None and len(evidence) == 2
    labels = partition.labels.numpy()
    for cell in np.unique(labels)[:200]:
        inside = labels == cell
        assert len(np.unique(a[inside])) == 1 and len(np.unique(b[inside])) == 1
    one = find_partition(torch.stack([_t(crystallise(frame, a)), _t(frame)]))
    assert one[0] is None and [e.found for e in one[1]] == [True, False]


def test_the_cells_scale_with_the_frame_and_bad_stored_cells_are_refused() -> None:
    labels = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
    partition = FramePartition(labels)
    assert partition.cell_index(8, 8).reshape(8, 8)[:4, 4:].unique().tolist() == [1]
    assert int(partition.cell_index(8, 8).max()) == 3
    assert partition.cell_index(2, 2).tolist() == [0, 1, 2, 3]
    again = FramePartition.from_tensor(partition.to_tensor())
    assert torch.equal(again.labels, labels) and partition.to_tensor().dtype == torch.int32
    for bad in (labels.float(), labels[0], labels + 1, torch.tensor([[0, 2], [2, 0]]), "cells"):
        with pytest.raises(ValueError):
            FramePartition.from_tensor(bad)


def test_a_fitted_translator_renders_the_mosaic_flat_on_unseen_frames_and_stores_it() -> None:
    frames = [shaded(draw_frame(t, SIZE)[0]) for t in range(N_FRAMES)]
    crystals = voronoi_cells(SIZE, seed=1)
    settings = replace(FitSettings(steps=30, batch=2, patch=48, warp=0.5, partition=True),
                       net=TranslatorConfig(width=8, blocks=1))
    result = fit_translator(_t(frames[0])[None], _t(crystallise(frames[0], crystals))[None], settings, seed=0)
    net = result.translator
    assert isinstance(net.lattice, FramePartition) and result.partition[0]["found"]
    unseen = torch.stack([_t(f) for f in frames[5:9]])
    with torch.no_grad():
        out, reference_out = net(unseen), net.forward_reference(unseen)  # the inference plan and the op-by-op
    assert torch.allclose(out, reference_out, atol=1e-4)
    assert all(_cells_are_flat(o, net.lattice) == 1.0 for o in out)
    blob = translator_state(net)
    assert "partition" in blob and "lattice" not in blob
    again = translator_from_state(blob)
    assert torch.equal(again.lattice.labels, net.lattice.labels)
    with torch.no_grad():
        big = again(torch.nn.functional.interpolate(unseen[:1], size=(256, 256)))
    assert _cells_are_flat(big[0], again.lattice) == 1.0  # the cells scaled to a 256 px render
    with pytest.raises(ValueError, match="lattice or a partition"):
        translator_from_state(dict(blob, lattice=Lattice((SIZE, SIZE), (8.0, 8.0), (0.0, 0.0)).to_dict()))
    off = fit_translator(_t(frames[0])[None], _t(crystallise(frames[0], crystals))[None],
                         replace(settings, partition=False), seed=0)
    assert off.translator.lattice is None and off.partition is None
    plain = StyleTranslator(TranslatorConfig(width=8, blocks=1))
    assert "partition" not in translator_state(plain)


def test_a_look_that_is_no_mosaic_is_fitted_as_without_the_option_to_the_bit() -> None:
    frame = shaded(draw_frame(0, SIZE)[0])
    settings = replace(FitSettings(steps=10, batch=2, patch=48, warp=0.5, partition=True),
                       net=TranslatorConfig(width=8, blocks=1))
    source, target = _t(frame)[None], _t(stylize_image(frame, "cartoon"))[None]
    on = fit_translator(source, target, settings, seed=0)
    off = fit_translator(source, target, replace(settings, partition=False), seed=0)
    assert on.translator.lattice is None and on.partition is not None and not on.partition[0]["found"]
    assert all(torch.equal(a, b) for a, b in zip(on.translator.state_dict().values(),
                                                 off.translator.state_dict().values(), strict=True))


def test_a_rectangular_lattice_read_in_a_hexagonal_mosaic_gives_way_to_its_hexagons() -> None:
    frame = shaded(draw_frame(3, SIZE)[0])
    hexagons = _t(unseen_looks.hex_pixelate(frame))[None]
    lattice = Lattice((SIZE, SIZE), (6.0, 3.5), (0.0, 0.0))  # rows and columns of half-hexagons
    assert within_cell_share(hexagons, lattice) > LATTICE_MAX_WITHIN
    pixelated = _t(crystallise(frame, Lattice((SIZE, SIZE), (8.0, 8.0), (0.0, 0.0))
                               .cell_index(SIZE, SIZE).reshape(SIZE, SIZE).numpy()))[None]
    assert within_cell_share(pixelated, Lattice((SIZE, SIZE), (8.0, 8.0), (0.0, 0.0))) == 0.0
    settings = replace(FitSettings(steps=4, batch=2, patch=48, partition=True),
                       net=TranslatorConfig(width=8, blocks=1))
    fitted = fit_translator(_t(frame)[None], hexagons, settings, seed=0).translator
    assert isinstance(fitted.lattice, FramePartition)
    fitted = fit_translator(_t(frame)[None], pixelated, settings, seed=0).translator
    assert isinstance(fitted.lattice, Lattice)
    assert fitted.lattice.period == pytest.approx((8.0, 8.0), abs=0.03)


def test_neighbouring_hexagons_of_one_colour_are_split_and_crystals_of_many_sizes_are_not() -> None:
    """Where a keyframe paints neighbouring cells one colour they are one region; another frame
    shows them apart. Cells of about one size (hexagons) are cut back by area; crystals of a random
    point set, whose big cells are as likely one cell, are left as read."""
    frame = shaded(draw_frame(3, SIZE)[0])
    hexagons = unseen_looks.hex_pixelate(frame)
    hexagons[40:60, 40:70] = hexagons[50, 55]  # paint one patch of neighbouring hexagons one colour
    painted = find_partition(_t(hexagons)[None])[0].labels.numpy()
    clean = find_partition(_t(unseen_looks.hex_pixelate(frame))[None])[0].labels.numpy()
    area = np.bincount(painted.ravel())
    assert area.max() < 1.7 * np.median(area)  # no merged region is left
    assert abs(len(area) - len(np.bincount(clean.ravel()))) <= 10  # about one cell per hexagon again
    crystals = crystallise(frame, voronoi_cells(SIZE, seed=1))
    labels = find_partition(_t(crystals)[None])[0].labels.numpy()
    regions = read_partition(_t(crystals))[0]  # the regions as read, before any cut
    assert np.array_equal(labels, np.unique(regions, return_inverse=True)[1].reshape(regions.shape))
    assert np.array_equal(split_merged(regions), labels)
