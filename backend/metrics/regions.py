"""Face, mouth and eye boxes of a frame from the subject's tracked landmarks, and scores inside them.

Boxes come from the subject's tracked FaceMesh landmarks (``SUBJECT/landmarks.npy``, crop pixels),
scaled to the evaluated resolution, so a render and its ground truth are scored on the same
pixels whatever the render shows:

* face: the bounding box of the 468 mesh points, grown by ``FACE_MARGIN`` of its size on every side;
* mouth: the outer-lip contour's box, grown by ``PART_MARGIN`` of the face box's width;
* eyes: the two eye contours' boxes, each grown the same way (scored together as one region).

Boxes are clipped to the image and are at least ``MIN_SIDE`` pixels on a side. Region PSNR is
``10 log10(255^2 / MSE)`` over the box's pixels; region SSIM is the mean of the full-frame SSIM map
(``backend.metrics.ssim``, 11x11 Gaussian window) inside the box, so windows at the box's border
see the real neighbourhood; region L1 is the mean absolute difference in grey levels (0..255).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from backend.data.synthetic_expressions import (
    LEFT_EYE_LOWER,
    LEFT_EYE_UPPER,
    N_VERTICES,
    OUTER_LIP_LOWER,
    OUTER_LIP_UPPER,
    RIGHT_EYE_LOWER,
    RIGHT_EYE_UPPER,
)
from backend.metrics.ssim import ssim_map

FACE_MARGIN = 0.10
"""Face box growth on every side, as a fraction of the landmark box's width / height."""
PART_MARGIN = 0.08
"""Mouth and eye box growth on every side, as a fraction of the face landmark box's width."""
MIN_SIDE = 4
"""Smallest box side in pixels."""

MOUTH_IDS = tuple(sorted(set(OUTER_LIP_UPPER) | set(OUTER_LIP_LOWER)))
RIGHT_EYE_IDS = tuple(sorted(set(RIGHT_EYE_UPPER) | set(RIGHT_EYE_LOWER)))
LEFT_EYE_IDS = tuple(sorted(set(LEFT_EYE_UPPER) | set(LEFT_EYE_LOWER)))

Box = tuple[int, int, int, int]
"""(x0, y0, x1, y1) pixel box, x1/y1 exclusive."""


@dataclass(frozen=True)
class FrameRegions:
    """The boxes of one frame: face, mouth, and the two eyes (image-left first)."""

    face: Box
    mouth: Box
    eyes: tuple[Box, Box]

    def mask(self, name: str, shape: tuple[int, int]) -> np.ndarray:
        """(H, W) bool mask of region ``name`` ("face", "mouth" or "eyes")."""
        m = np.zeros(shape, bool)
        boxes = {"face": [self.face], "mouth": [self.mouth], "eyes": list(self.eyes)}[name]
        for x0, y0, x1, y1 in boxes:
            m[y0:y1, x0:x1] = True
        return m


REGION_NAMES = ("face", "mouth", "eyes")


def _box(points: np.ndarray, grow_x: float, grow_y: float, size: int) -> Box:
    lo, hi = points.min(0), points.max(0)
    x0, y0 = math.floor(lo[0] - grow_x), math.floor(lo[1] - grow_y)
    x1, y1 = math.ceil(hi[0] + grow_x), math.ceil(hi[1] + grow_y)
    x0, y0 = max(0, min(x0, size - MIN_SIDE)), max(0, min(y0, size - MIN_SIDE))
    x1, y1 = min(size, max(x1, x0 + MIN_SIDE)), min(size, max(y1, y0 + MIN_SIDE))
    return x0, y0, x1, y1


def frame_regions(landmarks: np.ndarray, size: int) -> FrameRegions:
    """Boxes of one frame from its (478 or 468, >=2) landmarks in pixels of a ``size`` x ``size`` image.

    Raises:
        ValueError: landmarks of another shape or with NaN/inf.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] < N_VERTICES or pts.shape[1] < 2:
        raise ValueError(f"landmarks must be (>= {N_VERTICES}, 2+) points, got shape {pts.shape}")
    pts = pts[:N_VERTICES, :2]
    if not np.all(np.isfinite(pts)):
        raise ValueError("landmarks contain NaN/inf")
    span = pts.max(0) - pts.min(0)
    face = _box(pts, FACE_MARGIN * span[0], FACE_MARGIN * span[1], size)
    g = PART_MARGIN * span[0]
    mouth = _box(pts[list(MOUTH_IDS)], g, g, size)
    eyes = (_box(pts[list(RIGHT_EYE_IDS)], g, g, size), _box(pts[list(LEFT_EYE_IDS)], g, g, size))
    return FrameRegions(face, mouth, eyes)


def subject_regions(subject: object, ids: np.ndarray | list[int], size: int) -> list[FrameRegions]:
    """Boxes of frames ``ids`` of a ``backend.data.subject.Subject`` at ``size`` px (landmarks scaled
    from the subject's crop size)."""
    lm = subject.landmarks  # type: ignore[attr-defined]
    f = size / float(subject.size)  # type: ignore[attr-defined]
    return [frame_regions(lm[int(i)][:, :2] * f, size) for i in ids]


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR in dB over the pixels of ``mask`` ((H, W) bool) of two (H, W, 3) uint8 images; inf if equal."""
    d = a[mask].astype(np.float64) - b[mask].astype(np.float64)
    mse = float(np.mean(d * d)) if d.size else float("nan")
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(255.0**2 / mse)


def masked_l1(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute difference in grey levels (0..255) over ``mask``'s pixels and the 3 channels."""
    return float(np.mean(np.abs(a[mask].astype(np.float64) - b[mask].astype(np.float64))))


def ssim_map_uint8(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W) SSIM map (channels averaged) of two (H, W, 3) uint8 RGB images."""
    ta = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].double()
    tb = torch.from_numpy(np.ascontiguousarray(b)).permute(2, 0, 1)[None].double()
    return ssim_map(ta, tb, data_range=255.0)[0].mean(0).numpy()


def region_scores(renders: np.ndarray, gts: np.ndarray, regions: list[FrameRegions],
                  ssim_maps: list[np.ndarray] | None = None) -> dict[str, float]:
    """Face PSNR/SSIM/L1 and mouth/eye PSNR/L1 of (N, S, S, 3) uint8 renders vs ground truth.

    Args:
        ssim_maps: the pairs' ``ssim_map_uint8`` when the caller has them already.
    Returns:
        Means over frames: ``face_psnr_db``, ``face_ssim``, ``face_l1``, ``mouth_psnr_db``,
        ``mouth_l1``, ``eyes_psnr_db``, ``eyes_l1`` (PSNR of identical regions counted as 100 dB).
    """
    if not (len(renders) == len(gts) == len(regions)):
        raise ValueError(f"{len(renders)} renders, {len(gts)} frames and {len(regions)} region sets")
    acc: dict[str, list[float]] = {}
    for k, (r, g, reg) in enumerate(zip(renders, gts, regions, strict=True)):
        shape = r.shape[:2]
        smap = ssim_maps[k] if ssim_maps is not None else ssim_map_uint8(r, g)
        for name in REGION_NAMES:
            m = reg.mask(name, shape)
            acc.setdefault(f"{name}_psnr_db", []).append(min(masked_psnr(r, g, m), 100.0))
            acc.setdefault(f"{name}_l1", []).append(masked_l1(r, g, m))
            if name == "face":
                acc.setdefault("face_ssim", []).append(float(smap[m].mean()))
    return {k: float(np.mean(v)) for k, v in acc.items()}
