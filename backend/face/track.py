"""`track_video`: a portrait video -> a subject folder (see ``backend.data.subject`` for the layout).

Pipeline:
1. Pass 1 (``backend.face.scan``): MediaPipe FaceMesh (refine_landmarks, video mode) on every
   frame -> 478 landmarks in video pixels (the largest face when there are several); shot cuts and
   face jumps split the video into segments (``backend.face.shots``); an identity signal groups
   the segments into people (``backend.face.identity``).
2. Selection (``backend.face.selection``): the person on screen longest (or ``person``, or
   everyone), within ``frames``; runs of fewer than ``MIN_RUN_FRAMES`` frames with a face are left
   out, and every left-out range is reported with its reason. Kept frames are numbered densely;
   ``meta.json`` maps them back to source frames. Short gaps (at most ``MAX_GAP_S``) inside a run
   are filled by linear interpolation.
3. One square crop per shot (``crop_box``, a ``FRAMINGS`` framing), resized to ``size``: fixed
   within a shot, re-fitted across shots so the face keeps one size; landmarks move to crop
   pixels. With ``follow_face`` (opt-in: it costs held-out quality on the measured real clip,
   docs/tracking.md), one crop per framing segment instead: a shot is one segment unless its face
   moves too far for one crop to keep the face's size (``backend.face.framing.framing_segments``:
   then consecutive segments of at least ``MIN_RUN_FRAMES``), fixed within a segment.
4. Per frame, weighted Procrustes of the canonical mesh onto the landmarks
   (``procrustes_landmark_basis``) -> rotation, translation, scale; undoing it gives the pose-free
   shape (canonical cm).
5. Named coefficients measured from the shapes, blendshape basis + residuals solved over all
   kept frames (``backend.face.face_model``).
6. Savitzky-Golay smoothing of pose and coefficient curves, run by run (never across a cut); the
   pose's translation and scale are smoothed in video pixels (a crop change does not blur them).
7. Pass 2: frames (and, per frame, the appearance measure's canonical crop of the face,
   ``backend.face.appearance``: noseSneer and jawLeft/Right are read from the image motion of face
   regions, eyeSquint, mouthUpperUp and mouthLowerDown fused with it; the named coefficients, the
   basis and the smoothing of step 5 and 6 run after it), UV maps of the posed rig
   (``FaceRig.uv_maps``), arrays, rig and meta.json are written into a temporary folder that is
   renamed into place at the end (``protocol.fileio.atomic_dir``): a failed or cancelled run
   leaves nothing behind.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from backend.data import subject as sj
from backend.face.appearance import NAMES as APPEARANCE_NAMES
from backend.face.appearance import CanonicalSampler, measure_appearance
from backend.face.canonical import load_canonical_mesh
from backend.face.face_model import fit_face_model, measure_named
from backend.face.framing import (
    DEFAULT_FRAMING,
    FRAMINGS,
    MIN_SPACE_BELOW,
    crop_side,
    face_heights,
    framing_segments,
)
from backend.face.pose import image_to_mesh_axes, matrix_to_euler, weighted_procrustes
from backend.face.scan import Scan, frame_ranges_text, scan_video
from backend.face.selection import (
    MIN_RUN_FRAMES,
    Selection,
    SelectionError,
    parse_frame_ranges,
    select_frames,
)
from backend.face.shape68 import NAMES as SHAPE68_NAMES
from backend.face.shape68 import with_depth
from backend.face.shots import MAX_GAP_S
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


def crop_box(landmarks: np.ndarray, valid: np.ndarray | None, width: int, height: int,
             framing: str = DEFAULT_FRAMING) -> CropBox:
    """One square window for a framing segment (or a shot, or a whole clip).

    Args:
        landmarks: (T, 478, 3) video pixels; valid: (T,) frames to use (None: all).
        width, height: video size.
        framing: a ``FRAMINGS`` name.
    Returns:
        A square box of side ``FRAMINGS[framing][0]`` face heights (more where the face moves;
        ``backend.face.framing.crop_side``), centred on the face horizontally,
        ``FRAMINGS[framing][1]`` face heights above the face (less where that would leave under
        ``MIN_SPACE_BELOW`` face heights below the lowest chin point), shrunk to the frame's short
        side and shifted to lie inside the frame (no padding).
    """
    if framing not in FRAMINGS:
        raise TrackError(f"--framing must be one of {', '.join(FRAMINGS)}, got {framing!r}")
    pts = landmarks[:, :468, :2] if valid is None else landmarks[valid, :468, :2]
    lo, hi = pts.min(axis=(0, 1)), pts.max(axis=(0, 1))
    face_h = float(np.median(face_heights(pts)))
    side = int(crop_side(lo, hi, face_h, framing, min(width, height)))
    cx = 0.5 * (lo[0] + hi[0])
    x0 = round(cx - side / 2)
    y0 = round(max(lo[1] - FRAMINGS[framing][1] * face_h, hi[1] + MIN_SPACE_BELOW * face_h - side))
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


def fit_poses(landmarks: np.ndarray, with_iris: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame weighted Procrustes of the canonical mesh onto landmarks.

    Args:
        landmarks: (T, N >= 468, 3) crop pixels (x right, y down, z towards viewer).
        with_iris: also return every point past the 468 mesh points pose-free: the 10 iris
            points, and any others the caller appends (the pose is fitted on mesh points only).
    Returns:
        pose (T, 6) [yaw, pitch, roll, tx, ty, tz] (image-space translation, see rig.project),
        scale (T,) px per cm, shapes (T, 468 or N, 3) pose-free shapes in canonical cm, mesh axes.
    """
    mesh = load_canonical_mesh()
    ids, w = mesh.procrustes_ids, mesh.procrustes_weights
    T = landmarks.shape[0]
    pose = np.zeros((T, 6))
    scale = np.zeros(T)
    n = landmarks.shape[1] if with_iris else 468
    shapes = np.zeros((T, n, 3))
    R_all = np.zeros((T, 3, 3))
    for i in range(T):
        P = image_to_mesh_axes(landmarks[i, :n])
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


