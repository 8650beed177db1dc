"""Frame-locked cell lattices: looks made of flat cells on a grid that stays put in the frame.

Pixelation, mosaic tiles, cross-stitch or an LED wall paint each cell of a fixed grid one
colour, whatever moves under it. A convolutional translator does not know where a cell starts
and cannot make its output exactly constant over a cell, so its cells come out soft, with the
content showing through them. This module finds the lattice in the references; the translator's
output is then averaged over each cell (``cell_mean``), so every cell is flat and the network only
has to learn the cells' colours. A one-pixel line between cells (a tile's grout) is kept flat
apart from the cell; other marks inside the cells are a frame-locked screen
(``backend.style.screen``), added after the averaging.

Detection, per axis: the energy of the reference's differences between neighbouring pixels
along that axis (difference i lies between pixels i and i + 1). Cells of side ``p`` px (real: a
frame of 128 px cut into 21 cells has cells of 6.095 px) put it on the pixels where a cell starts,
``ceil(o + k p)``, or on those and the next (a one-pixel line between cells). The period is the
peak of the energy's Fourier magnitude over ``p`` (a fine grid), replaced by a multiple of it
that holds as much energy (the peak sits on a harmonic when few boundaries carry energy) and
refined; the offset ``o`` is the one whose cell starts hold most energy. A lattice is found when,
on both axes, the cell starts and the pixels after them hold at least ``min_excess`` of the
energy beyond the share chance gives them (``_excess``), and
the source frame under the reference does not (content that is blocky itself needs no lattice).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LatticeSettings:
    """Thresholds of ``detect_lattice``.

    Attributes:
        min_period / max_period: cell sides tried, in pixels of the reference.
        period_step: spacing of the periods tried (px).
        offset_step: spacing of the offsets tried (px).
        min_excess: how far the ``_start_shares`` score of an axis (the energy into the cell
            starts and out of them, plus a tenth of that into them) must rise from what chance
            gives it (2.1 / p) towards its most (1.1): ``_excess``.
        source_excess: the source frame reaching this on the same cells is blocky itself.
        line_share: the differences out of the cell starts holding this share of those into
            them make the starts a one-pixel line between cells (``Lattice.line``).
    """

    min_period: float = 3.0
    max_period: float = 32.0
    period_step: float = 0.005
    offset_step: float = 0.05
    min_excess: float = 0.6
    source_excess: float = 0.4
    line_share: float = 0.5


@dataclass(frozen=True)
class Lattice:
    """A grid of cells fixed in the frame, in the pixels of a ``size`` frame.

    Attributes:
        size: (H, W) of the frame it was found in.
        period: (py, px) cell sides in pixels (real).
        offset: (oy, ox) in [0, period): pixel y is in cell row ``floor((y - oy) / py)``.
        line: (rows, columns): True when a one-pixel line separates the cells along that axis
            (a tile's grout): the first pixel of each cell along it is then a cell of its own,
            so the line and the cell are each flat.
    """

    size: tuple[int, int]
    period: tuple[float, float]
    offset: tuple[float, float]
    line: tuple[bool, bool] = (False, False)

    def to_dict(self) -> dict[str, list]:
        return {"size": list(self.size), "period": list(self.period), "offset": list(self.offset),
                "line": list(self.line)}

    @classmethod
    def from_dict(cls, d: dict) -> Lattice:
        """Raises ValueError for anything but three pairs of numbers, sizes >= 1, periods >= 1 and
        offsets inside them."""
        try:
            size = tuple(int(v) for v in d["size"])
            period, offset = (tuple(float(v) for v in d[k]) for k in ("period", "offset"))
            line = tuple(bool(v) for v in d.get("line", (False, False)))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"a lattice needs size, period and offset pairs, got {d!r}") from e
        pairs = len(size) == len(period) == len(offset) == len(line) == 2
        if not pairs or min(size) < 1 or min(period) < 1 \
                or not all(0 <= o < p for o, p in zip(offset, period, strict=True)):
            raise ValueError(f"lattice out of range: {d!r}")
        return cls(size, period, offset, line)  # type: ignore[arg-type]

    def cell_index(self, h: int, w: int) -> torch.Tensor:
        """(h * w,) int64 cell of each pixel of an (h, w) frame (row-major; the lattice scales
        with the frame like the look does), numbered densely from 0."""
        def axis(n: int, side: int, p: float, o: float, line: bool) -> torch.Tensor:
            x = (torch.arange(n, dtype=torch.float64) + 0.5) * side / n - 0.5  # in the found frame's px
            cell = torch.floor((x - o) / p + 1e-9)
            if not line:
                return cell.long()
            inside = (x - o - cell * p) >= 1 - 1e-9  # past the cell's first pixel, its line
            return (2 * cell + inside).long()
        ys = axis(h, self.size[0], self.period[0], self.offset[0], self.line[0])
        xs = axis(w, self.size[1], self.period[1], self.offset[1], self.line[1])
        ys, xs = torch.unique(ys, return_inverse=True)[1], torch.unique(xs, return_inverse=True)[1]
        return (ys[:, None] * (int(xs.max()) + 1) + xs[None, :]).reshape(-1)


@dataclass(frozen=True)
class CellMap:
    """Which cell each pixel of an (H, W) image is in: ``index`` (H * W,) int64 and the pixel
    ``count`` (n_cells,) of each cell (float)."""

    index: torch.Tensor
    count: torch.Tensor

    @classmethod
    def of(cls, index: torch.Tensor) -> CellMap:
        return cls(index, torch.bincount(index).to(torch.float32))

    def to(self, device: torch.device) -> CellMap:
        return CellMap(self.index.to(device), self.count.to(device))


def cell_mean(x: torch.Tensor, cells: CellMap) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H, W), each pixel replaced by the mean of its cell (differentiable).

    ``cells`` numbers the H * W pixels of one frame (the same cells on every image) or the
    B * H * W pixels of the whole batch (``patch_cells``: each patch its own cells). Works on
    channels-last memory without a copy (the image is read as (B, H * W, C))."""
    b, c, h, w = x.shape
    return cell_colours(x, cells)[:, cells.index].reshape(b, h, w, c).permute(0, 3, 1, 2)


def cell_colours(x: torch.Tensor, cells: CellMap) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C): the mean of each of the N cells of ``cells`` (one frame's cells,
    per image), or (1, N, C) when ``cells`` numbers the whole batch's pixels (``cell_mean``)."""
    b, c, h, w = x.shape
    flat = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
    if cells.index.numel() != h * w:
        flat = flat.reshape(1, b * h * w, c)
    sums = flat.new_zeros(flat.shape[0], cells.count.shape[0], c).index_add_(1, cells.index, flat)
    return sums / cells.count.to(x.dtype)[None, :, None]


