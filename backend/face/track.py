"""`track_video`: a portrait video -> a subject folder (see ``backend.data.subject`` for the layout).

Pipeline:
1. MediaPipe FaceMesh (refine_landmarks, video mode) on every frame -> 478 landmarks in video
   pixels; the largest face when there are several. Frames without a face are marked; gaps of at
   most ``MAX_GAP_S`` seconds are filled by linear interpolation, longer gaps are *dropped*
   (valid = False, landmarks held from the nearest face). The run fails when more than
   ``MAX_DROPPED_SHARE`` of the frames have no face or fewer than ``MIN_FRAMES`` usable frames remain.
2. One square crop window for the whole clip holding head and shoulders (``crop_box``),
   resized to ``size``; landmarks move to crop pixels.
3. Per frame, weighted Procrustes of the canonical mesh onto the landmarks
   (``procrustes_landmark_basis``) -> rotation, translation, scale; undoing it gives the pose-free
   shape (canonical cm).
4. Named coefficients measured from the shapes, blendshape basis + residuals solved over the
   clip (``backend.face.face_model``).
5. Savitzky-Golay smoothing of pose and coefficient curves (``backend.face.smoothing``).
6. Frames, UV maps of the posed rig (``FaceRig.uv_maps``), arrays, rig and meta.json are written
   into a temporary folder that is renamed into place at the end (``protocol.fileio.atomic_dir``):
   a failed or cancelled run leaves nothing behind.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from backend.data import subject as sj
from backend.face.canonical import load_canonical_mesh
from backend.face.face_model import fit_face_model, measure_named
from backend.face.landmarks import FaceMeshTracker
from backend.face.pose import image_to_mesh_axes, matrix_to_euler, weighted_procrustes
from backend.face.smoothing import (
    EXPRESSION_WINDOW_S,
    POSE_WINDOW_S,
    smooth_curves,
    unwrap_angles,
)
from backend.face.video_io import VideoError, iter_frames, prefetch, probe
from backend.progress import EtaClock, ProgressFn, ProgressUpdate, StopFn, check_cancel
from protocol.fileio import atomic_dir

log = logging.getLogger(__name__)

MIN_FRAMES = 8
"""Fewest usable frames a subject may have."""
MAX_DROPPED_SHARE = 0.5
"""Fail when more than this share of the frames has no face."""
MAX_GAP_S = 0.5
"""Gaps without a face up to this long (seconds) are interpolated; longer ones are dropped."""
CROP_FACE_HEIGHTS = 3.0
"""Crop side in face heights (landmark extent brow..chin): head, hair, neck and shoulders."""
CROP_TOP_FACE_HEIGHTS = 0.75
"""Space above the highest landmark, in face heights (forehead and hair)."""
EXTREME_SIGMA_S = 0.07
"""Gaussian sigma (seconds) of the pose curve the extreme-pose frames are picked from."""
PROGRESS_EVERY = 10


class TrackError(ValueError):
    """Tracking cannot make a subject from this input (the message says why and what to do)."""


@dataclass
class CropBox:
    """Square crop window in video pixels (integers): columns x0..x0+side, rows y0..y0+side."""

    x0: int
    y0: int
    side: int

    def to_crop(self, points: np.ndarray, size: int) -> np.ndarray:
        """(..., 2 or 3) video pixels -> crop pixels (z scaled like x, y)."""
        p = np.array(points, dtype=np.float64, copy=True)
        f = size / self.side
        p[..., 0] = (p[..., 0] - self.x0) * f
        p[..., 1] = (p[..., 1] - self.y0) * f
        if p.shape[-1] > 2:
            p[..., 2:] *= f
        return p

    def cut(self, rgb: np.ndarray, size: int) -> np.ndarray:
        """Crop and resize a (H, W, 3) frame to (size, size, 3).

        Downscaling is area averaging; a large factor is split into an integer step (OpenCV's
        fast path) and a small fractional one, about twice as fast as one fractional INTER_AREA.
        """
        crop = rgb[self.y0:self.y0 + self.side, self.x0:self.x0 + self.side]
        if self.side <= size:
            return cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR)
        k = self.side // size
        if k >= 2:
            crop = cv2.resize(crop, (self.side // k, self.side // k), interpolation=cv2.INTER_AREA)
        return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def crop_box(landmarks: np.ndarray, valid: np.ndarray, width: int, height: int) -> CropBox:
    """One head-and-shoulders window for the whole clip.

    Args:
        landmarks: (T, 478, 3) video pixels; valid: (T,) frames to use.
        width, height: video size.
    Returns:
        A square box of side ``CROP_FACE_HEIGHTS`` face heights (at least the face's motion range
        with a margin), centred on the face horizontally, ``CROP_TOP_FACE_HEIGHTS`` above the face,
        shrunk to the frame's short side and shifted to lie inside the frame (no padding).
    """
    pts = landmarks[valid, :468, :2]
    lo, hi = pts.min(axis=(0, 1)), pts.max(axis=(0, 1))
    face_h = float(np.median(pts[:, :, 1].max(1) - pts[:, :, 1].min(1)))
    side = max(CROP_FACE_HEIGHTS * face_h, 1.3 * float((hi - lo).max()))
    side = round(min(side, width, height))
    cx = 0.5 * (lo[0] + hi[0])
    x0 = round(cx - side / 2)
    y0 = round(lo[1] - CROP_TOP_FACE_HEIGHTS * face_h)
    x0 = min(max(x0, 0), width - side)
    y0 = min(max(y0, 0), height - side)
    return CropBox(x0, y0, side)


def fill_gaps(points: list[np.ndarray | None], fps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interpolate short runs of missing frames.

    Args:
        points: per frame (478, 3) array or None.
        fps: frame rate (gap length limit ``MAX_GAP_S`` is in seconds).
    Returns:
        (landmarks (T, 478, 3) float64, valid (T,) bool, interpolated (T,) bool). Frames in long
        gaps (and before the first / after the last face) hold the nearest face and are invalid.
    """
    T = len(points)
    detected = np.array([p is not None for p in points])
    ids = np.nonzero(detected)[0]
    stack = np.stack([points[i] for i in ids]).astype(np.float64)
    out = np.empty((T, *stack.shape[1:]))
    flat = stack.reshape(len(ids), -1)
    t = np.arange(T)
    for c in range(flat.shape[1]):
        out.reshape(T, -1)[:, c] = np.interp(t, ids, flat[:, c])
    max_gap = max(round(MAX_GAP_S * fps), 1)
    interpolated = np.zeros(T, dtype=bool)
    for a, b in itertools.pairwise(ids):
        if 1 < b - a <= max_gap + 1:
            interpolated[a + 1:b] = True
    return out, detected | interpolated, interpolated