def _cut_and_write(root: Path, i: int, rgb: np.ndarray, box: CropBox, size: int,
                   sample: Callable[[int, np.ndarray], None] | None = None) -> None:
    sj.write_frame(root, i, box.cut(rgb, size))
    if sample is not None:
        sample(i, rgb)


def _write_crops(video: Path, source_frames: np.ndarray, boxes: list[CropBox], size: int, root: Path,
                 progress: ProgressFn | None, should_stop: StopFn | None, clock: EtaClock, total: int,
                 sample: Callable[[int, np.ndarray], None] | None = None) -> int:
    """Pass 2: decode again; crop, resize and write the kept frames as PNGs in dense order
    (encoding overlaps decoding: OpenCV releases the GIL). ``boxes[k]`` is subject frame k's crop;
    ``sample(k, rgb)``, when given, also runs on every kept frame (the appearance measure's
    canonical crop, ``backend.face.appearance``). Returns the number of frames written."""
    from concurrent.futures import ThreadPoolExecutor

    T = len(source_frames)
    dense = {int(f): k for k, f in enumerate(source_frames)}
    last = int(source_frames[-1])
    pending = []
    n = 0
    with ThreadPoolExecutor(max_workers=2) as pool:
        for i, rgb in enumerate(prefetch(iter_frames(video, last + 1))):
            check_cancel(should_stop)
            k = dense.get(i)
            if k is None:
                continue
            pending.append(pool.submit(_cut_and_write, root, k, rgb, boxes[k], size, sample))
            if len(pending) > 8:
                pending.pop(0).result()
            if k % PROGRESS_EVERY == 0:
                _report(progress, T + k, total, clock, "frames")
            n += 1
        for f in pending:
            f.result()
    return n


def _per_run(fn, values: np.ndarray, runs: list[tuple[int, int]]) -> np.ndarray:
    """Apply ``fn`` to ``values[a:b]`` of every dense run (never across a cut); stack back."""
    return np.concatenate([np.asarray(fn(values[a:b])) for a, b in runs], axis=0)


def _crop_dict(box: CropBox) -> dict[str, int]:
    return {"x0": box.x0, "y0": box.y0, "side": box.side}


def _box_pieces(boxes: list[CropBox], a: int, b: int) -> list[tuple[int, int]]:
    """Ranges of consecutive frames ``a..b`` (b exclusive) with the same crop box."""
    starts = [a] + [i for i in range(a + 1, b) if boxes[i] != boxes[i - 1]]
    return list(zip(starts, [*starts[1:], b], strict=True))


