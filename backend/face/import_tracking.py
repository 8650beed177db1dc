"""Bring-your-own tracking: an npz from an external tracker (FaceVerse, FLAME fitting, ...) ->
the same subject layout ``emo-avatar track`` writes (``backend.data.subject``).

npz keys (``np.savez``; read with ``allow_pickle=False``, so strings must be unicode arrays):

=================== ======================== =================================================
key                 shape / dtype            meaning
=================== ======================== =================================================
expressions         (T, K) float             per-frame expression coefficients (required)
expression_names    (K,) str                 their names; ARKit names / aliases are mapped to
                                             the canonical spelling, anything else (FLAME
                                             ``exp_00``...) becomes ``residual_NN`` in order
                                             (originals kept in meta.json). Default: residuals
pose                (T, 6) float             [yaw, pitch, roll (rad), tx, ty (crop px), tz]
                                             in the conventions of ``backend.face.rig`` (required)
uv                  (T, S, S, 2 or 3) float  UV maps (u, v[, coverage]), v up (required)
uv_v_down           () bool                  true when the maps' v points down (flipped here)
frames              (T, S', S', 3) uint8     RGB crops matching the UV maps (resized to S), or
video               () str                   a video / image folder with those crops (relative
                                             to the npz); ``--video`` overrides it
fps                 () float                 frame rate (default: the video's, else 25)
scale               (T,) float               crop px per cm (default: from a Procrustes fit on
                                             MediaPipe landmarks of the frames)
valid               (T,) bool                usable frames (default: all)
landmarks           (T, 478, 2 or 3) float   crop px (default: MediaPipe FaceMesh on the frames)
rig_neutral,        (N, 3), (K, N, 3),       the tracker's own linear rig, saved as is;
rig_deltas,         (N, 2), (F, 3)           default: a rig on the MediaPipe topology fitted by
rig_uvs,                                     least squares to the MediaPipe shapes of the frames
rig_triangles                                and the imported coefficients
=================== ======================== =================================================

The coverage channel, when absent, is 1 where (u, v) != (0, 0).
"""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path

import cv2
import numpy as np

from backend.data import subject as sj
from backend.face.rig import FaceRig, RigError
from backend.face.video_io import DEFAULT_FOLDER_FPS, VideoError, iter_frames, probe
from backend.progress import ProgressFn, ProgressUpdate, StopFn, check_cancel
from protocol.expressions import ARKIT_NAMES, canonical_name, residual_name
from protocol.fileio import atomic_dir

log = logging.getLogger(__name__)

REQUIRED_KEYS = ("expressions", "pose", "uv")
RIG_KEYS = ("rig_neutral", "rig_deltas", "rig_uvs", "rig_triangles")


class TrackingImportError(ValueError):
    """The npz cannot be imported (the message says which key is wrong and how)."""


def map_names(names: list[str]) -> list[str]:
    """External names -> subject names: ARKit (canonical spelling) where known, else residual_NN."""
    out: list[str] = []
    seen: set[str] = set()
    n_res = 0
    for n in names:
        c = canonical_name(str(n))
        if c is not None and c in ARKIT_NAMES and c not in seen:
            out.append(c)
            seen.add(c)
        else:
            out.append(residual_name(n_res))
            n_res += 1
    return out


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise TrackingImportError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise TrackingImportError(f"{path}: not a readable npz without pickled objects ({exc})") from exc
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise TrackingImportError(f"{path}: missing required arrays {missing} (see docs/tracking.md)")
    return data


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise TrackingImportError(msg)


def _video_path(data: dict, npz: Path, video: Path | None) -> Path | None:
    """``--video`` if given, else the npz's ``video`` key (relative to the npz's folder)."""
    if video is None and "video" in data:
        video = Path(str(data["video"]))
        if not video.is_absolute():
            video = npz.parent / video
    return video


