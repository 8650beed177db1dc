"""Dense optical flow between two uint8 RGB images, backward warping, and flow consistency.

Farneback flow (OpenCV) on the grey images. Used by the style metrics (motion-compensated flicker)
and by the style fitting (frame pairs whose styled change the motion does not explain).
``fast_flow``: DIS flow (OpenCV) on grey images, about a millisecond at 128 px, for the steady
filter that follows the motion at render time (``backend.style.steady_motion``).
"""

from __future__ import annotations

import threading

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


FLOW_FINEST_SCALE = 1
"""DIS's finest pyramid level (0: full size). Level 2 (OpenCV's `fast` and `ultrafast` presets)
misses the small motion of a 128 px render: on Roxanne's `xdog_sketch` the steady filter along the
motion left 1.37x the unstyled's change after motion compensation against 1.21x at level 1."""
FLOW_DESCENT_ITERATIONS = 16
FLOW_PATCH_STRIDE = 4
FLOW_REFINEMENT_ITERATIONS = 0
"""Variational refinement off: the same steadied frames within 0.01 dB at 0.54 ms a flow instead of
1.75 ms (OpenCV's `medium` preset; 128 px, docs/editing.md, "Steadying along the motion")."""

MIN_FLOW_SIDE = 16
"""Images whose longer side is shorter than this (px) get no flow (zero motion); OpenCV's DIS
refuses images under 12 px."""

_LOCAL = threading.local()


def _dis() -> cv2.DISOpticalFlow:
    """This thread's DIS flow object with the ``FLOW_*`` settings (OpenCV's objects are not shared
    between threads)."""
    dis = getattr(_LOCAL, "dis", None)
    if dis is None:
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        dis.setFinestScale(FLOW_FINEST_SCALE)
        dis.setGradientDescentIterations(FLOW_DESCENT_ITERATIONS)
        dis.setPatchStride(FLOW_PATCH_STRIDE)
        dis.setVariationalRefinementIterations(FLOW_REFINEMENT_ITERATIONS)
        _LOCAL.dis = dis
    return dis


def fast_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W, 2) float32 DIS flow (px, x then y) from (H, W) uint8 grey ``a`` to ``b``:
    a(p) ~ b(p + flow(p)); zeros for images under ``MIN_FLOW_SIDE``."""
    if max(a.shape) < MIN_FLOW_SIDE:
        return np.zeros((*a.shape, 2), np.float32)
    return _dis().calc(a, b, None)
