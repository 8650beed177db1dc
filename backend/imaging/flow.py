"""Dense optical flow between two uint8 RGB images, backward warping, and flow consistency.

Farneback flow (OpenCV) on the grey images. Used by the style metrics (motion-compensated flicker)
and by the style fitting (frame pairs whose styled change the motion does not explain).
"""

from __future__ import annotations

import cv2
import numpy as np

FLOW_CONSISTENCY_PX = 1.0
"""Pixels whose forward and backward flows disagree by more than this (occlusions, flow errors)
are not trusted (``backward_flow``)."""


def flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W, 2) Farneback flow (px) from uint8 RGB ``a`` to ``b``: a(x) ~ b(x + flow(x))."""
    ga, gb = (cv2.cvtColor(np.ascontiguousarray(x), cv2.COLOR_RGB2GRAY) for x in (a, b))
    return cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 9, 3, 5, 1.1, 0)


def warp(img: np.ndarray, field: np.ndarray) -> np.ndarray:
    """(H, W, C) image sampled at x + field(x) (bilinear, replicated border), float32."""
    h, w = field.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img.astype(np.float32), gx + field[..., 0], gy + field[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def backward_flow(current: np.ndarray, previous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The motion from uint8 RGB ``previous`` to ``current`` (both (H, W, 3)), as the backward flow
    (H, W, 2) px, ``current``'s pixel x coming from x + flow(x) in ``previous``, and the (H, W) bool
    mask where the forward and backward flows agree within ``FLOW_CONSISTENCY_PX`` (not occluded)."""
    back = flow(current, previous)
    fwd = flow(previous, current)
    round_trip = back + warp(fwd, back)  # ~0 where both agree
    return back, np.linalg.norm(round_trip, axis=-1) <= FLOW_CONSISTENCY_PX
