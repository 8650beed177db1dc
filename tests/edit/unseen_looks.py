"""Looks that no part of the product makes: filter chains used only as ground truth in tests.

A style edit must learn a look from its reference alone, so the tests also score it on looks
that were never used to tune it (the built-in looks in ``backend.looks`` were).
``pop_flat``, ``soft_pastel`` and ``warm_crosshatch`` were written after the default edit was
fixed; ``warm_crosshatch`` then became the case the gated screens were developed on
(docs/editing.md). ``blue_dot_halftone`` and ``canvas_grade`` were written after the gated
screens were fixed and have only ever been scored (``bench/style.py --looks``). ``neon_edges`` and
``emboss_grey`` redraw edges as glows and reliefs; the edge-map alignment check refused aligned
references of both, which is what its orientation field was then measured on. The paper looks
print on a fixed texture without a period: ``charcoal_paper`` is what the frame texture
(``backend.style.frame_texture``) was developed on and ``sepia_film_grain`` what its extent was
chosen on; ``watercolor_paper`` and ``ink_wash_linen`` have only ever been scored.
``charcoal_smooth`` is the charcoal without its paper: what the translator makes of the
charcoal's content alone. ``kmeans_comic``, ``detail_pop`` and ``gameboy_dither`` were written
after the learned texture layer was fixed and have only ever been scored; ``marker_toon`` and
``riso_two_ink`` after the steady filter was fixed, likewise; ``color_pencil``, ``duotone_dusk`` and
``cel_canny`` on 6 Dec, after the patch critic was measured, likewise; ``woodcut_ink``,
``graphite_dodge`` and ``painterly_stylize`` on 6 Dec, later, after the steady filter's per-style
choice was fixed, likewise; ``classic_cartoon``, ``inferno_thermal`` and ``chalkboard`` on 6 Dec,
in the next session, before any change was made, likewise; ``xdog_sketch``, ``slic_mosaic`` and
``kuwahara_paint`` on 6 Dec, in the session after, before any change was made, likewise;
``brush_ink`` and ``blueprint_lines`` on 7 Dec, after the steady filter along the motion was built,
before their first run, to score it on line looks it was never run on; ``pixel_art``,
``chromatic_glitch``, ``solarized_cyan`` and ``stipple_dots`` on 7 Dec, in the session after, before
their first run and before any change was made (a block grid with a fixed palette, channels moved
apart, a tone curve that folds back, and a random frame-locked dot screen); ``error_diffusion``
in the same session, after those four had run and before any change was made (a dither whose
dots follow the content instead of the frame); ``console_green`` and ``warm_tiles`` later in that
session, before their first run, to check the rule for the lattice's cell input on cell looks it
was not made on (one recolours each block by a non-linear rule, the other grades it).
``atkinson_three_ink`` on 7 Dec, in the session after, once the palette dither was built and
before its first run: a dither of another algorithm, with three inks and clipped lights and
shadows, to check the dither on a look it was not made on. Its first rule missed it on the two
darker subjects, and the rule was changed on it; ``sierra_duotone`` was written after that change
and before its first run, to check the changed rule. ``jarvis_rose`` later in that session,
after the dither's design was fixed and before its first run. ``cinematic_bloom``,
``crt_scanlines`` and ``engraving_lines`` on 7 Dec, in the session after, before their first run
and before any change was made: a grade that depends on where a pixel is and glows around the
lights, a picture seen through a frame-locked colour mask, and a line screen whose lines the tone
bends. The screen's directions that cancel in the grey (``TranslatorConfig.screen_colour``) were
then developed on ``crt_scanlines``, so it is no longer unseen; ``cmyk_halftone`` was written after
that, before its first run, to check the rule on a colour screen it was not made on.
``diagonal_rgb_mask``, ``vhs_tape`` and ``ukiyo_print`` on 7 Dec, in the session after, before
their first run and before any change was made: a colour mask whose grey is nearly flat (the rule
on a screen it was not made on, and not at the CRT's angle), chroma smeared along rows with a
frame-locked per-row jitter, and flat fixed inks with outlines on a paper grain. The frame-locked
jitter was then developed on ``vhs_tape``, so it is no longer unseen; ``interlaced_fields`` and
``heat_shimmer`` were written after the jitter was fixed and before their first run: one field's
rows moved against the other's, and columns moved up and down by a sine of their place; the
jitter's spread was then changed on ``interlaced_fields``. ``newsprint_comic``, ``lomo_cross`` and
``barrel_tv`` in the same session, after that change and before their first run: posterised colour
with outlines and shadow dots on newsprint, a cross-processed grade with a vignette, and a picture
bent by a bulging screen (a warp that is neither rows nor columns). ``tilt_shift_miniature``,
``lic_hatching`` and ``low_poly`` on 7 Dec, in the session after, before their first run and before
any change was made: a blur that grows with the distance from a band of rows, pencil strokes of a
fixed noise drawn along the picture's own edges, and a triangulation of a frame-locked jittered
grid and the picture's corners, each triangle filled flat. The frame-locked mosaic of any cell
shape (``backend.style.frame_partition``) was then developed on ``low_poly``, so it is no longer
unseen; ``hex_pixelate`` and ``stained_glass`` were written after it was fixed and before their
first run: hexagonal cells, and seeded Voronoi cells with dark lead lines between them.
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


def _unit8(x: np.ndarray) -> np.ndarray:
    return np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)


def _fixed_noise(h: int, w: int, seed: int, sigma_x: float, sigma_y: float | None = None) -> np.ndarray:
    """(h, w) float32 seeded Gaussian noise blurred by (sigma_x, sigma_y) px, unit standard deviation:
    the same on every frame, as a paper or a film overlay is."""
    n = cv2.GaussianBlur(np.random.default_rng(seed).standard_normal((h, w)).astype(np.float32), (0, 0),
                         sigmaX=sigma_x, sigmaY=sigma_x if sigma_y is None else sigma_y)
    return n / (n.std() + 1e-6)


def _move_lines(x: np.ndarray, shifts: np.ndarray, along: str) -> np.ndarray:
    """(H, W, C) image -> float32, every row moved right (``along="rows"``, ``shifts`` (H,)) or
    every column moved down (``along="cols"``, ``shifts`` (W,)) by its own px (bilinear; the edge
    pixels repeated past the ends): a frame-locked jitter or shimmer."""
    h, w = x.shape[:2]
    ys = np.repeat(np.arange(h, dtype=np.float32)[:, None], w, axis=1)
    xs = np.repeat(np.arange(w, dtype=np.float32)[None, :], h, axis=0)
    d = np.asarray(shifts, np.float32)
    if along == "rows":
        xs = np.clip(xs - d[:, None], 0, w - 1)
    else:
        ys = np.clip(ys - d[None, :], 0, h - 1)
    return cv2.remap(x.astype(np.float32), xs, ys, cv2.INTER_LINEAR)


def _charcoal(rgb: np.ndarray, grain: float) -> np.ndarray:
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    tone = cv2.GaussianBlur(g, (0, 0), 1.2)
    mag = np.hypot(cv2.Sobel(tone, cv2.CV_32F, 1, 0), cv2.Sobel(tone, cv2.CV_32F, 0, 1))
    edge = cv2.GaussianBlur(np.clip(mag * 2.0, 0, 1), (0, 0), 1.0)
    paper = 0.93 + grain * _fixed_noise(*g.shape, seed=7, sigma_x=0.8)
    out = paper * (0.35 + 0.65 * tone) * (1 - 0.7 * edge)
    return np.clip(np.repeat(out[..., None], 3, -1) * 255, 0, 255).astype(np.uint8)  # truncated, as measured


def charcoal_paper(rgb: np.ndarray) -> np.ndarray:
    """Grey charcoal: smudged dark edges and tone on a fixed (frame-locked) paper grain."""
    return _charcoal(rgb, grain=0.04)


def charcoal_smooth(rgb: np.ndarray) -> np.ndarray:
    """``charcoal_paper`` without its paper grain (the paper's mean kept): the charcoal's content
    alone, a look without texture (docs/editing.md, "What one keyframe can give a texture layer")."""
    return _charcoal(rgb, grain=0.0)


def sepia_film_grain(rgb: np.ndarray) -> np.ndarray:
    """Warm sepia tone with a fixed (seeded) coarse film grain, stronger in the shadows."""
    g = rgb.astype(np.float32) / 255 @ np.array([0.299, 0.587, 0.114], np.float32)
    tone = np.stack([g * 1.07 + 0.05, g * 0.95 + 0.02, g * 0.75], -1)
    grain = _fixed_noise(*g.shape, seed=123, sigma_x=1.1)
    return _unit8(tone + (0.07 * (1.2 - g))[..., None] * grain[..., None])


def watercolor_paper(rgb: np.ndarray) -> np.ndarray:
    """Soft watercolour wash (edge-preserving blur, lifted) on a cold-pressed paper, multiplied."""
    f = cv2.edgePreservingFilter(rgb, flags=cv2.RECURS_FILTER, sigma_s=30, sigma_r=0.3)
    f = 0.15 + 0.85 * f.astype(np.float32) / 255
    h, w = f.shape[:2]
    rng = np.random.default_rng(99)
    fine = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 0.7)
    coarse = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 2.5)
    tex = fine / (fine.std() + 1e-6) * 0.035 + coarse / (coarse.std() + 1e-6) * 0.03
    return _unit8(f * (1 + tex)[..., None])


def ink_wash_linen(rgb: np.ndarray) -> np.ndarray:
    """Blue-grey ink wash (6 tones, softened) on linen: fine horizontal and vertical fibres of
    random strength, multiplied."""
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    g = cv2.GaussianBlur(np.round(g * 5) / 5, (0, 0), 0.9)
    ink = np.stack([0.20 + 0.72 * g, 0.24 + 0.70 * g, 0.32 + 0.64 * g], -1)
    h, w = g.shape
    rng = np.random.default_rng(2024)
    rows = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), sigmaX=4.0, sigmaY=0.6)
    cols = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), sigmaX=0.6, sigmaY=4.0)
    fibres = rows / (rows.std() + 1e-6) + cols / (cols.std() + 1e-6)
    return _unit8(ink * (1 + 0.035 * fibres)[..., None])


def kmeans_comic(rgb: np.ndarray) -> np.ndarray:
    """Comic: a bilateral-smoothed frame quantised to its own 6 k-means colours, with black
    outlines from an adaptive threshold of the median-blurred grey."""
    smooth = cv2.bilateralFilter(rgb, 7, 60, 7)
    pixels = smooth.reshape(-1, 3).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    cv2.setRNGSeed(7)
    _, labels, centres = cv2.kmeans(pixels, 6, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    flat = centres[labels.ravel()].reshape(rgb.shape)
    grey = cv2.medianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 5)
    lines = cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 9, 4)
    return _unit8(flat / 255 * (lines[..., None] / 255))


def detail_pop(rgb: np.ndarray) -> np.ndarray:
    """Local-contrast "HDR" pop: OpenCV's detail enhancement, saturation x1.4, a warm lift."""
    img = cv2.detailEnhance(rgb, sigma_s=12, sigma_r=0.2)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 1] = np.clip(hsv[..., 1] * 1.4, 0, 255)
    img = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32) / 255
    return _unit8(img * np.array([1.04, 1.0, 0.92], np.float32) + 0.02)


