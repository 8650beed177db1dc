"""Reading the stage-2 reference image (a stylised version of one subject frame)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

log = logging.getLogger(__name__)


class ReferenceError(ValueError):
    """The reference image cannot be used; the message says why."""


@dataclass
class Reference:
    """The reference at the avatar's resolution.

    Attributes:
        image: (1, 3, S, S) float32 in [-1, 1].
        rgb: (S, S, 3) uint8 RGB (what the contact sheet shows).
        sha256: hex digest of the original file bytes (or array bytes).
        original_size: (width, height) before resizing.
        resized: whether it had to be resized.
        source: file path or "array".
    """

    image: torch.Tensor
    rgb: np.ndarray
    sha256: str
    original_size: tuple[int, int]
    resized: bool
    source: str


def _to_rgb(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.dtype == np.uint16:
        arr = (arr // 257).astype(np.uint8)
    if arr.dtype != np.uint8:
        raise ReferenceError(f"{what}: expected 8-bit image data, got {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ReferenceError(f"{what}: expected an RGB image (H, W, 3), got shape {arr.shape}")
    return np.ascontiguousarray(arr[..., :3])


def _over_white(bgra: np.ndarray, path: Path) -> np.ndarray:
    """(H, W, 4) BGRA (8 or 16 bit) -> (H, W, 3) BGR composited over white where it is transparent."""
    alpha = bgra[..., 3:4].astype(np.float32) / float(np.iinfo(bgra.dtype).max)
    if alpha.min() >= 1.0:
        return np.ascontiguousarray(bgra[..., :3])
    log.warning("reference %s has transparent pixels (%.0f%%): composited over white",
                path, 100.0 * float((alpha[..., 0] < 1.0).mean()))
    white = float(np.iinfo(bgra.dtype).max)
    out = bgra[..., :3].astype(np.float32) * alpha + white * (1.0 - alpha)
    return np.round(out).astype(bgra.dtype)


def load_reference(reference: Path | str | np.ndarray, size: int) -> Reference:
    """Read a reference (file or (H, W, 3) uint8 RGB array) and bring it to ``size`` x ``size``.

    A reference of another size is resized (area filter when shrinking, cubic when enlarging) and
    a warning says so; a non-square one is also stretched to square (said too), since the
    reference must line up with the frame it stylises.

    Raises:
        FileNotFoundError: no such file.
        ReferenceError: not an image / unreadable / wrong layout.
    """
    if isinstance(reference, np.ndarray):
        rgb = _to_rgb(reference, "reference array")
        digest = hashlib.sha256(rgb.tobytes() + str(rgb.shape).encode()).hexdigest()
        source = "array"
    else:
        path = Path(reference)
        if not path.is_file():
            raise FileNotFoundError(f"reference image {path} not found")
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
        if bgr is None:
            raise ReferenceError(
                f"reference {path} is not an image OpenCV can read (PNG, JPEG, BMP, TIFF, WebP ...)"
            )
        if bgr.ndim == 3 and bgr.shape[2] == 4:
            bgr = _over_white(bgr, path)
        rgb = _to_rgb(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if bgr.ndim == 3 else bgr, f"reference {path}")
        source = str(path)
    h, w = rgb.shape[:2]
    if min(h, w) < 8:
        raise ReferenceError(f"reference is only {w}x{h} pixels")
    resized = (h, w) != (size, size)
    if resized:
        note = " (not square: stretched; crop it like the subject frames for best results)" if h != w else ""
        log.warning("reference is %dx%d; resized to %dx%d to match the avatar%s", w, h, size, size, note)
        interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_CUBIC
        rgb = cv2.resize(rgb, (size, size), interpolation=interp)
    image = torch.from_numpy(rgb).permute(2, 0, 1).float()[None] / 127.5 - 1.0
    return Reference(
        image=image, rgb=rgb, sha256=digest, original_size=(w, h), resized=resized, source=source
    )
