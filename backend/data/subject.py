"""The subject folder: what ``emo-avatar track`` (or ``import-tracking``) writes and training reads.

Layout (format ``emo-avatar-subject``, version 1; the whole folder is written atomically)::

    SUBJECT/
      meta.json            format, version, subject_id, fps, size, n_frames, source, source_frames
                           (subject frame i = video frame source_frames[i]), framing, follow_face,
                           shots (each with its framing segments and their crop boxes), crop
                           (the first frame's), frames_left_out (with the reason), people, frames used /
                           interpolated / dropped, extreme_frames
      frames/000000.png    crop, size x size RGB, one per kept frame, numbered densely
      uv/uv.npy            (T, size, size, 3) float16 (u, v, coverage), memory-mappable
      landmarks.npy        (T, 478, 3) float32 crop pixels: x right, y down, z towards viewer
      pose.npy             (T, 6) float32 [yaw, pitch, roll (rad), tx, ty (crop px), tz (px)]
      scale.npy            (T,) float32 crop pixels per cm
      valid.npy            (T,) bool, frames with a face (detected or short-gap interpolated)
      expressions.npz      names (K,) str, values (T, K) float32 smoothed, raw (T, K) unsmoothed
      rig/                 neutral.obj + blendshapes.npz (backend.face.rig.FaceRig)

Conventions of pose, scale and projection are those of ``backend.face.rig`` (scaled
orthographic, mesh y up vs image y down). UV v is up (OBJ/Blender convention).

Crop boxes (``Subject.crop_of(i)``): one per framing segment, ``meta["shots"][k]["framing_segments"]
[j]["crop"]`` (a shot is one segment unless tracked with ``follow_face`` and its face moves too
far for one crop; ``shots[k]["crop"]`` is that entry's first segment's box, the only one in
subjects tracked before segments existed):
``x0, y0, side`` in video pixels; a video pixel coordinate p maps to crop pixels as
``(p - (x0, y0)) * size / side`` (continuous coordinates, corner origin). Subjects without
``shots`` (imports) have one ``crop``.
"""

from __future__ import annotations

import itertools
import json
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from backend.face.rig import RIG_DIRNAME, FaceRig, RigError
from backend.images import encode_png
from backend.paths import frame_file_name
from protocol.fileio import atomic_write_text

FORMAT_NAME = "emo-avatar-subject"
FORMAT_VERSION = 1
META_NAME = "meta.json"
FRAMES_DIRNAME = "frames"
UV_DIRNAME = "uv"
UV_NAME = "uv.npy"
LANDMARKS_NAME = "landmarks.npy"
POSE_NAME = "pose.npy"
SCALE_NAME = "scale.npy"
VALID_NAME = "valid.npy"
EXPRESSIONS_NAME = "expressions.npz"
EXTREME_KEYS = ("min_yaw", "max_yaw", "min_pitch", "max_pitch")
HELDOUT_EVERY = 10
HELDOUT_TAIL = 0.10


class SubjectError(ValueError):
    """A subject folder is missing, of another format/version, or incomplete."""


def frame_name(index: int) -> str:
    return frame_file_name(index)


def write_frame(root: Path, index: int, rgb: np.ndarray) -> None:
    """Write crop ``index`` ((size, size, 3) uint8 RGB) as PNG into ``root/frames``.

    Meant for a folder being built inside ``protocol.fileio.atomic_dir`` (the folder is atomic).
    """
    path = Path(root) / FRAMES_DIRNAME / frame_name(index)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(rgb))  # inside atomic_dir: the folder is what is atomic


def open_uv_writer(root: Path, n_frames: int, size: int) -> np.memmap:
    """Create ``root/uv/uv.npy`` as a (T, size, size, 3) float16 memmap to fill frame by frame."""
    path = Path(root) / UV_DIRNAME / UV_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n_frames, size, size, 3))


