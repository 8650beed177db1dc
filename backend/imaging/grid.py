"""Labelled image grids: one row per frame, one column per image kind (previews, contact sheets).

Small tiles are enlarged with nearest-neighbour so 32 px tests still produce a readable image.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

MIN_TILE = 128
"""Tiles are enlarged to at least this many pixels per side."""


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    out = tile.copy()
    scale = max(0.35, tile.shape[0] / 320)
    th = max(1, round(scale * 2))
    cv2.putText(out, text, (4, int(14 * scale / 0.45)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), th + 2,
                cv2.LINE_AA)
    cv2.putText(out, text, (4, int(14 * scale / 0.45)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), th,
                cv2.LINE_AA)
    return out


def preview_grid(columns: Sequence[np.ndarray], column_names: Sequence[str], row_names: Sequence[str],
                 title: str = "") -> np.ndarray:
    """Assemble a labelled grid.

    Args:
        columns: per column a (R, H, W, 3) uint8 stack (same R, H, W for all).
        column_names: label of each column (drawn in a header strip).
        row_names: label of each row (drawn in the first column).
        title: drawn in a strip above the grid.
    Returns:
        (H_total, W_total, 3) uint8 RGB.
    """
    r, h = columns[0].shape[:2]
    f = max(1, int(np.ceil(MIN_TILE / h)))
    rows = []
    for i in range(r):
        tiles = [np.repeat(np.repeat(col[i], f, axis=0), f, axis=1) for col in columns]
        tiles[0] = _label(tiles[0], row_names[i])
        rows.append(np.concatenate(tiles, axis=1))
    grid = np.concatenate(rows, axis=0)
    tile_w = grid.shape[1] // len(columns)
    header = np.full((22, grid.shape[1], 3), 48, np.uint8)
    for j, name in enumerate(column_names):
        cv2.putText(header, name, (j * tile_w + 5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                    cv2.LINE_AA)
    grid = np.concatenate([header, grid], axis=0)
    if title:
        strip = np.full((28, grid.shape[1], 3), 32, np.uint8)
        cv2.putText(strip, title, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        grid = np.concatenate([strip, grid], axis=0)
    return grid
