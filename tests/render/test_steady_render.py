"""A style with a steady filter (``backend.style.steady``) renders through ``Renderer``: each frame is
filtered with its neighbours in the curves, so a sub-range, a resumed render or rows in another
order give the pixels of the whole render, and only ``radius`` extra rows are rendered at each end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from backend.data.subject import Subject
from backend.data.windows import WINDOW_RADIUS
from backend.model.compiled import InferenceForward
from backend.paths import checkpoint_path
from backend.render import Renderer
from backend.style.steady import SteadyFilter, steady_frames
from backend.style.translator import (
    StyleTranslator,
    TranslatorConfig,
    translator_from_state,
    translator_state,
)

STEADY = SteadyFilter(radius=2, sigma=0.2, tau=1.5)  # wide: the tiny avatar's frames all count


def _translator(steady: SteadyFilter | None) -> StyleTranslator:
    torch.manual_seed(0)
    net = StyleTranslator(TranslatorConfig(width=8, blocks=1)).eval()
    with torch.no_grad():
        for w in net.parameters():
            w.normal_(0, 0.1)
    net.steady = steady
    return net.requires_grad_(False)


class _CountingForward(InferenceForward):
    """The renderer's forward, counting the rows it renders."""

    rows = 0

    def with_plain(self, uv: torch.Tensor, expr_window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.rows += uv.shape[0]
        return super().with_plain(uv, expr_window)


def _renderer(subject: Path, steady: SteadyFilter | None) -> Renderer:
    r = Renderer.from_checkpoint(checkpoint_path(subject), device="cpu")
    r.translator = _translator(steady)
    r.forward = _CountingForward(r.avatar, post=r.translator)
    return r


def _render(r: Renderer, s: Subject, **kw: object) -> np.ndarray:
    return np.stack(list(r.render(s.expressions, uv_maps=s.uv_maps, batch=4, **kw)))


def test_a_steady_style_filters_each_frame_with_its_neighbours(tiny_avatar_subject: Path) -> None:
    s = Subject.open(tiny_avatar_subject)
    n = s.n_frames
    assert n >= 12
    r = _renderer(tiny_avatar_subject, STEADY)
    got = _render(r, s)
    assert r.forward.rows == n  # the whole clip: no row rendered twice
    # the same as filtering the network's frames of the whole clip at once
    uv = torch.from_numpy(r._resample_uv(np.asarray(s.uv_maps))).permute(0, 3, 1, 2)
    from backend.data.windows import expression_windows

    win = torch.from_numpy(expression_windows(np.asarray(s.expressions, np.float32)))
    with torch.no_grad():
        plain, styled = r.forward.with_plain(uv, win)
        want = steady_frames(styled, plain, STEADY)
        raw = ((styled.clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1).numpy()
    want = ((want.clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1).numpy()
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert np.abs(got.astype(int) - raw.astype(int)).mean() > 0.05  # the filter did change frames


def test_a_sub_range_or_other_order_gives_the_whole_renders_pixels(tiny_avatar_subject: Path) -> None:
    s = Subject.open(tiny_avatar_subject)
    r = _renderer(tiny_avatar_subject, STEADY)
    whole = _render(r, s)
    r.forward.rows = 0
    part = _render(r, s, indices=range(3, 9))
    # the range on a grid of 4 rows from row 3, and a whole batch of context on each side (rows
    # 0-2 before it, as far as the curves go; 9-14 after it), each rendered once
    assert r.forward.rows == 15
    assert np.abs(part.astype(int) - whole[3:9].astype(int)).max() <= 1
    order = [8, 0, 1, s.n_frames - 1, 5]
    shuffled = _render(r, s, indices=order)
    assert np.abs(shuffled.astype(int) - whole[order].astype(int)).max() <= 1


@pytest.mark.parametrize("steady", [STEADY, SteadyFilter(radius=8, sigma=0.2, tau=4.0),
                                    SteadyFilter(radius=8, sigma=0.2, tau=4.0, motion=True)],
                         ids=["radius 2", "radius 8, two batches of context", "along the motion"])
def test_chunks_of_whole_batches_give_one_renders_pixels_to_the_bit(tiny_avatar_subject: Path,
                                                                    steady: SteadyFilter) -> None:
    """A farm renders a shot in tasks of whole batches: each task's frames must equal one render's,
    also with the widest filter the edit chooses (``STEADY_LADDER``), which reaches past a batch,
    and along the motion (``backend.style.steady_motion``)."""
    s = Subject.open(tiny_avatar_subject)
    n = s.n_frames
    r = _renderer(tiny_avatar_subject, steady)
    one = _render(r, s, indices=range(1, n))
    chunks = [_render(r, s, indices=range(a, min(a + 8, n))) for a in range(1, n, 8)]  # 2 batches of 4
    assert len(chunks) >= 2
    assert np.array_equal(np.concatenate(chunks), one)


def test_a_still_is_rendered_without_the_filter(tiny_avatar_subject: Path) -> None:
    """``steady=False`` (the service's live preview): each frame as the network gives it, and no
    neighbour is rendered."""
    s = Subject.open(tiny_avatar_subject)
    steady = _renderer(tiny_avatar_subject, STEADY)
    still = np.stack(list(steady.render(s.expressions, uv_maps=s.uv_maps, indices=[5], steady=False)))
    assert steady.forward.rows == 0  # the plain forward: no (plain, styled) pairs rendered
    raw = _renderer(tiny_avatar_subject, None)
    assert np.array_equal(still, np.stack(list(raw.render(s.expressions, uv_maps=s.uv_maps, indices=[5]))))


def test_maps_given_per_rendered_row_make_only_those_rows_neighbours(tiny_avatar_subject: Path) -> None:
    """With UV maps for the rendered rows only, rows without a map cannot be rendered: a row is
    filtered with the rendered rows next to it, and a row alone is the network's frame."""
    s = Subject.open(tiny_avatar_subject)
    rows = [2, 3, 4, 9]
    steady = _renderer(tiny_avatar_subject, STEADY)
    plain = _renderer(tiny_avatar_subject, None)  # the same translator without the filter
    got = np.stack(list(steady.render(s.expressions, uv_maps=s.uv_maps[rows], indices=rows, batch=4)))
    raw = np.stack(list(plain.render(s.expressions, uv_maps=s.uv_maps[rows], indices=rows, batch=4)))
    assert steady.forward.rows == 4
    # row 9 has no rendered neighbour: the network's frame (within 1 level: the steady path renders
    # it beside its unstyled frame, the plain path alone, and float rounding may differ)
    assert np.abs(got[3].astype(int) - raw[3].astype(int)).max() <= 1
    assert np.abs(got[:3].astype(int) - raw[:3].astype(int)).mean() > 0.05


def test_no_frame_is_averaged_across_a_cut(tiny_avatar_subject: Path) -> None:
    """``cuts`` (a subject's ``Subject.cuts``): the two shots render as if each were alone, to the
    bit, and the frames next to the cut are not those of a render that ignores it."""
    s = Subject.open(tiny_avatar_subject)
    n, cut = s.n_frames, 6
    r = _renderer(tiny_avatar_subject, STEADY)
    whole = _render(r, s, cuts=[cut])
    alone = [_render(r, s, indices=range(a, b), cuts=[cut]) for a, b in ((0, cut), (cut, n))]
    assert np.array_equal(whole, np.concatenate(alone))
    # the second shot's curves and maps on their own, as a clip of their own
    own = np.stack(list(r.render(s.expressions[cut:], uv_maps=s.uv_maps[cut:], batch=4)))
    assert np.array_equal(whole[cut:], own)
    ignored = _render(r, s)
    reach = STEADY.radius + WINDOW_RADIUS  # a neighbour's render changes where its window is cut
    assert np.array_equal(whole[: cut - reach], ignored[: cut - reach])  # out of reach
    assert np.abs(whole[cut - 1:cut + 1].astype(int) - ignored[cut - 1:cut + 1].astype(int)).mean() > 0.05
    with pytest.raises(ValueError, match="cuts"):
        next(r.render(s.expressions, uv_maps=s.uv_maps, cuts=[n]))


def test_the_filter_travels_in_the_style_file_and_older_styles_have_none() -> None:
    net = _translator(STEADY)
    blob = translator_state(net)
    assert blob["steady"] == STEADY.to_dict()
    assert translator_from_state(blob).steady == STEADY
    del blob["steady"]  # a style written before the filter
    assert translator_from_state(blob).steady is None
    blob["steady"] = {"radius": 0}
    with pytest.raises(ValueError, match="radius"):
        translator_from_state(blob)



def test_a_dithered_style_is_dotted_last_with_its_palette_and_chunks_keep_the_dots(
        tiny_avatar_subject: Path) -> None:
    """A dispersed-dot look (``backend.style.palette_dither``): each frame as the steady render
    gives it, then dotted with the palette; a farm's chunks and a still get the same dots."""
    from backend.style.palette_dither import PaletteDither

    s = Subject.open(tiny_avatar_subject)
    n = s.n_frames
    r = _renderer(tiny_avatar_subject, STEADY)
    smooth = _render(r, s, indices=range(1, n))
    dots = PaletteDither(np.array([[0.05, 0.22, 0.25], [0.96, 0.95, 0.91]], np.float32), seed=2)
    r.translator.dither = dots
    r.translator = translator_from_state(translator_state(r.translator))  # as a style file keeps it
    r.forward = _CountingForward(r.avatar, post=r.translator)
    dotted = _render(r, s, indices=range(1, n))
    assert np.array_equal(dotted, np.stack([dots.apply(f) for f in smooth]))
    inks = {tuple(int(v) for v in np.round(c * 255)) for c in dots.colours}
    assert {tuple(int(v) for v in c) for c in np.unique(dotted.reshape(-1, 3), axis=0)} == inks
    chunks = [_render(r, s, indices=range(a, min(a + 8, n))) for a in range(1, n, 8)]
    assert np.array_equal(np.concatenate(chunks), dotted)
    still = np.stack(list(r.render(s.expressions, uv_maps=s.uv_maps, indices=[5], steady=False)))
    assert {tuple(int(v) for v in c) for c in np.unique(still.reshape(-1, 3), axis=0)} <= inks