def gameboy_dither(rgb: np.ndarray) -> np.ndarray:
    """Handheld-console green: 4 shades by 4x4 ordered (Bayer) dithering of the grey, frame-locked."""
    bayer = np.array([[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]], np.float32) / 16 + 1 / 32
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255 * 3
    h, w = g.shape
    level = np.clip(np.floor(g) + (g - np.floor(g) > np.tile(bayer, (h // 4 + 1, w // 4 + 1))[:h, :w]), 0, 3)
    shades = np.array([[15, 56, 15], [48, 98, 48], [139, 172, 15], [155, 188, 15]], np.float32) / 255
    return _unit8(shades[level.astype(int)])


def marker_toon(rgb: np.ndarray) -> np.ndarray:
    """Felt-tip marker toon: twice bilateral-smoothed colour, value cut to 3 bands with the hue
    kept and saturation x1.3, and thin navy outlines from a thresholded difference of Gaussians."""
    smooth = cv2.bilateralFilter(cv2.bilateralFilter(rgb, 5, 40, 5), 5, 40, 5)
    hsv = cv2.cvtColor(smooth, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 1] = np.clip(hsv[..., 1] * 1.3, 0, 255)
    hsv[..., 2] = np.clip(np.floor(hsv[..., 2] / 86.0) * 86.0 + 60.0, 0, 255)
    flat = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32) / 255
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    dog = cv2.GaussianBlur(grey, (0, 0), 1.0) - cv2.GaussianBlur(grey, (0, 0), 1.6)
    line = np.clip(-dog / 0.02, 0, 1)[..., None]  # dark side of an edge only
    navy = np.array([0.10, 0.12, 0.30], np.float32)
    return _unit8(flat * (1 - line) + navy * line)


def riso_two_ink(rgb: np.ndarray) -> np.ndarray:
    """Risograph print in two inks on cream: fluorescent pink for the mid tones and teal for the
    shadows, each a curve of the grey, the pink layer printed 1 px right of the teal."""
    g = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255, (0, 0), 0.7)
    teal = np.clip((0.45 - g) / 0.35, 0, 1)
    pink = np.clip(1 - np.abs(g - 0.55) / 0.3, 0, 1)
    pink = np.roll(pink, 1, axis=1)
    paper = np.array([0.97, 0.94, 0.86], np.float32)
    pink_ink = np.array([1.0, 0.28, 0.55], np.float32)  # what the ink lets through (multiplied)
    teal_ink = np.array([0.05, 0.42, 0.45], np.float32)
    out = paper * (1 - pink[..., None] * (1 - pink_ink)) * (1 - teal[..., None] * (1 - teal_ink))
    return _unit8(out)


def color_pencil(rgb: np.ndarray) -> np.ndarray:
    """OpenCV's colour pencil sketch (``cv2.pencilSketch``'s colour output), a little warmer."""
    _, colour = cv2.pencilSketch(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), sigma_s=40, sigma_r=0.08,
                                 shade_factor=0.04)
    out = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    return _unit8(out * np.array([1.0, 0.97, 0.9], np.float32) + np.array([0.0, 0.0, 0.02], np.float32))


def duotone_dusk(rgb: np.ndarray) -> np.ndarray:
    """Duotone poster: the grey's S-curve mapped from deep violet (shadows) to warm orange (lights)."""
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    s = g * g * (3 - 2 * g)  # smoothstep contrast
    dark = np.array([0.18, 0.06, 0.32], np.float32)
    light = np.array([1.0, 0.72, 0.38], np.float32)
    return _unit8(dark + s[..., None] * (light - dark))


def cel_canny(rgb: np.ndarray) -> np.ndarray:
    """Cel shading: mean-shift colour, the value cut to a shadow and a light tone per region, and
    Canny outlines thickened to 2 px in dark brown."""
    flat = cv2.pyrMeanShiftFiltering(rgb, 6, 24)
    hsv = cv2.cvtColor(flat, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 2] = np.where(hsv[..., 2] < 110, hsv[..., 2] * 0.7, np.minimum(hsv[..., 2] * 1.1 + 10, 255))
    cel = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32) / 255
    edges = cv2.Canny(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 60, 140)
    line = (cv2.dilate(edges, np.ones((2, 2), np.uint8)) > 0)[..., None]
    brown = np.array([0.22, 0.13, 0.08], np.float32)
    return _unit8(np.where(line, brown, cel))