def write_arrays(root: Path, *, landmarks: np.ndarray, pose: np.ndarray, scale: np.ndarray,
                 valid: np.ndarray, names: list[str], expressions: np.ndarray,
                 raw_expressions: np.ndarray | None = None) -> None:
    """Write the per-frame arrays (shapes in the module docstring) into ``root``."""
    root = Path(root)
    np.save(root / LANDMARKS_NAME, np.asarray(landmarks, dtype=np.float32))
    np.save(root / POSE_NAME, np.asarray(pose, dtype=np.float32))
    np.save(root / SCALE_NAME, np.asarray(scale, dtype=np.float32))
    np.save(root / VALID_NAME, np.asarray(valid, dtype=bool))
    values = np.asarray(expressions, dtype=np.float32)
    raw = values if raw_expressions is None else np.asarray(raw_expressions, dtype=np.float32)
    np.savez(root / EXPRESSIONS_NAME, names=np.asarray(names, dtype=str), values=values, raw=raw)


def write_meta(root: Path, meta: dict[str, Any]) -> None:
    """Write ``meta.json`` with the format name and version filled in."""
    meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, **meta}
    atomic_write_text(Path(root) / META_NAME, json.dumps(meta, indent=2, sort_keys=False) + "\n")


def extreme_frames(pose: np.ndarray, valid: np.ndarray, ids: np.ndarray | None = None) -> dict[str, int]:
    """Frame indices of min/max yaw and min/max pitch among valid frames (optionally among ``ids``).

    Args:
        pose: (T, >=2) yaw, pitch in the first two columns (the tracker passes a Gaussian-smoothed
            copy of the raw pose, see ``backend.face.track.pose_for_extremes``).
        valid: (T,) bool; ids: optional frame ids to choose from (e.g. the training split).
    """
    ok = np.asarray(valid, dtype=bool).copy()
    if ids is not None:
        mask = np.zeros_like(ok)
        mask[np.asarray(ids, dtype=int)] = True
        ok &= mask
    cand = np.nonzero(ok)[0]
    if cand.size == 0:
        raise SubjectError("no valid frame to pick extreme poses from")
    yaw, pitch = pose[cand, 0], pose[cand, 1]
    return {"min_yaw": int(cand[np.argmin(yaw)]), "max_yaw": int(cand[np.argmax(yaw)]),
            "min_pitch": int(cand[np.argmin(pitch)]), "max_pitch": int(cand[np.argmax(pitch)])}


