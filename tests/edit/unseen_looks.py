"""Looks that no part of the product makes: filter chains used only as ground truth in tests.

A style edit must learn a look from its reference alone, so the tests also score it on looks
that were never used to tune it (the built-in looks in ``backend.looks`` were).
"""

from __future__ import annotations

import cv2
import numpy as np


def posterised_ink(rgb: np.ndarray) -> np.ndarray:
    """Median-blur posterisation to 6 levels, a warm sepia shift, and dark Sobel ink lines."""
    img = cv2.medianBlur(rgb, 3)
    img = (img // 48) * 48 + 24
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 1] = lab[..., 1] * 0.6 + 128 * 0.4 + 8
    lab[..., 2] = lab[..., 2] * 0.6 + 128 * 0.4 + 20
    img = cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    mag = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    ink = np.clip(1.0 - (mag - 60.0) / 120.0, 0.2, 1.0)
    return (img * ink[..., None]).astype(np.uint8)


def cool_halftone(rgb: np.ndarray) -> np.ndarray:
    """Blue-green duotone with a fine line screen and a soft vignette."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    h, w = grey.shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    screen = 0.5 + 0.5 * np.sin((xx + yy) * 1.3)
    tone = np.clip(grey * 1.2 + (screen - 0.5) * 0.25, 0, 1)
    dark, light = np.array([20, 40, 70], np.float32), np.array([200, 240, 220], np.float32)
    out = dark + tone[..., None] * (light - dark)
    r = np.hypot((xx - w / 2) / w, (yy - h / 2) / h)
    out *= (1.0 - 0.5 * np.clip(r - 0.3, 0, 1))[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)