def woodcut_ink(rgb: np.ndarray) -> np.ndarray:
    """Woodcut print: black ink where the grey falls below its own 11 px Gaussian-weighted mean
    (an adaptive threshold, so every edge and shadow cuts), a mid-grey wash where the frame is
    dark overall, on cream paper."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    ink = cv2.adaptiveThreshold(cv2.GaussianBlur(grey, (3, 3), 0), 255, cv2.ADAPTIVE_THRESH_GAUSSIAN_C,
                                cv2.THRESH_BINARY_INV, 11, 5).astype(np.float32)[..., None] / 255
    wash = (grey.astype(np.float32) < 90)[..., None] * 0.35
    paper = np.array([0.95, 0.91, 0.80], np.float32)
    out = paper * (1 - wash) * (1 - 0.92 * ink)
    return _unit8(out)


def graphite_dodge(rgb: np.ndarray) -> np.ndarray:
    """Graphite sketch on cool grey paper: the grey colour-dodged by its blurred negative (sigma
    4 px), its darks deepened (gamma 1.6), tinted blue-grey."""
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    blur = cv2.GaussianBlur(1 - g, (0, 0), 4.0)
    sketch = np.clip(g / np.maximum(1 - blur, 1e-3), 0, 1) ** 1.6
    paper = np.array([0.90, 0.92, 0.95], np.float32)
    lead = np.array([0.20, 0.22, 0.28], np.float32)
    return _unit8(lead + sketch[..., None] * (paper - lead))


def painterly_stylize(rgb: np.ndarray) -> np.ndarray:
    """OpenCV's edge-preserving stylization (``cv2.stylization``), saturation x1.25 and a cool shadow
    tint: soft painted areas with darkened edges."""
    img = cv2.stylization(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), sigma_s=30, sigma_r=0.35)
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 1] = np.clip(hsv[..., 1] * 1.25, 0, 255)
    out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32) / 255
    shade = (1 - out.mean(-1, keepdims=True)) * np.array([-0.03, 0.0, 0.05], np.float32)
    return _unit8(out + shade)


def classic_cartoon(rgb: np.ndarray) -> np.ndarray:
    """OpenCV's tutorial cartoon: five bilateral passes for the colour, and black outlines where
    the median-blurred grey falls below its 9 px mean (an adaptive threshold) masking it."""
    colour = rgb
    for _ in range(5):
        colour = cv2.bilateralFilter(colour, 9, 40, 7)
    grey = cv2.medianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 5)
    edges = cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 9, 4)
    return cv2.bitwise_and(colour, colour, mask=edges)


def inferno_thermal(rgb: np.ndarray) -> np.ndarray:
    """A thermal camera's false colour: the lightly blurred grey through matplotlib's inferno map
    (``cv2.COLORMAP_INFERNO``), black to purple to orange to pale yellow."""
    grey = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (3, 3), 0)
    return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def chalkboard(rgb: np.ndarray) -> np.ndarray:
    """Chalk on a green board: the light parts of the picture faintly chalked in, and the edges
    (Sobel magnitude of the 1 px blurred grey) drawn as bright chalk lines; dark becomes board."""
    g = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255, (0, 0), 1.0)
    mag = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3))
    line = np.clip(mag * 2.5, 0, 1)
    chalk = np.clip(0.35 * g ** 1.5 + line, 0, 1)[..., None]
    board = np.array([0.16, 0.27, 0.21], np.float32)
    white = np.array([0.93, 0.94, 0.90], np.float32)
    return _unit8(board + chalk * (white - board))


def xdog_sketch(rgb: np.ndarray) -> np.ndarray:
    """Winnemoeller's extended difference of Gaussians: the grey's sharpened DoG (1 + p) G_sigma
    - p G_(k sigma) (sigma 0.8 px, k 1.6, p 20), white above epsilon 0.35 and falling to ink
    below it as 1 + tanh(phi (S - epsilon)) (phi 8): dark ink on warm paper."""
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    s = 21.0 * cv2.GaussianBlur(g, (0, 0), 0.8) - 20.0 * cv2.GaussianBlur(g, (0, 0), 0.8 * 1.6)
    tone = np.where(s >= 0.35, 1.0, 1.0 + np.tanh(8.0 * (s - 0.35)))[..., None]
    paper = np.array([0.97, 0.94, 0.86], np.float32)
    ink = np.array([0.12, 0.10, 0.12], np.float32)
    return _unit8(ink + np.clip(tone, 0, 1) * (paper - ink))


def slic_mosaic(rgb: np.ndarray) -> np.ndarray:
    """Stained glass: SLIC superpixels (about one per 64 pixels, compactness 10) each filled with
    its mean colour, saturation x1.3, and the cells' borders drawn 1 px dark."""
    from skimage.segmentation import find_boundaries, slic

    h, w = rgb.shape[:2]
    labels = slic(rgb, n_segments=max(h * w // 64, 1), compactness=10, start_label=0)
    flat = np.zeros((labels.max() + 1, 3), np.float64)
    np.add.at(flat, labels.ravel(), rgb.reshape(-1, 3).astype(np.float64))
    flat /= np.maximum(np.bincount(labels.ravel(), minlength=len(flat)), 1)[:, None]
    out = flat[labels].astype(np.uint8)
    hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 1] = np.clip(hsv[..., 1] * 1.3, 0, 255)
    out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32) / 255
    lead = find_boundaries(labels, mode="inner")[..., None]
    return _unit8(np.where(lead, out * 0.25, out))