def runs_of(n_frames: int, run_starts: list[int] | tuple[int, ...]) -> list[tuple[int, int]]:
    """The [a, b) frame ranges a subject's ``run_starts`` cut its ``n_frames`` frames into
    (each run: consecutive video frames of one shot), in order."""
    bounds = [0, *sorted(int(s) for s in run_starts if 0 < int(s) < n_frames), n_frames]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def split_ids(n_frames: int, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train_ids, heldout_ids): held out = every 10th frame (0, 10, ...) and the last 10%.

    Invalid frames are in neither. Both int64 arrays, sorted.
    """
    ids = np.arange(n_frames)
    tail_start = n_frames - int(np.ceil(n_frames * HELDOUT_TAIL))
    held = (ids % HELDOUT_EVERY == 0) | (ids >= tail_start)
    ok = np.ones(n_frames, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    return ids[~held & ok], ids[held & ok]


class Subject:
    """Read access to a subject folder. Open with ``Subject.open(path)``.

    Attributes (arrays load lazily, on first use):
        path, meta (dict), subject_id, size (crop px), fps, n_frames,
        expression_names (list[str]), expressions (T, K) float32 smoothed,
        raw_expressions (T, K) float32, pose (T, 6) float32, scale (T,) float32 px/cm,
        landmarks (T, 478, 3) float32 crop px, valid (T,) bool,
        extreme_frames {min_yaw, max_yaw, min_pitch, max_pitch} -> frame index, crop (dict), rig.
    """

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = Path(path)
        self.meta = meta

    @classmethod
    def open(cls, path: str | Path) -> Subject:
        """Open and check a subject folder.

        Raises:
            SubjectError: the folder or meta.json is missing/unreadable, the format is not
                ``emo-avatar-subject`` or its version is not supported, or a required file is missing.
        """
        p = Path(path)
        if not p.is_dir():
            raise SubjectError(f"{p}: no such subject folder (make one with `emo-avatar track VIDEO -o {p}`)")
        meta_path = p / META_NAME
        if not meta_path.is_file():
            raise SubjectError(f"{p}: not a subject folder (no {META_NAME})")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise SubjectError(f"{meta_path}: unreadable ({exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            found = meta.get("format") if isinstance(meta, dict) else None
            raise SubjectError(f"{meta_path}: format is {found!r}, expected {FORMAT_NAME!r}")
        if meta.get("version") != FORMAT_VERSION:
            raise SubjectError(f"{meta_path}: subject format version {meta.get('version')!r} is not "
                               f"supported (this tool reads version {FORMAT_VERSION}); "
                               "re-run `emo-avatar track`")
        needed = [LANDMARKS_NAME, POSE_NAME, SCALE_NAME, VALID_NAME, EXPRESSIONS_NAME,
                  f"{UV_DIRNAME}/{UV_NAME}", FRAMES_DIRNAME, RIG_DIRNAME]
        missing = [n for n in needed if not (p / n).exists()]
        if missing:
            raise SubjectError(f"{p}: incomplete subject, missing {', '.join(missing)}")
        subject = cls(p, meta)
        subject._check_consistent()
        return subject

    def _check_consistent(self) -> None:
        """Cheap checks (file headers and names only) that the parts agree on T and size."""
        try:
            T, size = int(self.meta["n_frames"]), int(self.meta["size"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SubjectError(f"{self.path / META_NAME}: missing or bad n_frames/size ({exc})") from exc
        n_png = sum(1 for _ in (self.path / FRAMES_DIRNAME).glob("*.png"))
        if n_png != T:
            raise SubjectError(f"{self.path}: {n_png} frames in {FRAMES_DIRNAME}/ but meta.json says {T}")
        for name, shape in ((f"{UV_DIRNAME}/{UV_NAME}", (T, size, size, 3)), (POSE_NAME, (T, 6)),
                            (SCALE_NAME, (T,)), (VALID_NAME, (T,))):
            try:
                found = np.load(self.path / name, mmap_mode="r", allow_pickle=False).shape
            except (OSError, ValueError) as exc:
                raise SubjectError(f"{self.path / name}: unreadable ({exc})") from exc
            if found != shape:
                raise SubjectError(f"{self.path / name}: shape {found}, expected {shape} for this subject")

    # --- metadata -----------------------------------------------------------------------------
    @property
    def subject_id(self) -> str:
        return str(self.meta["subject_id"])

    @property
    def size(self) -> int:
        return int(self.meta["size"])

    @property
    def fps(self) -> float:
        return float(self.meta["fps"])

    @property
    def n_frames(self) -> int:
        return int(self.meta["n_frames"])

    @property
    def crop(self) -> dict[str, Any]:
        return dict(self.meta["crop"])

    @property
    def extreme_frames(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.meta["extreme_frames"].items()}

    # --- arrays -------------------------------------------------------------------------------
    def _load(self, name: str) -> np.ndarray:
        try:
            return np.load(self.path / name, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise SubjectError(f"{self.path / name}: unreadable ({exc})") from exc

    @cached_property
    def _expr(self) -> dict[str, np.ndarray]:
        path = self.path / EXPRESSIONS_NAME
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise SubjectError(f"{path}: unreadable ({exc})") from exc

    @property
    def expression_names(self) -> list[str]:
        return [str(n) for n in self._expr["names"]]

    @property
    def expressions(self) -> np.ndarray:
        return self._expr["values"].astype(np.float32)

    @property
    def raw_expressions(self) -> np.ndarray:
        return self._expr.get("raw", self._expr["values"]).astype(np.float32)

    @cached_property
    def pose(self) -> np.ndarray:
        return self._load(POSE_NAME).astype(np.float32)

    @cached_property
    def scale(self) -> np.ndarray:
        return self._load(SCALE_NAME).astype(np.float32)

    @cached_property
    def landmarks(self) -> np.ndarray:
        return self._load(LANDMARKS_NAME).astype(np.float32)

    @cached_property
    def valid(self) -> np.ndarray:
        return self._load(VALID_NAME).astype(bool)

    @cached_property
    def uv_maps(self) -> np.ndarray:
        """(T, size, size, 3) float16 memory map of all UV maps."""
        try:
            return np.load(self.path / UV_DIRNAME / UV_NAME, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise SubjectError(f"{self.path / UV_DIRNAME / UV_NAME}: unreadable ({exc})") from exc

    @cached_property
    def rig(self) -> FaceRig:
        try:
            return FaceRig.load(self.path / RIG_DIRNAME)
        except RigError as exc:
            raise SubjectError(str(exc)) from exc

    def _check_index(self, i: int) -> int:
        if not 0 <= int(i) < self.n_frames:
            raise IndexError(f"frame {i} out of range (subject has {self.n_frames} frames)")
        return int(i)

    def frame(self, i: int) -> np.ndarray:
        """Crop ``i`` as (size, size, 3) uint8 RGB."""
        path = self.path / FRAMES_DIRNAME / frame_name(self._check_index(i))
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SubjectError(f"{path}: missing or unreadable frame")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def uv(self, i: int) -> np.ndarray:
        """UV map ``i`` as (size, size, 3) float32 (u, v, coverage)."""
        return np.asarray(self.uv_maps[self._check_index(i)], dtype=np.float32)

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """(train_ids, heldout_ids); held out = every 10th frame and the last 10%, never trained on."""
        return split_ids(self.n_frames, self.valid)

    def extreme_frames_among(self, ids: np.ndarray) -> dict[str, int]:
        """Extreme-pose frames restricted to ``ids`` (e.g. the training ids, for PTI)."""
        return extreme_frames(self.pose, self.valid, ids)

    @property
    def run_starts(self) -> list[int]:
        """Subject frames (ascending, 0 excluded) that begin a run after the first: consecutive
        video frames of one shot follow each other within a run; a run starts at a shot cut, after
        another person's frames left out, or after a gap."""
        starts = {int(shot["frames"][0]) for shot in self.meta.get("shots", [])}
        src = self.meta.get("source_frames")
        if src is not None and len(src) > 1:
            starts.update(int(i) + 1 for i in np.flatnonzero(np.diff(np.asarray(src, dtype=np.int64)) != 1))
        return sorted(i for i in starts if 0 < i < self.n_frames)

    @property
    def cuts(self) -> list[int]:
        """Subject frames (ascending, 0 excluded) whose picture does not continue the frame before
        them: ``run_starts`` and the first frame of each framing segment (a crop change, with
        ``--follow-face``). Neither the 5-frame expression windows of stage 1 (in training and in
        ``Renderer.render(cuts=...)``), nor the steady filter, nor the style metrics reach across
        one."""
        segments = {int(seg["frames"][0]) for shot in self.meta.get("shots", [])
                    for seg in shot.get("framing_segments", [])}
        return sorted(set(self.run_starts) | {i for i in segments if 0 < i < self.n_frames})

    def source_frame(self, i: int) -> int:
        """Video frame number of subject frame ``i`` (frames are numbered densely in the subject)."""
        i = self._check_index(i)
        src = self.meta.get("source_frames")
        return int(src[i]) if src is not None else i

    def crop_of(self, i: int) -> dict[str, Any]:
        """Crop box ``{x0, y0, side}`` (video px) of subject frame ``i``: its framing segment's
        (subjects tracked before framing segments: its shot's; imports: the one ``crop``)."""
        i = self._check_index(i)
        for shot in self.meta.get("shots", []):
            if shot["frames"][0] <= i < shot["frames"][1]:
                for seg in shot.get("framing_segments", []):
                    if seg["frames"][0] <= i < seg["frames"][1]:
                        return dict(seg["crop"])
                return dict(shot["crop"])
        return dict(self.meta["crop"])

    def video_to_crop(self, points: np.ndarray, frame: int = 0) -> np.ndarray:
        """Map (..., 2) video-pixel coordinates of subject frame ``frame`` to crop pixels."""
        c = self.crop_of(frame)
        f = self.size / float(c["side"])
        return (np.asarray(points, dtype=np.float64) - (c["x0"], c["y0"])) * f

    def __repr__(self) -> str:
        return f"Subject({str(self.path)!r}, frames={self.n_frames}, size={self.size}, fps={self.fps:g})"
