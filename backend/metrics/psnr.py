"""PSNR in dB between uint8 (or float) images."""

from __future__ import annotations

import math

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio ``10 log10(R^2 / MSE)`` in dB; ``inf`` for identical images.

    Args:
        a, b: arrays of one shape (e.g. (H, W, 3) uint8).
        data_range: R, the value range (255 for uint8, 1 for [0, 1] floats).
    """
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)
