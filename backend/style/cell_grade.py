"""The colour grade of a graded mosaic: each frame-locked cell one affine colour map of its mean.

A pixelation, a hexagonal or a low-poly mosaic, a stained glass's panes paint each cell of a
fixed partition of the frame with the mean colour of the picture under it, graded (saturated,
warmed, contrast raised). The look applied to the unstyled render then takes each cell's colour
from the render's own cell mean; a network fitted on one keyframe must learn that grade from a few
hundred cells, and each cell's error in it is the styled frame's error. This module reads the
grade from the keyframes exactly: a least-squares affine colour map from the source frames' cell
means to the references' cell colours, fitted again on the cells it explains until they stop
changing. Where the map reaches past the colours the references' cells span, the look clips
there, and so does the grade. Cells the map does not explain in some keyframe are *drawn*: the
translator's output stays there, except where most of their pixels share one colour in every
keyframe, the mosaic's *ink* (a stained glass's lead, a tile's grout): those cells take it. A
mosaic draws its ink over its cells' edges after filling them, so the cells' means share the
picture under the ink with the cells beside it, on the ``SIDES`` the keyframes fit best. The
look is graded when the explained cells hold ``min_graded`` of the pixels and their colours are
about as many as they are (a palette's snapped colours are few: a pixel art, a console's four
greens).

Rendering, a graded cell of a frame takes ``clamp(A @ mean + b)`` of the render's mean under it,
an inked cell the ink, and the network's output is kept on the other drawn cells. The map, the
ink, the sides and what each pixel's cell takes (at the size the cells were found) are stored in
the style file.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from backend.style.lattice import CellMap, cell_colours

CLIPPED = 1 / 255
"""A reference's cell colour within this of the range the references span, on a channel, is
clipped there: that channel says nothing of the map's slope."""


MIN_INK = 0.5
"""The share of the drawn cells' pixels one colour must paint in every keyframe to be the mosaic's
ink (a stained glass's lead is 0.8-0.9 of them, a tile's grout 0.6-0.9)."""
MIN_INK_FRAME = 0.05
"""The share of the whole frame the ink's cells must hold besides (lead and grout hold 0.2-0.25
of it; the few clipped cells a grade may leave, which one colour can paint, under 0.01)."""


SPREAD = 4.0
"""A cell whose error is over this many times the median pixel's (and over the tolerance) is
drawn: a stained glass's panes miss their grade by 0.01-0.03 (their means run under the lead
lines), its lead by 0.3 and more."""


@dataclass(frozen=True)
class CellGradeSettings:
    """Thresholds of ``find_cell_grade``.

    Attributes:
        tolerance: a cell is explained when the map puts its colour within this of the reference's
            on every channel, or within ``SPREAD`` times the median pixel's error where that is
            more, up to ``max_tolerance``; [-1, 1] units (0.03: about 4 of 255 levels; a look's
            own rounding is under 1).
        max_tolerance: the most a graded cell may be off (0.08: about 10 levels).
        min_graded: the share of the pixels the explained cells must hold in every keyframe.
        min_distinct: distinct colours per explained cell from which the cells are graded, not
            snapped to a palette.
        rounds: fits at most, each on the cells the last one explained.
    """

    tolerance: float = 0.03
    max_tolerance: float = 0.08
    min_graded: float = 0.6
    min_distinct: float = 0.25
    rounds: int = 5


@dataclass(frozen=True)
class CellGradeEvidence:
    """What ``find_cell_grade`` read: the share of the pixels in explained cells (``graded``, the
    smallest over the keyframes), distinct colours per explained cell (``distinct``, the smallest:
    a palette's cells share a few colours, a grade's about as many as there are cells), the RMS of
    the map's error on the cells it grades (``rms``, [-1, 1] units), the share of the frame painted
    the mosaic's ink (``ink``; 0.0: none) and whether the look is graded (``found``)."""

    graded: float
    distinct: float
    rms: float
    ink: float
    found: bool

    def to_dict(self) -> dict:
        return {"graded": round(self.graded, 4), "distinct": round(self.distinct, 4),
                "rms": round(self.rms, 5), "ink": round(self.ink, 4), "found": self.found}


