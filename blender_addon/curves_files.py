"""Live Link Face CSV and JSON curves <-> the rig's F-curves (formats in ``protocol.curves``).

Import: names are matched to the rig's shape keys through ``Curves.conform`` (ARKit spellings and
aliases; curves the rig lacks are dropped and reported; rig names the file lacks stay at 0), the
values become shape-key F-curves written in bulk from ``frame_start``, retimed to the scene's fps
when the file was recorded at another rate (Live Link Face records at 60 fps: a take keeps its
real-time speed in a 25 fps shot; keys land between frames, LINEAR); with ``head_pose`` set, the
file's head rotation (yaw, pitch, roll radians) becomes the rig's rotation channels and a head
translation (cm offsets around the rest pose; Live Link Face has none) its location channels.

Export: the rig is sampled per frame through the one F-curve reader. CSV holds only the 52 ARKit
names (a rig's ``residual_NN`` curves are left out and reported) and the head rotation; JSON
holds every curve and the full head pose in the curve-file convention of
``protocol.expressions.HEAD_POSE_NAMES`` (translation in cm around the rig's rest pose), so the
backend's ``emo-avatar render --curves`` puts the head where Blender had it.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from . import curves_bpy, fcurves, rig
from .protocol.curves import Curves, crop_to_head_pose, head_pose_to_crop, read_curves, write_curves
from .protocol.expressions import ARKIT_NAMES, canonical_name


def smooth_rows(values: np.ndarray, width: int) -> np.ndarray:
    """(T, C) -> (T, C) centred moving average over ``width`` rows (odd; edges repeat the first /
    last row); ``width`` <= 1 returns the values unchanged."""
    values = np.asarray(values, np.float32)
    width = int(width)
    if width <= 1 or len(values) < 2:
        return values
    width += 1 - width % 2
    half = width // 2
    padded = np.concatenate([np.repeat(values[:1], half, 0), values, np.repeat(values[-1:], half, 0)])
    csum = np.cumsum(np.concatenate([np.zeros((1, values.shape[1]), np.float64), padded]), axis=0)
    return ((csum[width:] - csum[:-width]) / width).astype(np.float32)


def import_curves_file(
    path: str | Path,
    ob: bpy.types.Object,
    frame_start: int | None = None,
    head_pose: bool = True,
    scene: bpy.types.Scene | None = None,
    *,
    mode: str = "REPLACE",
    smooth: int = 0,
    reduce: float = 0.0,
) -> tuple[Curves, list[str]]:
    """Read ``path`` onto rig ``ob``, retimed to ``scene``'s fps (default: the context scene);
    returns (the conformed curves, names dropped from the file).

    Keys outside the take's frames are never touched. ``mode`` (``fcurves.TAKE_MODES``): replace
    keys inside the take's range, write a new action, or push the take to an NLA strip.
    ``smooth``: moving-average width in file rows (0: off); ``reduce``: key-reduction tolerance
    (0: a key per file row)."""
    curves = read_curves(path)
    names = curves_bpy.rig_names(ob)
    if not names:
        raise ValueError(f"'{ob.name}' has no expression shape keys: import a subject rig first")
    conformed = curves.conform(names, fill_missing=True)
    scene = scene or bpy.context.scene
    step = retime_step(conformed.fps, scene)
    start = round(conformed.frame_start * step) if frame_start is None else int(frame_start)
    in_file = {_key(n) for n in curves.names}
    columns = [k for k, n in enumerate(names) if _key(n) in in_file]  # other shape keys keep their animation
    if not (conformed.n_frames and columns):
        return conformed, list(conformed.dropped)
    take = f"{ob.name} {Path(path).stem}"
    values = smooth_rows(conformed.values[:, columns], smooth)
    with fcurves.take_action(ob.data.shape_keys, take, mode):
        rig.write_expression_curves(ob, [names[k] for k in columns], values, start, step, reduce)
    if head_pose and (conformed.head_pose is not None or conformed.head_scale is not None):
        pose = None if conformed.head_pose is None else smooth_rows(conformed.head_pose, smooth)
        scale = conformed.head_scale
        if scale is not None:
            scale = smooth_rows(scale[:, None], smooth)[:, 0]
        with fcurves.take_action(ob, take, mode):
            _write_head_pose(ob, scene, pose, scale, start, step, reduce)
    return conformed, list(conformed.dropped)


def retime_step(file_fps: float, scene: bpy.types.Scene) -> float:
    """Scene frames per file frame: 1 when the rates agree (to 0.1 %), else scene fps / file fps."""
    rate = rig.scene_fps(scene)
    if file_fps <= 0 or abs(rate - file_fps) <= 1e-3 * file_fps:
        return 1.0
    return rate / file_fps


def rig_rest(ob: bpy.types.Object, scene: bpy.types.Scene) -> tuple[np.ndarray, float, int]:
    """(rest pose (6,) crop px, px per cm s0, crop size) of an imported rig."""
    size, s0 = rig.rig_frame(ob, scene)
    rest = ob.get(rig.PROP_REST)
    if rest is None:  # a rig imported before the rest pose was stored: frontal at the crop centre
        rest = [0.0, 0.0, 0.0, size / 2, size / 2, 0.0]
    return np.asarray(rest, np.float32), s0, size


def _write_head_pose(
    ob: bpy.types.Object,
    scene: bpy.types.Scene,
    head_pose: np.ndarray | None,
    head_scale: np.ndarray | None,
    start: float,
    step: float = 1.0,
    reduce: float = 0.0,
) -> None:
    """Key the file's rotations, translations and scale, each only when the file moves it, on the
    rig's object channels."""
    rest, s0, size = rig_rest(ob, scene)
    n = len(head_pose) if head_pose is not None else len(head_scale)
    pose = np.zeros((n, 6), np.float32) if head_pose is None else head_pose
    rel = np.ones(n, np.float32) if head_scale is None else head_scale
    moved = {
        "rotation_euler": np.any(pose[:, :3]),
        "location": np.any(pose[:, 3:]),
        "scale": np.any(rel != 1.0),
    }
    paths = tuple(p for p in rig.POSE_PATHS if moved[p])
    if paths:
        crop = head_pose_to_crop(pose, rest, s0)
        rig.write_pose_curves(ob, crop, s0 * rel, start, size, s0, step, paths, reduce)


