"""Does a reference line up with the frame it claims to stylise? Edge maps decide.

A look changes colours and textures but keeps where the edges are: the silhouette, eyes, brows
and mouth. Each image becomes a normalised gradient-magnitude map (grey, Gaussian blur sigma
``BLUR_SIGMA`` px at 128 px, scaled with the size). Then:

* **shift**: the integer shift (up to ``SEARCH`` of the side) that best lines the reference's map
  up with its frame's map; a best shift of more than ``MAX_SHIFT`` of the side that matches
  clearly better (by ``SHIFT_MARGIN``) than no shift means the reference was cropped or framed
  differently;
* **frame**: normalised cross-correlation (NCC) of the reference's map with every subject frame's
  map (inside the face box, where frames differ); when another frame matches clearly better
  (by ``FRAME_MARGIN``) than the claimed one, the
  reference was most likely made from that frame, and the error names it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BLUR_SIGMA = 1.5
MAX_SHIFT = 0.03
SEARCH = 0.1
SHIFT_MARGIN = 0.12
FRAME_MARGIN = 0.15


class AlignmentError(ValueError):
    """The reference does not line up with its frame; the message names the likely frame or shift."""


@dataclass(frozen=True)
class Alignment:
    """Face-box NCC with the claimed frame, the best frame and its NCC; the best whole-image
    (dx, dy) shift in pixels against the claimed frame, with its NCC and the NCC without a shift."""

    ncc_frame: float
    best_frame: int
    ncc_best: float
    shift: tuple[int, int]
    ncc_shifted: float
    ncc_unshifted: float


def edge_map(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) float32 gradient magnitude, zero mean, unit norm."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    sigma = BLUR_SIGMA * rgb.shape[0] / 128.0
    grey = cv2.GaussianBlur(grey, (0, 0), sigma)
    mag = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    mag -= mag.mean()
    return mag / max(float(np.linalg.norm(mag)), 1e-6)


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
    ref = edge_map(reference)
    maps = np.stack([edge_map(f) for f in frames])
    y0, y1, x0, x1 = box if box is not None else (0, ref.shape[0], 0, ref.shape[1])
    crop_ref = ref[y0:y1, x0:x1] - ref[y0:y1, x0:x1].mean()
    crops = maps[:, y0:y1, x0:x1] - maps[:, y0:y1, x0:x1].mean(axis=(1, 2), keepdims=True)
    norms = np.linalg.norm(crops.reshape(len(crops), -1), axis=1) * np.linalg.norm(crop_ref)
    ncc = np.einsum("thw,hw->t", crops, crop_ref) / np.maximum(norms, 1e-9)
    best = int(np.argmax(ncc))
    (dx, dy), ncc_shifted = best_shift(ref, maps[frame], max(1, round(SEARCH * ref.shape[0])))
    _, ncc_unshifted = best_shift(ref, maps[frame], 0)
    return Alignment(float(ncc[frame]), best, float(ncc[best]), (dx, dy), ncc_shifted, ncc_unshifted)


def best_shift(moved: np.ndarray, fixed: np.ndarray, radius: int) -> tuple[tuple[int, int], float]:
    """The integer (dx, dy) within +-radius that maximises the NCC of ``moved`` shifted back onto
    ``fixed`` (both (H, W) edge maps), compared over the overlap; and that NCC."""
    h, w = fixed.shape
    best, best_ncc = (0, 0), -np.inf
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            a = fixed[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)]
            b = moved[max(0, -dy):h + min(0, -dy), max(0, -dx):w + min(0, -dx)]
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
    if a.best_frame != frame and a.ncc_best - a.ncc_frame > FRAME_MARGIN:
        raise AlignmentError(
            f"{source} does not line up with frame {frame} (edge match {a.ncc_frame:.2f}); it matches frame "
            f"{a.best_frame} best ({a.ncc_best:.2f}): pass --frame {a.best_frame} if that is the frame it "
            "stylises")
    moved = max(abs(a.shift[0]), abs(a.shift[1])) > MAX_SHIFT * reference.shape[0]
    if moved and a.ncc_shifted - a.ncc_unshifted > SHIFT_MARGIN:
        raise AlignmentError(
            f"{source} is shifted by ({a.shift[0]:+d}, {a.shift[1]:+d}) px against frame {frame}: "
            f"paint over the subject frame itself (emo-avatar stylize SUBJECT --frame {frame} writes one "
            "to start from)")
    return a
