"""Temporal smoothing of tracked curves (offline, zero phase).

Savitzky-Golay filtering (local quadratic fit) removes landmark jitter while keeping the peaks
of fast events such as blinks (a Gaussian of the same strength flattens them). Edges are
handled by fitting the polynomial to the first/last window (``mode="interp"``), so the ends
neither shrink towards zero nor lag. Windows are given in seconds and converted with the fps.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import savgol_filter

EXPRESSION_WINDOW_S = 0.2
"""Expression curves: ~5 frames at 25 fps (a blink lasts ~0.1-0.3 s)."""
POSE_WINDOW_S = 0.28
"""Head pose: ~7 frames at 25 fps (heads move slowly; pose jitter is the most visible)."""


def window_frames(seconds: float, fps: float, minimum: int = 3) -> int:
    """Odd window length in frames for ``seconds`` at ``fps`` (at least ``minimum``)."""
    n = max(round(seconds * fps), minimum)
    return n if n % 2 == 1 else n + 1


def smooth_curves(values: np.ndarray, fps: float, window_s: float, order: int = 2) -> np.ndarray:
    """Smooth each column of ``values`` (T, ...) over time (axis 0).

    Args:
        values: (T, ...) float array.
        fps: frames per second.
        window_s: window length in seconds.
        order: polynomial order of the local fit.
    Returns:
        float32 array of the same shape. Clips shorter than ``order + 2`` frames come back as is.
    """
    v = np.asarray(values, dtype=np.float64)
    T = v.shape[0]
    win = window_frames(window_s, fps)
    if win > T:
        win = T if T % 2 == 1 else T - 1
    if win <= order + 1:
        return v.astype(np.float32)
    return savgol_filter(v, win, order, axis=0, mode="interp").astype(np.float32)


def unwrap_angles(angles: np.ndarray) -> np.ndarray:
    """Remove 2*pi jumps along time so smoothing never averages across the wrap."""
    return np.unwrap(np.asarray(angles, dtype=np.float64), axis=0)


def jitter(values: np.ndarray) -> float:
    """Mean absolute second difference over time: a simple jitter measure (units of ``values``)."""
    v = np.asarray(values, dtype=np.float64)
    if v.shape[0] < 3:
        return 0.0
    return float(np.abs(np.diff(v, n=2, axis=0)).mean())