def _frames(data: dict, npz: Path, video: Path | None, T: int, size: int) -> list[np.ndarray]:
    if video is not None:
        try:
            frames = list(iter_frames(video, T))
        except VideoError as exc:
            raise TrackingImportError(str(exc)) from exc
    elif "frames" in data:
        arr = data["frames"]
        _check(arr.ndim == 4 and arr.shape[-1] == 3 and arr.dtype == np.uint8,
               f"frames must be (T, H, W, 3) uint8 RGB, got {arr.shape} {arr.dtype}")
        frames = list(arr)
    else:
        raise TrackingImportError(f"{npz}: give the frames as a 'frames' array, a 'video' path or --video")
    _check(len(frames) >= T, f"{len(frames)} frames for {T} frames of expressions")
    out = []
    for f in frames[:T]:
        _check(f.shape[0] == f.shape[1], f"frames must be square crops matching the UV maps, got {f.shape}")
        if f.shape[0] != size:
            interp = cv2.INTER_AREA if f.shape[0] > size else cv2.INTER_LINEAR
            f = cv2.resize(f, (size, size), interpolation=interp)
        out.append(np.ascontiguousarray(f))
    return out


def import_tracking(npz: str | Path, out_dir: str | Path, video: str | Path | None = None,
                    overwrite: bool = False, progress: ProgressFn | None = None,
                    should_stop: StopFn | None = None) -> Path:
    """Import external tracking (npz keys in the module docstring) as a subject folder.

    Raises:
        FileExistsError: ``out_dir`` exists and ``overwrite`` is false.
        TrackingImportError (ValueError): unreadable npz, missing/ill-shaped keys, no frames.
    Returns:
        ``out_dir``, written atomically.
    """
    npz, out_dir = Path(npz), Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already exists (use --overwrite to replace it)")
    data = _load_npz(npz)
    expr = np.asarray(data["expressions"], dtype=np.float32)
    _check(expr.ndim == 2 and expr.shape[0] > 0, f"expressions must be (T, K), got {expr.shape}")
    T, K = expr.shape
    _check(T >= 2, f"expressions must hold at least 2 frames, got {T}")
    pose = np.asarray(data["pose"], dtype=np.float32)
    _check(pose.shape == (T, 6), f"pose must be (T={T}, 6) [yaw, pitch, roll, tx, ty, tz], got {pose.shape}")
    uv = np.asarray(data["uv"], dtype=np.float32)
    _check(uv.ndim == 4 and uv.shape[0] == T and uv.shape[1] == uv.shape[2] and uv.shape[3] in (2, 3),
           f"uv must be (T={T}, S, S, 2 or 3), got {uv.shape}")
    for name, arr in (("expressions", expr), ("pose", pose), ("uv", uv)):
        _check(bool(np.isfinite(arr).all()), f"{name} contains NaN or infinite values")
    size = int(uv.shape[1])
    if uv.shape[3] == 2:
        cov = (np.abs(uv).sum(-1, keepdims=True) > 0).astype(np.float32)
        uv = np.concatenate([uv, cov], axis=-1)
    if bool(data.get("uv_v_down", False)):
        uv[..., 1] = np.where(uv[..., 2] > 0, 1.0 - uv[..., 1], 0.0)
    raw_names = [str(n) for n in data["expression_names"]] if "expression_names" in data else \
        [f"coefficient_{i}" for i in range(K)]
    _check(len(raw_names) == K, f"expression_names has {len(raw_names)} names for {K} columns")
    names = map_names(raw_names)
    valid = np.asarray(data.get("valid", np.ones(T, dtype=bool)), dtype=bool)
    _check(valid.shape == (T,), f"valid must be (T={T},), got {valid.shape}")

    src = _video_path(data, npz, Path(video) if video is not None else None)
    frames = _frames(data, npz, src, T, size)
    if "fps" in data:
        fps = float(data["fps"])
        _check(np.isfinite(fps) and 0 < fps <= 1000, f"fps must be a positive number, got {fps}")
    else:
        fps = probe(src).fps if src is not None else DEFAULT_FOLDER_FPS

    def report(step: int, msg: str) -> None:
        if progress is not None:
            progress(ProgressUpdate(stage="import", step=step, total=3 * T, message=msg))

    landmarks, lm_valid = _landmarks(data, frames, fps, should_stop, report)
    rig = _rig(data, landmarks, lm_valid, expr, names)
    if "scale" in data:
        scale = np.asarray(data["scale"], dtype=np.float32)
        _check(scale.shape == (T,), f"scale must be (T={T},), got {scale.shape}")
    else:
        _check(bool(lm_valid.any()), "no 'scale' given and no face found in the frames to estimate it")
        from backend.face.track import fit_poses
        _, s, _ = fit_poses(landmarks)
        scale = np.full(T, float(np.median(s[lm_valid])), dtype=np.float32)

    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        for i, f in enumerate(frames):
            check_cancel(should_stop)
            sj.write_frame(tmp, i, f)
            report(T + i, "frames")
        mm = sj.open_uv_writer(tmp, T, size)
        mm[:] = uv.astype(np.float16)
        mm.flush()
        del mm
        sj.write_arrays(tmp, landmarks=landmarks, pose=pose, scale=scale, valid=valid, names=names,
                        expressions=expr)
        rig.save(tmp / "rig")
        sj.write_meta(tmp, {
            "subject_id": f"import-{npz.stem}",
            "fps": fps, "size": size, "n_frames": T,
            "source": {"path": str(npz.resolve()), "kind": "import",
                       "video": str(src) if src is not None else None},
            "crop": {"x0": 0, "y0": 0, "side": size, "video_width": size, "video_height": size},
            "frames_used": int(valid.sum()),
            "frames_detected": int(lm_valid.sum()),
            "frames_interpolated": [],
            "frames_dropped": np.nonzero(~valid)[0].tolist(),
            "frames_with_several_faces": 0,
            "extreme_frames": sj.extreme_frames(pose, valid),
            "expression_names": names,
            "source_expression_names": raw_names,
            "rig_source": "npz" if all(k in data for k in RIG_KEYS) else "fitted to MediaPipe landmarks",
            "tool": {"name": "emo-avatar import-tracking"},
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        })
        report(3 * T, "done")
    return out_dir


