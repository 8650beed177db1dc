"""Does a reference line up with the frame it claims to stylise? Edge structure decides.

A look changes colours, textures and how edges are drawn (as outlines, glows, reliefs or hatching),
but keeps where the edges are and which way they run: the silhouette, eyes, brows and mouth. Two
maps of each image (grey, Gaussian pre-blur ``BLUR_SIGMA`` px at 128 px, every sigma scaled with
the size) describe that structure:

* the **orientation field** (``orientation_map``): the gradient's doubled angle weighted by its
  magnitude, smoothed over ``ORIENTATION_SIGMA`` px. Doubling the angle makes a dark-to-light
  edge and a light-to-dark one the same, so an edge drawn as a line, a glow or a relief (two
  opposite edges along the same direction) still matches the photograph's edge;
* the **edge map** (``edge_map``): the gradient magnitude, which also sees where edges are
  strong or weak but depends on how the look draws them.

Then:

* **frame**: normalised cross-correlation (NCC) of the reference's maps with every subject
  frame's maps (inside the face box, where frames differ). When another frame's orientation
  field matches clearly better (by ``FRAME_MARGIN``) than the claimed frame's, and its edge map
  does too (by ``EDGE_MARGIN``), the reference was most likely made from that frame, and the
  error names it. Requiring both keeps a look that redraws its edges (a glow, a relief: the edge
  map alone matched another frame better) from being refused;
* **shift**: the integer shift (up to ``SEARCH`` of the side) that best lines the reference's
  orientation field up with its frame's; a best shift of more than ``MAX_SHIFT`` of the side
  that matches clearly better (by ``SHIFT_MARGIN``) than no shift means the reference was
  cropped or framed differently.

When both are found (a head that moved between frames looks like a shifted reference), the
error names whichever explains the reference better: the other frame unshifted or the claimed
frame shifted.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BLUR_SIGMA = 1.5
"""Pre-blur of the edge map, px at 128 px."""
ORIENTATION_BLUR = 1.0
"""Pre-blur of the orientation field's gradients, px at 128 px."""
ORIENTATION_SIGMA = 2.0
"""Smoothing of the orientation field, px at 128 px (tolerates a look moving an edge by a pixel)."""
MAX_SHIFT = 0.03
SEARCH = 0.1
SHIFT_MARGIN = 0.12
FRAME_MARGIN = 0.1
EDGE_MARGIN = 0.1


class AlignmentError(ValueError):
    """The reference does not line up with its frame; the message names the likely frame or shift."""


@dataclass(frozen=True)
class Alignment:
    """Face-box orientation-field NCC with the claimed frame, the best frame and its NCC, and the
    edge-map NCC of both; the best whole-image (dx, dy) shift in pixels against the claimed frame,
    with its orientation NCC and the NCC without a shift."""

    ncc_frame: float
    best_frame: int
    ncc_best: float
    edge_ncc_frame: float
    edge_ncc_best: float
    shift: tuple[int, int]
    ncc_shifted: float
    ncc_unshifted: float


def _grey(rgb: np.ndarray, sigma_128: float) -> np.ndarray:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    return cv2.GaussianBlur(grey, (0, 0), sigma_128 * rgb.shape[0] / 128.0)


def _normalised(x: np.ndarray) -> np.ndarray:
    x = x - x.mean()
    return x / max(float(np.linalg.norm(x)), 1e-9)


