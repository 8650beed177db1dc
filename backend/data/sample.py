"""The embedded sample: a synthetic talking-head clip with known expression and pose.

``synthesize_sample(out_dir)`` deforms ``skimage.data.astronaut()`` (public domain) with its own
face mesh: MediaPipe FaceMesh finds the 478 landmarks on the still photo once, they are lifted
to 3-D, deformed with ground-truth expression fields (``synthetic_expressions``), rotated about
the head centre, projected orthographically, and the photo is warped to them (``warp``).

Output (in ``out_dir``):

- ``sample.mp4``: MPEG-4 (``mp4v``), 25 fps. Full: 512 x 512, 250 frames (10 s). Tiny:
  160 x 160 head-and-shoulders crop, 50 frames (2 s).
- ``ground_truth.npz`` (no pickle): ``names`` (K,) str, ``expressions`` (T, K) float32 in [0, 1],
  ``pose`` (T, 6) float32 [yaw, pitch, roll (radians), tx, ty (video pixels), 0], ``vertices``
  (T, 468, 2) float32 projected mesh vertices in video pixels (x, y; origin at the top-left
  corner, pixel centres at +0.5), ``fps``, ``width``, ``height``, ``seed``; plus
  ``vertices_z`` (T, 468) float32 depth (towards the viewer, video pixels) and ``pose_convention``.

Pose convention: angles of R = Ry(yaw) Rx(pitch) Rz(roll) in a head frame with x to image right,
y up, z towards the viewer; yaw > 0 turns the face towards image right (the subject's left),
pitch > 0 tilts the chin down, roll > 0 tilts the head counter-clockwise on screen. tx, ty
move the head centre in video pixels (y down).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.data.sample_schedule import make_schedule
from backend.data.synthetic_expressions import ANIMATED_NAMES, build_expression_model
from backend.data.warp import FaceWarper
from backend.progress import ProgressFn, ProgressUpdate
from protocol.fileio import atomic_path

log = logging.getLogger(__name__)

VIDEO_NAME = "sample.mp4"
GROUND_TRUTH_NAME = "ground_truth.npz"
POSE_CONVENTION = (
    "R = Ry(yaw) @ Rx(pitch) @ Rz(roll), head frame x right / y up / z to viewer; "
    "yaw>0 face turns to image right, pitch>0 chin down, roll>0 counter-clockwise on screen; "
    "tx, ty: head-centre shift in video pixels (y down); tz = 0"
)


@dataclass(frozen=True)
class SampleSpec:
    """Clip length and size (square, ``size`` px). Tiny shows a head-and-shoulders crop."""

    n_frames: int
    fps: float
    size: int


FULL = SampleSpec(n_frames=250, fps=25.0, size=512)
TINY = SampleSpec(n_frames=50, fps=25.0, size=160)


def detect_photo_landmarks(photo: np.ndarray) -> np.ndarray:
    """478 FaceMesh landmarks (478, 3) of an RGB uint8 photo, in pixels; z towards the viewer.

    Raises:
        RuntimeError: when no face is found.
    """
    import mediapipe as mp

    h, w = photo.shape[:2]
    with mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True, refine_landmarks=True, max_num_faces=1
    ) as mesh:
        result = mesh.process(np.ascontiguousarray(photo))
    if not result.multi_face_landmarks:
        raise RuntimeError("MediaPipe FaceMesh found no face in the sample photo")
    lm = result.multi_face_landmarks[0].landmark
    # MediaPipe's z is "depth, smaller = nearer", scaled like x.
    return np.array([[p.x * w, p.y * h, -p.z * w] for p in lm], dtype=np.float64)


def euler_to_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Head rotation (3, 3) in *image* axes (x right, y down, z to viewer); see POSE_CONVENTION."""
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    Rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    flip = np.diag([1.0, -1.0, 1.0])  # y up (head frame) <-> y down (image)
    return flip @ (Ry @ Rx @ Rz) @ flip


