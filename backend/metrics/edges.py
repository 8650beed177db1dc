"""Edge F1: do two images draw their lines in the same places?

Edges are Canny edges (``cv2.Canny`` with hysteresis thresholds ``LOW``/``HIGH`` on the 8-bit
BT.601 grey image, 3x3 Sobel aperture) of the whole frame, then restricted to a region (the face
box). An edge pixel of one image counts as matched when the other image has an edge pixel within
``TOLERANCE_PX`` pixels (Chebyshev distance, i.e. inside the 3x3 neighbourhood for 1 px):

    precision = matched styled edge pixels / styled edge pixels
    recall    = matched ground-truth edge pixels / ground-truth edge pixels
    F1        = 2 P R / (P + R)

Counts are pooled over all frames before the ratios are taken, so a frame with few edges weighs
little. With no edge pixels on either side the images agree (F1 = 1); with edges on one side only
F1 = 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

LOW, HIGH = 50, 150
"""Canny hysteresis thresholds (grey levels of the gradient magnitude)."""
TOLERANCE_PX = 1
"""Matching distance in pixels."""


def canny_edges(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) bool Canny edge map."""
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    return cv2.Canny(grey, LOW, HIGH) > 0


def _near(edges: np.ndarray, tol: int) -> np.ndarray:
    if tol <= 0:
        return edges
    k = np.ones((2 * tol + 1, 2 * tol + 1), np.uint8)
    return cv2.dilate(edges.astype(np.uint8), k) > 0


def edge_counts(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None,
                tol: int = TOLERANCE_PX) -> tuple[int, int, int, int]:
    """(matched pred, pred, matched gt, gt) edge-pixel counts of two (H, W, 3) uint8 images in ``mask``."""
    ep, eg = canny_edges(pred), canny_edges(gt)
    m = np.ones(ep.shape, bool) if mask is None else np.asarray(mask, bool)
    p, g = ep & m, eg & m
    return (int((p & _near(eg, tol)).sum()), int(p.sum()), int((g & _near(ep, tol)).sum()), int(g.sum()))


def edge_f1(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray],
            masks: Sequence[np.ndarray | None] | None = None, tol: int = TOLERANCE_PX) -> dict[str, float]:
    """Pooled edge precision, recall and F1 of image pairs (each (H, W, 3) uint8) inside ``masks``."""
    masks = [None] * len(preds) if masks is None else masks
    mp = npred = mg = ngt = 0
    for p, g, m in zip(preds, gts, masks, strict=True):
        a, b, c, d = edge_counts(p, g, m, tol)
        mp, npred, mg, ngt = mp + a, npred + b, mg + c, ngt + d
    if npred == 0 and ngt == 0:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    prec = mp / npred if npred else 0.0
    rec = mg / ngt if ngt else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
    return {"precision": float(prec), "recall": float(rec), "f1": float(f1)}
