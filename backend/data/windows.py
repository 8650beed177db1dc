"""Sliding windows of expression coefficients (the paper's 5-frame motion window)."""

from __future__ import annotations

import numpy as np

WINDOW_RADIUS = 2
"""Frames t-2..t+2: the 5-frame window of section 3.2.2."""


def expression_windows(expressions: np.ndarray, radius: int = WINDOW_RADIUS) -> np.ndarray:
    """Stack each frame's neighbours, repeating the first/last frame at the clip ends.

    Args:
        expressions: (T, K) float32 coefficients.
        radius: frames on each side.
    Returns:
        (T, 2 * radius + 1, K) float32; ``out[t, radius]`` is ``expressions[t]``.
    """
    expr = np.asarray(expressions, dtype=np.float32)
    if expr.ndim != 2:
        raise ValueError(f"expressions must be (T, K), got shape {expr.shape}")
    t = np.arange(expr.shape[0])[:, None] + np.arange(-radius, radius + 1)[None, :]
    return expr[np.clip(t, 0, expr.shape[0] - 1)]
