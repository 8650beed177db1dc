"""The built-in looks: OpenCV non-photorealistic filters over one (H, W, 3) uint8 RGB image.

The edit needs one painted version of a frame, and these looks make one without another tool
(``emo-avatar stylize``). Applied to real held-out frames they are also the ground truth that
``emo-avatar eval --look`` scores a style against (``backend.metrics.style_eval``):

* ``cartoon``: edge-preserving smoothing, colour quantisation and dark Canny outlines.
* ``pencil``: colour-dodge sketch with ``cv2.pencilSketch`` grain (greyscale).
* ``oil``: ``cv2.xphoto.oilPainting`` (opencv-contrib) blended with an edge-preserving copy.
* ``watercolor``: ``cv2.stylization`` on a bilateral-smoothed frame, lifted towards paper white.

Filter radii scale with the image size (they are tuned at 512 px), so a 64 px test frame and a
512 px frame get the same look.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

LOOKS = ("cartoon", "pencil", "oil", "watercolor")

LookFn = Callable[[np.ndarray], np.ndarray]
"""A look as a function: (H, W, 3) uint8 RGB -> (H, W, 3) uint8 RGB."""


def _check_rgb(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {img.dtype} {img.shape}")
    if min(img.shape[:2]) < 8:
        raise ValueError(f"image too small to stylise: {img.shape[1]}x{img.shape[0]}")
    return np.ascontiguousarray(img)


def _cartoon(bgr: np.ndarray, k: float) -> np.ndarray:
    """Edge-preserving smoothing, 8-level colour quantisation, dark Canny outlines."""
    smooth = cv2.edgePreservingFilter(bgr, flags=cv2.RECURS_FILTER, sigma_s=max(60 * k, 5), sigma_r=0.4)
    levels = 8
    quant = (np.floor(smooth.astype(np.float32) / 256 * levels) + 0.5) * (256 / levels)
    out = np.clip(quant * 1.05, 0, 255).astype(np.uint8)  # a touch brighter, like flat cel paint
    gray = cv2.cvtColor(cv2.bilateralFilter(bgr, 7, 60, 7), cv2.COLOR_BGR2GRAY)
    med = float(np.median(gray))
    edges = cv2.Canny(gray, 0.66 * med, 1.33 * med)
    if k >= 0.4:  # thicker lines on large images
        edges = cv2.dilate(edges, np.ones((2, 2), np.uint8))
    out[edges > 0] = (out[edges > 0] * 0.15).astype(np.uint8)
    return out


def _pencil(bgr: np.ndarray, k: float) -> np.ndarray:
    """Colour-dodge sketch (grey / blurred inverse) with pencil-grain shading from cv2.pencilSketch."""
    gray = cv2.cvtColor(cv2.bilateralFilter(bgr, 5, 40, 5), cv2.COLOR_BGR2GRAY)
    sigma = max(8 * k * 4, 1.5)
    blur = cv2.GaussianBlur(255 - gray, (0, 0), sigma)
    dodge = cv2.divide(gray, 255 - blur, scale=256)
    grain, _ = cv2.pencilSketch(bgr, sigma_s=max(60 * k, 10), sigma_r=0.1, shade_factor=0.1)
    out = cv2.addWeighted(dodge, 0.85, cv2.normalize(grain, None, 120, 255, cv2.NORM_MINMAX), 0.15, 0)
    return cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)


def _oil(bgr: np.ndarray, k: float) -> np.ndarray:
    """``cv2.xphoto.oilPainting`` blended with an edge-preserving copy (keeps the features), brush detail."""
    size = max(2, round(8 * k))
    oil = cv2.xphoto.oilPainting(bgr, size, 1)
    base = cv2.edgePreservingFilter(bgr, flags=cv2.RECURS_FILTER, sigma_s=max(30 * k, 4), sigma_r=0.3)
    out = cv2.addWeighted(oil, 0.6, base, 0.4, 0)
    return cv2.detailEnhance(out, sigma_s=max(10 * k, 2), sigma_r=0.15)


def _watercolor(bgr: np.ndarray, k: float) -> np.ndarray:
    soft = cv2.bilateralFilter(bgr, d=max(3, int(9 * k * 2)), sigmaColor=60, sigmaSpace=max(9 * k, 2))
    styl = cv2.stylization(soft, sigma_s=max(60 * k, 5), sigma_r=0.6)
    paper = np.full_like(styl, (225, 240, 248))  # warm paper, BGR
    return cv2.addWeighted(styl, 0.8, paper, 0.2, 0)


_FILTERS = {"cartoon": _cartoon, "pencil": _pencil, "oil": _oil, "watercolor": _watercolor}


def stylize_image(image: np.ndarray, look: str) -> np.ndarray:
    """Apply a look to an (H, W, 3) uint8 RGB image; returns the same shape and dtype.

    Raises:
        ValueError: unknown look (names the known ones) or not an RGB uint8 image.
    """
    if look not in _FILTERS:
        raise ValueError(f"unknown look {look!r}; choose one of {', '.join(LOOKS)}")
    rgb = _check_rgb(image)
    k = min(rgb.shape[:2]) / 512.0
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    out = _FILTERS[look](bgr, k)
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB)


def look_function(look: str | LookFn) -> tuple[str, LookFn]:
    """(name, function) of a built-in look name or of a caller's look function.

    A function's name is its ``__name__`` (``"custom"`` when it has none).

    Raises:
        ValueError: an unknown look name (names the known ones) or neither a name nor a callable.
    """
    if isinstance(look, str):
        if look not in _FILTERS:
            raise ValueError(f"unknown look {look!r}; choose one of {', '.join(LOOKS)}")
        return look, lambda rgb: stylize_image(rgb, look)
    if not callable(look):
        raise ValueError(f"a look is a name ({', '.join(LOOKS)}) or a function uint8 RGB -> uint8 RGB, "
                         f"got {type(look).__name__}")
    return str(getattr(look, "__name__", "custom")), look


def apply_look(image: np.ndarray, look: str | LookFn) -> np.ndarray:
    """Apply a built-in look (by name) or a look function to an (H, W, 3) uint8 RGB image.

    Raises:
        ValueError: unknown look, bad input image, a function that raises, or one that returns
            another shape or dtype than its input.
    """
    name, fn = look_function(look)
    rgb = _check_rgb(image)
    try:
        out = np.asarray(fn(rgb))
    except Exception as exc:  # a caller's look: whatever it raises is reported as bad input
        raise ValueError(f"look {name!r} failed on a {rgb.shape[1]}x{rgb.shape[0]} uint8 RGB image: "
                         f"{type(exc).__name__}: {exc}") from exc
    if out.shape != rgb.shape or out.dtype != np.uint8:
        raise ValueError(f"look {name!r} returned {out.dtype} {out.shape} for a uint8 {rgb.shape} image; "
                         f"a look must return the same shape as uint8 RGB")
    return out


def load_look(spec: str) -> str | LookFn:
    """A look named on a command line: a built-in name, or ``FILE.py:FUNCTION`` /
    ``package.module:FUNCTION`` for a look function of the caller's (uint8 RGB -> uint8 RGB), so a
    look no part of the product makes can be scored (``emo-avatar eval --look``).

    Raises:
        ValueError: an unknown built-in name, a file or module that does not load, or a name in it
            that is missing or not callable; each names what was asked for.
    """
    if ":" not in spec:
        look_function(spec)  # a clear error for an unknown name
        return spec
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise ValueError(f"look {spec!r}: expected a built-in name ({', '.join(LOOKS)}), FILE.py:FUNCTION "
                         f"or package.module:FUNCTION")
    module = _load_module(where, spec)
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise ValueError(f"look {spec!r}: {where} has no function {attr!r}")
    return fn


def _load_module(where: str, spec: str) -> object:
    """The module of ``load_look``'s FILE.py or package.module part; ValueError when it does not load."""
    path = Path(where)
    if where.endswith(".py") and not path.is_file():
        raise ValueError(f"look {spec!r}: no file {path}")
    try:  # the caller's code runs here: whatever it raises while loading is reported with the look
        if not where.endswith(".py"):
            return importlib.import_module(where)
        module_spec = importlib.util.spec_from_file_location(f"_look_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module
    except Exception as exc:
        raise ValueError(f"look {spec!r}: loading {where} failed: {type(exc).__name__}: {exc}") from exc
