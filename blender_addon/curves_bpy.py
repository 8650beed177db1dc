"""Sample the rig's animation per frame -> arrays the backend renders from.

Expression values come from the shape-key F-curves, the head pose from the object's
location / rotation / scale F-curves, both through the one F-curve reader (``fcurves.py``). When
NLA tracks or drivers also animate the rig, sampling falls back to ``scene.frame_set`` (exact, slower).
A head with a parent or object constraints is sampled through that path too, from its evaluated
world matrix seen from the rig's camera (what the Cycles UV pass renders), not from its own channels.
A muted shape key counts as 0, as in Blender's own evaluation (and so in the UV pass). Head
rotation is read in whatever rotation mode the animator keyed (quaternion, axis angle, any Euler
order) and converted to the rig's ``ROTATION_MODE`` Euler angles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import bpy
import mathutils
import numpy as np

from . import fcurves
from .rig import PROP_NAMES, recorded_camera, rig_frame, scene_fps, shape_key_path
from .rigdata import (
    CAMERA_ROTATION,
    CAMERA_ROTATION_MODE,
    ROTATION_MODE,
    camera_location,
    camera_settings,
    transforms_to_pose,
)


@dataclass
class SampledCurves:
    """names (K,); expressions (T, K); pose (T, 6); scale (T,); frames (T,) scene frames; fps."""

    names: list[str]
    expressions: np.ndarray
    pose: np.ndarray
    scale: np.ndarray
    frames: np.ndarray
    fps: float


def frame_range(frame_start: int, frame_end: int) -> list[int]:
    """Inclusive frame list; raises ``ValueError`` for an empty or reversed range."""
    if frame_end < frame_start:
        raise ValueError(
            f"frame range {frame_start}..{frame_end} is reversed or empty: the end must be >= the start"
        )
    return list(range(int(frame_start), int(frame_end) + 1))


def rig_names(ob: bpy.types.Object) -> list[str]:
    """Expression names of a rig: its recorded subject names, else its shape keys minus Basis."""
    if PROP_NAMES in ob:
        return [str(n) for n in ob[PROP_NAMES]]
    key = ob.data.shape_keys
    return [kb.name for kb in key.key_blocks[1:]] if key else []


def sample_expressions(ob: bpy.types.Object, names: Sequence[str], frames: Sequence[int]) -> np.ndarray:
    """(T, K) shape-key values of ``ob`` at ``frames`` (F-curve reader)."""
    key = ob.data.shape_keys
    if key is None:
        raise ValueError(f"'{ob.name}' has no shape keys: import a subject rig first")
    missing = [n for n in names if n not in key.key_blocks]
    if missing:
        raise KeyError(f"rig '{ob.name}' lacks shape keys: {', '.join(missing)}")
    paths = [(shape_key_path(n), 0) for n in names]
    blocks = [key.key_blocks[n] for n in names]
    values = fcurves.sample_paths(key, paths, frames, [kb.value for kb in blocks])
    # Blender clamps a shape key's value to its slider range when it evaluates the animation.
    lo = np.array([kb.slider_min for kb in blocks], dtype=np.float32)
    hi = np.array([kb.slider_max for kb in blocks], dtype=np.float32)
    return np.clip(values, lo, hi)


def rotation_path(ob: bpy.types.Object) -> str:
    """The property holding ``ob``'s rotation in its current ``rotation_mode``."""
    return {"QUATERNION": "rotation_quaternion", "AXIS_ANGLE": "rotation_axis_angle"}.get(
        ob.rotation_mode, "rotation_euler"
    )