def _key(name: str) -> str:
    return (canonical_name(name) or name).lower()


def rig_curves(scene: bpy.types.Scene, ob: bpy.types.Object, frame_start: int, frame_end: int) -> Curves:
    """The rig's animation over the inclusive frame range as protocol ``Curves`` (with head pose)."""
    s = curves_bpy.sample_rig(scene, ob, frame_start, frame_end)
    rest, s0, _size = rig_rest(ob, scene)
    rel = (s.scale / s0).astype(np.float32)  # the head's size relative to the rest size
    head_scale = None if np.allclose(rel, 1.0, rtol=0, atol=1e-5) else rel
    return Curves(
        list(s.names), s.fps, int(frame_start), s.expressions, crop_to_head_pose(s.pose, rest, s0), head_scale
    )


def export_curves_file(
    path: str | Path, scene: bpy.types.Scene, ob: bpy.types.Object, frame_start: int, frame_end: int
) -> list[str]:
    """Write the rig's curves to ``.csv`` or ``.json``; returns the names a CSV could not hold."""
    curves = rig_curves(scene, ob, frame_start, frame_end)
    left_out: list[str] = []
    if Path(path).suffix.lower() == ".csv":
        keep = [j for j, n in enumerate(curves.names) if canonical_name(n) in ARKIT_NAMES]
        left_out = [n for j, n in enumerate(curves.names) if j not in keep]
        pose = curves.head_pose.copy()
        pose[:, 3:] = 0.0  # Live Link Face has no head translation
        curves = Curves(
            [curves.names[j] for j in keep], curves.fps, curves.frame_start, curves.values[:, keep], pose
        )
    write_curves(curves, path)
    return left_out