def patch_cells(ids: torch.Tensor) -> CellMap:
    """(N, S, S) frame cell numbers of N crops -> one ``CellMap`` over their N * S * S pixels, the
    cells of different crops kept apart (a cell cut by a crop's border is the part inside)."""
    n = ids.shape[0]
    key = ids.long() + torch.arange(n, device=ids.device)[:, None, None] * (int(ids.max()) + 1)
    _, dense = torch.unique(key.reshape(-1), return_inverse=True)
    return CellMap.of(dense)


def _axis_energy(image: torch.Tensor, dim: int) -> torch.Tensor:
    """(C, H, W) -> (n - 1,) energy of the differences along ``dim`` (-1: x, -2: y), float64."""
    d = image.double().diff(dim=dim).pow(2).sum(0)
    return d.sum(0) if dim == -1 else d.sum(1)


def _cell_steps(n: int, p: float, offsets: torch.Tensor) -> torch.Tensor:
    """(O, n) bool: pixel x starts a cell (``floor((x - o) / p)`` steps up from x - 1), per offset."""
    x = torch.arange(-1, n, dtype=torch.float64)
    cell = torch.floor((x[None, :] - offsets[:, None]) / p + 1e-9)
    return cell[:, 1:] > cell[:, :-1]


def _into_out(energy: torch.Tensor, p: float, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(O,) shares of ``energy`` (n - 1,) on the differences into each cell start and out of it
    (difference i lies between pixels i and i + 1)."""
    steps = _cell_steps(energy.shape[0] + 1, p, offsets).double()
    total = energy.sum().clamp_min(1e-12)
    return steps[:, 1:] @ energy / total, steps[:, :-1] @ energy / total


def _start_shares(energy: torch.Tensor, p: float, offsets: torch.Tensor) -> torch.Tensor:
    """(O,) share of ``energy`` on the differences into each cell start and out of it, plus a
    tenth of the share into the starts alone (so that of two lattices that hold a boundary, the
    one that starts its cell on it wins), for each offset."""
    into, out = _into_out(energy, p, offsets)
    return into + out + 0.1 * into


def _start_share(energy: torch.Tensor, p: float, o: float) -> float:
    return float(_start_shares(energy, p, torch.tensor([o], dtype=torch.float64))[0])


def _excess(share: float, p: float) -> float:
    """How far ``_start_share`` is above what chance gives (0) towards all the energy (1)."""
    chance = min(2.1 / p, 0.99)
    return (share - chance) / (1.1 - chance)


def _best_offset(energy: torch.Tensor, p: float, step: float) -> tuple[float, float]:
    """(offset, share) whose cell starts hold the most of ``energy`` for period ``p``."""
    offsets = torch.arange(0.0, p, step, dtype=torch.float64)
    shares = _start_shares(energy, p, offsets)
    k = int(torch.argmax(shares))
    return float(offsets[k]), float(shares[k])


def _best_of(energy: torch.Tensor, periods: list[float], step: float) -> tuple[float, float, float]:
    """(period, offset, share) of the period in ``periods`` and offset whose cell starts hold most."""
    return max(((p, *_best_offset(energy, p, step)) for p in periods), key=lambda t: t[2])


def _axis_lattice(energy: torch.Tensor, s: LatticeSettings) -> tuple[float, float, float]:
    """(period, offset, excess) of the best lattice along one axis's difference energy.

    The Fourier peak can sit on a harmonic (p / k) when many cells are alike and only some
    boundaries carry energy; a multiple of the period that holds as much energy on its own cell
    starts is the lattice then. The period is then refined: one off by 0.01 px misplaces the last
    cells of a frame by a pixel."""
    n = energy.shape[0]
    longest = min(s.max_period, n / 4)
    periods = torch.arange(s.min_period, longest + 1e-9, s.period_step, dtype=torch.float64)
    pos = torch.arange(1, n + 1, dtype=torch.float64)  # difference i ends on pixel i + 1
    phase = torch.exp(-2j * torch.pi * pos[None, :] / periods[:, None])
    mag = (phase @ energy.to(torch.complex128)).abs() / energy.sum().clamp_min(1e-12)
    peak = float(periods[int(torch.argmax(mag))])
    d = s.period_step
    best = _best_of(energy, [peak - d, peak, peak + d], s.offset_step)
    for k in range(2, int(longest // best[0]) + 1):
        multiple = _best_of(energy, [k * best[0] - d, k * best[0], k * best[0] + d], s.offset_step)
        if multiple[2] >= 0.97 * best[2]:
            best = multiple
            break
    refined = _best_of(energy, torch.linspace(best[0] - 6 * d, best[0] + 6 * d, 25).tolist(), s.offset_step)
    p, o, share = refined if refined[2] > best[2] + 1e-9 else best
    return p, o, _excess(share, p)


def detect_lattice(reference: torch.Tensor, source: torch.Tensor | None = None,
                   settings: LatticeSettings | None = None) -> Lattice | None:
    """The lattice of flat cells in a (3, H, W) reference, or None.

    Args:
        reference: (3, H, W) in [-1, 1].
        source: (3, H, W) the frame the reference was painted over, or None.
    """
    s = settings or LatticeSettings()
    found = []
    for dim in (-2, -1):
        energy = _axis_energy(reference, dim)
        p, o, excess = _axis_lattice(energy, s)
        if excess < s.min_excess:
            return None
        source_excess = 0.0 if source is None else _excess(_start_share(_axis_energy(source, dim), p, o), p)
        if source_excess >= s.source_excess:  # the content is blocky itself
            return None
        into, out = (float(v[0]) for v in _into_out(energy, p, torch.tensor([o], dtype=torch.float64)))
        found.append((round(p, 4), round(o, 4), out >= s.line_share * into))
    (py, oy, ly), (px, ox, lx) = found
    return Lattice((int(reference.shape[-2]), int(reference.shape[-1])), (py, px), (oy, ox), (ly, lx))


def lattice_of_keyframes(targets: torch.Tensor, sources: list[torch.Tensor],
                         settings: LatticeSettings | None = None) -> Lattice | None:
    """The lattice every keyframe's reference shows, or None when any has none or they differ.

    targets: (P, 3, H, W); sources: P tensors (1, C >= 3, H, W), each target's source frame.
    References of one look on one frame size find the same lattice up to rounding; the first
    keyframe's is kept when the others' cells start on the same pixels."""
    found = [detect_lattice(t, src[0, :3], settings) for t, src in zip(targets, sources, strict=True)]
    if not found or any(f is None for f in found):
        return None
    first = found[0]
    h, w = first.size
    cells = first.cell_index(h, w)
    same = all(f.size == first.size and torch.equal(f.cell_index(h, w), cells) for f in found)
    return first if same else None


CELL_RECOLOUR = 0.05
"""``cell_recolour_share`` from which the translator reads its input averaged over the cells
(``TranslatorConfig.cell_input``): 0.004-0.015 for an averaging pixelation, 0.11-0.19 for a pixel-art
palette, on frames 0 and 40 of the three measured subjects (docs/editing.md, "Seven looks written
before their first run, and the cell input")."""


def cell_recolour_share(targets: torch.Tensor, sources: list[torch.Tensor], lattice: Lattice) -> float:
    """How far a look is from grading each cell's mean colour: the share of the variance of the
    references' cell colours that one affine colour map of their source frames' cell mean colours
    leaves unexplained (least squares over every keyframe's cells, each cell once). About 0 for a
    pixelation, plain or graded; high where each cell is recoloured by a non-linear rule (a palette).

    targets: (P, 3, H, W); sources: P tensors (1, C >= 3, H, W); both in [-1, 1]."""
    cells = CellMap.of(lattice.cell_index(*targets.shape[-2:]))
    r = cell_colours(targets[:, :3].double(), cells).reshape(-1, 3)
    x = cell_colours(torch.cat([src[:, :3] for src in sources]).double(), cells).reshape(-1, 3)
    design = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    residual = r - design @ torch.linalg.lstsq(design, r).solution
    total = ((r - r.mean(0)) ** 2).sum()
    return float((residual ** 2).sum() / total) if total > 0 else 0.0


def within_cell_share(targets: torch.Tensor, lattice: Lattice) -> float:
    """The share of the references' variance (about each reference's mean colour) left inside the
    lattice's cells: 0 where every cell is flat in every reference. targets: (P, 3, H, W)."""
    x = targets[:, :3].double()
    cells = CellMap.of(lattice.cell_index(*x.shape[-2:]))
    total = float(((x - x.mean((2, 3), keepdim=True)) ** 2).sum())
    return float(((x - cell_mean(x, cells)) ** 2).sum()) / total if total > 0 else 0.0