def _meta_shots(selection: Selection, dense_runs: list[tuple[int, int]], boxes: list[CropBox],
                framing: str) -> list[dict]:
    """``meta.json`` ``shots``: one entry per run (frames, source frames, shot, person, framing),
    its framing segments (each with its crop; a segment spanning two runs of a shot is listed in
    both) and ``crop``, the run's first segment's box (what a reader of one box per shot gets)."""
    out = []
    for r, (a, b) in zip(selection.runs, dense_runs, strict=True):
        segments = [{"frames": [pa, pb], "source_frames": [r.start + pa - a, r.start + pb - a],
                     "crop": _crop_dict(boxes[pa])} for pa, pb in _box_pieces(boxes, a, b)]
        out.append({"frames": [a, b], "source_frames": [r.start, r.stop], "shot": r.shot, "person": r.person,
                    "framing": framing, "crop": _crop_dict(boxes[a]), "framing_segments": segments})
    return out


def _crop_groups(selection: Selection) -> np.ndarray:
    """(T,) per subject frame, its crop group: one per shot and person (``--all-people`` may keep
    two people of one shot, whose runs then get crops of their own)."""
    keys: dict[tuple[int, int], int] = {}
    return np.concatenate([np.full(r.n_frames, keys.setdefault((r.shot, r.person), len(keys)))
                           for r in selection.runs])


def _frame_boxes(groups: np.ndarray, landmarks_v: np.ndarray, detected: np.ndarray, width: int,
                 height: int, framing: str, follow_face: bool = False) -> tuple[list[CropBox], int]:
    """Every subject frame's crop: one fixed box per group (a shot's frames, in order, across its
    runs), fitted to its detected frames; with ``follow_face``, each group's frames are split into
    framing segments (``backend.face.framing.framing_segments``), one fixed box per segment, fitted
    to all its frames.

    Args:
        groups: (T,) crop group of every subject frame (``_crop_groups``); landmarks_v: (T, 478, 3)
            video px; detected: (T,) frames whose landmarks were detected (not interpolated).
        width, height: video size; framing: a ``FRAMINGS`` name.
        follow_face: split a group where its face moves (``track_video``'s ``follow_face``).
    Returns:
        (boxes, one per frame; number of framing segments: one per group without ``follow_face``).
    """
    boxes: list[CropBox | None] = [None] * len(groups)
    n = 0
    for group in np.unique(groups):
        ids = np.nonzero(groups == group)[0]
        lm = landmarks_v[ids]
        if not follow_face:
            # one crop per shot (the default; docs/tracking.md, "Framing")
            box = crop_box(lm, detected[ids], width, height, framing)
            for i in ids:
                boxes[i] = box
            n += 1
            continue
        for a, b in framing_segments(lm[:, :468, :2], framing, min(width, height), MIN_RUN_FRAMES):
            box = crop_box(lm[a:b], None, width, height, framing)
            for i in ids[a:b]:
                boxes[i] = box
            n += 1
    return boxes, n