def edge_map(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (1, H, W) float32 gradient magnitude, zero mean, unit norm."""
    grey = _grey(rgb, BLUR_SIGMA)
    return _normalised(np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)))[None]


def orientation_map(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (2, H, W) float32 orientation field, zero mean, unit norm over both.

    Per pixel (gx^2 - gy^2, 2 gx gy) / |g|: a vector of length |g| at twice the gradient's angle,
    so opposite gradients (the two sides of a line) point the same way; then smoothed."""
    grey = _grey(rgb, ORIENTATION_BLUR)
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
    mag = np.hypot(gx, gy) + 1e-6
    sigma = ORIENTATION_SIGMA * rgb.shape[0] / 128.0
    field = [cv2.GaussianBlur(c, (0, 0), sigma) for c in ((gx * gx - gy * gy) / mag, 2 * gx * gy / mag)]
    return _normalised(np.stack(field))


def _ncc_with(maps: np.ndarray, ref: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """NCC of (C, H, W) ``ref`` with each of (T, C, H, W) ``maps`` inside ``box``: (T,)."""
    y0, y1, x0, x1 = box
    r = ref[:, y0:y1, x0:x1].ravel()
    r = r - r.mean()
    m = maps[:, :, y0:y1, x0:x1].reshape(len(maps), -1)
    m = m - m.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(m, axis=1) * np.linalg.norm(r)
    return (m @ r) / np.maximum(norms, 1e-9)


def measure_alignment(reference: np.ndarray, frames: np.ndarray, frame: int,
                      box: tuple[int, int, int, int] | None = None) -> Alignment:
    """Compare a reference with every subject frame.

    Args:
        reference: (S, S, 3) uint8 RGB at the subject frames' size.
        frames: (T, S, S, 3) uint8 RGB subject frames.
        frame: the frame the reference claims to stylise.
        box: (y0, y1, x0, x1) region where frames differ (the face), for telling frames apart;
            None: the whole image.
    """
    box = box if box is not None else (0, reference.shape[0], 0, reference.shape[1])
    ref = orientation_map(reference)
    maps = np.stack([orientation_map(f) for f in frames])
    ncc = _ncc_with(maps, ref, box)
    best = int(np.argmax(ncc))
    edges = _ncc_with(np.stack([edge_map(frames[frame]), edge_map(frames[best])]), edge_map(reference), box)
    (dx, dy), ncc_shifted = best_shift(ref, maps[frame], max(1, round(SEARCH * reference.shape[0])))
    _, ncc_unshifted = best_shift(ref, maps[frame], 0)
    return Alignment(float(ncc[frame]), best, float(ncc[best]), float(edges[0]), float(edges[1]), (dx, dy),
                     ncc_shifted, ncc_unshifted)


def best_shift(moved: np.ndarray, fixed: np.ndarray, radius: int) -> tuple[tuple[int, int], float]:
    """The integer (dx, dy) within +-radius that maximises the NCC of ``moved`` shifted back onto
    ``fixed`` (both (C, H, W) maps), compared over the overlap; and that NCC."""
    h, w = fixed.shape[-2:]
    best, best_ncc = (0, 0), -np.inf
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            a = fixed[:, max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)]
            b = moved[:, max(0, -dy):h + min(0, -dy), max(0, -dx):w + min(0, -dx)]
            a, b = a - a.mean(), b - b.mean()
            ncc = float((a * b).sum() / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-9))
            if ncc > best_ncc:
                best, best_ncc = (-dx, -dy), ncc
    return best, best_ncc


def check_alignment(reference: np.ndarray, frames: np.ndarray, frame: int, source: str = "reference",
                    box: tuple[int, int, int, int] | None = None) -> Alignment:
    """Raise ``AlignmentError`` when ``reference`` does not line up with ``frames[frame]``.

    Returns:
        The measurement (for the style's meta).
    """
    a = measure_alignment(reference, frames, frame, box)
    other_frame = (a.best_frame != frame and a.ncc_best - a.ncc_frame > FRAME_MARGIN
                   and a.edge_ncc_best - a.edge_ncc_frame > EDGE_MARGIN)
    moved = (max(abs(a.shift[0]), abs(a.shift[1])) > MAX_SHIFT * reference.shape[0]
             and a.ncc_shifted - a.ncc_unshifted > SHIFT_MARGIN)
    if moved and (not other_frame or a.ncc_shifted >= a.ncc_best):  # the shift explains it better
        raise AlignmentError(
            f"{source} is shifted by ({a.shift[0]:+d}, {a.shift[1]:+d}) px against frame {frame}: "
            f"paint over the subject frame itself (emo-avatar stylize SUBJECT --frame {frame} writes one "
            "to start from)")
    if other_frame:
        raise AlignmentError(
            f"{source} does not line up with frame {frame} (edge match {a.ncc_frame:.2f}); it matches "
            f"frame {a.best_frame} best ({a.ncc_best:.2f}): pass --frame {a.best_frame} if that is the "
            "frame it stylises")
    return a