DRAWN, GRADED, INKED = 0, 1, 2
"""What a pixel's cell takes (``CellGrade.kind``): the network's output, the grade of the frame's
mean under it, or the mosaic's ink (a stained glass's lead, a tile's grout: one colour whatever
the picture)."""


@dataclass(frozen=True, eq=False)
class CellGrade:
    """``matrix`` (3, 4) float32: a graded cell's colour is ``matrix[:, :3] @ mean + matrix[:, 3]``,
    clamped per channel to [``low``, ``high``] (each (3,) float32, [-1, 1] units); ``ink`` (3,)
    float32 the inked cells' colour; ``kind`` (H, W) uint8 at the size the cells were found, what
    each pixel's cell takes (``DRAWN``, ``GRADED`` or ``INKED``); ``sides``: which cells beside an
    inked pixel share the picture under it in their means (one of ``SIDES``; None: none)."""

    matrix: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    ink: torch.Tensor
    kind: torch.Tensor
    sides: str | None = None

    def kinds(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """(h * w,) uint8: ``kind`` at an (h, w) frame by nearest pixel centre (as the cells scale)."""
        gh, gw = self.kind.shape
        ys = ((torch.arange(h, dtype=torch.float64) + 0.5) * gh / h).floor().long().clamp(0, gh - 1)
        xs = ((torch.arange(w, dtype=torch.float64) + 0.5) * gw / w).floor().long().clamp(0, gw - 1)
        return self.kind[ys[:, None], xs[None, :]].reshape(-1).to(device)

    def colours(self, means: torch.Tensor) -> torch.Tensor:
        """(..., 3) cell mean colours -> (..., 3) graded colours, in [-1, 1] units."""
        m = self.matrix.to(means)
        out = means @ m[:, :3].T + m[:, 3]
        return torch.maximum(torch.minimum(out, self.high.to(means)), self.low.to(means))

    def apply(self, out: torch.Tensor, image: torch.Tensor, cells: CellMap, kinds: torch.Tensor,
              shares: Shares | None) -> torch.Tensor:
        """The translator's ``out`` (B, 3, H, W) with each graded cell replaced by the grade of
        ``image``'s (B, >= 3, H, W) mean colour under it and each inked one by the ink;
        ``kinds``: (H * W,) uint8, ``self.kinds``; ``shares``: ``ink_shares`` of them."""
        b, _, h, w = out.shape
        picture = image[:, :3].float().clamp(-1, 1)  # as the frame a user sees, which the look is of
        graded = self.colours(shared_means(picture, cells, shares))[:, cells.index]  # (B, H * W, 3)
        graded = graded.reshape(b, h, w, 3).permute(0, 3, 1, 2).to(out.dtype)
        kinds = kinds.reshape(1, 1, h, w)
        out = torch.where(kinds == GRADED, graded, out)
        return torch.where(kinds == INKED, self.ink.to(out).reshape(1, 3, 1, 1), out)

    def to_dict(self) -> dict:
        """What a style file stores (CPU tensors)."""
        return {"matrix": self.matrix.float().cpu().clone(), "low": self.low.float().cpu().clone(),
                "high": self.high.float().cpu().clone(), "ink": self.ink.float().cpu().clone(),
                "kind": self.kind.to(torch.uint8).cpu().clone(), "sides": self.sides}

    @classmethod
    def from_dict(cls, d: object) -> CellGrade:
        """Raises ValueError for anything but ``to_dict``'s shapes and finite values."""
        names = ("matrix", "low", "high", "ink", "kind")
        if not isinstance(d, dict):
            raise ValueError(f"a cell grade must be a dict of {', '.join(names)}")
        parts = [d.get(k) for k in names]
        if not all(isinstance(p, torch.Tensor) for p in parts):
            raise ValueError("a cell grade needs tensors matrix (3, 4), low, high and ink (3,), kind (H, W)")
        matrix, low, high, ink, kind = parts
        if tuple(matrix.shape) != (3, 4) or any(tuple(t.shape) != (3,) for t in (low, high, ink)) \
                or kind.dim() != 2 or kind.numel() == 0:
            shapes = ", ".join(str(tuple(t.shape)) for t in parts)
            raise ValueError("a cell grade's shapes are matrix (3, 4), low, high and ink (3,), kind (H, W); "
                             f"got {shapes}")
        finite = all(bool(torch.isfinite(t.float()).all()) for t in (matrix, low, high, ink))
        if not finite or bool((low > high).any()):
            raise ValueError("a cell grade's matrix, range and ink must be finite, low <= high")
        if kind.dtype.is_floating_point or int(kind.min()) < DRAWN or int(kind.max()) > INKED:
            raise ValueError(f"a cell grade's kinds are integers {DRAWN}-{INKED}")
        sides = d.get("sides")
        if sides is not None and sides not in SIDES:
            raise ValueError(f"a cell grade's sides are one of {', '.join(SIDES)} or None, got {sides!r}")
        return cls(matrix.float(), low.float(), high.float(), ink.float(), kind.to(torch.uint8), sides)


Shares = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""Each inked pixel's share in the cells beside it: (M,) pixel, (M,) cell, (M,) weight (``ink_shares``)."""


def shared_means(image: torch.Tensor, cells: CellMap, shares: Shares | None) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C): each cell's mean colour of ``image``, with each inked pixel
    shared among the other cells beside it (``ink_shares``; None: no ink). A mosaic fills its
    cells from the picture first and draws its lead or grout over their edges: the picture under a
    line was part of the cells it borders."""
    means = cell_colours(image, cells)
    if shares is None or not len(shares[0]):
        return means
    b, c, h, w = image.shape
    pix, cell, weight = shares
    flat = image.permute(0, 2, 3, 1).reshape(b, h * w, c)
    n = cells.count.shape[0]
    sums = means * cells.count.to(means)[None, :, None]
    sums = sums.index_add(1, cell, flat[:, pix] * weight.to(flat)[None, :, None])
    count = cells.count.to(means).index_add(0, cell, weight.to(means))
    return sums / count[None, :n, None]


SIDES = ("both", "after", "before")
"""Which cells beside an inked pixel share the picture under it (``ink_shares``): all four
neighbours' cells, only the cells below and to the right (a line drawn on each cell's first row
and column), or only those above and to the left (a line on each cell's last). Read off the
keyframes: the one whose grade fits them best."""


def ink_shares(cells: CellMap, kinds: torch.Tensor, h: int, w: int,
               sides: str | None = "both") -> Shares | None:
    """Each inked pixel's share in the other cells beside it (4 neighbours, those of ``sides``):
    (M,) pixel, (M,) cell, (M,) weight (1 / the number of such cells), from an (h, w) frame's
    ``cells`` and pixel ``kinds`` (H * W,); None where no pixel is inked or ``sides`` is None."""
    index, kinds = cells.index, kinds.reshape(-1)
    if sides is None or not bool((kinds == INKED).any()):
        return None
    pos = torch.arange(h * w, device=index.device).reshape(h, w)
    inked = (kinds == INKED).reshape(h, w)
    every, first, last = slice(None), slice(1, None), slice(None, -1)
    before = [((first, every), (last, every)), ((every, first), (every, last))]  # above, to the left
    after = [((last, every), (first, every)), ((every, last), (every, first))]  # below, to the right
    pairs = []
    for a, b in {"both": before + after, "after": after, "before": before}[sides]:
        take = inked[a] & ~inked[b]  # an inked pixel and its neighbour on a cell
        pairs.append(torch.stack([pos[a][take], index[pos[b][take]]], 1))
    pairs = torch.unique(torch.cat(pairs), dim=0)  # each (pixel, cell) once
    if not len(pairs):
        return None
    pix, cell = pairs[:, 0], pairs[:, 1]
    per_pixel = torch.bincount(pix, minlength=h * w).double()
    return pix, cell, 1.0 / per_pixel[pix]


def _affine(x: torch.Tensor, r: torch.Tensor, weight: torch.Tensor, use: torch.Tensor) -> torch.Tensor:
    """Weighted least squares, one output channel at a time over the cells ``use`` (N, 3) bool
    marks for it: x (N, 3), r (N, 3), weight (N,) -> the (3, 4) map with a constant."""
    design = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1) * weight.sqrt()[:, None]
    rows = []
    for k in range(3):
        a, b = design[use[:, k]], (r[:, k] * weight.sqrt())[use[:, k]]
        rows.append(torch.linalg.lstsq(a, b[:, None]).solution[:, 0] if len(a) >= 8 else
                    torch.eye(3, 4, dtype=x.dtype)[k])
    return torch.stack(rows)


def _weighted_median(values: torch.Tensor, weight: torch.Tensor) -> float:
    """The median of ``values`` with each counted ``weight`` times (both (N,))."""
    order = values.argsort()
    cum = weight[order].cumsum(0)
    return float(values[order][int(torch.searchsorted(cum, cum[-1] / 2).clamp_max(len(cum) - 1))])


def _distinct_share(r: torch.Tensor, explained: torch.Tensor) -> float:
    """The fewest distinct uint8 colours per explained cell over the keyframes.
    r: (P, N, 3) cell colours in [-1, 1]; explained: (P, N) bool."""
    shares = []
    for colours, use in zip(r, explained, strict=True):
        levels = ((colours[use].clamp(-1, 1) + 1) * 127.5).round().long()
        shares.append(len(torch.unique(levels, dim=0)) / max(int(use.sum()), 1))
    return min(shares)


def find_cell_grade(targets: torch.Tensor, sources: torch.Tensor, cells: CellMap,
                    settings: CellGradeSettings | None = None) -> tuple[CellGrade | None, CellGradeEvidence]:
    """The affine grade of every keyframe's cells, or None where it explains too few of them.

    targets: (P, 3, H, W) references in [-1, 1]; sources: (P, >= 3, H, W) the frames they were made
    from; cells: the frame's cells (``CellMap`` of H * W pixels, the lattice's or mosaic's). Where
    the cells the grade leaves have an ink, the grade is fitted again on the cells' means with
    the picture under the ink shared among them (``shared_means``), as it is rendered."""
    s = settings or CellGradeSettings()
    p, _, h, w = targets.shape
    r = cell_colours(targets[:, :3].double(), cells)  # (P, N, 3)
    source = sources[:, :3].double().to(targets.device)
    count = cells.count.double()[None].expand(p, -1)
    fitted = _fit(cell_colours(source, cells), r, count, torch.zeros(r.shape[1], dtype=torch.bool), s)
    if fitted is None:
        return None, CellGradeEvidence(0.0, 0.0, float("nan"), 0.0, False)
    ink, inked, ink_share = _ink(r, count, ~fitted[1].all(0))
    kind = torch.full((r.shape[1],), DRAWN, dtype=torch.uint8)
    kind[inked] = INKED
    x, sides = cell_colours(source, cells), None
    if bool(inked.any()):  # the sides whose sharing fits the keyframes' cells best
        best = None
        for option in (*SIDES, None):
            x_option = shared_means(source, cells, ink_shares(cells, kind[cells.index], h, w, option))
            fit = _fit(x_option, r, count, inked, s)
            if fit is None:
                continue
            err = (fit[0].colours(x_option.float()).double() - r).abs().amax(-1).clamp_max(s.max_tolerance)
            miss = float((err * count)[:, ~inked].sum())
            if best is None or miss < best[0]:
                best = (miss, fit, x_option, option)
        if best is not None:
            _, fitted, x, sides = best
    grade, explained, tolerance = fitted
    every = explained.all(0) & ~inked  # a cell explained in every keyframe
    share = float(((explained.double() * count).sum(1) / (h * w)).amin())
    distinct = _distinct_share(r, explained)
    weights = (count * every[None])[..., None]
    rms = float(((grade.colours(x.float()).double() - r) ** 2 * weights).sum().div(
        (3 * weights.sum()).clamp_min(1)).sqrt())
    found = share >= s.min_graded and distinct >= s.min_distinct
    # a bound the map reaches past on some cell is the look's clip; any other only where the
    # references happened to end, so renders may pass it (up to the colour range)
    low, high = grade.low.double(), grade.high.double()
    linear = x @ grade.matrix[:, :3].T.double() + grade.matrix[:, 3].double()
    low = torch.where((linear < low - tolerance).flatten(0, 1).any(0), low, torch.full_like(low, -1.0))
    high = torch.where((linear > high + tolerance).flatten(0, 1).any(0), high, torch.full_like(high, 1.0))
    evidence = CellGradeEvidence(share, distinct, rms, ink_share, found)
    if not found:
        return None, evidence
    kind[every] = GRADED
    kind = kind[cells.index].reshape(h, w)
    return CellGrade(grade.matrix, low.float(), high.float(), ink.float(), kind, sides), evidence


def _fit(x: torch.Tensor, r: torch.Tensor, count: torch.Tensor, apart: torch.Tensor,
         s: CellGradeSettings) -> tuple[CellGrade, torch.Tensor, float] | None:
    """The map from cell means x to colours r (both (P, N, 3); count (P, N) pixels), fitted again
    on the cells it explains until they stop changing, never on the cells ``apart`` (N,) bool.
    Returns the grade (clamped to the colours r spans; no cells marked), which cells it explains
    (P, N) bool and the tolerance that decided it; None with fewer than 8 cells to fit on."""
    low, high = r.amin((0, 1)), r.amax((0, 1))
    # a channel at the references' bound says only that the map reaches past it: not fitted on
    inside = (r > low + CLIPPED) & (r < high - CLIPPED)
    explained = ~apart[None].expand(r.shape[:2])
    found = None
    for _ in range(s.rounds):
        if int(explained.sum()) < 8:
            break
        matrix = _affine(x[explained], r[explained], count[explained], inside[explained])
        grade = CellGrade(matrix.float(), low.float(), high.float(), torch.zeros(3),
                          torch.zeros(1, 1, dtype=torch.uint8))
        err = (grade.colours(x.float()).double() - r).abs().amax(-1)  # (P, N)
        # drawn cells are outliers of the map: a tolerance that shrinks with the typical pixel's error
        typical = _weighted_median(err.flatten(), count.flatten())
        tolerance = min(max(s.tolerance, SPREAD * typical), s.max_tolerance)
        now = (err <= tolerance) & ~apart[None]
        found = (grade, now, tolerance)
        if torch.equal(now, explained):
            break
        explained = now
    return found


def _ink(r: torch.Tensor, count: torch.Tensor,
         drawn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The mosaic's ink among the ``drawn`` cells (N,) bool: the uint8 colour that most of their
    pixels have in every keyframe (r (P, N, 3) cell colours, count (P, N) pixels). Returns the
    ink (3,) in [-1, 1] units, the (N,) cells it paints, and their share of the frame's pixels;
    none (and 0.0) where their share of the drawn pixels is under ``MIN_INK`` or of the frame
    under ``MIN_INK_FRAME``."""
    levels = ((r.clamp(-1, 1) + 1) * 127.5).round().long()  # (P, N, 3)
    code = levels[..., 0] * 65536 + levels[..., 1] * 256 + levels[..., 2]
    same = (code == code[:1]).all(0) & drawn  # one colour in every keyframe
    none = torch.zeros_like(drawn)
    if not bool(same.any()):
        return torch.zeros(3), none, 0.0
    pixels = count[0]
    colours, which = torch.unique(code[0][same], return_inverse=True)
    weight = torch.zeros(len(colours), dtype=pixels.dtype).index_add_(0, which, pixels[same])
    best = int(weight.argmax())
    inked = same & (code[0] == colours[best])
    frame = float(pixels[inked].sum() / pixels.sum())
    if float(pixels[inked].sum() / pixels[drawn].sum()) < MIN_INK or frame < MIN_INK_FRAME:
        return torch.zeros(3), none, 0.0
    return levels[0][inked][0].double() / 127.5 - 1, inked, frame
