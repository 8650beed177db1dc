"""MediaPipe FaceMesh (legacy solution API, models from the mediapipe wheel, runs offline).

``refine_landmarks=True`` gives 478 points: the 468 mesh vertices (in canonical-mesh order) plus
10 iris points. Video mode (``static_image_mode=False``) tracks between frames. When several
faces are found the largest (by landmark bounding-box area) is taken and the frame is counted,
so the caller can say so.

Coordinates returned are pixels of the frame given: x right, y down (origin at the top-left
corner of the image, pixel ``i`` covering [i, i+1), so its centre is ``i + 0.5``), and z in the
same pixel units, *towards the viewer* (MediaPipe's z points away from the camera, so it is
negated here). z is relative (roughly zero at the face centre), as MediaPipe gives it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from backend.face.canonical import N_LANDMARKS

log = logging.getLogger(__name__)

MIN_DETECT_SIDE = 256
"""Frames whose short side is smaller than this are upscaled before detection (tiny videos)."""


@dataclass
class FrameLandmarks:
    """Landmarks of one frame.

    Attributes:
        points: (478, 3) float32 pixel coordinates (x right, y down, z towards viewer) or None
            when no face was found.
        n_faces: number of faces MediaPipe returned in this frame.
    """

    points: np.ndarray | None
    n_faces: int


class FaceMeshTracker:
    """Stateful per-video FaceMesh. Use as a context manager; call ``process`` frame by frame."""

    def __init__(self, max_faces: int = 2, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5, static_image_mode: bool = False) -> None:
        import mediapipe as mp  # heavy import: only when tracking

        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=static_image_mode,
            max_num_faces=max_faces,
            refine_landmarks=True,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,
        )

    def __enter__(self) -> FaceMeshTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None

    def process(self, rgb: np.ndarray) -> FrameLandmarks:
        """Landmarks of the largest face in ``rgb`` ((H, W, 3) uint8 RGB)."""
        if self._mesh is None:
            raise RuntimeError("FaceMeshTracker is closed")
        h, w = rgb.shape[:2]
        image = rgb
        short = min(h, w)
        if short < MIN_DETECT_SIDE:
            f = MIN_DETECT_SIDE / short
            image = cv2.resize(rgb, (round(w * f), round(h * f)), interpolation=cv2.INTER_CUBIC)
        result = self._mesh.process(np.ascontiguousarray(image))
        faces = result.multi_face_landmarks or []
        if not faces:
            return FrameLandmarks(None, 0)
        best, best_area = None, -1.0
        for face in faces:
            pts = np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float32)
            if pts.shape[0] != N_LANDMARKS:
                raise RuntimeError(f"FaceMesh returned {pts.shape[0]} landmarks, expected {N_LANDMARKS}")
            span = (pts[:, :2].max(0) - pts[:, :2].min(0)) * (w, h)
            area = float(span[0] * span[1])
            if area > best_area:
                best, best_area = pts, area
        assert best is not None
        # normalised -> pixels of the *original* frame; z is scaled like x (MediaPipe's convention)
        points = np.empty_like(best)
        points[:, 0] = best[:, 0] * w
        points[:, 1] = best[:, 1] * h
        points[:, 2] = -best[:, 2] * w
        return FrameLandmarks(points, len(faces))
