"""Conversions between uint8 RGB images and [-1, 1] tensors, square resampling, and grey."""

from __future__ import annotations

import cv2
import numpy as np
import torch


def luma(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB in any units -> (...) float64 BT.601 luma (0.299 R + 0.587 G + 0.114 B, the
    weights of OpenCV's RGB2GRAY) in the same units."""
    return np.asarray(rgb, np.float64) @ np.array([0.299, 0.587, 0.114])


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) tensor in [-1, 1] -> (B, H, W, 3) uint8 RGB (clamped, rounded)."""
    x = ((img.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (size, size, 3): area filter when shrinking, cubic when enlarging."""
    if rgb.shape[0] == size and rgb.shape[1] == size:
        return rgb
    interp = cv2.INTER_AREA if rgb.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(rgb, (size, size), interpolation=interp)


def frame_to_tensor(rgb: np.ndarray, size: int) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, size, size) float32 in [-1, 1] (``resize_square`` when needed)."""
    rgb = resize_square(rgb, size)
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 127.5 - 1.0


def frame_at(rgb: np.ndarray, size: int) -> np.ndarray:
    """A subject frame as the avatar sees it: (size, size, 3) uint8 RGB, exactly the pixels of
    ``to_uint8(frame_to_tensor(rgb, size))`` (what training compares renders with)."""
    return to_uint8(frame_to_tensor(rgb, size)[None])[0]