def fit_poses(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame weighted Procrustes of the canonical mesh onto landmarks.

    Args:
        landmarks: (T, 478, 3) crop pixels (x right, y down, z towards viewer).
    Returns:
        pose (T, 6) [yaw, pitch, roll, tx, ty, tz] (image-space translation, see rig.project),
        scale (T,) px per cm, shapes (T, 468, 3) pose-free shapes in canonical cm, mesh axes.
    """
    mesh = load_canonical_mesh()
    ids, w = mesh.procrustes_ids, mesh.procrustes_weights
    T = landmarks.shape[0]
    pose = np.zeros((T, 6))
    scale = np.zeros(T)
    shapes = np.zeros((T, 468, 3))
    R_all = np.zeros((T, 3, 3))
    for i in range(T):
        P = image_to_mesh_axes(landmarks[i, :468])
        s, R, t = weighted_procrustes(mesh.vertices[ids], P[ids], w)
        R_all[i] = R
        scale[i] = s
        pose[i, 3:] = (t[0], -t[1], t[2])
        shapes[i] = (P - t) @ R / s  # R^T (P - t) / s, row-vector form
    pose[:, :3] = matrix_to_euler(R_all)
    return pose, scale, shapes


def smooth_pose(pose: np.ndarray, scale: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Smooth (T, 6) pose (angles unwrapped first) and (T,) scale (in log space)."""
    p = np.array(pose, dtype=np.float64, copy=True)
    p[:, :3] = unwrap_angles(p[:, :3])
    p = smooth_curves(p, fps, POSE_WINDOW_S).astype(np.float64)
    p[:, :3] = (p[:, :3] + np.pi) % (2 * np.pi) - np.pi
    s = np.exp(smooth_curves(np.log(scale), fps, POSE_WINDOW_S))
    return p.astype(np.float32), s.astype(np.float32)


def pose_for_extremes(pose_raw: np.ndarray, fps: float) -> np.ndarray:
    """(T, 6) raw pose -> (T, 2) yaw, pitch smoothed for picking the extreme frames.

    A symmetric Gaussian (sigma ``EXTREME_SIGMA_S``) of the *raw* pose: it averages out one-frame
    glitches but, unlike the wider Savitzky-Golay window of the stored curves, does not move a
    sharp peak towards the side where the tracked curve falls more slowly.
    """
    from scipy.ndimage import gaussian_filter1d

    sigma = max(EXTREME_SIGMA_S * fps, 0.5)
    return gaussian_filter1d(np.asarray(pose_raw[:, :2], dtype=np.float64), sigma, axis=0, mode="nearest")


def _subject_id(video: Path) -> str:
    name = video.stem if video.is_file() else video.name
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "subject"
    h = hashlib.sha1()
    if video.is_file():
        with open(video, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    else:
        for p in sorted(video.iterdir()):
            h.update(f"{p.name}:{p.stat().st_size}".encode())
    return f"{stem[:40]}-{h.hexdigest()[:8]}"


def _tool_version() -> str:
    try:
        from importlib.metadata import version

        return version("emo-avatar-studio")
    except Exception:
        return "unknown"


def _report(progress: ProgressFn | None, step: int, total: int, clock: EtaClock, msg: str) -> None:
    if progress is not None:
        progress(ProgressUpdate(stage="track", step=step, total=total, eta=clock.eta(step), message=msg))


def detect_landmarks(video: Path, max_frames: int | None, progress: ProgressFn | None,
                     should_stop: StopFn | None, total: int, clock: EtaClock
                     ) -> tuple[list[np.ndarray | None], int]:
    """Pass 1: landmarks of every frame.

    Returns (per-frame (478, 3) video px or None, number of frames with several faces).
    """
    points: list[np.ndarray | None] = []
    several = 0
    with FaceMeshTracker() as tracker:
        for i, rgb in enumerate(prefetch(iter_frames(video, max_frames))):
            check_cancel(should_stop)
            lm = tracker.process(rgb)
            points.append(lm.points)
            several += lm.n_faces > 1
            if i % PROGRESS_EVERY == 0:
                _report(progress, i, total, clock, "landmarks")
        if tracker.searches:
            log.info("face too small for a whole-frame detection in %d frames; found it in a window of "
                     "the frame", tracker.searches)
    return points, several


def _cut_and_write(root: Path, i: int, rgb: np.ndarray, box: CropBox, size: int) -> None:
    sj.write_frame(root, i, box.cut(rgb, size))


def _write_crops(video: Path, T: int, box: CropBox, size: int, root: Path, progress: ProgressFn | None,
                 should_stop: StopFn | None, clock: EtaClock) -> int:
    """Pass 2: decode again, crop, resize and write PNGs (encoding overlaps decoding: OpenCV
    releases the GIL). Returns the number of frames written."""
    from concurrent.futures import ThreadPoolExecutor

    pending = []
    n = 0
    with ThreadPoolExecutor(max_workers=2) as pool:
        for i, rgb in enumerate(prefetch(iter_frames(video, T))):
            check_cancel(should_stop)
            pending.append(pool.submit(_cut_and_write, root, i, rgb, box, size))
            if len(pending) > 8:
                pending.pop(0).result()
            if i % PROGRESS_EVERY == 0:
                _report(progress, T + i, 3 * T, clock, "frames")
            n += 1
        for f in pending:
            f.result()
    return n


def track_video(video: Path, out_dir: Path, size: int = 256, max_frames: int | None = None,
                overwrite: bool = False, progress: ProgressFn | None = None,
                should_stop: StopFn | None = None) -> Path:
    """Track a portrait video (or image folder) into a subject folder.

    Args:
        video: mp4/avi/mov/... file OpenCV reads, or a folder of images (natural name order, 25 fps).
        out_dir: the subject folder to create.
        size: crop side in pixels (frames, landmarks, UV maps).
        max_frames: use only the first N frames.
        overwrite: replace an existing ``out_dir``.
        progress: called with ``ProgressUpdate(stage="track", ...)``.
        should_stop: polled between frames; when it returns True the run raises
            ``backend.progress.Cancelled`` and leaves nothing behind.
    Returns:
        ``out_dir``.
    Raises:
        FileExistsError: ``out_dir`` exists and ``overwrite`` is false.
        TrackError (a ValueError): missing/unreadable/corrupt/empty input, too few faces.
        Cancelled: on request.
    """
    video, out_dir = Path(video), Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already exists (use --overwrite to replace it)")
    if size < 16:
        raise TrackError(f"--size must be at least 16 pixels, got {size}")
    if max_frames is not None and max_frames < 1:
        raise TrackError(f"--max-frames must be positive, got {max_frames}")
    try:
        info = probe(video)
    except VideoError as exc:
        raise TrackError(str(exc)) from exc
    n_est = min(info.n_frames, max_frames) if max_frames else info.n_frames
    total = 3 * n_est
    clock = EtaClock(total)
    try:
        points, several = detect_landmarks(video, max_frames, progress, should_stop, total, clock)
    except VideoError as exc:
        raise TrackError(str(exc)) from exc
    T = len(points)
    if T == 0:
        raise TrackError(f"{video}: zero frames could be decoded")
    n_detected = sum(p is not None for p in points)
    if n_detected == 0:
        raise TrackError(f"{video}: no face found in any of the {T} frames; use a video with a visible face")
    if several:
        log.warning("%s: several faces in %d of %d frames; tracking the largest one", video, several, T)
    landmarks_v, valid, interpolated = fill_gaps(points, info.fps)
    dropped_share = 1.0 - valid.mean()
    if 1.0 - n_detected / T > MAX_DROPPED_SHARE:
        raise TrackError(f"{video}: no face in {T - n_detected} of {T} frames "
                         f"(more than {MAX_DROPPED_SHARE:.0%}); trim the video to where the face is visible")
    if valid.sum() < MIN_FRAMES:
        raise TrackError(f"{video}: only {int(valid.sum())} usable frames with a face; at least "
                         f"{MIN_FRAMES} are needed")
    if dropped_share > 0:
        log.warning("%s: %d frames without a face dropped, %d interpolated", video,
                    int((~valid).sum()), int(interpolated.sum()))

    box = crop_box(landmarks_v, valid, info.width, info.height)
    landmarks = box.to_crop(landmarks_v, size)
    pose_raw, scale_raw, shapes = fit_poses(landmarks)
    detected = np.array([p is not None for p in points])
    named = measure_named(shapes, detected)
    fit = fit_face_model(shapes, named, valid)
    pose, scale = smooth_pose(pose_raw, scale_raw, info.fps)
    expressions = smooth_curves(fit.coefficients, info.fps, EXPRESSION_WINDOW_S)
    n_named = named.shape[1]
    expressions[:, :n_named] = np.clip(expressions[:, :n_named], 0.0, 1.0)
    extremes = sj.extreme_frames(pose_for_extremes(pose_raw, info.fps), valid)
    log.info("tracked %d frames (%d valid); rig: %d named + %d residual, residual %.3f cm of %.3f cm",
             T, int(valid.sum()), n_named, len(fit.rig.names) - n_named, fit.residual_rms, fit.shape_rms)

    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        n_written = _write_crops(video, T, box, size, tmp, progress, should_stop, clock)
        if n_written != T:
            raise TrackError(f"{video}: the second read gave {n_written} frames instead of {T}")
        uv = sj.open_uv_writer(tmp, T, size)
        chunk = 16
        for a in range(0, T, chunk):
            check_cancel(should_stop)
            b = min(a + chunk, T)
            uv[a:b] = fit.rig.uv_maps(expressions[a:b], pose[a:b], scale[a:b], size)
            _report(progress, 2 * T + a, 3 * T, clock, "uv maps")
        uv.flush()
        del uv
        sj.write_arrays(tmp, landmarks=landmarks, pose=pose, scale=scale, valid=valid,
                        names=fit.rig.names, expressions=expressions, raw_expressions=fit.coefficients)
        fit.rig.save(tmp / "rig")
        sj.write_meta(tmp, {
            "subject_id": _subject_id(video),
            "fps": info.fps,
            "size": size,
            "n_frames": T,
            "source": {"path": str(video.resolve()), "kind": "images" if info.is_folder else "video",
                       "width": info.width, "height": info.height, "fps": info.fps},
            "crop": {"x0": box.x0, "y0": box.y0, "side": box.side,
                     "video_width": info.width, "video_height": info.height},
            "frames_used": int(valid.sum()),
            "frames_detected": int(n_detected),
            "frames_interpolated": np.nonzero(interpolated)[0].tolist(),
            "frames_dropped": np.nonzero(~valid)[0].tolist(),
            "frames_with_several_faces": int(several),
            "extreme_frames": extremes,
            "expression_names": fit.rig.names,
            "rig_fit": {"residual_rms_cm": fit.residual_rms, "shape_rms_cm": fit.shape_rms},
            "tracker": "mediapipe FaceMesh (refine_landmarks=True, video mode)",
            "tool": {"name": "emo-avatar track", "version": _tool_version()},
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        })
        _report(progress, 3 * T, 3 * T, clock, "done")
    return out_dir
