"""Motion-compensated flicker (``warped_temporal_change``): lines that move with the picture do not
count, change the motion does not explain does."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from backend.metrics.style_metrics import temporal_change, warped_temporal_change


def _panning_shot(n: int = 6, step: int = 2) -> np.ndarray:
    """(n, 64, 64, 3) uint8: a smooth textured picture panning ``step`` px right per frame."""
    rng = np.random.default_rng(0)
    big = cv2.GaussianBlur(rng.integers(0, 256, (64, 128, 3)).astype(np.float32), (0, 0), 2.5)
    big = cv2.normalize(big, None, 0, 255, cv2.NORM_MINMAX)
    return np.stack([big[:, 32 - step * t: 96 - step * t] for t in range(n)]).astype(np.uint8)


def test_motion_is_compensated_and_flicker_is_not() -> None:
    shot = _panning_shot()
    raw, warped = temporal_change(shot), warped_temporal_change(shot)
    assert warped < 0.1 * raw  # the pan explains nearly all of the change
    # the same shot with per-frame noise (flicker): the motion cannot explain it
    rng = np.random.default_rng(1)
    noisy = np.clip(shot.astype(int) + rng.integers(-20, 21, shot.shape), 0, 255).astype(np.uint8)
    flicker = warped_temporal_change(noisy, shot)
    assert flicker > 10 * warped
    # about the noise's own frame-to-frame change (the warp's interpolation smooths some of it)
    assert 0.5 < flicker / (np.abs(np.diff(noisy.astype(float), axis=0)).mean() / 255) < 1.0


def test_a_stylised_copy_is_compensated_by_its_guides_motion() -> None:
    shot = _panning_shot()
    # a "look" with strong edges: the raw change grows, the compensated one stays small
    edges = np.stack([255 - cv2.Canny(f, 20, 60) for f in shot])
    lined = np.minimum(shot, edges[..., None])
    assert temporal_change(lined) > temporal_change(shot)
    assert warped_temporal_change(lined, shot) < 0.15 * temporal_change(lined)
    with pytest.raises(ValueError, match="differ"):
        warped_temporal_change(lined, shot[:-1])
    assert np.isnan(warped_temporal_change(shot[:1]))
