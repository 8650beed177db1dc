"""Live Link Face CSV and JSON curves <-> the rig's F-curves (formats in ``protocol.curves``).

Import: names are matched to the rig's shape keys through ``Curves.conform`` (ARKit spellings and
aliases; curves the rig lacks are dropped and reported; rig names the file lacks stay at 0), the
values become shape-key F-curves written in bulk from ``frame_start``; a head rotation in the
file (yaw, pitch, roll radians) becomes the rig's rotation channels when ``head_pose`` is set.

Export: the rig is sampled per frame through the one F-curve reader. CSV holds only the 52 ARKit
names (a rig's ``residual_NN`` curves are left out and reported) and the head rotation; JSON
holds every curve and the full head pose (yaw, pitch, roll, tx, ty, tz in the backend's crop units).
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from . import curves_bpy, fcurves, rig
from .protocol.curves import Curves, read_curves, write_curves
from .protocol.expressions import ARKIT_NAMES, canonical_name


def import_curves_file(
    path: str | Path, ob: bpy.types.Object, frame_start: int | None = None, head_pose: bool = True
) -> tuple[Curves, list[str]]:
    """Read ``path`` onto rig ``ob``; returns (the conformed curves, names dropped from the file)."""
    curves = read_curves(path)
    names = curves_bpy.rig_names(ob)
    if not names:
        raise ValueError(f"'{ob.name}' has no expression shape keys: import a subject rig first")
    conformed = curves.conform(names, fill_missing=True)
    start = conformed.frame_start if frame_start is None else int(frame_start)
    in_file = {_key(n) for n in curves.names}
    columns = [k for k, n in enumerate(names) if _key(n) in in_file]  # other shape keys keep their animation
    if conformed.n_frames and columns:
        rig.write_expression_curves(ob, [names[k] for k in columns], conformed.values[:, columns], start)
        if head_pose and conformed.head_pose is not None and np.any(conformed.head_pose[:, :3]):
            frames = start + np.arange(conformed.n_frames, dtype=np.float32)
            ob.rotation_mode = "YXZ"
            yaw, pitch, roll = conformed.head_pose[:, 0], conformed.head_pose[:, 1], conformed.head_pose[:, 2]
            for i, values in enumerate((pitch, -roll, yaw)):
                fcurves.write_keys(
                    fcurves.ensure_fcurve(ob, "rotation_euler", i, group="Head pose"), frames, values
                )
    return conformed, list(conformed.dropped)


def _key(name: str) -> str:
    return (canonical_name(name) or name).lower()


def rig_curves(scene: bpy.types.Scene, ob: bpy.types.Object, frame_start: int, frame_end: int) -> Curves:
    """The rig's animation over the inclusive frame range as protocol ``Curves`` (with head pose)."""
    s = curves_bpy.sample_rig(scene, ob, frame_start, frame_end)
    return Curves(list(s.names), s.fps, int(frame_start), s.expressions, s.pose)


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