def _box_arrays(boxes: list[CropBox], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: (T, 2) crop corner (x0, y0) in video px and (T,) crop px per video px."""
    corner = np.array([(b.x0, b.y0) for b in boxes], dtype=np.float64)
    f = np.array([size / b.side for b in boxes], dtype=np.float64)
    return corner, f


def _pose_in_video_px(pose: np.ndarray, scale: np.ndarray, corner: np.ndarray, f: np.ndarray,
                      inverse: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Move (T, 6) pose (tx, ty, tz in crop px) and (T,) scale (crop px per cm) to video px, or
    back with ``inverse``: smoothing there is not thrown by a crop that changes at a framing
    segment boundary, and equals smoothing in crop px within one crop (the filter is affine)."""
    p = np.array(pose, dtype=np.float64, copy=True)
    if inverse:
        p[:, 3:5] = (p[:, 3:5] - corner) * f[:, None]
        p[:, 5] *= f
        return p, np.asarray(scale, dtype=np.float64) * f
    p[:, 3:5] = p[:, 3:5] / f[:, None] + corner
    p[:, 5] /= f
    return p, np.asarray(scale, dtype=np.float64) / f


def track_video(video: Path, out_dir: Path, size: int = 256, max_frames: int | None = None,
                overwrite: bool = False, progress: ProgressFn | None = None,
                should_stop: StopFn | None = None, frames: str | list[tuple[int, int]] | None = None,
                person: int | None = None, all_people: bool = False,
                framing: str = DEFAULT_FRAMING, descriptor: bool = True, follow_face: bool = False,
                shape68: bool = True, appearance: bool = True) -> Path:
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
        frames: source frame ranges to keep, ``"A:B,C:D"`` (B exclusive) or a list of pairs.
        person: 1-based person to keep (numbers as ``--list-people`` prints them); default: the
            person on screen longest.
        all_people: keep every face (when the people cannot be told apart, or on purpose).
        framing: a ``FRAMINGS`` name (crop side in face heights), fitted per shot.
        descriptor: use dlib's face descriptor for identities (False: rig shape only).
        follow_face: re-fit the crop within a shot where the face moves (framing segments), so a
            moving face keeps the framing's size; off (one crop per shot) by default, as it costs
            held-out quality on the measured real clip (docs/tracking.md, "Framing").
        shape68: read the names of ``backend.face.shape68.NAMES`` (mouthRight) from dlib's
            68-point predictor (falls back to FaceMesh, logged, when dlib or its weights are
            missing; False: FaceMesh for every name).
        appearance: read the names of ``backend.face.appearance.NAMES`` (noseSneer, jawLeft/Right;
            eyeSquint, mouthUpperUp, mouthLowerDown fused with the landmarks) from the image motion
            of face regions (falls back to the landmarks, logged, when it cannot run; False:
            landmarks only).
    Returns:
        ``out_dir``.
    Raises:
        FileExistsError: ``out_dir`` exists and ``overwrite`` is false.
        TrackError (a ValueError): missing/unreadable/corrupt/empty input, too few faces, bad
            ``frames`` / ``person`` / ``framing``, people that cannot be told apart.
        Cancelled: on request.
    """
    video, out_dir = Path(video), Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already exists (use --overwrite to replace it)")
    if size < 16:
        raise TrackError(f"--size must be at least 16 pixels, got {size}")
    if max_frames is not None and max_frames < 1:
        raise TrackError(f"--max-frames must be positive, got {max_frames}")
    if framing not in FRAMINGS:
        raise TrackError(f"--framing must be one of {', '.join(FRAMINGS)}, got {framing!r}")
    if person is not None and all_people:
        raise TrackError("--person and --all-people exclude each other")
    try:
        info = probe(video)
    except VideoError as exc:
        raise TrackError(str(exc)) from exc
    n_est = min(info.n_frames, max_frames) if max_frames else info.n_frames
    ranges = None
    if frames is not None:
        text = frames if isinstance(frames, str) else ",".join(f"{a}:{b}" for a, b in frames)
        try:
            ranges = parse_frame_ranges(text, n_est)
        except SelectionError as exc:
            raise TrackError(str(exc)) from exc
    total = 3 * n_est
    clock = EtaClock(total)
    try:
        scan = scan_video(video, info, max_frames, progress, should_stop, total, clock, descriptor=descriptor,
                          shape68=shape68)
    except VideoError as exc:
        raise TrackError(str(exc)) from exc
    points = scan.points
    T_src = len(points)
    if T_src == 0:
        raise TrackError(f"{video}: zero frames could be decoded")
    detected_src = scan.detected
    if not detected_src.any():
        raise TrackError(f"{video}: no face found in any of the {T_src} frames; use a video with a "
                         "visible face")
    if ranges is not None and ranges[-1][1] > T_src:
        raise TrackError(f"--frames: {ranges[-1][0]}:{ranges[-1][1]} ends after the last decoded frame "
                         f"({T_src} frames could be read)")
    try:
        sel = select_frames(scan.segments, detected_src, scan.people, ranges, person, all_people)
    except SelectionError as exc:
        raise TrackError(f"{video}: {exc}") from exc
    src = sel.source_frames
    T = len(src)
    lens = [r.n_frames for r in sel.runs]
    dense_runs = list(itertools.pairwise(np.concatenate([[0], np.cumsum(lens)]).tolist()))
    _log_selection(video, scan, sel, T_src)

    # per run: gaps are short (segments end at long ones), fill them; landmarks in video px
    landmarks_v = np.zeros((T, 478, 3))
    interpolated = np.zeros(T, dtype=bool)
    for r, (a, b) in zip(sel.runs, dense_runs, strict=True):
        lm, _, interp = fill_gaps(points[r.start:r.stop], info.fps)
        landmarks_v[a:b], interpolated[a:b] = lm, interp
    valid = np.ones(T, dtype=bool)
    detected = detected_src[src]
    # one crop per shot, re-fitted across shots; with follow_face one per framing segment, also
    # re-fitted within a shot where the face moves too far for one crop to keep its size
    frame_boxes, n_segments = _frame_boxes(_crop_groups(sel), landmarks_v, detected, info.width, info.height,
                                          framing, follow_face)
    corner, px_per_video_px = _box_arrays(frame_boxes, size)
    landmarks = np.concatenate([frame_boxes[a].to_crop(landmarks_v[a:b], size)
                                for a, b in _box_pieces(frame_boxes, 0, T)])
    extra = np.zeros((T, 0, 3))
    if scan.points68:  # dlib's 68 points, where FaceMesh found the face: same gaps, same crops
        points68_v = np.zeros((T, 68, 2))
        for r, (a, b) in zip(sel.runs, dense_runs, strict=True):
            points68_v[a:b] = fill_gaps(scan.points68[r.start:r.stop], info.fps)[0]
        extra = with_depth(np.concatenate([frame_boxes[a].to_crop(points68_v[a:b], size)
                                           for a, b in _box_pieces(frame_boxes, 0, T)]), landmarks)
    # one pose fit makes the iris and dlib's points pose-free with the mesh's
    pose_raw, scale_raw, lifted = fit_poses(np.concatenate([landmarks, extra], axis=1), with_iris=True)
    n_lm = landmarks.shape[1]
    shapes, shapes68 = lifted[:, :n_lm], (lifted[:, n_lm:] if scan.points68 else None)
    pose_v, scale_v = _pose_in_video_px(pose_raw, scale_raw, corner, px_per_video_px)
    smoothed = [smooth_pose(pose_v[a:b], scale_v[a:b], info.fps) for a, b in dense_runs]
    pose_vs = np.concatenate([p for p, _ in smoothed]).astype(np.float64)
    scale_vs = np.concatenate([s for _, s in smoothed]).astype(np.float64)
    pose, scale = _pose_in_video_px(pose_vs, scale_vs, corner, px_per_video_px, inverse=True)
    pose, scale = pose.astype(np.float32), scale.astype(np.float32)
    extremes = sj.extreme_frames(_per_run(lambda p: pose_for_extremes(p, info.fps), pose_raw, dense_runs),
                                 valid)
    # the appearance measure's canonical crops are sampled in pass 2 (its frames are decoded there)
    # on the clip's pose-free neutral surface, with the smoothed pose in video px
    neutral = np.median(shapes[detected, :468] if detected.any() else shapes[:, :468], axis=0)
    sampler = CanonicalSampler(neutral) if appearance else None
    canon = np.zeros((T, *sampler.shape), dtype=np.uint8) if sampler is not None else None

    def sample(k: int, rgb: np.ndarray) -> None:
        canon[k] = sampler(rgb, pose_vs[k], float(scale_vs[k]))

    first = frame_boxes[0]
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        n_written = _write_crops(video, src, frame_boxes, size, tmp, progress, should_stop, clock, 3 * T,
                                 sample if sampler is not None else None)
        if n_written != T:
            raise TrackError(f"{video}: the second read gave {n_written} of the {T} kept frames")
        raw_app = (measure_appearance(canon, dense_runs, neutral, float(np.median(scale_vs)), pose_vs[:, :3])
                   if appearance else None)
        named = measure_named(shapes, detected, shapes68, raw_app)
        fit = fit_face_model(shapes[:, :468], named, valid)
        expressions = _per_run(lambda e: smooth_curves(e, info.fps, EXPRESSION_WINDOW_S), fit.coefficients,
                               dense_runs)
        n_named = named.shape[1]
        expressions[:, :n_named] = np.clip(expressions[:, :n_named], 0.0, 1.0)
        log.info("tracked %d frames (%d runs, %d shots, %d framing segments); rig: %d named + %d residual, "
                 "residual %.3f cm of %.3f cm", T, len(sel.runs), len({r.shot for r in sel.runs}), n_segments,
                 n_named, len(fit.rig.names) - n_named, fit.residual_rms, fit.shape_rms)
        uv = sj.open_uv_writer(tmp, T, size)
        chunk = 16
        for a in range(0, T, chunk):
            check_cancel(should_stop)
            b = min(a + chunk, T)
            uv[a:b] = fit.rig.uv_maps(expressions[a:b], pose[a:b], scale[a:b], size)
            _report(progress, 2 * T + a, 3 * T, clock, "uv maps")
        uv.flush()
        del uv
        sj.write_arrays(tmp, landmarks=landmarks.astype(np.float32), pose=pose, scale=scale, valid=valid,
                        names=fit.rig.names, expressions=expressions, raw_expressions=fit.coefficients)
        fit.rig.save(tmp / "rig")
        sj.write_meta(tmp, {
            "subject_id": _subject_id(video),
            "fps": info.fps,
            "size": size,
            "n_frames": T,
            "source": {"path": str(video.resolve()), "kind": "images" if info.is_folder else "video",
                       "width": info.width, "height": info.height, "fps": info.fps, "n_frames": T_src},
            "source_frames": src.tolist(),
            "framing": framing,
            "follow_face": follow_face,
            "crop": {"x0": first.x0, "y0": first.y0, "side": first.side,
                     "video_width": info.width, "video_height": info.height},
            "shots": _meta_shots(sel, dense_runs, frame_boxes, framing),
            "frames_left_out": [lo.as_dict() for lo in sel.left_out],
            "cuts": scan.cuts,
            "people": {"signal": scan.people.signal, "kept": sel.persons,
                       "people": [{"person": p.index, "frames_on_screen": p.n_frames,
                                   "ranges": frame_ranges_text(p.frames)} for p in scan.people.people]},
            "frames_used": int(valid.sum()),
            "frames_detected": int(detected.sum()),
            "frames_interpolated": np.nonzero(interpolated)[0].tolist(),
            "frames_dropped": np.nonzero(~valid)[0].tolist(),
            "frames_with_several_faces": int(scan.several),
            "extreme_frames": extremes,
            "expression_names": fit.rig.names,
            "rig_fit": {"residual_rms_cm": fit.residual_rms, "shape_rms_cm": fit.shape_rms},
            "tracker": "mediapipe FaceMesh (refine_landmarks=True, video mode)",
            "names_from_shape68": list(SHAPE68_NAMES) if shapes68 is not None else [],
            "names_from_appearance": list(APPEARANCE_NAMES) if raw_app is not None else [],
            "tool": {"name": "emo-avatar track", "version": _tool_version()},
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        })
        _report(progress, 3 * T, 3 * T, clock, "done")
    return out_dir


def _log_selection(video: Path, scan: Scan, sel: Selection, T_src: int) -> None:
    """Say which frames are kept and which are left out, and why."""
    kept = ", ".join(f"{r.start}:{r.stop}" for r in sel.runs)
    log.info("%s: %d shot cuts, %d %s (by %s); keeping person %s, source frames %s",
             video.name, len(scan.cuts), len(scan.people.people),
             "person" if len(scan.people.people) == 1 else "people", scan.people.signal,
             "+".join(map(str, sel.persons)), kept)
    for lo in sel.left_out:
        log.info("%s: frames %d:%d left out: %s", video.name, lo.start, lo.stop, lo.reason)
    n_left = T_src - sum(r.n_frames for r in sel.runs)
    if scan.several:
        log.warning("%s: several faces in %d of %d frames; tracking the largest one", video, scan.several,
                    T_src)
    if len(scan.people.people) > 1 and len(sel.persons) == 1:
        log.warning("%s: %d people on screen; kept person %d (%d frames), left out %d of %d frames "
                    "(see meta.json frames_left_out; --list-people, --person N)", video,
                    len(scan.people.people), sel.persons[0], sum(r.n_frames for r in sel.runs), n_left, T_src)
