"""Pictures for checking a subject by eye: landmarks drawn on crops, UV maps as colours."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def draw_points(rgb: np.ndarray, points: np.ndarray, color: tuple[int, int, int] = (0, 255, 0),
                radius: int = 1, scale: int = 1) -> np.ndarray:
    """Copy of ``rgb`` (upscaled by ``scale``) with (N, 2+) pixel points drawn as dots."""
    img = np.ascontiguousarray(rgb)
    if scale != 1:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    img = img.copy()
    for x, y in np.asarray(points)[:, :2] * scale:  # continuous coords -> pixel index
        cv2.circle(img, (round(x - 0.5), round(y - 0.5)), radius, color, -1)
    return img


def uv_to_rgb(uv: np.ndarray) -> np.ndarray:
    """(H, W, 3) (u, v, coverage) -> (H, W, 3) uint8: red = u, green = v, black where uncovered."""
    uv = np.asarray(uv, dtype=np.float32)
    out = np.zeros((*uv.shape[:2], 3), dtype=np.float32)
    out[..., 0] = uv[..., 0]
    out[..., 1] = uv[..., 1]
    out[..., 2] = 0.25 * uv[..., 2]
    out *= uv[..., 2:3]
    return (np.clip(out, 0, 1) * 255).astype(np.uint8)


def subject_contact_sheet(subject_path: str | Path, out_png: str | Path, n: int = 4, scale: int = 2) -> Path:
    """Write a PNG: for ``n`` frames, the crop with landmarks (green) and rig vertices (red),
    the UV map as colours, and the crop blended with the UV map."""
    from backend.data.subject import Subject

    s = Subject.open(subject_path)
    ids = np.linspace(0, s.n_frames - 1, n).round().astype(int)
    rows = []
    posed = s.rig.posed(s.expressions[ids], s.pose[ids], s.scale[ids])
    for k, i in enumerate(ids):
        frame = s.frame(i)
        a = draw_points(frame, s.landmarks[i, :468], (0, 255, 0), 1, scale)
        a = draw_points(a, posed[k, :, :2] * scale, (255, 0, 0), 1, 1)
        uv = uv_to_rgb(s.uv(i))
        b = cv2.resize(uv, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        c = cv2.resize((0.5 * frame + 0.5 * uv).astype(np.uint8), None, fx=scale, fy=scale,
                       interpolation=cv2.INTER_NEAREST)
        rows.append(np.concatenate([a, b, c], axis=1))
    sheet = np.concatenate(rows, axis=0)
    out = Path(out_png)
    cv2.imwrite(str(out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return out

