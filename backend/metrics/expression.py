"""Expression preservation: do rendered frames open the mouth and close the eyes when the curves say so?

Each frame is re-tracked with MediaPipe FaceMesh (``backend.face.landmarks.FaceMeshTracker`` in
still-image mode, so no frame borrows from its neighbours; small frames are upscaled to 256 px
for detection). From the 468 mesh points:

* mouth aperture = distance between the inner-lip midpoints (13, 14) / inter-ocular distance
  (outer eye corners 33, 263);
* eye aperture = mean over both eyes of (mean of the three upper/lower lid distances
  159-145, 158-153, 160-144 and 386-374, 385-380, 387-373) / that eye's width (33-133, 263-362);
  eye closure = -eye aperture.

Reported: Pearson r between mouth aperture and the driving ``jawOpen`` curve, and between eye
closure and the mean of ``eyeBlinkLeft`` and ``eyeBlinkRight``, over the frames where a face was
found (the count is reported). r is None with fewer than ``MIN_FRAMES`` tracked frames or a flat
curve.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

MIN_FRAMES = 5
INNER_LIP = (13, 14)
EYE_CORNERS_OUTER = (33, 263)
_EYE_R = (((159, 145), (158, 153), (160, 144)), (33, 133))
_EYE_L = (((386, 374), (385, 380), (387, 373)), (263, 362))


def _d(p: np.ndarray, a: int, b: int) -> float:
    return float(np.linalg.norm(p[a, :2] - p[b, :2]))


def apertures(points: np.ndarray) -> tuple[float, float]:
    """(mouth aperture, eye aperture) of one frame's (>=468, >=2) landmarks (both unitless)."""
    iod = max(_d(points, *EYE_CORNERS_OUTER), 1e-6)
    mouth = _d(points, *INNER_LIP) / iod
    eyes = []
    for pairs, (outer, inner) in (_EYE_R, _EYE_L):
        lid = np.mean([_d(points, a, b) for a, b in pairs])
        eyes.append(lid / max(_d(points, outer, inner), 1e-6))
    return mouth, float(np.mean(eyes))


def track_apertures(frames: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Re-track (H, W, 3) uint8 RGB frames: (mouth (T,), eye (T,)) apertures, NaN where no face was found."""
    from backend.face.landmarks import FaceMeshTracker

    mouth = np.full(len(frames), np.nan)
    eye = np.full(len(frames), np.nan)
    with FaceMeshTracker(max_faces=1, static_image_mode=True) as tracker:
        for t, rgb in enumerate(frames):
            pts = tracker.process(np.ascontiguousarray(rgb)).points
            if pts is not None:
                mouth[t], eye[t] = apertures(pts)
    return mouth, eye


def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson r over the entries where both are finite; None if too few or either is flat."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < MIN_FRAMES:
        return None
    a, b = x[ok] - x[ok].mean(), y[ok] - y[ok].mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    if den < 1e-12:
        return None
    return float((a * b).sum() / den)


def driving_curves(expressions: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray | None]:
    """{"jawOpen": (T,), "eyeBlink": (T,) mean of L/R} from (T, K) curves; None for a missing curve."""
    idx = {n: i for i, n in enumerate(names)}
    jaw = expressions[:, idx["jawOpen"]] if "jawOpen" in idx else None
    blinks = [expressions[:, idx[n]] for n in ("eyeBlinkLeft", "eyeBlinkRight") if n in idx]
    return {"jawOpen": None if jaw is None else np.asarray(jaw, np.float64),
            "eyeBlink": np.mean(blinks, axis=0).astype(np.float64) if blinks else None}


def expression_correlation(frames: Sequence[np.ndarray], curves: dict[str, np.ndarray | None]
                           ) -> dict[str, Any]:
    """Re-track ``frames`` and correlate with the driving curves (``driving_curves`` over the same frames).

    Returns ``jaw_open_r``, ``eye_blink_r`` (None when not computable), ``tracked`` (frames with
    a face) and ``frames``.
    """
    mouth, eye = track_apertures(frames)
    jaw, blink = curves.get("jawOpen"), curves.get("eyeBlink")
    return {
        "jaw_open_r": None if jaw is None else pearson(mouth, jaw),
        "eye_blink_r": None if blink is None else pearson(-eye, blink),
        "tracked": int(np.isfinite(mouth).sum()),
        "frames": len(frames),
    }
