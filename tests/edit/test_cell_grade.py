"""The colour grade of a graded mosaic's cells (``backend.style.cell_grade``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from backend.style.cell_grade import DRAWN, GRADED, INKED, CellGrade, find_cell_grade, ink_shares
from backend.style.fit import FitSettings, fit_translator
from backend.style.frame_partition import FramePartition
from backend.style.lattice import CellMap, cell_mean
from backend.style.translator import TranslatorConfig, translator_from_state, translator_state
from tests.edit import unseen_looks
from tests.edit.conftest import N_FRAMES, draw_frame
from tests.edit.test_frame_partition import shaded, voronoi_cells
from tests.edit.test_screen import _t

SIZE = 128
LEAD = (20, 18, 16)


def graded_glass(rgb: np.ndarray, crystals: np.ndarray, lead: bool = True) -> np.ndarray:
    """Crystals of their mean colour, saturated x1.4 about their grey and clipped, then darkened
    and lifted (an affine grade that clips), with 1 px lead lines between them."""
    x = unseen_looks._fill_cells(rgb, crystals)
    grey = x.mean(axis=2, keepdims=True)
    x = np.clip(grey + 1.4 * (x - grey), 0, 1) * 0.85 + 0.1
    if lead:
        x[unseen_looks._walls(crystals)] = np.array(LEAD) / 255
    return unseen_looks._unit8(x)


def cells_of(labels: np.ndarray) -> CellMap:
    return CellMap.of(FramePartition(torch.from_numpy(labels.astype(np.int64))).cell_index(*labels.shape))


def test_a_graded_mosaic_is_read_exactly_and_its_lead_is_inked() -> None:
    frame = shaded(draw_frame(3, SIZE)[0])
    crystals = voronoi_cells(SIZE, seed=1)
    lead = unseen_looks._walls(crystals)
    glass = graded_glass(frame, crystals)
    labels = crystals.copy()
    labels[lead] = crystals.max() + 1  # the lead apart, as the mosaic's own regions put it
    cells = cells_of(labels)
    grade, evidence = find_cell_grade(_t(glass)[None], _t(frame)[None], cells)
    assert grade is not None and evidence.found and evidence.distinct > 0.5
    kinds = grade.kinds(SIZE, SIZE, torch.device("cpu")).reshape(SIZE, SIZE)
    assert (kinds[torch.from_numpy(lead)] == INKED).all()  # the lead: one colour whatever the picture
    assert torch.allclose(grade.ink, torch.tensor(LEAD) / 127.5 - 1, atol=1e-6)
    panes = kinds[torch.from_numpy(~lead)]
    assert float((panes == GRADED).double().mean()) > 0.8 and evidence.graded > 0.6
    # a frame never seen: its graded cells are the look of it to a few levels (the panes' means
    # run under the lead there, as here), its lead exact, its other cells the network's
    unseen = shaded(draw_frame(7, SIZE)[0])
    truth = _t(graded_glass(unseen, crystals))[None]
    network = torch.full_like(truth, 0.25)
    assert grade.sides == "after"  # the lead is drawn on each crystal's first row and column
    shares = ink_shares(cells, kinds, SIZE, SIZE, grade.sides)  # the picture under the lead, its panes'
    out = grade.apply(network, _t(unseen)[None], cells, kinds.reshape(-1), shares)
    err = (out - truth).abs()[0].amax(0)
    assert float(err[kinds == GRADED].median()) < 0.01 and float(err[kinds == GRADED].quantile(0.9)) < 0.04
    unshared = grade.apply(network, _t(unseen)[None], cells, kinds.reshape(-1), None)
    unshared_err = (unshared - truth).abs()[0].amax(0)[kinds == GRADED]
    assert float(unshared_err.mean()) > float(err[kinds == GRADED].mean())
    assert float(err[kinds == INKED].amax()) < 1e-6
    assert torch.equal(out[0][:, kinds == DRAWN], network[0][:, kinds == DRAWN])


def test_a_clip_is_kept_where_the_look_clips_and_nowhere_else() -> None:
    frame = shaded(draw_frame(3, SIZE)[0])
    crystals = voronoi_cells(SIZE, seed=1)
    glass = graded_glass(frame, crystals, lead=False)
    grade, _ = find_cell_grade(_t(glass)[None], _t(frame)[None], cells_of(crystals))
    assert grade is not None
    clipped = (grade.low > -1) | (grade.high < 1)
    assert clipped.any()  # saturated x1.4: some cells reach past the range, clipped at 0.1 / 0.95
    lo, hi = grade.low[grade.low > -1], grade.high[grade.high < 1]
    assert torch.allclose(lo, torch.full_like(lo, 0.1 * 2 - 1), atol=0.02)
    assert torch.allclose(hi, torch.full_like(hi, 0.95 * 2 - 1), atol=0.02)
    plain = unseen_looks._unit8(unseen_looks._fill_cells(frame, crystals) * 0.9 + 0.05)  # never clips
    grade, evidence = find_cell_grade(_t(plain)[None], _t(frame)[None], cells_of(crystals))
    assert grade is not None and evidence.rms < 0.01
    assert grade.low.tolist() == [-1.0] * 3 and grade.high.tolist() == [1.0] * 3
    assert torch.allclose(grade.matrix[:, :3], 0.9 * torch.eye(3), atol=0.01)


def test_a_palette_and_a_picture_are_not_graded_cells() -> None:
    frame = shaded(draw_frame(3, SIZE)[0])
    for look, side in ((unseen_looks.console_green, 6), (unseen_looks.pixel_art, 4)):  # a few colours
        blocks = np.arange(SIZE)[:, None] // side * 100 + np.arange(SIZE)[None, :] // side
        cells = CellMap.of(torch.from_numpy(blocks.ravel()).unique(return_inverse=True)[1])
        grade, evidence = find_cell_grade(_t(look(frame))[None], _t(frame)[None], cells)
        assert grade is None and not evidence.found and evidence.distinct < 0.05
    posterised = unseen_looks.posterised_ink(frame)  # no cells at all: the means explain little
    grade, evidence = find_cell_grade(_t(posterised)[None], _t(frame)[None], cells)
    assert grade is None and evidence.graded < 0.6


def test_a_stored_grade_round_trips_and_bad_ones_are_refused() -> None:
    grade = CellGrade(torch.eye(3, 4) * 1.1, torch.full((3,), -0.9), torch.ones(3), torch.full((3,), -0.8),
                      torch.tensor([[GRADED, INKED], [DRAWN, GRADED]], dtype=torch.uint8))
    again = CellGrade.from_dict(grade.to_dict())
    assert torch.equal(again.matrix, grade.matrix) and torch.equal(again.kind, grade.kind)
    assert torch.equal(again.ink, grade.ink)
    assert (again.kinds(4, 4, torch.device("cpu")).reshape(4, 4)[:2, 2:] == INKED).all()
    good = grade.to_dict()
    for bad in ("grade", dict(good, matrix=torch.eye(3)), dict(good, kind=torch.zeros(0, 2)),
                dict(good, low=torch.full((3,), float("nan"))), dict(good, low=torch.full((3,), 2.0)),
                dict(good, kind=grade.kind + 3), dict(good, kind=grade.kind.float()),
                dict(good, ink=torch.zeros(2)),
                {k: v for k, v in good.items() if k != "high"}):
        with pytest.raises(ValueError):
            CellGrade.from_dict(bad)


def test_a_fitted_translator_grades_unseen_frames_like_the_look_and_stores_it() -> None:
    frames = [shaded(draw_frame(t, SIZE)[0]) for t in range(N_FRAMES)]
    crystals = voronoi_cells(SIZE, seed=1)
    settings = replace(FitSettings(steps=20, batch=2, patch=48, warp=0.5, partition=True, cell_grade=True),
                       net=TranslatorConfig(width=8, blocks=1))
    source, target = _t(frames[0])[None], _t(graded_glass(frames[0], crystals))[None]
    result = fit_translator(source, target, settings, seed=0)
    net = result.translator
    assert isinstance(net.lattice, FramePartition) and net.cell_grade is not None
    assert result.cell_grade["found"]
    unseen = torch.stack([_t(f) for f in frames[5:9]])
    truth = torch.stack([_t(graded_glass(f, crystals)) for f in frames[5:9]])
    mask = (net.cell_grade.kind != DRAWN).reshape(1, 1, SIZE, SIZE)
    with torch.no_grad():
        out = net(unseen)
        network = net.forward_reference(unseen)  # the network alone
    err = (out - truth).abs().amax(1, keepdim=True)[mask.expand(4, -1, -1, -1)]
    assert float(err.median()) < 0.02
    assert torch.equal(out[~mask.expand(4, 3, -1, -1)], network[~mask.expand(4, 3, -1, -1)])
    assert torch.allclose(cell_mean(out, net.cell_map(SIZE, SIZE, out.device)), out, atol=1e-5)  # still flat
    blob = translator_state(net)
    again = translator_from_state(blob)
    with torch.no_grad():
        assert torch.equal(again(unseen), out)
        big = again(torch.nn.functional.interpolate(unseen[:1], size=(256, 256), mode="bilinear"))
    assert big.shape[-1] == 256
    with pytest.raises(ValueError, match="lattice or partition"):
        translator_from_state({k: v for k, v in blob.items() if k != "partition"})
    off = fit_translator(source, target, replace(settings, cell_grade=False), seed=0)
    assert off.translator.cell_grade is None and off.cell_grade is None
    assert "cell_grade" not in translator_state(off.translator)
    assert all(torch.equal(a, b) for a, b in zip(off.translator.state_dict().values(),
                                                 net.state_dict().values(), strict=True))  # the same fit



def test_a_graded_lattice_keeps_its_grout_as_ink_and_no_screen() -> None:
    """Tiles with grout lines are a lattice and, to the screen detector, a periodic pattern too:
    where the grade holds, the cells and their ink are the pattern and the screen is dropped."""
    frame = shaded(draw_frame(3, SIZE)[0])
    tiles = unseen_looks.grout_tiles(frame)
    settings = replace(FitSettings(steps=4, batch=2, patch=48, partition=True, cell_grade=True),
                       net=TranslatorConfig(width=8, blocks=1))
    source, target = _t(frame)[None], _t(tiles)[None]
    graded = fit_translator(source, target, settings, seed=0).translator
    plain = fit_translator(source, target, replace(settings, cell_grade=False), seed=0).translator
    assert plain.screen.numel() > 0 and plain.cell_grade is None  # the grout read as a screen
    assert graded.screen.numel() == 0 and graded.lattice is not None and graded.cell_grade is not None
    kinds = graded.cell_grade.kind
    grout = torch.from_numpy((np.mgrid[0:SIZE, 0:SIZE] % 8 == 0).any(0))
    assert float((kinds[grout] == INKED).double().mean()) > 0.9
    assert torch.allclose(graded.cell_grade.ink, torch.tensor([0.78, 0.78, 0.76]) * 2 - 1, atol=0.01)
    unseen = _t(shaded(draw_frame(9, SIZE)[0]))[None]
    with torch.no_grad():
        out = graded(unseen)
    truth = _t(unseen_looks.grout_tiles(shaded(draw_frame(9, SIZE)[0])))[None]
    err = (out - truth).abs()[0].amax(0)
    assert float(err[kinds == GRADED].median()) < 0.03 and float(err[grout].amax()) < 0.01
