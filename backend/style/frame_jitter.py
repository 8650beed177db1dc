"""Frame-locked jitter: rows (or columns) of a look moved sideways by their own fixed amounts.

A worn videotape's tracking jitter, a scan-line glitch or an interlacing comb moves each row of the
picture left or right by an amount that belongs to the row, not to the content: the same row moves
the same way on every frame. A fully convolutional translator cannot know which row a patch came
from, so it learns the rows' average and draws every edge straight where the look draws a comb. The
screen (``backend.style.screen``) and the texture layers add a frame-locked pattern; this one moves
pixels.

The shifts are read off each keyframe: its reference against its source frame (the photograph it
was painted over), row by row. Each row's horizontal gradient magnitude (magnitudes, so a look that
inverts tones still matches) is compared with the source's at sub-pixel shifts, and the best shift
of every row that has structure enough to show one is kept (``JITTER_MIN_PEAK``). Columns are read
the same way with the vertical gradient. A look that does not move its rows gives shifts scattered
around one common value (a look may move the whole picture, which the translator learns alone), so
the jitter is kept only where the rows' shifts spread (``JITTER_MIN_SPREAD``) and the left and
right halves of the frame read the same shift for the same row (``JITTER_MIN_AGREEMENT``).

Fitting takes the jitter out of the references (``FrameJitter.remove``) and the translator learns
the look without it; ``StyleTranslator.forward`` puts it back on every whole frame it renders
(``FrameJitter.apply``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

JITTER_MAX_SHIFT = 3.0
"""Largest shift looked for (px); a row moved further is a distortion, not a jitter."""

JITTER_STEP = 0.125
"""Spacing of the shifts tried (px)."""

JITTER_MIN_PEAK = 0.5
"""A row's (or column's) shift is read only where its best normalised correlation with the source
reaches this: rows without structure (a flat wall) show no shift and keep 0."""

JITTER_MIN_SPREAD = 0.25
"""Mean distance (px) of the read shifts from their median at and above which the rows move by
their own amounts. A mean, not a median: where every second row moves (an interlacing fault) the
median distance is 0."""

JITTER_MIN_AGREEMENT = 0.7
"""Correlation, over the rows read in both halves of the frame, between the shifts read in the left
half and in the right half (each from the common shift), at and above which the rows move by their
own amounts: a jitter moves a whole row alike, while the shifts a look's redrawn edges suggest
(an outline drawn beside an edge, a tone boundary that moved) differ along a row."""

JITTER_MIN_BOTH = 16
"""Fewest rows read (and read in both halves) that can show a spread and the halves' agreement."""


@dataclass(frozen=True)
class JitterEvidence:
    """What ``read_shifts`` found along one axis: the shift of every line (px, 0 where unread), how
    many lines were read, their spread around the common shift, and how well the two halves of
    the lines agree on each line's own shift (a correlation, over lines read in both halves)."""

    shifts: torch.Tensor
    read: int
    spread: float
    agreement: float

    @property
    def found(self) -> bool:
        return self.spread >= JITTER_MIN_SPREAD and self.agreement >= JITTER_MIN_AGREEMENT

    def to_dict(self) -> dict[str, float | int | bool]:
        return {"read": self.read, "spread": round(self.spread, 3), "agreement": round(self.agreement, 3),
                "found": self.found}


def _grey(images: torch.Tensor) -> torch.Tensor:
    """(K, 3, H, W) in [-1, 1] -> (K, H, W) float32 grey."""
    return images[:, :3].float().mean(1)


def _row_profiles(grey: torch.Tensor) -> torch.Tensor:
    """(K, H, W) -> (K, H, W) horizontal gradient magnitude (central differences, 0 at the ends)."""
    g = torch.zeros_like(grey)
    g[..., 1:-1] = (grey[..., 2:] - grey[..., :-2]).abs() * 0.5
    return g