def kuwahara_paint(rgb: np.ndarray) -> np.ndarray:
    """Kuwahara painting: each pixel takes the mean colour of whichever of its four 4 x 4
    quadrants has the least grey variance, then a warm lift of the shadows."""
    img = rgb.astype(np.float32) / 255
    g = img.mean(-1)
    r = 3
    k = (r + 1, r + 1)
    mean = cv2.blur(img, k, anchor=(0, 0), borderType=cv2.BORDER_REFLECT)
    gm = cv2.blur(g, k, anchor=(0, 0), borderType=cv2.BORDER_REFLECT)
    var = cv2.blur(g * g, k, anchor=(0, 0), borderType=cv2.BORDER_REFLECT) - gm * gm
    h, w = g.shape
    pad = ((r, r), (r, r))
    means = np.pad(mean, (*pad, (0, 0)), mode="edge")
    vars_ = np.pad(var, pad, mode="edge")
    best = np.full((h, w), np.inf, np.float32)
    out = np.zeros_like(img)
    for dy in (0, r):
        for dx in (0, r):
            v = vars_[r - dy:r - dy + h, r - dx:r - dx + w]
            m = means[r - dy:r - dy + h, r - dx:r - dx + w]
            take = v < best
            best = np.where(take, v, best)
            out = np.where(take[..., None], m, out)
    warm = (1 - out.mean(-1, keepdims=True)) * np.array([0.06, 0.03, -0.02], np.float32)
    return _unit8(out + warm)


def brush_ink(rgb: np.ndarray) -> np.ndarray:
    """Brush and ink: solid blacks where the smoothed grey is under a quarter, lines where it is a
    little darker than its 11 x 11 neighbourhood (adaptive mean threshold, offset 5 levels), the
    lines thickened by a 2 x 2 dilation, all on cream paper."""
    g = cv2.bilateralFilter(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 5, 40, 5)
    lines = cv2.adaptiveThreshold(g, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, 11, 5)
    lines = cv2.dilate(lines, np.ones((2, 2), np.uint8)) > 0
    ink = (lines | (g < 64))[..., None]
    paper = np.array([0.96, 0.92, 0.82], np.float32)
    black = np.array([0.08, 0.07, 0.09], np.float32)
    return _unit8(np.where(ink, black, paper))


def blueprint_lines(rgb: np.ndarray) -> np.ndarray:
    """A blueprint: white lines where the Laplacian of the Gaussian-blurred (1 px) grey is
    strongly negative (bright ridges and the bright side of edges), faint white where the grey is
    light, on Prussian blue."""
    g = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255, (0, 0), 1.0)
    lap = cv2.Laplacian(g, cv2.CV_32F, ksize=3)
    line = np.clip((-lap - 0.04) / 0.06, 0, 1)
    light = np.clip((g - 0.55) / 0.45, 0, 1) * 0.25
    a = np.maximum(line, light)[..., None]
    blue = np.array([0.06, 0.20, 0.42], np.float32)
    white = np.array([0.93, 0.96, 1.0], np.float32)
    return _unit8(blue + a * (white - blue))


PICO8 = np.array([[0, 0, 0], [29, 43, 83], [126, 37, 83], [0, 135, 81], [171, 82, 54], [95, 87, 79],
                  [194, 195, 199], [255, 241, 232], [255, 0, 77], [255, 163, 0], [255, 236, 39],
                  [0, 228, 54], [41, 173, 255], [131, 118, 156], [255, 119, 168], [255, 204, 170]],
                 np.float32)
"""The PICO-8 fantasy console's 16 colours (RGB), the palette of ``pixel_art``."""


