"""Sharpness and sharpness difference (SD).

``sharpness(I)`` = mean gradient magnitude of the grey image (BT.601 luma, 0..255), gradients by
central differences (``np.gradient``): units are grey levels per pixel. A blurrier image has a
lower value.

``SD(render, gt) = |sharpness(render) - sharpness(gt)|`` - lower is better (0 = the render is
exactly as sharp as the ground truth). The signed mean ``sharpness(render) - sharpness(gt)`` is
reported next to it: negative means renders are blurrier than the frames, positive means they
carry extra high-frequency detail (noise, GAN texture).
"""

from __future__ import annotations

import numpy as np

from backend.imaging.convert import luma


def sharpness(rgb: np.ndarray) -> float:
    """Mean gradient magnitude of the luma, grey levels per pixel."""
    gy, gx = np.gradient(luma(rgb))
    return float(np.mean(np.hypot(gx, gy)))


def sharpness_difference(render: np.ndarray, gt: np.ndarray) -> float:
    """Signed ``sharpness(render) - sharpness(gt)``; SD is its absolute value."""
    return sharpness(render) - sharpness(gt)