def _shifted(rows: torch.Tensor, shift: float) -> torch.Tensor:
    """(..., W) rows sampled at x + ``shift`` (linear; the end values beyond the ends)."""
    w = rows.shape[-1]
    x = (torch.arange(w, dtype=rows.dtype, device=rows.device) + shift).clamp(0, w - 1)
    lo = x.floor().long().clamp(max=w - 1)
    hi = (lo + 1).clamp(max=w - 1)
    t = x - lo.to(x.dtype)
    return rows[..., lo] * (1 - t) + rows[..., hi] * t


def _correlations(src: torch.Tensor, ref: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Normalised correlation, pooled over keyframes, of each row of ``src`` (K, H, W) with the
    same row of ``ref`` sampled at x + s for every s of ``shifts`` (S,) -> (S, H); the outer
    ``JITTER_MAX_SHIFT`` columns are left out, so every shift compares the same pixels."""
    m = int(JITTER_MAX_SHIFT) + 1
    a = src[..., m:-m]
    a = a - a.mean(-1, keepdim=True)
    out = []
    for s in shifts.tolist():
        b = _shifted(ref, s)[..., m:-m]
        b = b - b.mean(-1, keepdim=True)
        num = (a * b).sum(-1).sum(0)
        den = (a.square().sum(-1).sum(0) * b.square().sum(-1).sum(0)).sqrt().clamp(min=1e-9)
        out.append(num / den)
    return torch.stack(out)


def _best_shifts(src: torch.Tensor, ref: torch.Tensor,
                 shifts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's best shift and whether it was read (peak >= ``JITTER_MIN_PEAK``): (H,), (H,)."""
    best, at = _correlations(src, ref, shifts).max(0)  # a row moved right by s matches at x + s
    read = best >= JITTER_MIN_PEAK
    return torch.where(read, shifts[at], torch.zeros_like(best)), read


def read_shifts(sources: torch.Tensor, references: torch.Tensor) -> JitterEvidence:
    """Each row's horizontal shift of the references against their sources.

    Args:
        sources: (K, 3, H, W) the frames the references were painted over, [-1, 1].
        references: (K, 3, H, W) the references, [-1, 1], frame-aligned with the sources.
    Returns:
        ``JitterEvidence`` with ``shifts`` (H,) in px: the reference's row y shows the source's row
        y moved right by ``shifts[y]`` (0 for rows that were not read).
    """
    if sources.shape[-2:] != references.shape[-2:] or sources.shape[0] != references.shape[0]:
        raise ValueError(f"sources {tuple(sources.shape)} and references {tuple(references.shape)} "
                         f"must be frame-aligned pairs")
    src, ref = _row_profiles(_grey(sources)), _row_profiles(_grey(references))
    steps = round(JITTER_MAX_SHIFT / JITTER_STEP)
    shifts = torch.arange(-steps, steps + 1, dtype=torch.float32) * JITTER_STEP
    found, read = _best_shifts(src, ref, shifts)
    n = int(read.sum())
    if n < JITTER_MIN_BOTH:
        return JitterEvidence(torch.zeros_like(found), n, 0.0, 0.0)
    common = found[read].median()
    spread = float((found[read] - common).abs().mean())
    half = src.shape[-1] // 2
    left, read_left = _best_shifts(src[..., :half], ref[..., :half], shifts)
    right, read_right = _best_shifts(src[..., half:], ref[..., half:], shifts)
    both = read_left & read_right
    agreement = 0.0
    if int(both.sum()) >= JITTER_MIN_BOTH:
        a, b = left[both] - common, right[both] - common
        a, b = a - a.mean(), b - b.mean()
        agreement = float((a * b).sum() / (a.norm() * b.norm()).clamp(min=1e-9))
    return JitterEvidence(found, n, spread, agreement)


@dataclass(frozen=True)
class FrameJitter:
    """Frame-locked shifts (px) of every row (along x) and every column (along y) of a look, for
    frames of ``len(rows)`` x ``len(cols)`` px: the look shows the pixel at (x - rows[y],
    y - cols[x]) at (x, y)."""

    rows: tuple[float, ...]
    cols: tuple[float, ...]

    @property
    def size(self) -> tuple[int, int]:
        return len(self.rows), len(self.cols)

    def _grid(self, like: torch.Tensor, sign: float) -> torch.Tensor:
        h, w = self.size
        if like.shape[-2:] != (h, w):
            raise ValueError(f"a jitter read on {w}x{h} px frames cannot move "
                             f"{like.shape[-1]}x{like.shape[-2]} px ones")
        rows = torch.tensor(self.rows, dtype=torch.float32, device=like.device)
        cols = torch.tensor(self.cols, dtype=torch.float32, device=like.device)
        x = torch.arange(w, dtype=torch.float32, device=like.device)[None, :] - sign * rows[:, None]
        y = torch.arange(h, dtype=torch.float32, device=like.device)[:, None] - sign * cols[None, :]
        grid = torch.stack([x * 2 / (w - 1) - 1, y * 2 / (h - 1) - 1], -1)  # (H, W, 2), align_corners
        return grid[None].expand(like.shape[0], -1, -1, -1)

    def apply(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) frames without the jitter -> with it (bilinear; the border repeated)."""
        out = F.grid_sample(frames.float(), self._grid(frames, 1.0), mode="bilinear", padding_mode="border",
                            align_corners=True)
        return out.to(frames.dtype)

    def remove(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) frames with the jitter -> without it (``apply``'s inverse for shifts that
        change slowly along the other axis, as row and column shifts do)."""
        out = F.grid_sample(frames.float(), self._grid(frames, -1.0), mode="bilinear", padding_mode="border",
                            align_corners=True)
        return out.to(frames.dtype)

    def to_dict(self) -> dict[str, list[float]]:
        return {"rows": [round(v, 4) for v in self.rows], "cols": [round(v, 4) for v in self.cols]}

    @classmethod
    def from_dict(cls, d: dict) -> FrameJitter:
        """Rebuild from ``to_dict``; ValueError for anything else."""
        if not (isinstance(d, dict) and isinstance(d.get("rows"), list) and isinstance(d.get("cols"), list)):
            raise ValueError("a frame jitter is a dict of 'rows' and 'cols' shift lists")
        try:
            rows, cols = tuple(float(v) for v in d["rows"]), tuple(float(v) for v in d["cols"])
        except (TypeError, ValueError) as e:
            raise ValueError(f"frame jitter shifts must be numbers: {e}") from e
        if len(rows) < 2 or len(cols) < 2 or not all(abs(v) <= JITTER_MAX_SHIFT for v in rows + cols):
            raise ValueError(f"a frame jitter needs shifts of at most {JITTER_MAX_SHIFT} px for 2 or more "
                             f"rows and columns")
        return cls(rows, cols)


def find_frame_jitter(sources: torch.Tensor, references: torch.Tensor
                      ) -> tuple[FrameJitter | None, JitterEvidence, JitterEvidence]:
    """The keyframes' frame-locked jitter, or None where neither their rows nor their columns move
    by their own amounts; with the evidence along rows and along columns. ``sources`` and
    ``references``: (K, 3, H, W) frame-aligned pairs in [-1, 1]."""
    along_rows = read_shifts(sources, references)
    along_cols = read_shifts(sources.transpose(-1, -2), references.transpose(-1, -2))
    if not (along_rows.found or along_cols.found):
        return None, along_rows, along_cols
    h, w = sources.shape[-2:]
    rows = along_rows.shifts if along_rows.found else torch.zeros(h)
    cols = along_cols.shifts if along_cols.found else torch.zeros(w)
    return FrameJitter(tuple(rows.tolist()), tuple(cols.tolist())), along_rows, along_cols