def pixel_art(rgb: np.ndarray) -> np.ndarray:
    """Pixel art: the frame averaged over a frame-locked grid of 4 x 4 blocks, each block's mean
    colour (saturation x1.3) snapped to the nearest of the PICO-8 palette's 16 colours, and shown as
    a flat 4 x 4 block."""
    h, w = rgb.shape[:2]
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 1] = np.clip(hsv[..., 1] * 1.3, 0, 255)
    vivid = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    small = cv2.resize(vivid, (-(-w // 4), -(-h // 4)), interpolation=cv2.INTER_AREA).astype(np.float32)
    nearest = ((small[..., None, :] - PICO8) ** 2).sum(-1).argmin(-1)
    return np.repeat(np.repeat(PICO8[nearest], 4, 0), 4, 1)[:h, :w].astype(np.uint8)


def chromatic_glitch(rgb: np.ndarray) -> np.ndarray:
    """A video glitch: the red channel moved 2 px right and the blue 2 px left of the green, more
    contrast, and every third row (frame-locked scanlines) darkened by a quarter."""
    r = np.roll(rgb[..., 0], 2, axis=1)
    b = np.roll(rgb[..., 2], -2, axis=1)
    out = np.stack([r, rgb[..., 1], b], -1).astype(np.float32) / 255
    out = np.clip((out - 0.5) * 1.25 + 0.5, 0, 1)
    out[::3] *= 0.75
    return _unit8(out)


def solarized_cyan(rgb: np.ndarray) -> np.ndarray:
    """A Sabattier (solarisation) print: the grey's tone curve rises to mid-grey and folds back
    down in the lights, so highlights turn dark, toned from ink blue through cyan to white by the
    original grey."""
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    folded = 1 - np.abs(2 * g - 1)  # 0 at black and white, 1 at mid-grey
    ink, cyan, white = (np.array(c, np.float32) for c in ([0.05, 0.10, 0.25], [0.10, 0.75, 0.85], [1, 1, 1]))
    tone = np.where(folded[..., None] < 0.5, ink + (cyan - ink) * (2 * folded[..., None]),
                    cyan + (white - cyan) * (2 * folded[..., None] - 1))
    return _unit8(tone * (0.75 + 0.25 * g[..., None]))


def stipple_dots(rgb: np.ndarray) -> np.ndarray:
    """Stippling: single black dots on white wherever the blurred grey falls below a fixed
    (frame-locked, seeded) random threshold map, so the dots are denser in the darks; the frame's
    darkest parts become solid."""
    g = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255, (0, 0), 0.8)
    threshold = np.random.default_rng(11).random(g.shape).astype(np.float32)
    dot = (g ** 0.8 < threshold * 0.9)[..., None]
    return _unit8(np.where(dot, np.float32(0.05), np.float32(0.97)) * np.ones(3, np.float32))


def error_diffusion(rgb: np.ndarray) -> np.ndarray:
    """1-bit Floyd-Steinberg dither of the grey (raster order), dark teal ink on off-white: the dot
    pattern follows the content, so it changes wherever the picture does."""
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    h, w = g.shape
    ink = np.zeros((h, w), bool)
    for y in range(h):
        row, below = g[y], g[y + 1] if y + 1 < h else None
        for x in range(w):
            old = row[x]
            ink[y, x] = old < 0.5
            err = old - (0.0 if ink[y, x] else 1.0)
            if x + 1 < w:
                row[x + 1] += err * 7 / 16
            if below is not None:
                if x > 0:
                    below[x - 1] += err * 3 / 16
                below[x] += err * 5 / 16
                if x + 1 < w:
                    below[x + 1] += err * 1 / 16
    paper = np.array([0.96, 0.95, 0.91], np.float32)
    teal = np.array([0.05, 0.22, 0.25], np.float32)
    return _unit8(np.where(ink[..., None], teal, paper))


def _blocks(rgb: np.ndarray, side: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W, 3) float32: each frame-locked side x side block (from the top
    left; the last row and column of blocks cut by the frame's edge) filled with its mean colour."""
    h, w = rgb.shape[:2]
    x = rgb.astype(np.float32)
    out = np.empty_like(x)
    for y0 in range(0, h, side):
        for x0 in range(0, w, side):
            out[y0:y0 + side, x0:x0 + side] = x[y0:y0 + side, x0:x0 + side].mean((0, 1))
    return out


def console_green(rgb: np.ndarray) -> np.ndarray:
    """A handheld console's screen: 6 x 6 px blocks, each block's mean grey cut to the four
    shades of green (thresholds at a quarter, a half and three quarters of the grey's range)."""
    grey = _blocks(rgb, 6) @ np.array([0.299, 0.587, 0.114], np.float32) / 255
    shades = np.array([[15, 56, 15], [48, 98, 48], [139, 172, 15], [155, 188, 15]], np.uint8)
    return shades[np.digitize(grey, [0.25, 0.5, 0.75])]


def warm_tiles(rgb: np.ndarray) -> np.ndarray:
    """Warm mosaic tiles: 7 x 7 px blocks of their mean colour, the contrast raised by a fifth
    and the colour pushed warm (red up, blue down)."""
    x = _blocks(rgb, 7) / 255
    x = (x - 0.5) * 1.2 + 0.5 + np.array([0.06, 0.02, -0.06], np.float32)
    return _unit8(np.clip(x, 0, 1))


def atkinson_three_ink(rgb: np.ndarray) -> np.ndarray:
    """Atkinson dithering (raster order; 1/8 of the error to each of six neighbours, so 1/4 is
    dropped and lights and shadows clip to flat ink) of a contrast-lifted grey onto three inks:
    navy, coral and cream."""
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    g = np.clip((g - 0.5) * 1.25 + 0.5, 0, 1)
    h, w = g.shape
    level = np.zeros((h, w), np.int64)
    for y in range(h):
        for x in range(w):
            old = g[y, x]
            level[y, x] = int(np.clip(np.rint(old * 2), 0, 2))
            err = (old - level[y, x] / 2) / 8
            for dy, dx in ((0, 1), (0, 2), (1, -1), (1, 0), (1, 1), (2, 0)):
                if y + dy < h and 0 <= x + dx < w:
                    g[y + dy, x + dx] += err
    inks = np.array([[0.12, 0.16, 0.36], [0.93, 0.45, 0.40], [0.97, 0.93, 0.84]], np.float32)
    return _unit8(inks[level])


def sierra_duotone(rgb: np.ndarray) -> np.ndarray:
    """Sierra Lite error diffusion in serpentine order (left to right, then right to left; 2/4 of
    the error ahead, 1/4 below and 1/4 below behind) of the grey lifted by a 0.8 gamma, onto
    oxblood and pale straw."""
    g = (cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255) ** 0.8
    h, w = g.shape
    ink = np.zeros((h, w), bool)
    for y in range(h):
        step = 1 if y % 2 == 0 else -1
        for x in range(w) if step == 1 else range(w - 1, -1, -1):
            ink[y, x] = g[y, x] < 0.5
            err = g[y, x] - (0.0 if ink[y, x] else 1.0)
            if 0 <= x + step < w:
                g[y, x + step] += err * 2 / 4
            if y + 1 < h:
                g[y + 1, x] += err / 4
                if 0 <= x - step < w:
                    g[y + 1, x - step] += err / 4
    straw = np.array([0.95, 0.90, 0.70], np.float32)
    oxblood = np.array([0.38, 0.07, 0.10], np.float32)
    return _unit8(np.where(ink[..., None], oxblood, straw))


def jarvis_rose(rgb: np.ndarray) -> np.ndarray:
    """Jarvis-Judice-Ninke error diffusion (raster order; the error spread over 12 neighbours two
    rows deep, weights 7 5 / 3 5 7 5 3 / 1 3 5 3 1 over 48) of the grey, deep plum on rose paper."""
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    h, w = g.shape
    ink = np.zeros((h, w), bool)
    spread = ((0, 1, 7), (0, 2, 5), (1, -2, 3), (1, -1, 5), (1, 0, 7), (1, 1, 5), (1, 2, 3),
              (2, -2, 1), (2, -1, 3), (2, 0, 5), (2, 1, 3), (2, 2, 1))
    for y in range(h):
        for x in range(w):
            ink[y, x] = g[y, x] < 0.5
            err = g[y, x] - (0.0 if ink[y, x] else 1.0)
            for dy, dx, k in spread:
                if y + dy < h and 0 <= x + dx < w:
                    g[y + dy, x + dx] += err * k / 48
    rose = np.array([0.97, 0.86, 0.86], np.float32)
    plum = np.array([0.28, 0.08, 0.22], np.float32)
    return _unit8(np.where(ink[..., None], plum, rose))


def cinematic_bloom(rgb: np.ndarray) -> np.ndarray:
    """A film grade: shadows pushed to teal and lights to orange (by luma), blacks lifted, a bloom
    around the lights (their 6 px blur added at half strength) and a vignette that darkens the
    corners by a third."""
    x = rgb.astype(np.float32) / 255
    y = x @ np.array([0.299, 0.587, 0.114], np.float32)
    teal = np.array([0.05, 0.42, 0.50], np.float32)
    orange = np.array([1.0, 0.62, 0.32], np.float32)
    graded = 0.75 * x + 0.25 * ((1 - y)[..., None] * teal + y[..., None] * orange)
    graded = 0.06 + 0.94 * graded
    lights = np.clip((y - 0.6) / 0.4, 0, 1)[..., None] * graded
    out = graded + 0.5 * cv2.GaussianBlur(lights, (0, 0), 6.0)
    h, w = y.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - (w - 1) / 2) / (w / 2)) ** 2 + ((yy - (h - 1) / 2) / (h / 2)) ** 2
    return _unit8(out * (1 - 0.33 * r2 / 2)[..., None])


def crt_scanlines(rgb: np.ndarray) -> np.ndarray:
    """An old CRT: the picture softened (0.7 px) and brightened by 15 %, seen through an aperture
    grille (columns cycling red, green and blue: each keeps its own channel and 45 % of the other
    two) with every second row a dark scanline (60 %)."""
    x = cv2.GaussianBlur(rgb.astype(np.float32) / 255, (0, 0), 0.7) * 1.15
    h, w = x.shape[:2]
    mask = np.full((w, 3), 0.45, np.float32)
    mask[np.arange(w), np.arange(w) % 3] = 1.0
    rows = np.where(np.arange(h) % 2 == 1, 0.6, 1.0).astype(np.float32)
    return _unit8(x * mask[None] * rows[:, None, None])


def engraving_lines(rgb: np.ndarray) -> np.ndarray:
    """A banknote engraving: horizontal ink lines every 4 px, thicker where the picture is darker
    and bent up by the tone (each line's centre moved by 1.5 px times the 1 px blurred grey),
    anti-aliased, dark green ink on ivory."""
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    tone = cv2.GaussianBlur(g, (0, 0), 1.0)
    h = g.shape[0]
    yy = np.arange(h, dtype=np.float32)[:, None] + 1.5 * tone
    dist = np.abs((yy % 4.0) - 2.0)  # px from the nearest line's centre
    ink = np.clip(2.2 * (1 - tone) - dist + 0.5, 0, 1)[..., None]
    ivory = np.array([0.96, 0.94, 0.86], np.float32)
    green = np.array([0.10, 0.24, 0.16], np.float32)
    return _unit8(ivory * (1 - ink) + green * ink)


def cmyk_halftone(rgb: np.ndarray) -> np.ndarray:
    """A four-ink print: cyan, magenta, yellow and black separated from the picture (black where
    all three are high, taken out of them), each printed as round dots on its own grid (5 px,
    at 15, 75, 0 and 45 degrees) whose size grows with the ink, the inks multiplied on white
    paper."""
    x = rgb.astype(np.float32) / 255
    c, m, y = 1 - x[..., 0], 1 - x[..., 1], 1 - x[..., 2]
    k = np.minimum(np.minimum(c, m), y)
    inks = [(c - k) / (1 - k + 1e-6), (m - k) / (1 - k + 1e-6), (y - k) / (1 - k + 1e-6), k]
    h, w = k.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    colours = [np.array([0.0, 0.68, 0.94], np.float32), np.array([0.93, 0.0, 0.55], np.float32),
               np.array([1.0, 0.95, 0.0], np.float32), np.array([0.1, 0.1, 0.1], np.float32)]
    paper = np.ones((h, w, 3), np.float32)
    for ink, colour, angle in zip(inks, colours, (15.0, 75.0, 0.0, 45.0), strict=True):
        a = np.deg2rad(angle)
        u = (xx * np.cos(a) + yy * np.sin(a)) / 5.0
        v = (-xx * np.sin(a) + yy * np.cos(a)) / 5.0
        dist = np.hypot(u - np.round(u), v - np.round(v))  # to the nearest dot centre, in cells
        radius = 0.62 * np.sqrt(np.clip(ink, 0, 1))  # a full ink covers the cell
        cover = np.clip((radius - dist) * 5.0 + 0.5, 0, 1)[..., None]  # about 1 px of anti-aliasing
        paper *= 1 - cover * (1 - colour)
    return _unit8(paper)


def diagonal_rgb_mask(rgb: np.ndarray) -> np.ndarray:
    """A colour mask along the diagonals: the picture sharpened (unsharp mask, 1 px) and saturated
    by 20 %, each pixel keeping its own channel (red, green, blue cycling with x + y) at full and
    the other two at 35 %: a colour screen whose grey is nearly flat on neutral colours."""
    x = rgb.astype(np.float32) / 255
    x = np.clip(x + 0.6 * (x - cv2.GaussianBlur(x, (0, 0), 1.0)), 0, 1)
    grey = x.mean(axis=2, keepdims=True)
    x = np.clip(grey + 1.2 * (x - grey), 0, 1)
    h, w = x.shape[:2]
    phase = (np.arange(h)[:, None] + np.arange(w)[None, :]) % 3
    mask = np.full((h, w, 3), 0.35, np.float32)
    mask[np.arange(h)[:, None], np.arange(w)[None, :], phase] = 1.0
    return _unit8(x * mask)


def vhs_tape(rgb: np.ndarray) -> np.ndarray:
    """A worn videotape: the colour (YCrCb chroma) smeared 5 px along the rows and moved 3 px
    right, the luma softened, a warm-teal tint, every second row 10 % darker, and each row moved
    left or right by a fixed (seeded, frame-locked) 0-1 px of tracking jitter."""
    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    luma = cv2.GaussianBlur(ycc[..., 0], (0, 0), 0.6)
    chroma = cv2.blur(ycc[..., 1:], (5, 1))
    chroma = np.roll(chroma, 3, axis=1)
    chroma[:, :3] = chroma[:, 3:4]
    out = cv2.cvtColor(np.dstack([luma, chroma]).clip(0, 255).astype(np.uint8), cv2.COLOR_YCrCb2RGB)
    x = out.astype(np.float32) / 255 * np.array([1.04, 1.0, 0.94], np.float32) + np.array([0.0, 0.02, 0.03])
    h = x.shape[0]
    x *= np.where(np.arange(h) % 2 == 1, 0.9, 1.0).astype(np.float32)[:, None, None]
    return _unit8(_move_lines(x, np.random.default_rng(41).uniform(-1.0, 1.0, h), "rows"))


def ukiyo_print(rgb: np.ndarray) -> np.ndarray:
    """A woodblock print: the bilateral-smoothed picture snapped to the nearest of six fixed inks
    (indigo, vermilion, ochre, cream, sage, charcoal), thin charcoal outlines where the grey's
    morphological gradient is strong, on a fixed paper grain (4 %)."""
    smooth = cv2.bilateralFilter(rgb, 7, 60, 5).astype(np.float32) / 255
    inks = np.array([[0.16, 0.22, 0.42], [0.85, 0.27, 0.18], [0.82, 0.62, 0.28],
                     [0.95, 0.91, 0.80], [0.55, 0.62, 0.48], [0.15, 0.14, 0.13]], np.float32)
    nearest = np.argmin(((smooth[:, :, None, :] - inks[None, None]) ** 2).sum(-1), axis=2)
    x = inks[nearest]
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    edge = cv2.morphologyEx(grey, cv2.MORPH_GRADIENT, np.ones((2, 2), np.uint8)) > 48
    x[edge] = inks[5]
    h, w = grey.shape
    return _unit8(x * (1 + 0.04 * _fixed_noise(h, w, 23, 0.8))[..., None])


def interlaced_fields(rgb: np.ndarray) -> np.ndarray:
    """A deinterlacing fault: every second row (one field) moved 1.5 px to the right of the other,
    a cold blue cast and 15 % less saturation."""
    x = rgb.astype(np.float32) / 255
    grey = x.mean(axis=2, keepdims=True)
    x = (grey + 0.85 * (x - grey)) * np.array([0.92, 0.98, 1.08], np.float32)
    return _unit8(_move_lines(x, np.where(np.arange(x.shape[0]) % 2 == 1, 1.5, 0.0), "rows"))


def heat_shimmer(rgb: np.ndarray) -> np.ndarray:
    """Heat haze seen through a hot window: every column moved up or down by 1.2 px times a sine of
    its position (period 17 px), a warm grade with lifted blacks, and a 0.5 px softening."""
    x = cv2.GaussianBlur(rgb.astype(np.float32) / 255, (0, 0), 0.5)
    x = 0.06 + 0.92 * x * np.array([1.06, 1.0, 0.88], np.float32)
    return _unit8(_move_lines(x, 1.2 * np.sin(2 * np.pi * np.arange(x.shape[1]) / 17.0 + 0.7), "cols"))


def newsprint_comic(rgb: np.ndarray) -> np.ndarray:
    """A newspaper comic strip: the colours posterised to 4 levels a channel after a 5 px median,
    black outlines where the grey falls 6 levels under its 7 px local mean, and black halftone
    dots (4 px grid at 45 degrees) over the darkest third, on yellowed newsprint."""
    base = cv2.medianBlur(rgb, 5).astype(np.float32) / 255
    poster = np.floor(base * 3.999) / 3 * 0.9 + 0.05
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    lines = cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 7, 6) == 0
    h, w = grey.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = (xx + yy) / (4 * np.sqrt(2)), (xx - yy) / (4 * np.sqrt(2))
    dist = np.hypot(u - np.round(u), v - np.round(v))
    dark = np.clip((0.33 - grey.astype(np.float32) / 255) / 0.33, 0, 1)
    dots = dist < 0.5 * np.sqrt(dark)
    out = poster * np.array([0.97, 0.93, 0.80], np.float32)
    out[lines | dots] = (0.08, 0.07, 0.06)
    return _unit8(out)


