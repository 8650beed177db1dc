"""F-LMD: facial landmark distance between renders and ground-truth frames.

Landmarks come from MediaPipe FaceMesh (``backend.face.landmarks.FaceMeshTracker`` in static
image mode; small frames are upscaled for detection and the points mapped back), so F-LMD is in
pixels of the evaluated images: the mean Euclidean (x, y) distance over the 468 mesh points,
averaged over the frames where both images have a face. Frames where detection fails on either
side are counted and reported, never silently dropped from the count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

N_MESH = 468


@dataclass
class FLMD:
    """Result: ``value`` (pixels, None when no frame had faces on both sides), frames used/failed."""

    value: float | None
    per_frame: list[float | None]
    failed_gt: int
    failed_render: int

    def to_dict(self) -> dict:
        return {"f_lmd_px": self.value, "f_lmd_frames": sum(v is not None for v in self.per_frame),
                "f_lmd_failed_gt": self.failed_gt, "f_lmd_failed_render": self.failed_render}


def landmark_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean (x, y) Euclidean distance between two (N, >=2) landmark sets (first 468 points)."""
    return float(np.mean(np.linalg.norm(a[:N_MESH, :2] - b[:N_MESH, :2], axis=1)))


def f_lmd(renders: Sequence[np.ndarray], gts: Sequence[np.ndarray]) -> FLMD:
    """F-LMD over pairs of (H, W, 3) uint8 RGB images."""
    from backend.face.landmarks import FaceMeshTracker

    per: list[float | None] = []
    fail_gt = fail_r = 0
    with FaceMeshTracker(max_faces=1, static_image_mode=True) as tracker:
        for r, g in zip(renders, gts, strict=True):
            lg = tracker.process(np.ascontiguousarray(g)).points
            lr = tracker.process(np.ascontiguousarray(r)).points
            fail_gt += lg is None
            fail_r += lr is None
            per.append(None if lg is None or lr is None else landmark_distance(lr, lg))
    ok = [v for v in per if v is not None]
    return FLMD(float(np.mean(ok)) if ok else None, per, fail_gt, fail_r)
