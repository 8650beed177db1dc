"""Looks that no part of the product makes: filter chains used only as ground truth in tests.

A style edit must learn a look from its reference alone, so the tests also score it on looks
that were never used to tune it (the built-in looks in ``backend.looks`` were).
``pop_flat``, ``soft_pastel`` and ``warm_crosshatch`` were written after the default edit was
fixed; ``warm_crosshatch`` then became the case the gated screens were developed on
(docs/editing.md). ``blue_dot_halftone`` and ``canvas_grade`` were written after the gated
screens were fixed and have only ever been scored (``bench/style.py --looks``). ``neon_edges`` and
``emboss_grey`` redraw edges as glows and reliefs; the edge-map alignment check refused aligned
references of both, which is what its orientation field was then measured on.
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


def warm_crosshatch(rgb: np.ndarray) -> np.ndarray:
    """Two frame-locked hatch screens on warm paper, one switched on below mid-grey, one below dark."""
    g = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0, (0, 0), 0.8)
    h, w = g.shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    hatch_a = (np.sin((xx + yy) * 0.9) > 0.3).astype(np.float32)
    hatch_b = (np.sin((xx - yy) * 0.9) > 0.3).astype(np.float32)
    ink = np.clip((0.55 - g) * 4, 0, 1) * hatch_a + np.clip((0.3 - g) * 5, 0, 1) * hatch_b
    tone = np.clip(0.25 + 0.75 * g, 0, 1) * (1 - 0.8 * np.clip(ink, 0, 1))
    return np.clip(tone[..., None] * np.array([250, 238, 215], np.float32), 0, 255).astype(np.uint8)


def pop_flat(rgb: np.ndarray) -> np.ndarray:
    """Flat saturated regions (mean shift, 4-level HSV value) with thick black Laplacian outlines."""
    hsv = cv2.cvtColor(cv2.pyrMeanShiftFiltering(rgb, 6, 24), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 1] = np.clip(hsv[..., 1] * 1.6 + 30, 0, 255)
    hsv[..., 2] = (np.floor(hsv[..., 2] / 64) + 0.5) * 64
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
    grey = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (0, 0), 1.2).astype(np.float32)
    out[cv2.Laplacian(grey, cv2.CV_32F, ksize=3) > 4] = 15
    return out


def soft_pastel(rgb: np.ndarray) -> np.ndarray:
    """Bilateral smoothing, desaturated and lifted towards white, with a soft glow."""
    hsv = cv2.cvtColor(cv2.bilateralFilter(rgb, 9, 50, 9), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 1] *= 0.55
    hsv[..., 2] = 90 + hsv[..., 2] * 0.65
    pastel = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    glow = cv2.GaussianBlur(pastel, (0, 0), 4)
    return np.clip(0.7 * pastel + 0.3 * glow + 8, 0, 255).astype(np.uint8)


def blue_dot_halftone(rgb: np.ndarray) -> np.ndarray:
    """Amplitude-modulated halftone: ink dots on a 30-degree grid (period about 5.5 px) that grow
    with the darkness of the blurred tone, dark blue ink on cream paper."""
    g = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0, (0, 0), 1.0)
    h, w = g.shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    u, v = (xx * c + yy * s) * 1.15, (-xx * s + yy * c) * 1.15
    spot = 0.5 + 0.25 * (np.cos(u) + np.cos(v))  # 1 at dot centres, 0 between them
    ink = np.clip((spot - g) * 6 + 0.5, 0, 1)
    paper, blue = np.array([245, 238, 220], np.float32), np.array([30, 45, 95], np.float32)
    return np.clip(paper + ink[..., None] * (blue - paper), 0, 255).astype(np.uint8)


def canvas_grade(rgb: np.ndarray) -> np.ndarray:
    """A warm, contrasty colour grade printed on a canvas weave: a frame-locked two-direction
    texture (periods 3.5 and 4 px) that multiplies the image, stronger in the lights."""
    img = cv2.GaussianBlur(rgb, (0, 0), 0.7).astype(np.float32) / 255.0
    img = np.clip((img - 0.5) * 1.25 + 0.5, 0, 1) * np.array([1.06, 0.98, 0.85], np.float32)
    h, w = img.shape[:2]
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    weave = 0.5 * np.sin(xx * 2 * np.pi / 3.5) * np.sin(yy * 2 * np.pi / 4.0)
    lum = img.mean(-1, keepdims=True)
    out = img * (1 + 0.22 * lum * weave[..., None])
    return np.clip(out * 255, 0, 255).astype(np.uint8)


def neon_edges(rgb: np.ndarray) -> np.ndarray:
    """Night neon: the image darkened to navy, its edges redrawn as glows from cyan (left) to
    magenta (right). The glow peaks where the photograph's edge is, so its own gradient lies on
    both sides of the edge."""
    img = rgb.astype(np.float32) / 255.0
    g = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (0, 0), 1.0).astype(np.float32) / 255.0
    mag = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
    edge = np.clip((mag - 0.15) * 1.2, 0, 1)
    glow = np.clip(edge + cv2.GaussianBlur(edge, (0, 0), 2.0) * 0.8, 0, 1)
    h, w = g.shape
    t = (np.mgrid[:h, :w][1] / max(w - 1, 1)).astype(np.float32)[..., None]
    neon = (1 - t) * np.array([0.1, 0.95, 1.0], np.float32) + t * np.array([1.0, 0.2, 0.85], np.float32)
    base = img * 0.25 + np.array([0.02, 0.03, 0.12], np.float32)
    out = base * (1 - glow[..., None]) + neon * glow[..., None]
    return np.clip(out * 255, 0, 255).astype(np.uint8)


def emboss_grey(rgb: np.ndarray) -> np.ndarray:
    """Grey relief: a 3x3 directional emboss kernel on mid-grey (edges become a light and a dark
    line, about a pixel off the photograph's edge)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    k = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], np.float32)
    relief = np.clip(cv2.filter2D(grey, -1, k) * 0.6 + 128 * 0.5, 0, 255).astype(np.uint8)
    return np.repeat(relief[..., None], 3, -1)
