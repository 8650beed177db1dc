"""Frame-locked mosaics of any cell shape: small flat cells that stay put in the frame.

A crystallise filter, a low-poly triangulation over a fixed point set, a hexagonal or a
stained-glass mosaic paint each cell of a fixed partition of the frame one colour. Where the
cells lie on a regular grid, ``backend.style.lattice`` finds their period; other cell shapes have
none. A convolutional translator cannot make its output constant over a cell it does not know,
so such cells come out as a blur of the content. This module reads the cells themselves from the
references: a mosaic is a reference whose pixels nearly all lie in small regions of one exact
colour. The translator's output is then averaged over those cells, as over a lattice's.
A lattice found in the same references is kept only where its cells are flat in them
(``lattice.within_cell_share`` at most ``LATTICE_MAX_WITHIN``): a hexagonal mosaic has rows and
columns of cells, and a rectangular lattice read from them cuts its hexagons.

Detection, per reference (uint8 levels; 4-connected regions of one exact colour):
- the ``flat`` share: pixels in regions of at least ``min_cell`` pixels (a dither, a screen or a
  smooth picture leaves most pixels in regions of one or two);
- the ``big`` share: pixels in regions with more than ``big_cell`` of the frame inside them
  (posterised or cel-shaded fills, whose regions follow the content and span whole areas of it).
  A pixel is inside its region when its 4 neighbours are in it too, so a network of thin lines
  between the cells (a stained glass's lead, a mosaic's grout), one region of one colour, is no
  fill however far it reaches. Pure black and pure white regions are not counted: they are where
  a look clipped (a mosaic's neighbouring cells in a dark background), not fills it drew;
- ``walls_on_edges``: how much the source frame under the reference changes across the cells'
  walls (neighbouring pixels in two cells), over how much it changes between any two neighbours.
  Walls fixed in the frame cross the picture wherever they are (about 1); the cells of a
  superpixel mosaic are drawn along the picture's edges, move with it, and are not frame-locked.
A frame-locked mosaic has a high ``flat`` and a low ``big`` share, and walls that do not follow
the picture's edges. With several keyframes the cells are the overlay of every reference's: a
pixel's cell is the tuple of its regions, so cells where the references disagree are split, never
merged. Neighbouring cells that every keyframe paints one colour are one region; where the cells
are of about one size, a region of several cells' area is cut back into cells (``split_merged``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

LATTICE_MAX_WITHIN = 0.002
"""``within_cell_share`` up to which a lattice found beside a mosaic is the look's grid: 0.0 for
pixelations, palettes and tiles on three subjects; 0.016 for the rectangular lattice a hexagonal
pixelation showed once."""


@dataclass(frozen=True)
class PartitionSettings:
    """Thresholds of ``find_partition``, read on every look of ``backend.looks`` and
    ``tests/edit/unseen_looks.py`` on three subjects (docs/editing.md, "Five more looks written
    before their first run, and frame-locked mosaics of any cell shape").

    Attributes:
        min_cell: regions of fewer pixels are not flat cells.
        min_flat: the share of pixels in flat cells from which a reference is a mosaic.
        big_cell: a region of more than this share of the frame is a fill, not a cell.
        max_big: the share of pixels in fills (neither pure black nor pure white) up to which a
            reference is a mosaic: the mosaics read 0-0.074, every other look 0.19 or more, on
            frames 0 and 40 of three subjects.
        max_walls_on_edges: from this ``walls_on_edges`` on, the cells follow the picture (frame-locked
            cells read 0.97-1.21, SLIC superpixels 1.62-1.68, on two frames of three subjects).
    """

    min_cell: int = 3
    min_flat: float = 0.9
    big_cell: float = 1 / 64
    max_big: float = 0.1
    max_walls_on_edges: float = 1.4


@dataclass(frozen=True)
class PartitionEvidence:
    """What ``find_partition`` read in one reference: ``flat`` and ``big`` shares of its pixels,
    the number of ``cells`` (regions), ``walls_on_edges`` (None without a source frame) and
    whether it is a frame-locked mosaic (``found``)."""

    flat: float
    big: float
    cells: int
    walls_on_edges: float | None
    found: bool

    def to_dict(self) -> dict:
        walls = None if self.walls_on_edges is None else round(self.walls_on_edges, 3)
        return {"flat": round(self.flat, 4), "big": round(self.big, 4), "cells": self.cells,
                "walls_on_edges": walls, "found": self.found}


@dataclass(frozen=True, eq=False)
class FramePartition:
    """Cells of any shape fixed in the frame: ``labels`` (H, W) int64, each pixel's cell in the
    frame it was found in, numbered densely from 0. Compared by identity (it keys caches)."""

    labels: torch.Tensor

    @property
    def size(self) -> tuple[int, int]:
        return int(self.labels.shape[0]), int(self.labels.shape[1])

    @property
    def cells(self) -> int:
        return int(self.labels.max()) + 1

    def cell_index(self, h: int, w: int) -> torch.Tensor:
        """(h * w,) int64 cell of each pixel of an (h, w) frame (row-major), numbered densely from 0:
        the cells scale with the frame like the look does (nearest pixel centre)."""
        sh, sw = self.size
        ys = ((torch.arange(h, dtype=torch.float64) + 0.5) * sh / h).floor().long().clamp(0, sh - 1)
        xs = ((torch.arange(w, dtype=torch.float64) + 0.5) * sw / w).floor().long().clamp(0, sw - 1)
        picked = self.labels[ys[:, None], xs[None, :]].reshape(-1)
        return torch.unique(picked, return_inverse=True)[1]

    def to_tensor(self) -> torch.Tensor:
        """What a style file stores: the (H, W) int32 labels (CPU)."""
        return self.labels.to(torch.int32).cpu().clone()

    @classmethod
    def from_tensor(cls, labels: object) -> FramePartition:
        """Raises ValueError for anything but an (H, W) integer tensor of labels 0..n-1, every one used."""
        if not isinstance(labels, torch.Tensor) or labels.dim() != 2 or labels.dtype.is_floating_point \
                or labels.numel() == 0:
            raise ValueError("a partition must be an (H, W) integer tensor of cell labels")
        labels = labels.long()
        n = int(labels.max()) + 1
        if int(labels.min()) != 0 or torch.unique(labels).numel() != n:
            raise ValueError(f"partition labels must number the cells 0..n-1 densely, got {n} labels "
                             f"from {int(labels.min())}")
        return cls(labels)


def _regions(reference: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W) int64 labels of its 4-connected regions of one uint8 colour."""
    from skimage.measure import label

    levels = ((reference.detach().double().cpu().clamp(-1, 1) + 1) * 127.5).round().long().numpy()
    colour = levels[0] * 65536 + levels[1] * 256 + levels[2] + 1  # 0 would be skimage's background
    return label(colour, connectivity=1, background=0).astype(np.int64) - 1


def _inside(regions: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose 4 neighbours inside the frame are in their region."""
    down, right = np.diff(regions, axis=0) == 0, np.diff(regions, axis=1) == 0
    inside = np.ones(regions.shape, bool)
    inside[:-1] &= down
    inside[1:] &= down
    inside[:, :-1] &= right
    inside[:, 1:] &= right
    return inside


def walls_on_edges(regions: np.ndarray, source: torch.Tensor) -> float:
    """The source's mean absolute change across the walls between ``regions`` (H, W) over its mean
    change between any two 4-neighbours (1: walls placed without regard to the picture).
    source: (C >= 3, H, W)."""
    grey = source[:3].detach().double().cpu().mean(0).numpy()
    change = [np.abs(np.diff(grey, axis=a)) for a in (0, 1)]
    wall = [np.diff(regions, axis=a) != 0 for a in (0, 1)]
    across = sum(float(c[w].sum()) for c, w in zip(change, wall, strict=True))
    n_walls = sum(int(w.sum()) for w in wall)
    mean_change = sum(float(c.sum()) for c in change) / sum(c.size for c in change)
    return across / n_walls / mean_change if n_walls and mean_change > 0 else 1.0


def read_partition(reference: torch.Tensor, source: torch.Tensor | None = None,
                   settings: PartitionSettings | None = None) -> tuple[np.ndarray, PartitionEvidence]:
    """One (3, H, W) reference in [-1, 1] (and the (C >= 3, H, W) frame it was made from, or None)
    -> its regions (H, W) int64 and what they say."""
    s = settings or PartitionSettings()
    regions = _regions(reference)
    area = np.bincount(regions.ravel())[regions]
    flat = float((area >= s.min_cell).mean())
    inner = np.bincount(regions[_inside(regions)], minlength=int(regions.max()) + 1)[regions]
    levels = ((reference[:3].detach().double().cpu().clamp(-1, 1) + 1) * 127.5).round().numpy()
    clipped = (levels == 0).all(0) | (levels == 255).all(0)
    big = float(((inner > s.big_cell * regions.size) & ~clipped).mean())
    walls = None if source is None else walls_on_edges(regions, source)
    found = flat >= s.min_flat and big <= s.max_big and (walls is None or walls < s.max_walls_on_edges)
    return regions, PartitionEvidence(flat, big, int(regions.max()) + 1, walls, found)


def find_partition(targets: torch.Tensor, sources: list[torch.Tensor] | None = None,
                   settings: PartitionSettings | None = None
                   ) -> tuple[FramePartition | None, list[PartitionEvidence]]:
    """The frame-locked cells every reference shows, or None where any is not such a mosaic.

    targets: (P, C >= 3, H, W) references in [-1, 1] (one frame grid); sources: P tensors
    (1, C >= 3, H, W), each reference's source frame, or None (the walls are then not checked).
    Returns the partition (the overlay of every reference's cells) and each reference's evidence."""
    srcs: list[torch.Tensor | None] = [None] * len(targets) if sources is None else [x[0] for x in sources]
    read = [read_partition(t[:3], src, settings) for t, src in zip(targets, srcs, strict=True)]
    evidence = [e for _, e in read]
    if not read or not all(e.found for e in evidence):
        return None, evidence
    stacked = np.stack([r.ravel() for r, _ in read], axis=1)
    overlay = np.unique(stacked, axis=0, return_inverse=True)[1].reshape(targets.shape[-2:])
    overlay = split_merged(overlay)
    return FramePartition(torch.from_numpy(overlay.astype(np.int64))), evidence


SPLIT_AREA = 1.7
"""A region over this many times the median cell's area is taken for neighbouring cells that the
references painted one colour (``split_merged``): two hexagons are 2x the median."""
SPLIT_SPREAD = 0.3
"""Only cells of about one size are split: where the middle half of the cells' areas spans more
than this share of the median, a big region is as likely a big cell (the crystals of a random
point set, a low-poly's triangles)."""


def split_merged(regions: np.ndarray, rounds: int = 10) -> np.ndarray:
    """(H, W) int labels -> (H, W) int64 labels numbered densely from 0, each region of over
    ``SPLIT_AREA`` times the median area of the regions with an inner pixel (``_inside``: not a
    line) cut into round(area / median) cells by k-means on its pixels' positions (``rounds``
    Lloyd steps from farthest-point seeds). Neighbouring cells of one colour in every keyframe are
    one region; another frame shows them apart, and one mean over both is wrong there by the
    difference. Regions without an inner pixel (lead, grout) stay whole, and so does every region
    where the cells are of many sizes (``SPLIT_SPREAD``)."""
    labels = np.unique(regions.ravel(), return_inverse=True)[1].reshape(regions.shape).astype(np.int64)
    area = np.bincount(labels.ravel())
    solid = np.bincount(labels[_inside(labels)], minlength=len(area)) > 0
    if not solid.any():
        return labels
    q1, median, q3 = np.percentile(area[solid], [25, 50, 75])
    if q3 - q1 > SPLIT_SPREAD * median:  # cells of many sizes: a big one is as likely one cell
        return labels
    nxt = int(labels.max()) + 1
    for region in np.nonzero(solid & (area > SPLIT_AREA * median))[0]:
        ys, xs = np.nonzero(labels == region)
        points = np.stack([ys, xs], 1).astype(np.float64)
        k = round(len(points) / median)
        if k < 2:
            continue
        seeds = [int(np.argmin(((points - points.mean(0)) ** 2).sum(1)))]
        dist = ((points - points[seeds[0]]) ** 2).sum(1)
        for _ in range(k - 1):
            seeds.append(int(np.argmax(dist)))
            dist = np.minimum(dist, ((points - points[seeds[-1]]) ** 2).sum(1))
        centres = points[seeds]
        for _ in range(rounds):
            member = ((points[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
            centres = np.stack([points[member == j].mean(0) if (member == j).any() else centres[j]
                                for j in range(k)])
        member = ((points[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        labels[ys, xs] = np.where(member == 0, region, nxt + member - 1)
        nxt += k - 1
    return np.unique(labels.ravel(), return_inverse=True)[1].reshape(labels.shape).astype(np.int64)