def to_rig_euler(mode: str, raw: np.ndarray) -> np.ndarray:
    """(T, 3|4) rotation channels in rotation ``mode`` -> (T, 3) ``ROTATION_MODE`` Euler angles,
    kept continuous from frame to frame (no 2 pi jumps)."""
    raw = np.asarray(raw, dtype=np.float64)
    if mode == ROTATION_MODE:
        return raw.astype(np.float32)
    out = np.zeros((len(raw), 3), np.float32)
    prev = None
    for t, v in enumerate(raw):
        if mode == "QUATERNION":
            matrix = mathutils.Quaternion(v).normalized().to_matrix()
        elif mode == "AXIS_ANGLE":
            matrix = mathutils.Matrix.Rotation(v[0], 3, mathutils.Vector(v[1:]).normalized())
        else:
            matrix = mathutils.Euler(v, mode).to_matrix()
        prev = matrix.to_euler(ROTATION_MODE, prev) if prev is not None else matrix.to_euler(ROTATION_MODE)
        out[t] = prev
    return out


def sample_transforms(ob: bpy.types.Object, frames: Sequence[int]) -> dict[str, np.ndarray]:
    """(T, 3) location / rotation_euler (``ROTATION_MODE``) / scale of ``ob`` at ``frames``
    (F-curve reader; the rotation is read in the object's own rotation mode)."""
    out = {}
    rot = rotation_path(ob)
    for path in ("location", rot, "scale"):
        current = list(getattr(ob, path))
        out[path] = fcurves.sample_paths(ob, [(path, i) for i in range(len(current))], frames, current)
    out["rotation_euler"] = to_rig_euler(ob.rotation_mode, out.pop(rot))
    return out


def built_camera_matrix(size: int, s0: float) -> mathutils.Matrix:
    """``C0``: the rig camera's world matrix as ``rig.make_camera`` places it."""
    return (
        mathutils.Matrix.Translation(camera_location(size, s0))
        @ mathutils.Euler(CAMERA_ROTATION, CAMERA_ROTATION_MODE).to_matrix().to_4x4()
    )


def camera_moved(ob: bpy.types.Object, size: int, s0: float) -> bool:
    """True when the rig camera is not as the add-on built it: moved, zoomed (orthographic scale),
    animated, parented or constrained. The UV pass looks through it, so the head's pose must be
    taken relative to it."""
    cam = recorded_camera(ob)
    if cam is None:
        return False
    anims = (cam.animation_data, cam.data.animation_data)
    animated = any(a is not None and a.action is not None for a in anims)
    if cam.parent is not None or len(cam.constraints) > 0 or animated:
        return True
    ortho = camera_settings(size, s0)["ortho_scale"]
    if abs(cam.data.ortho_scale - ortho) > 1e-5 * ortho:
        return True
    # its own channels, not matrix_world, which is stale until the depsgraph next evaluates
    built = [*camera_location(size, s0), *CAMERA_ROTATION, 1.0, 1.0, 1.0]
    now = [*cam.location, *cam.rotation_euler, *cam.scale]
    return cam.rotation_mode != CAMERA_ROTATION_MODE or any(
        abs(a - b) > 1e-5 * max(1.0, abs(b)) for a, b in zip(now, built, strict=True)
    )


def uses_world_transform(ob: bpy.types.Object, size: int, s0: float) -> bool:
    """True when a parent or object constraints move ``ob``, or its camera was moved: its own
    location / rotation / scale channels then differ from where the UV pass sees it."""
    return ob.parent is not None or len(ob.constraints) > 0 or camera_moved(ob, size, s0)


def camera_correction(
    ob: bpy.types.Object, size: int, s0: float, depsgraph: bpy.types.Depsgraph
) -> mathutils.Matrix:
    """``C0 @ Z @ inverse(camera world)``: maps the world to the frame of the rig's camera as built
    by ``rig.make_camera`` (``C0``, in front of the crop centre), so a world matrix times this is
    the head's transform as the backend's projection sees it (identity while the camera is as the
    add-on built it; rigs without a recorded camera use the world as is). ``Z`` undoes a zoom: an
    orthographic scale ``o`` instead of the built ``o0`` shows everything ``o0 / o`` times larger,
    which is a uniform scale about the point at the built distance in front of the camera."""
    cam = recorded_camera(ob)
    if cam is None:
        return mathutils.Matrix.Identity(4)
    cam_eval = cam.evaluated_get(depsgraph)
    settings = camera_settings(size, s0)
    k = settings["ortho_scale"] / max(float(cam_eval.data.ortho_scale), 1e-12)
    pivot = mathutils.Matrix.Translation((0.0, 0.0, -settings["distance"]))  # camera looks down -Z
    zoom = pivot @ mathutils.Matrix.Scale(k, 4) @ pivot.inverted()
    return built_camera_matrix(size, s0) @ zoom @ cam_eval.matrix_world.inverted_safe()


