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


Window = tuple[int, int, int]
"""Square sub-image (x0, y0, side) in frame pixels."""

SEARCH_SCALES = (1.0, 0.5)
"""Search-window sides as fractions of the frame's short side, tried in order."""
LOST_AFTER = 3
"""Frames without a face inside the current window before the tracker searches again."""


def search_windows(height: int, width: int) -> list[Window]:
    """Square windows covering the frame at each ``SEARCH_SCALES`` side, half-overlapping."""
    short = min(height, width)
    out: list[Window] = []
    for f in SEARCH_SCALES:
        side = max(int(short * f), 1)
        if side == short and height == width:
            continue  # the full frame itself is tried first anyway
        xs = np.unique(np.linspace(0, width - side, max(1, int(np.ceil(2 * width / side)) - 1)).round())
        ys = np.unique(np.linspace(0, height - side, max(1, int(np.ceil(2 * height / side)) - 1)).round())
        out += [(int(x), int(y), side) for y in ys for x in xs]
    return out


def _window_around(points: np.ndarray, height: int, width: int) -> Window:
    """Square window centred on a face: 4 face extents (at least 256 px), inside the frame."""
    lo, hi = points[:, :2].min(0), points[:, :2].max(0)
    side = int(min(min(height, width), max(4.0 * float((hi - lo).max()), MIN_DETECT_SIDE)))
    cx, cy = (lo + hi) / 2
    x0 = int(np.clip(round(cx - side / 2), 0, width - side))
    y0 = int(np.clip(round(cy - side / 2), 0, height - side))
    return x0, y0, side


class FaceMeshTracker:
    """Stateful per-video FaceMesh. Use as a context manager; call ``process`` frame by frame.

    MediaPipe's face detector (the short-range BlazeFace) sees the frame at 128 x 128, so a face
    that is small in a wide frame (e.g. a 250 px face in a 1280 x 720 video) is often not
    detected at all. When the whole frame gives no face, square windows of the frame are searched
    (``search_windows``, with a separate still-image FaceMesh); once a face is found, the tracker
    keeps following it inside a square window around it (a video-mode FaceMesh of its own) until
    it is lost for ``LOST_AFTER`` frames, then starts over with the whole frame.
    """

    def __init__(self, max_faces: int = 2, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5, static_image_mode: bool = False) -> None:
        import mediapipe as mp  # heavy import: only when tracking

        self._options = dict(max_num_faces=max_faces, refine_landmarks=True,
                             min_detection_confidence=min_detection_confidence,
                             min_tracking_confidence=min_tracking_confidence)
        self._factory = mp.solutions.face_mesh.FaceMesh
        self._static_mode = static_image_mode
        self._mesh = self._factory(static_image_mode=static_image_mode, **self._options)
        self._window_mesh = None
        self._search_mesh = None
        self._window: Window | None = None
        self._misses = 0
        self.searches = 0
        """How many frames needed a window search (for the log)."""

    def __enter__(self) -> FaceMeshTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for name in ("_mesh", "_window_mesh", "_search_mesh"):
            mesh = getattr(self, name)
            if mesh is not None:
                mesh.close()
                setattr(self, name, None)

    @property
    def window(self) -> Window | None:
        """The square window the face is followed in, or None while using the whole frame."""
        return self._window

    def process(self, rgb: np.ndarray) -> FrameLandmarks:
        """Landmarks of the largest face in ``rgb`` ((H, W, 3) uint8 RGB)."""
        if self._mesh is None:
            raise RuntimeError("FaceMeshTracker is closed")
        h, w = rgb.shape[:2]
        if self._window is not None:
            found = _run(self._window_mesh, rgb, self._window)
            if found.points is not None:
                self._misses = 0
                return found
            self._misses += 1
            if self._misses < LOST_AFTER:
                return found
            self._set_window(None)
        found = _run(self._mesh, rgb, None)
        if found.points is not None:
            return found
        self.searches += 1
        if self._search_mesh is None:
            self._search_mesh = self._factory(static_image_mode=True, **self._options)
        for win in search_windows(h, w):
            found = _run(self._search_mesh, rgb, win)
            if found.points is not None:
                self._set_window(_window_around(found.points, h, w))
                return found
        return FrameLandmarks(None, 0)

    def _set_window(self, window: Window | None) -> None:
        if self._window_mesh is not None:
            self._window_mesh.close()
            self._window_mesh = None
        self._window, self._misses = window, 0
        if window is not None:
            self._window_mesh = self._factory(static_image_mode=self._static_mode, **self._options)


def _run(mesh, rgb: np.ndarray, window: Window | None) -> FrameLandmarks:
    """FaceMesh on ``rgb`` or on a square window of it; points in pixels of the whole frame."""
    x0, y0 = 0, 0
    image = rgb
    if window is not None:
        x0, y0, side = window
        image = rgb[y0:y0 + side, x0:x0 + side]
    h, w = image.shape[:2]
    short = min(h, w)
    if short < MIN_DETECT_SIDE:
        f = MIN_DETECT_SIDE / short
        image = cv2.resize(image, (round(w * f), round(h * f)), interpolation=cv2.INTER_CUBIC)
    result = mesh.process(np.ascontiguousarray(image))
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
    # normalised -> pixels of the whole frame; z is scaled like x (MediaPipe's convention)
    points = np.empty_like(best)
    points[:, 0] = best[:, 0] * w + x0
    points[:, 1] = best[:, 1] * h + y0
    points[:, 2] = -best[:, 2] * w
    return FrameLandmarks(points, len(faces))