def _tiny_crop(landmarks: np.ndarray, photo_size: tuple[int, int]) -> tuple[int, int, int]:
    """Square head-and-shoulders window: 2.6 face heights, face in the upper middle."""
    h, w = photo_size
    lo, hi = landmarks[:, :2].min(0), landmarks[:, :2].max(0)
    face_h = hi[1] - lo[1]
    side = round(float(min(2.6 * face_h, h, w)))
    cx, cy = (lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2 + 0.3 * face_h
    x0 = round(float(np.clip(cx - side / 2, 0, w - side)))
    y0 = round(float(np.clip(cy - side / 2, 0, h - side)))
    return x0, y0, side


def _open_writer(path: Path, fps: float, size: int):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV could not open an mp4v VideoWriter for {path}")
    return writer


def synthesize_sample(
    out_dir: Path, tiny: bool = False, seed: int = 0, progress: ProgressFn | None = None
) -> Path:
    """Write the sample clip and its ground truth to ``out_dir``; return the video path.

    Both files are written atomically (temp file, then rename); ``out_dir`` is created.
    ``progress`` gets a ``ProgressUpdate(stage="sample", step, total)`` after every frame.

    Raises:
        ValueError: for a negative or non-integer seed.
        OSError: when ``out_dir`` cannot be created or written.
        RuntimeError: when MediaPipe finds no face in the photo or no mp4v writer opens.
    """
    import cv2

    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    from skimage import data as skdata

    t0 = time.monotonic()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    photo = skdata.astronaut()
    landmarks = detect_photo_landmarks(photo)
    model = build_expression_model(landmarks)
    from backend.face.canonical import load_canonical_mesh

    triangles = load_canonical_mesh().triangles
    warper = FaceWarper(photo, model.neutral, triangles, model.head_centre, model.scale)
    spec = TINY if tiny else FULL
    crop = _tiny_crop(landmarks, photo.shape[:2]) if tiny else (0, 0, photo.shape[0])
    x0, y0, side = crop
    zoom = spec.size / side
    expressions, pose = make_schedule(spec.n_frames, spec.fps, tiny, seed)
    T = spec.n_frames
    vertices = np.zeros((T, model.neutral.shape[0], 2), dtype=np.float32)
    depth = np.zeros((T, model.neutral.shape[0]), dtype=np.float32)
    video = out_dir / VIDEO_NAME
    fd, tmp_name = tempfile.mkstemp(prefix=".sample.", suffix=".mp4", dir=out_dir)
    os.close(fd)
    tmp_video = Path(tmp_name)
    try:
        writer = _open_writer(tmp_video, spec.fps, spec.size)
        try:
            for t in range(T):
                yaw, pitch, roll, tx, ty, _ = pose[t].tolist()
                R = euler_to_matrix(yaw, pitch, roll)
                shift = np.array([tx, ty, 0.0])
                target = (model.deform(expressions[t]) - model.head_centre) @ R.T + model.head_centre + shift
                frame = warper.render(target, R, shift)
                if tiny:
                    frame = cv2.resize(frame[y0: y0 + side, x0: x0 + side], (spec.size, spec.size),
                                       interpolation=cv2.INTER_AREA)
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
                vertices[t] = (target[:, :2] - [x0, y0]) * zoom
                depth[t] = target[:, 2] * zoom
                if progress is not None:
                    progress(ProgressUpdate(stage="sample", step=t + 1, total=T))
        finally:
            writer.release()
        if tmp_video.stat().st_size == 0:
            raise RuntimeError("OpenCV wrote an empty video (is the mp4v encoder available?)")
        pose_video = pose.copy()
        pose_video[:, 3:5] *= zoom
        with atomic_path(out_dir / GROUND_TRUTH_NAME, mode=0o644) as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                names=np.array(ANIMATED_NAMES, dtype=np.str_),
                expressions=expressions.astype(np.float32),
                pose=pose_video.astype(np.float32),
                vertices=vertices,
                vertices_z=depth,
                fps=np.float32(spec.fps),
                width=np.int32(spec.size),
                height=np.int32(spec.size),
                seed=np.int64(seed),
                crop=np.array(crop, dtype=np.int32),
                pose_convention=np.array(POSE_CONVENTION),
            )
            # The video lands first and the ground truth last, so a present ground_truth.npz
            # (the demo's "done" marker) always comes with its video.
            os.chmod(tmp_video, 0o644)
            os.replace(tmp_video, video)
    except BaseException:
        tmp_video.unlink(missing_ok=True)
        raise
    log.info("sample: %d frames %dx%d in %.1f s -> %s", T, spec.size, spec.size, time.monotonic() - t0, video)
    return video


def load_ground_truth(path: Path) -> dict[str, np.ndarray]:
    """Read ``ground_truth.npz`` (no pickle) into a dict of arrays."""
    with np.load(Path(path), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