def _depsgraph(scene: bpy.types.Scene) -> bpy.types.Depsgraph:
    """The depsgraph ``scene.frame_set`` evaluates (the context's for the context scene)."""
    if scene == bpy.context.scene:
        return bpy.context.evaluated_depsgraph_get()
    return scene.view_layers[0].depsgraph


def sample_by_frame_set(
    scene: bpy.types.Scene,
    ob: bpy.types.Object,
    names: Sequence[str],
    frames: Sequence[int],
    world: bool = False,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Exact but slow: ``scene.frame_set`` per frame (NLA, drivers, constraints included).

    With ``world`` the transforms come from ``ob``'s evaluated world matrix relative to the rig
    camera (``camera_correction``: parents and constraints included), else from its own channels.
    """
    key = ob.data.shape_keys
    keep = scene.frame_current
    expr = np.zeros((len(frames), len(names)), np.float32)
    # the rotation as read: the world matrix's quaternion, or the object's own rotation channels
    mode = "QUATERNION" if world else ob.rotation_mode
    rot = "rotation_quaternion" if world else rotation_path(ob)
    widths = {"location": 3, rot: 4 if world else len(getattr(ob, rot)), "scale": 3}
    tr = {p: np.zeros((len(frames), n), np.float32) for p, n in widths.items()}
    size, s0 = rig_frame(ob, scene)
    try:
        for t, f in enumerate(frames):
            scene.frame_set(int(f))
            expr[t] = [key.key_blocks[n].value for n in names]
            if not world:
                for p in tr:
                    tr[p][t] = getattr(ob, p)
                continue
            depsgraph = _depsgraph(scene)
            matrix = camera_correction(ob, size, s0, depsgraph) @ ob.evaluated_get(depsgraph).matrix_world
            tr["location"][t], tr[rot][t], tr["scale"][t] = matrix.decompose()
    finally:
        scene.frame_set(keep)
    tr["rotation_euler"] = to_rig_euler(mode, tr.pop(rot))
    return expr, tr


def sample_rig(
    scene: bpy.types.Scene,
    ob: bpy.types.Object,
    frame_start: int,
    frame_end: int,
    names: Sequence[str] | None = None,
) -> SampledCurves:
    """Sample a rig over the inclusive frame range into backend units (pose, px-per-cm scale)."""
    frames = frame_range(frame_start, frame_end)
    names = list(names) if names is not None else rig_names(ob)
    key = ob.data.shape_keys
    size, s0 = rig_frame(ob, scene)
    world = uses_world_transform(ob, size, s0)
    if world or (key is not None and (fcurves.uses_nla(key) or fcurves.uses_nla(ob))):
        expr, tr = sample_by_frame_set(scene, ob, names, frames, world=world)
    else:
        expr = sample_expressions(ob, names, frames)
        tr = sample_transforms(ob, frames)
    muted = np.array([key.key_blocks[n].mute for n in names], dtype=bool) if key is not None else []
    if np.any(muted):  # Blender leaves a muted shape key out of the mesh (and so the UV pass)
        expr[:, muted] = 0.0
    pose, scale = transforms_to_pose(tr["location"], tr["rotation_euler"], tr["scale"], size, s0)
    fps = scene_fps(scene)
    return SampledCurves(
        names=names,
        expressions=expr,
        pose=pose,
        scale=scale,
        frames=np.asarray(frames, dtype=np.int32),
        fps=float(fps),
    )