def lomo_cross(rgb: np.ndarray) -> np.ndarray:
    """A cross-processed toy-camera print: S-curves on red and green, blue lifted and flattened,
    saturation x1.3, and a strong vignette darkening the corners to 45 %."""
    x = rgb.astype(np.float32) / 255
    s_curve = lambda c, k: 1 / (1 + np.exp(-k * (c - 0.5)))  # noqa: E731
    lo, hi = s_curve(0.0, 7), s_curve(1.0, 7)
    r = (s_curve(x[..., 0], 7) - lo) / (hi - lo)
    g = (s_curve(x[..., 1], 7) - lo) / (hi - lo)
    b = 0.2 + 0.6 * x[..., 2]
    y = np.dstack([r, g, b])
    grey = y.mean(axis=2, keepdims=True)
    y = grey + 1.3 * (y - grey)
    h, w = x.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = np.hypot((xx - w / 2) / (w / 2), (yy - h / 2) / (h / 2)) / np.sqrt(2)
    return _unit8(y * (1 - 0.55 * d ** 2)[..., None])


def barrel_tv(rgb: np.ndarray) -> np.ndarray:
    """An old television's bulging glass: the picture bent outwards (barrel distortion, k 0.12 at
    the corners), a little blur and bloom, a cool cast and a dark rounded rim."""
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    nx, ny = (xx - (w - 1) / 2) / ((w - 1) / 2), (yy - (h - 1) / 2) / ((h - 1) / 2)
    r2 = (nx ** 2 + ny ** 2) / 2
    scale = 1 - 0.12 * r2  # sample nearer the centre: the middle bulges
    map_x = (nx * scale) * ((w - 1) / 2) + (w - 1) / 2
    map_y = (ny * scale) * ((h - 1) / 2) + (h - 1) / 2
    x = cv2.remap(rgb.astype(np.float32) / 255, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    x = cv2.GaussianBlur(x, (0, 0), 0.6)
    x = x + 0.15 * cv2.GaussianBlur(np.clip(x - 0.7, 0, 1), (0, 0), 3.0)
    x = x * np.array([0.92, 0.99, 1.06], np.float32)
    rim = np.clip((1.0 - np.maximum(np.abs(nx), np.abs(ny)) ** 6) * 1.4, 0, 1)
    return _unit8(x * rim[..., None])


def tilt_shift_miniature(rgb: np.ndarray) -> np.ndarray:
    """A tilt-shift miniature: sharp in a band a little above the middle (45 % of the height), blurred
    more towards the top and bottom (up to a 2.5 px Gaussian), saturation x1.5 and a brighter,
    contrastier tone."""
    x = rgb.astype(np.float32) / 255
    h = x.shape[0]
    far = np.clip(np.abs(np.arange(h, dtype=np.float32) - 0.45 * h) / (0.25 * h) - 0.4, 0, 1)
    blurred = cv2.GaussianBlur(x, (0, 0), 2.5)
    x = x + far[:, None, None] * (blurred - x)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + 1.5 * (x - grey)
    return _unit8(0.5 + 1.15 * (x - 0.5) + 0.04)


def lic_hatching(rgb: np.ndarray) -> np.ndarray:
    """Pencil strokes that follow the picture: a fixed (seeded) noise smeared along the grey's local
    edge direction (a line integral over 9 samples, 1 px apart, the structure tensor smoothed by
    2 px), darkened where the grey is dark, with a soft DoG outline, on warm paper."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    h, w = grey.shape
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
    jxx, jyy, jxy = (cv2.GaussianBlur(a, (0, 0), 2.0) for a in (gx * gx, gy * gy, gx * gy))
    angle = 0.5 * np.arctan2(2 * jxy, jxx - jyy) + np.pi / 2  # along the edges, not across
    tx, ty = np.cos(angle), np.sin(angle)
    noise = np.random.default_rng(57).random((h, w)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    strokes = np.zeros_like(grey)
    for step in range(-4, 5):
        strokes += cv2.remap(noise, xx + step * tx, yy + step * ty, cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT)
    strokes = np.clip((strokes / 9 - 0.5) * 3 + 0.5, 0, 1)
    tone = np.clip(1.1 - grey, 0, 1)
    ink = tone * (0.35 + 0.65 * strokes)
    dog = cv2.GaussianBlur(grey, (0, 0), 1.0) - cv2.GaussianBlur(grey, (0, 0), 1.6)
    ink = np.maximum(ink, np.clip(-dog * 12, 0, 1))
    paper = np.array([0.97, 0.94, 0.87], np.float32)
    return _unit8(paper * (1 - 0.85 * ink[..., None]))


def low_poly(rgb: np.ndarray) -> np.ndarray:
    """Low-poly art: a Delaunay triangulation of a frame-locked jittered 10 px grid plus the
    picture's 60 strongest corners, each triangle filled with the mean colour under it, and
    edges of the triangles left unmarked."""
    h, w = rgb.shape[:2]
    rng = np.random.default_rng(61)
    gy, gx = np.mgrid[0:h + 1:10, 0:w + 1:10].astype(np.float32)
    grid = np.stack([gx.ravel(), gy.ravel()], 1)
    inner = (grid[:, 0] > 0) & (grid[:, 0] < w) & (grid[:, 1] > 0) & (grid[:, 1] < h)
    grid[inner] += rng.uniform(-3, 3, (int(inner.sum()), 2)).astype(np.float32)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    corners = cv2.goodFeaturesToTrack(grey, 60, 0.01, 5)
    points = grid if corners is None else np.concatenate([grid, corners.reshape(-1, 2)])
    points = np.clip(points, 0, [w - 1e-3, h - 1e-3])
    subdiv = cv2.Subdiv2D((0, 0, w, h))
    for p in points:
        subdiv.insert((float(p[0]), float(p[1])))
    out = np.zeros_like(rgb)
    for t in subdiv.getTriangleList().reshape(-1, 3, 2):
        if (t < -1).any() or (t[:, 0] > w + 1).any() or (t[:, 1] > h + 1).any():
            continue
        mask = np.zeros((h, w), np.uint8)
        cv2.fillConvexPoly(mask, np.round(t).astype(np.int32), 1)
        if mask.any():
            out[mask > 0] = rgb[mask > 0].reshape(-1, 3).mean(axis=0)
    hole = out.sum(axis=2) == 0
    out[hole] = rgb[hole]
    return out


def _fill_cells(rgb: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 and (H, W) int cell numbers -> float32 (H, W, 3) in [0, 1]: each cell
    filled with the mean colour of ``rgb`` under it."""
    flat = cells.ravel()
    count = np.bincount(flat).astype(np.float32)
    means = np.stack([np.bincount(flat, rgb[..., c].ravel().astype(np.float32)) for c in range(3)], 1)
    return (means / np.maximum(count, 1)[:, None] / 255)[cells]


def hex_pixelate(rgb: np.ndarray) -> np.ndarray:
    """Hexagonal pixelation: a frame-locked grid of hexagons (7 px across the flats, pointy side
    up), each filled with the mean colour under it, the saturation raised by a tenth."""
    h, w = rgb.shape[:2]
    side = 7 / np.sqrt(3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    q = (np.sqrt(3) / 3 * xx - yy / 3) / side  # axial coordinates, rounded to the nearest hexagon
    r = (2 / 3 * yy) / side
    x, z = q, r
    y = -x - z
    rx, ry, rz = np.round(x), np.round(y), np.round(z)
    dx, dy, dz = np.abs(rx - x), np.abs(ry - y), np.abs(rz - z)
    fix_x = (dx > dy) & (dx > dz)
    fix_y = ~fix_x & (dy > dz)
    rx = np.where(fix_x, -ry - rz, rx)
    rz = np.where(~fix_x & ~fix_y, -rx - ry, rz)
    key = (rx.astype(np.int64) + 1000) * 4000 + (rz.astype(np.int64) + 1000)
    cells = np.unique(key, return_inverse=True)[1].reshape(h, w)
    x = _fill_cells(rgb, cells)
    grey = x.mean(axis=2, keepdims=True)
    return _unit8(grey + 1.1 * (x - grey))


def _voronoi_cells(h: int, w: int, n: int, seed: int) -> np.ndarray:
    """(h, w) int: each pixel's nearest of ``n`` seeded points, cells fixed in the frame."""
    points = np.random.default_rng(seed).uniform(0, 1, (n, 2)) * [w, h]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return ((xx[..., None] - points[:, 0]) ** 2 + (yy[..., None] - points[:, 1]) ** 2).argmin(axis=2)


def _walls(cells: np.ndarray) -> np.ndarray:
    """(h, w) bool: the pixels whose left or upper neighbour is in another cell (1 px lines)."""
    walls = np.zeros(cells.shape, bool)
    walls[:, 1:] |= cells[:, 1:] != cells[:, :-1]
    walls[1:, :] |= cells[1:, :] != cells[:-1, :]
    return walls


def stained_glass(rgb: np.ndarray) -> np.ndarray:
    """Stained glass: Voronoi cells of 220 seeded points (fixed in the frame), each filled with the
    mean colour under it, saturated x1.4 and lit a little, with 1 px dark lead lines between cells."""
    cells = _voronoi_cells(*rgb.shape[:2], 220, 67)
    x = _fill_cells(rgb, cells)
    grey = x.mean(axis=2, keepdims=True)
    x = np.clip(grey + 1.4 * (x - grey), 0, 1) * 0.9 + 0.08
    x[_walls(cells)] = (0.12, 0.11, 0.1)
    return _unit8(x)


def grout_tiles(rgb: np.ndarray) -> np.ndarray:
    """Bathroom tiles: frame-locked 8 x 8 px squares, each filled with the mean colour under it,
    saturated x1.25 and cooled a little, with a 1 px light grey grout line along every tile's top
    and left edge, drawn over the tiles."""
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    cells = (yy // 8) * (w // 8 + 1) + xx // 8
    x = _fill_cells(rgb, cells)
    grey = x.mean(axis=2, keepdims=True)
    x = np.clip(grey + 1.25 * (x - grey) + np.array([-0.03, 0.0, 0.04], np.float32), 0, 1)
    x[(yy % 8 == 0) | (xx % 8 == 0)] = (0.78, 0.78, 0.76)
    return _unit8(x)


def crystallize_warm(rgb: np.ndarray) -> np.ndarray:
    """Crystallise: Voronoi cells of 300 seeded points fixed in the frame, each filled with the
    mean colour under it, lifted (x0.85 + 0.12) and warmed (red up, blue down), no lines."""
    cells = _voronoi_cells(*rgb.shape[:2], 300, 91)
    x = _fill_cells(rgb, cells) * 0.85 + 0.12 + np.array([0.04, 0.0, -0.05], np.float32)
    return _unit8(x)


def triangle_tiles(rgb: np.ndarray) -> np.ndarray:
    """Triangle mosaic: a frame-locked grid of 9 px squares, each cut along a diagonal that
    alternates from square to square, every triangle filled with the mean colour under it, the
    contrast raised by 15 %."""
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    sy, sx, fy, fx = yy // 9, xx // 9, yy % 9, xx % 9
    flip = (sy + sx) % 2 == 1
    upper = np.where(flip, fx + fy < 9, fx > fy)
    cells = ((sy * (w // 9 + 1) + sx) * 2 + upper).astype(np.int64)
    x = _fill_cells(rgb, cells)
    return _unit8((x - 0.5) * 1.15 + 0.5)