def _landmarks(data: dict, frames: list[np.ndarray], fps: float, should_stop: StopFn | None,
               report) -> tuple[np.ndarray, np.ndarray]:
    """(T, 478, 3) crop px and (T,) found-flags: the npz's, or MediaPipe on the frames."""
    T = len(frames)
    if "landmarks" in data:
        lm = np.asarray(data["landmarks"], dtype=np.float32)
        _check(lm.ndim == 3 and lm.shape[0] == T and lm.shape[1] == 478 and lm.shape[2] in (2, 3),
               f"landmarks must be (T={T}, 478, 2 or 3) crop pixels, got {lm.shape}")
        if lm.shape[2] == 2:
            lm = np.concatenate([lm, np.zeros((T, 478, 1), np.float32)], axis=2)
        return lm, np.isfinite(lm).all(axis=(1, 2))
    from backend.face.landmarks import FaceMeshTracker
    from backend.face.track import fill_gaps

    points = []
    with FaceMeshTracker() as tracker:
        for i, f in enumerate(frames):
            check_cancel(should_stop)
            points.append(tracker.process(f).points)
            report(i, "landmarks")
    found = np.array([p is not None for p in points])
    if not found.any():
        return np.zeros((T, 478, 3), np.float32), found
    lm, _, _ = fill_gaps(points, fps)
    return lm.astype(np.float32), found


def _rig(data: dict, landmarks: np.ndarray, found: np.ndarray, expr: np.ndarray, names: list[str]) -> FaceRig:
    if all(k in data for k in RIG_KEYS):
        try:
            return FaceRig(names=names, neutral=data["rig_neutral"], deltas=data["rig_deltas"],
                           uvs=data["rig_uvs"], triangles=data["rig_triangles"])
        except RigError as exc:
            raise TrackingImportError(f"rig arrays are inconsistent: {exc}") from exc
    _check(int(found.sum()) >= 2, "no rig_* arrays given and MediaPipe found no face in the frames to "
           "fit one; add rig_neutral, rig_deltas, rig_uvs, rig_triangles to the npz")
    from backend.face.face_model import fit_linear_rig
    from backend.face.track import fit_poses

    _, _, shapes = fit_poses(landmarks.astype(np.float64))
    return fit_linear_rig(shapes, expr, names, found)
