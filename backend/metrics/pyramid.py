"""Laplacian-pyramid L1: a weight-free perceptual distance (after Bojanowski et al. 2018, "Lap1").

Both images are taken to [0, 1] RGB floats and decomposed into a Laplacian pyramid with OpenCV's
5x5 binomial filter (``cv2.pyrDown`` / ``cv2.pyrUp``): band j = G_j - up(G_{j+1}) for
j < J - 1, and the last band is the low-pass residual G_{J-1}. J = ``LEVELS`` levels, fewer when
the image gets smaller than ``MIN_SIDE`` pixels. The distance is the mean over bands of each
band's mean absolute difference:

    lap_l1(a, b) = 1/J  sum_j  mean |L_j(a) - L_j(b)|

0 for identical images. Fine bands weigh as much as coarse ones, so lost detail (blur) and
wrong colour both count, unlike PSNR which is dominated by low frequencies.
"""

from __future__ import annotations

import cv2
import numpy as np

LEVELS = 5
MIN_SIDE = 8


def laplacian_pyramid(rgb: np.ndarray, levels: int = LEVELS) -> list[np.ndarray]:
    """(H, W, 3) uint8 RGB -> bands (fine to coarse), float32 in [0, 1] units."""
    g = rgb.astype(np.float32) / 255.0
    bands = []
    for _ in range(levels - 1):
        if min(g.shape[:2]) // 2 < MIN_SIDE:
            break
        down = cv2.pyrDown(g)
        up = cv2.pyrUp(down, dstsize=(g.shape[1], g.shape[0]))
        bands.append(g - up)
        g = down
    bands.append(g)
    return bands


def lap_l1(a: np.ndarray, b: np.ndarray, levels: int = LEVELS) -> float:
    """Laplacian-pyramid L1 distance of two (H, W, 3) uint8 RGB images of one shape."""
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    pa, pb = laplacian_pyramid(a, levels), laplacian_pyramid(b, levels)
    return float(np.mean([np.abs(x - y).mean() for x, y in zip(pa, pb, strict=True)]))
