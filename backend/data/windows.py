"""Sliding windows of expression coefficients (the paper's 5-frame motion window)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import numpy as np

WINDOW_RADIUS = 2
"""Frames t-2..t+2: the 5-frame window of section 3.2.2."""


def expression_windows(expressions: np.ndarray, radius: int = WINDOW_RADIUS,
                       cuts: Iterable[int] = ()) -> np.ndarray:
    """Stack each frame's neighbours within its shot, repeating a shot's first/last frame at its
    ends, so no window reaches across a cut into another shot's expressions.

    Args:
        expressions: (T, K) float32 coefficients.
        radius: frames on each side.
        cuts: rows that begin a new shot (a subject's ``cuts``; 0 and out-of-range rows are
            ignored). Without cuts the whole clip is one shot.
    Returns:
        (T, 2 * radius + 1, K) float32; ``out[t, radius]`` is ``expressions[t]``.
    """
    expr = np.asarray(expressions, dtype=np.float32)
    if expr.ndim != 2:
        raise ValueError(f"expressions must be (T, K), got shape {expr.shape}")
    n = expr.shape[0]
    bounds = [0, *sorted({int(c) for c in cuts if 0 < int(c) < n}), n]
    first = np.empty(n, dtype=np.int64)
    last = np.empty(n, dtype=np.int64)
    for a, b in itertools.pairwise(bounds):
        first[a:b], last[a:b] = a, b - 1
    t = np.arange(n)[:, None] + np.arange(-radius, radius + 1)[None, :]
    return expr[np.clip(t, first[:, None], last[:, None])]
