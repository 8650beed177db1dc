"""Expression curves: the payload that drives a render, and its file formats.

:class:`Curves` holds named per-frame expression values (T x K float32), the frame rate, the
frame number of row 0, an optional head pose (T x 6 float32: yaw, pitch, roll in radians, then
tx, ty, tz in cm around the rest pose; ``expressions.HEAD_POSE_NAMES``) and an optional head
scale (T float32: the head's apparent size relative to the rest size, 1 = as tracked; a camera
zoom or a scaled head). It is validated on construction (finite values, matching shapes, unique
names, positive scale).

Files (chosen by suffix in :func:`read_curves` / :func:`write_curves`):

- **Live Link Face CSV** (``.csv``), the layout the iOS app records::

      Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,...,TongueOut,HeadYaw,HeadPitch,HeadRoll,
      LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll
      13:42:51:12.345,61,0.0123,...

  Names are matched case-insensitively and through ``expressions.canonical_name`` aliases; the
  timecode is ``HH:MM:SS:FF.fff`` (FF = frame of a 30 fps timecode clock, 60 when FF reaches 30,
  ``.fff`` = fraction of that frame). HeadYaw/HeadPitch/HeadRoll become head-pose columns
  yaw/pitch/roll unchanged: Live Link Face writes them as radians (small values, ~+-0.5 for a
  turned head), tx/ty/tz are 0. Eye rotations are read only with ``eye_rotations=True`` (as curves
  named LeftEyeYaw, ...): the face rig has no eye bones. fps is inferred from the timecodes
  (median spacing, snapped to a standard rate); pass ``fps=`` when the file has a single row.
- **JSON** (``.json``): ``{"format": "emo-avatar-curves", "version": 1, "names", "fps",
  "frame_start", "values": [[...] per frame], "head_pose": [[6] per frame] | null,
  "head_scale": [per frame] | null}`` (``head_scale`` may be absent: files written before it
  existed, and readers that predate it ignore it).
- **npz** (``.npz``, read only, for pipeline scripts): ``names`` (K,) str, ``values`` (T, K)
  float, optional ``head_pose`` (T, 6), ``head_scale`` (T,), ``fps`` (default 30) and
  ``frame_start`` (default 0).

Pure Python + numpy (vendored into the Blender add-on).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CurveError
from .expressions import (
    ARKIT_NAMES,
    HEAD_POSE_NAMES,
    LIVE_LINK_ROTATION_NAMES,
    canonical_name,
    is_residual,
)
from .fileio import atomic_write_text
from .limits import MAX_NAME_CHARS, MAX_NAMES

log = logging.getLogger(__name__)

JSON_FORMAT = "emo-avatar-curves"
JSON_VERSION = 1
STANDARD_FPS: tuple[float, ...] = (23.976, 24.0, 25.0, 29.97, 30.0, 48.0, 50.0, 59.94, 60.0, 120.0)
LLF_BLENDSHAPE_COUNT = 61
"""What Live Link Face writes in its BlendShapeCount column (52 shapes + 9 rotations)."""


def _llf_column(name: str) -> str:
    """ARKit name as Live Link Face spells the CSV column (``eyeBlinkLeft`` -> ``EyeBlinkLeft``)."""
    return name[0].upper() + name[1:]


LLF_COLUMNS: tuple[str, ...] = (
    "Timecode", "BlendShapeCount", *(_llf_column(n) for n in ARKIT_NAMES), *LIVE_LINK_ROTATION_NAMES,
)
"""The full Live Link Face CSV header in file order."""


@dataclass(eq=False)
class Curves:
    """Named expression curves.

    Attributes:
        names: K curve names (ARKit, residual_NN, or rig-specific), unique.
        fps: frames per second (> 0).
        frame_start: frame number of row 0.
        values: (T, K) float32, finite.
        head_pose: (T, 6) float32 yaw, pitch, roll (radians), tx, ty, tz (cm); or None.
        head_scale: (T,) float32 > 0, apparent head size relative to the rest size; or None (1).
        dropped: names :meth:`conform` dropped because the target lacks them (information only).
    """

    names: list[str]
    fps: float
    frame_start: int
    values: np.ndarray
    head_pose: np.ndarray | None = None
    head_scale: np.ndarray | None = None
    dropped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.names, list | tuple) or not all(isinstance(n, str) and n for n in self.names):
            raise CurveError("curve names must be a list of non-empty strings")
        self.names = list(self.names)
        if len(self.names) > MAX_NAMES or any(len(n) > MAX_NAME_CHARS for n in self.names):
            raise CurveError(f"a curve set has at most {MAX_NAMES} names of at most {MAX_NAME_CHARS} "
                             f"characters; got {len(self.names)} names")
        if len(set(self.names)) != len(self.names):  # linear; only a failing set is counted
            counts = Counter(self.names)
            dupes = sorted(n for n, c in counts.items() if c > 1)
            raise CurveError(f"duplicate curve names: {', '.join(dupes[:20])}"
                             + (f" (+{len(dupes) - 20} more)" if len(dupes) > 20 else ""))
        try:
            self.fps = float(self.fps)
        except (TypeError, ValueError):
            raise CurveError(f"fps {self.fps!r} is not a number") from None
        if not math.isfinite(self.fps) or self.fps <= 0:
            raise CurveError(f"fps must be a positive finite number, got {self.fps}")
        if isinstance(self.frame_start, bool) or not isinstance(self.frame_start, int | np.integer):
            raise CurveError(f"frame_start must be an int, got {self.frame_start!r}")
        self.frame_start = int(self.frame_start)
        self.values = _as_matrix(self.values, "values", (None, len(self.names)))
        if self.head_pose is not None:
            self.head_pose = _as_matrix(self.head_pose, "head_pose", (self.values.shape[0], 6))
        if self.head_scale is not None:
            scale = _as_vector(self.head_scale, "head_scale", self.values.shape[0])
            if np.any(scale <= 0):
                row = int(np.argmax(scale <= 0))
                raise CurveError(f"head_scale must be > 0 (a relative size), got {scale[row]} at row {row}")
            self.head_scale = scale

    @property
    def n_frames(self) -> int:
        return int(self.values.shape[0])

    def __len__(self) -> int:
        return self.n_frames

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Curves):
            return NotImplemented
        if (self.names, self.fps, self.frame_start) != (other.names, other.fps, other.frame_start):
            return False
        for a, b in ((self.head_pose, other.head_pose), (self.head_scale, other.head_scale)):
            if (a is None) != (b is None) or (a is not None and not np.array_equal(a, b)):
                return False
        return bool(np.array_equal(self.values, other.values))

    __hash__ = None  # type: ignore[assignment]

    def column(self, name: str) -> np.ndarray:
        """(T,) values of curve ``name`` (exact or canonical spelling)."""
        index = _name_index(self.names)
        key = index.get(name) if name in index else index.get(canonical_name(name) or name)
        if key is None:
            raise CurveError(f"no curve named {name!r}; have {', '.join(self.names)}")
        return self.values[:, key]

    def conform(self, target_names: Sequence[str], *, fill_missing: bool = False) -> Curves:
        """These curves with columns reordered to ``target_names`` (e.g. a subject's rig names).

        - curves the target lacks are dropped when they are known names (ARKit, Live Link
          rotations, residuals) and listed in ``result.dropped``;
        - unknown names (neither in the target nor known) raise :class:`CurveError` listing them;
        - target names the curves lack: ``residual_*`` become zeros; others raise
          :class:`CurveError` listing them, or become zeros with ``fill_missing=True``.
        """
        target = list(target_names)
        target_key = {_key(n): i for i, n in enumerate(target)}
        unknown: list[str] = []
        dropped: list[str] = []
        source_for: dict[int, int] = {}
        for j, name in enumerate(self.names):
            k = _key(name)
            if k in target_key:
                i = target_key[k]
                if i in source_for:
                    raise CurveError(f"curves {self.names[source_for[i]]!r} and {name!r} both map to "
                                     f"{target[i]!r}; keep one")
                source_for[i] = j
            elif canonical_name(name) is not None:
                dropped.append(name)
            else:
                unknown.append(name)
        if unknown:
            raise CurveError(f"unknown curve names (not ARKit, not in the rig): {', '.join(unknown)}; "
                             "rename them to ARKit names or to the rig's shape-key names")
        missing = [n for i, n in enumerate(target) if i not in source_for and not is_residual(n)]
        if missing and not fill_missing:
            raise CurveError(f"the curves lack {len(missing)} name(s) the rig needs: {', '.join(missing)}; "
                             "add them or pass fill_missing=True to use 0")
        values = np.zeros((self.n_frames, len(target)), np.float32)
        for i, j in source_for.items():
            values[:, i] = self.values[:, j]
        if dropped:
            log.info("conform: dropped %d curve(s) the target lacks: %s", len(dropped), ", ".join(dropped))
        return Curves(target, self.fps, self.frame_start, values,
                      None if self.head_pose is None else self.head_pose.copy(),
                      None if self.head_scale is None else self.head_scale.copy(), dropped=dropped)

    # -- JSON -----------------------------------------------------------------------------------
    def to_json_dict(self) -> dict[str, Any]:
        return {
            "format": JSON_FORMAT, "version": JSON_VERSION,
            "names": list(self.names), "fps": self.fps, "frame_start": self.frame_start,
            "values": self.values.tolist(),
            "head_pose_names": list(HEAD_POSE_NAMES),
            "head_pose": None if self.head_pose is None else self.head_pose.tolist(),
            "head_scale": None if self.head_scale is None else self.head_scale.tolist(),
        }

    @classmethod
    def from_json_dict(cls, data: Any, source: str = "curves JSON") -> Curves:
        if not isinstance(data, dict) or data.get("format") != JSON_FORMAT:
            raise CurveError(f"{source}: not an emo-avatar curves file "
                             f"(expected \"format\": \"{JSON_FORMAT}\")")
        if data.get("version") != JSON_VERSION:
            raise CurveError(f"{source}: curves file version {data.get('version')!r}; this reader "
                             f"understands version {JSON_VERSION}")
        missing = [k for k in ("names", "fps", "values") if k not in data]
        if missing:
            raise CurveError(f"{source}: missing key(s) {', '.join(missing)}")
        names = data["names"]
        values = data["values"]
        if isinstance(values, list) and not values:
            values = np.zeros((0, len(names) if isinstance(names, list) else 0), np.float32)
        return cls(names, data["fps"], data.get("frame_start", 0), values, data.get("head_pose"),
                   data.get("head_scale"))


def head_pose_to_crop(head_pose: np.ndarray, rest_pose: np.ndarray, px_per_cm: float) -> np.ndarray:
    """A curve file's head pose -> absolute crop-pixel pose (see ``HEAD_POSE_NAMES``).

    Args:
        head_pose: (T, 6) yaw, pitch, roll (rad), then tx, ty, tz offsets in cm around the rest
            pose, mesh axes (y up).
        rest_pose: (6,) the subject's rest pose in crop pixels (its median tracked pose).
        px_per_cm: the subject's median scale (crop pixels per cm).
    Returns:
        (T, 6) float32: the file's rotations, and the rest translation plus the offsets in crop
        pixels (image y points down, so ty is negated).
    """
    head_pose = np.asarray(head_pose, np.float64).reshape(-1, 6)
    pose = np.repeat(np.asarray(rest_pose, np.float64).reshape(1, 6), len(head_pose), 0)
    pose[:, :3] = head_pose[:, :3]
    pose[:, 3:] += head_pose[:, 3:] * np.array([1.0, -1.0, 1.0]) * float(px_per_cm)
    return pose.astype(np.float32)


def crop_to_head_pose(pose: np.ndarray, rest_pose: np.ndarray, px_per_cm: float) -> np.ndarray:
    """Inverse of :func:`head_pose_to_crop`: (T, 6) crop-pixel pose -> (T, 6) curve-file head pose."""
    pose = np.asarray(pose, np.float64).reshape(-1, 6)
    head = pose.copy()
    head[:, 3:] = (pose[:, 3:] - np.asarray(rest_pose, np.float64).reshape(1, 6)[:, 3:]) * np.array(
        [1.0, -1.0, 1.0]) / float(px_per_cm)
    return head.astype(np.float32)


def _key(name: str) -> str:
    return (canonical_name(name) or name).lower()


def _name_index(names: Sequence[str]) -> dict[str, int]:
    return {n: i for i, n in enumerate(names)}


def _as_vector(data: Any, what: str, n: int) -> np.ndarray:
    """(n,) finite float32 from a list or array, else :class:`CurveError` (as ``_as_matrix``)."""
    try:
        arr = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise CurveError(f"{what} is not a list of numbers") from None
    if arr.shape != (n,):
        raise CurveError(f"{what} has shape {arr.shape}; expected ({n},), one value per frame")
    return _as_matrix(arr[:, None], what, (n, 1))[:, 0]


def _as_matrix(data: Any, what: str, shape: tuple[int | None, int]) -> np.ndarray:
    try:
        arr = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise CurveError(f"{what} is not a numeric matrix") from None
    if arr.ndim != 2 or (shape[0] is not None and arr.shape[0] != shape[0]) or arr.shape[1] != shape[1]:
        want = f"({'T' if shape[0] is None else shape[0]}, {shape[1]})"
        raise CurveError(f"{what} has shape {arr.shape}; expected {want}")
    bad = ~np.isfinite(arr)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise CurveError(f"{what} contain {int(bad.sum())} NaN/inf value(s) (first at row {row}, "
                         f"column {col}); fix the source curves")
    if np.abs(arr).max(initial=0.0) > np.finfo(np.float32).max:
        raise CurveError(f"{what} has values beyond float32 range")
    return np.ascontiguousarray(arr, dtype=np.float32)


# -- Live Link Face CSV ---------------------------------------------------------------------------


def _parse_timecode(text: str, row: int) -> tuple[int, float]:
    """``HH:MM:SS:FF.fff`` -> (whole seconds, frame with fraction)."""
    parts = text.strip().split(":")
    try:
        if len(parts) != 4:
            raise ValueError
        h, m, s = (int(p) for p in parts[:3])
        frame = float(parts[3])
    except ValueError:
        raise CurveError(f"row {row}: timecode {text!r} is not HH:MM:SS:FF.fff") from None
    if not (0 <= m < 60 and 0 <= s < 60 and h >= 0 and 0 <= frame < 120):
        raise CurveError(f"row {row}: timecode {text!r} out of range")
    return h * 3600 + m * 60 + s, frame


def _format_timecode(t: float, rate: int) -> str:
    whole = math.floor(t + 1e-9)
    milli = round((t - whole) * rate * 1000)  # thousandths of a timecode frame
    if milli >= rate * 1000:
        whole, milli = whole + 1, 0
    milli = max(milli, 0)
    h, rem = divmod(whole, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}:{milli // 1000:02d}.{milli % 1000:03d}"


def _snap_fps(fps: float) -> float:
    for std in STANDARD_FPS:
        if abs(fps - std) <= 0.001 * std:
            return std
    return round(fps, 3)


def _fmt(v: float) -> str:
    return np.format_float_positional(np.float32(v), unique=True, trim="-")


def read_live_link_csv(path: str | os.PathLike[str], *, fps: float | None = None,
                       eye_rotations: bool = False) -> Curves:
    """Read a Live Link Face CSV (see module doc) into :class:`Curves`.

    Names are ARKit spellings in the file's column order. Raises :class:`CurveError` for a
    missing Timecode column, unknown columns (listed), unparsable/NaN cells (row and column named).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CurveError(f"cannot read Live Link Face CSV {path}: {exc}") from None
    return parse_live_link_csv(text, fps=fps, eye_rotations=eye_rotations, source=str(path))


def parse_live_link_csv(text: str, *, fps: float | None = None, eye_rotations: bool = False,
                        source: str = "Live Link Face CSV") -> Curves:
    """Parse the text of a Live Link Face CSV; see :func:`read_live_link_csv`."""
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not rows:
        raise CurveError(f"{source}: empty file")
    header = [c.strip() for c in rows[0]]
    while header and not header[-1]:
        header.pop()
    if not header or header[0].lower() != "timecode":
        raise CurveError(f"{source}: first column must be 'Timecode' (got {header[:1]}); "
                         "is this a Live Link Face recording?")
    columns: list[tuple[int, str]] = []  # (csv column, canonical name)
    unknown: list[str] = []
    for c, col in enumerate(header[1:], start=1):
        if col.lower() == "blendshapecount":
            continue
        name = canonical_name(col)
        if name is None:
            unknown.append(col)
        else:
            columns.append((c, name))
    if unknown:
        raise CurveError(f"{source}: unknown column(s) {', '.join(unknown)}; expected ARKit blendshape names "
                         "and Live Link rotations")
    seen: dict[str, str] = {}
    for c, name in columns:
        if name in seen:
            raise CurveError(f"{source}: columns {seen[name]!r} and {header[c]!r} are the same curve")
        seen[name] = header[c]
    body = rows[1:]
    data = np.zeros((len(body), len(columns)), np.float64)
    times: list[tuple[int, float]] = []
    for r, row in enumerate(body, start=2):
        if len(row) < len(header):
            raise CurveError(f"{source}: row {r} has {len(row)} cells, header has {len(header)} "
                             "(truncated file?)")
        times.append(_parse_timecode(row[0], r))
        for k, (c, name) in enumerate(columns):
            try:
                data[r - 2, k] = float(row[c])
            except ValueError:
                raise CurveError(f"{source}: row {r}, column {name}: {row[c]!r} is not a number") from None
            if not math.isfinite(data[r - 2, k]):
                raise CurveError(f"{source}: row {r}, column {name}: {row[c]} is not finite")
    rate = 30 if all(f < 30 for _, f in times) else 60
    seconds = np.array([s + f / rate for s, f in times], np.float64)
    if fps is None:
        steps = np.diff(seconds)
        steps = steps[steps > 0]
        fps = _snap_fps(1.0 / float(np.median(steps))) if steps.size else float(rate)
    frame_start = round(float(seconds[0]) * fps) if len(seconds) else 0
    names = [name for _, name in columns]
    rot = {n: names.index(n) for n in LIVE_LINK_ROTATION_NAMES if n in names}
    head_pose = None
    if any(n in rot for n in LIVE_LINK_ROTATION_NAMES[:3]):
        head_pose = np.zeros((len(body), 6), np.float64)
        for axis, n in enumerate(LIVE_LINK_ROTATION_NAMES[:3]):
            if n in rot:
                head_pose[:, axis] = data[:, rot[n]]
    keep = [k for k, n in enumerate(names)
            if n not in LIVE_LINK_ROTATION_NAMES or (eye_rotations and n not in LIVE_LINK_ROTATION_NAMES[:3])]
    return Curves([names[k] for k in keep], fps, frame_start, data[:, keep], head_pose)


def format_live_link_csv(curves: Curves) -> str:
    """The Live Link Face CSV text of ``curves`` (all 61 columns; absent ones are 0)."""
    index: dict[str, int] = {}
    foreign: list[str] = []
    for j, name in enumerate(curves.names):
        canon = canonical_name(name)
        if canon is None or is_residual(canon) or canon in LIVE_LINK_ROTATION_NAMES[:3]:
            foreign.append(name)
        else:
            index[canon] = j
    if foreign:
        raise CurveError(f"Live Link Face CSV holds only the 52 ARKit names and eye rotations; cannot write "
                         f"{', '.join(foreign)} (use .json, or conform() to ARKit names first)")
    if curves.frame_start < 0:
        raise CurveError(f"frame_start {curves.frame_start} < 0 cannot be written as a Live Link timecode")
    if curves.fps > 60:
        raise CurveError(f"Live Link Face CSV timecodes stop at 60 fps; these curves are {curves.fps} fps")
    rate = 30 if curves.fps <= 30 else 60
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(LLF_COLUMNS)
    pose = curves.head_pose
    for t in range(curves.n_frames):
        timecode = _format_timecode((curves.frame_start + t) / curves.fps, rate)
        row: list[str] = [timecode, str(LLF_BLENDSHAPE_COUNT)]
        for name in ARKIT_NAMES + LIVE_LINK_ROTATION_NAMES:
            if name in LIVE_LINK_ROTATION_NAMES[:3]:
                v = 0.0 if pose is None else pose[t, LIVE_LINK_ROTATION_NAMES.index(name)]
            else:
                v = curves.values[t, index[name]] if name in index else 0.0
            row.append(_fmt(v))
        writer.writerow(row)
    return out.getvalue()


def write_live_link_csv(curves: Curves, path: str | os.PathLike[str]) -> None:
    """Write ``curves`` as a Live Link Face CSV (atomically). Head pose tx/ty/tz and head scale
    are not stored."""
    if curves.head_pose is not None and np.any(curves.head_pose[:, 3:]):
        log.warning("Live Link Face CSV has no head translation; tx/ty/tz are not written to %s", path)
    if curves.head_scale is not None and np.any(curves.head_scale != 1):
        log.warning("Live Link Face CSV has no head scale; it is not written to %s", path)
    atomic_write_text(path, format_live_link_csv(curves))


# -- JSON and by-suffix helpers -------------------------------------------------------------------


def read_curves_json(path: str | os.PathLike[str]) -> Curves:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CurveError(f"cannot read curves JSON {path}: {exc}") from None
    return Curves.from_json_dict(data, str(path))


NPZ_DEFAULT_FPS = 30.0
"""fps of an ``.npz`` curves file without an ``fps`` array."""


def read_curves_npz(path: str | os.PathLike[str]) -> Curves:
    """An ``.npz`` of curves (see the module doc), never unpickled; :class:`CurveError` when invalid."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if "names" not in z.files or "values" not in z.files:
                raise CurveError(f"{path}: an npz of curves needs 'names' and 'values' arrays, has {z.files}")
            names = [str(n) for n in np.atleast_1d(z["names"])]
            fps = float(z["fps"]) if "fps" in z.files else NPZ_DEFAULT_FPS
            start = int(z["frame_start"]) if "frame_start" in z.files else 0
            pose = z["head_pose"] if "head_pose" in z.files else None
            scale = z["head_scale"] if "head_scale" in z.files else None
            return Curves(names, fps, start, z["values"], pose, scale)
    except (OSError, EOFError, ValueError, TypeError, zipfile.BadZipFile) as exc:
        raise CurveError(f"{path}: not a readable curves npz ({exc})") from None


def write_curves_json(curves: Curves, path: str | os.PathLike[str]) -> None:
    atomic_write_text(path, json.dumps(curves.to_json_dict(), separators=(",", ":")) + "\n")


def read_curves(path: str | os.PathLike[str], **kwargs: Any) -> Curves:
    """Read ``.csv`` (Live Link Face), ``.json`` or ``.npz`` curves; :class:`CurveError` for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return read_live_link_csv(path, **kwargs)
    if suffix == ".json":
        return read_curves_json(path)
    if suffix == ".npz":
        return read_curves_npz(path)
    raise CurveError(f"{path}: unknown curves format {suffix!r}; use .csv (Live Link Face), .json or .npz")


def write_curves(curves: Curves, path: str | os.PathLike[str]) -> None:
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        write_live_link_csv(curves, path)
    elif suffix == ".json":
        write_curves_json(curves, path)
    else:
        raise CurveError(f"{path}: unknown curves format {suffix!r}; use .csv (Live Link Face) or .json")


__all__ = [
    "LLF_COLUMNS",
    "Curves",
    "format_live_link_csv",
    "parse_live_link_csv",
    "read_curves",
    "read_curves_json",
    "read_curves_npz",
    "read_live_link_csv",
    "write_curves",
    "write_curves_json",
    "write_live_link_csv",
]
