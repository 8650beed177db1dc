"""Build the subject rig in Blender: head mesh with UVs, one shape key per expression
coefficient, tracked curves as shape-key F-curves, head pose as object animation and an
orthographic camera that reproduces the backend's projection (see ``rigdata.py``).
"""

from __future__ import annotations

import bpy
import numpy as np

from . import fcurves
from .rigdata import (
    CAMERA_ROTATION,
    CAMERA_ROTATION_MODE,
    ROTATION_MODE,
    RigData,
    blender_vertices,
    camera_location,
    camera_settings,
    pose_to_transforms,
)

PROP_SUBJECT = "emo_avatar_subject"
PROP_SIZE = "emo_avatar_size"
PROP_S0 = "emo_avatar_s0"
PROP_NAMES = "emo_avatar_names"
PROP_FPS = "emo_avatar_fps"
PROP_REST = "emo_avatar_rest_pose"
PROP_CAMERA = "emo_avatar_camera"
UV_LAYER = "EmoAvatarUV"
SLIDER_LIMIT = 10.0  # Blender's hard limit for shape key slider ranges


def shape_key_path(name: str) -> str:
    """F-curve data path of a shape key's value on the Key datablock."""
    return f'key_blocks["{bpy.utils.escape_identifier(name)}"].value'


def build_mesh(name: str, rig: RigData) -> bpy.types.Mesh:
    """Mesh with the neutral face (Blender metres) and the rig's per-vertex UVs on every loop."""
    verts = blender_vertices(rig.neutral)
    tris = rig.triangles
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(verts))
    mesh.vertices.foreach_set("co", verts.reshape(-1))
    mesh.loops.add(tris.size)
    mesh.loops.foreach_set("vertex_index", tris.reshape(-1).astype(np.int32))
    mesh.polygons.add(len(tris))
    mesh.polygons.foreach_set("loop_start", np.arange(0, tris.size, 3, dtype=np.int32))
    if (
        "loop_total" in mesh.polygons[0].bl_rna.properties
        and not mesh.polygons[0].bl_rna.properties["loop_total"].is_readonly
    ):
        mesh.polygons.foreach_set("loop_total", np.full(len(tris), 3, dtype=np.int32))
    uv = mesh.uv_layers.new(name=UV_LAYER)
    uv.data.foreach_set("uv", rig.uvs[tris.reshape(-1)].reshape(-1))
    mesh.update(calc_edges=True)
    mesh.validate(clean_customdata=False)
    return mesh


def add_shape_keys(ob: bpy.types.Object, rig: RigData) -> None:
    """Basis + one shape key per rig coefficient (neutral + delta_k), slider range fitted to the data."""
    ob.shape_key_add(name="Basis", from_mix=False)
    base = blender_vertices(rig.neutral)
    for k, name in enumerate(rig.names):
        key = ob.shape_key_add(name=name, from_mix=False)
        key.data.foreach_set("co", (base + blender_vertices(rig.deltas[k])).reshape(-1))
        lo, hi = -1.0, 1.0
        if rig.expressions is not None and len(rig.expressions):
            lo = min(lo, float(rig.expressions[:, k].min()))
            hi = max(hi, float(rig.expressions[:, k].max()))
        key.slider_min = max(-SLIDER_LIMIT, lo)
        key.slider_max = min(SLIDER_LIMIT, hi)
    ob.data.shape_keys.use_relative = True


def _write(fc: bpy.types.FCurve, frames: np.ndarray, values: np.ndarray, reduce: float) -> None:
    keep = fcurves.reduce_keys(frames, values, reduce)
    fcurves.write_keys(fc, frames[keep], values[keep])


def write_expression_curves(
    ob: bpy.types.Object,
    names: list[str],
    values: np.ndarray,
    frame_start: float,
    frame_step: float = 1.0,
    reduce: float = 0.0,
) -> None:
    """(T, K) coefficients -> one F-curve per shape key on ``ob``'s Key, keys at
    ``frame_start + t * frame_step`` (a step other than 1 retimes a file recorded at another fps).
    Keys already there are replaced only inside the written range; ``reduce`` > 0 drops keys that
    linear interpolation reproduces within that tolerance (``fcurves.reduce_keys``)."""
    key = ob.data.shape_keys
    frames = frame_start + np.arange(values.shape[0], dtype=np.float64) * frame_step
    for k, name in enumerate(names):
        if name not in key.key_blocks:
            raise KeyError(f"rig '{ob.name}' has no shape key '{name}'")
        fc = fcurves.ensure_fcurve(key, shape_key_path(name), 0, group="Expressions")
        _write(fc, frames, values[:, k], reduce)


POSE_PATHS = ("location", "rotation_euler", "scale")


def write_pose_curves(
    ob: bpy.types.Object,
    pose: np.ndarray,
    scale: np.ndarray,
    frame_start: float,
    size: int,
    s0: float,
    frame_step: float = 1.0,
    paths: tuple[str, ...] = POSE_PATHS,
    reduce: float = 0.0,
) -> None:
    """(T, 6) crop-pixel pose + (T,) scale -> F-curves of the ``paths`` channels on ``ob`` (all of
    location, rotation_euler in ``ROTATION_MODE``, scale by default), keys at
    ``frame_start + t * frame_step`` (existing keys replaced inside that range only; ``reduce`` as for
    ``write_expression_curves``). Keying the rotation sets the object's rotation mode."""
    channels = pose_to_transforms(pose, scale, size, s0)
    frames = frame_start + np.arange(pose.shape[0], dtype=np.float64) * frame_step
    if "rotation_euler" in paths:
        ob.rotation_mode = ROTATION_MODE
    for path in paths:
        for i in range(3):
            fc = fcurves.ensure_fcurve(ob, path, i, group="Head pose")
            _write(fc, frames, channels[path][:, i], reduce)


def make_camera(collection: bpy.types.Collection, name: str, size: int, s0: float) -> bpy.types.Object:
    """A new orthographic camera framing the crop exactly, linked into ``collection``. Always a new
    object (Blender makes the name unique), so importing a subject again never touches another
    rig's camera; the scene camera and render settings are left alone (``match_scene``)."""
    cam = bpy.data.objects.new(name, bpy.data.cameras.new(name))
    collection.objects.link(cam)
    cam_data = cam.data
    settings = camera_settings(size, s0)
    cam_data.type = "ORTHO"
    cam_data.ortho_scale = settings["ortho_scale"]
    cam_data.clip_start = 0.001
    cam_data.clip_end = settings["clip_end"]
    cam_data.sensor_fit = "AUTO"
    cam_data.shift_x = cam_data.shift_y = 0.0
    cam.rotation_mode = CAMERA_ROTATION_MODE
    cam.location = camera_location(size, s0)
    cam.rotation_euler = CAMERA_ROTATION
    cam.scale = (1.0, 1.0, 1.0)
    return cam


def match_scene_to_rig(
    scene: bpy.types.Scene, cam: bpy.types.Object, size: int, fps: float, frames: tuple[int, int] | None
) -> None:
    """ "Match scene to subject": the rig camera becomes the scene camera, the render is
    ``size`` x ``size`` px at the subject's ``fps``, and the frame range is ``frames`` (if given)."""
    scene.camera = cam
    r = scene.render
    r.resolution_x = r.resolution_y = int(size)
    r.resolution_percentage = 100
    r.pixel_aspect_x = r.pixel_aspect_y = 1.0
    set_scene_fps(scene, fps)
    if frames is not None:
        scene.frame_start, scene.frame_end = frames


def scene_is_empty(scene: bpy.types.Scene) -> bool:
    """True when the scene holds no objects: the default of "Match scene to subject"."""
    return len(scene.objects) == 0


def select_only(ob: bpy.types.Object, view_layer: bpy.types.ViewLayer) -> None:
    """Make ``ob`` the active and only selected object of ``view_layer``."""
    for other in view_layer.objects:
        if other is not None and other.select_get(view_layer=view_layer):  # None: removed, not yet synced
            other.select_set(False, view_layer=view_layer)
    ob.select_set(True, view_layer=view_layer)
    view_layer.objects.active = ob


def scene_fps(scene: bpy.types.Scene) -> float:
    """The scene's frame rate (fps / fps_base, e.g. 29.97)."""
    return scene.render.fps / scene.render.fps_base


def set_scene_fps(scene: bpy.types.Scene, fps: float) -> None:
    """Scene frame rate = ``fps`` (fractional rates such as 29.97 through ``fps_base``)."""
    fps = float(fps)
    scene.render.fps = max(1, round(fps))
    scene.render.fps_base = scene.render.fps / fps if fps > 0 else 1.0


def build_rig(
    rig: RigData,
    scene: bpy.types.Scene | None = None,
    frame_start: int = 1,
    name: str | None = None,
    with_curves: bool = True,
    match_scene: bool | None = None,
) -> tuple[bpy.types.Object, bpy.types.Object]:
    """Create the head object + its camera in a new collection of ``scene``; returns (head, camera).

    The head becomes the active, selected object. With ``with_curves`` and tracked curves present,
    the expressions become shape-key F-curves and the pose object animation from ``frame_start``.
    The scene's camera, resolution, fps and frame range change only with ``match_scene`` (default:
    only when the scene holds no objects yet).
    """
    scene = scene or bpy.context.scene
    if match_scene is None:
        match_scene = scene_is_empty(scene)
    name = name or f"EmoAvatar {rig.subject_id}"
    s0 = rig.reference_scale
    collection = bpy.data.collections.new(name)
    scene.collection.children.link(collection)
    mesh = build_mesh(name, rig)
    ob = bpy.data.objects.new(name, mesh)
    collection.objects.link(ob)
    ob.rotation_mode = ROTATION_MODE
    add_shape_keys(ob, rig)
    ob[PROP_SUBJECT] = rig.subject_id
    ob[PROP_SIZE] = int(rig.size)
    ob[PROP_S0] = float(s0)
    ob[PROP_NAMES] = list(rig.names)
    ob[PROP_FPS] = float(rig.fps)
    ob[PROP_REST] = [float(v) for v in rig.rest_pose]
    rest = pose_to_transforms(rig.rest_pose[None], np.array([s0]), rig.size, s0)
    ob.location, ob.rotation_euler, ob.scale = (
        tuple(rest[c][0]) for c in ("location", "rotation_euler", "scale")
    )
    cam = make_camera(collection, f"{ob.name} Camera", rig.size, s0)
    ob[PROP_CAMERA] = cam  # an ID reference: survives renames; the UV pass always looks through it
    frames = None
    if with_curves and rig.expressions is not None and len(rig.expressions):
        write_expression_curves(ob, rig.names, rig.expressions, frame_start)
        write_pose_curves(ob, rig.pose, rig.scale, frame_start, rig.size, s0)
        frames = (frame_start, frame_start + len(rig.expressions) - 1)
    if match_scene:
        match_scene_to_rig(scene, cam, rig.size, rig.fps, frames)
    view_layer = bpy.context.view_layer if scene == bpy.context.scene else scene.view_layers[0]
    if view_layer is not None:
        select_only(ob, view_layer)
    return ob, cam


def rig_frame(ob: bpy.types.Object, scene: bpy.types.Scene) -> tuple[int, float]:
    """(crop size in px, reference scale s0 in px per cm) recorded on an imported rig; an object
    the add-on did not build falls back to the scene's render width and 1 px per cm."""
    return int(ob.get(PROP_SIZE, scene.render.resolution_x)), float(ob.get(PROP_S0, 1.0))


def recorded_camera(ob: bpy.types.Object) -> bpy.types.Object | None:
    """The camera ``build_rig`` recorded on rig ``ob``, or None (never recorded, or deleted)."""
    cam = ob.get(PROP_CAMERA)
    return cam if isinstance(cam, bpy.types.Object) and cam.type == "CAMERA" else None


def rig_camera(ob: bpy.types.Object, scene: bpy.types.Scene) -> bpy.types.Object:
    """The camera built with rig ``ob``: it frames the crop exactly as the backend was trained to
    see it, whatever camera the animator made the scene's (a rig imported before the add-on
    recorded its camera falls back to the scene camera). Raises ``ValueError`` when it is gone."""
    if PROP_CAMERA not in ob:
        if scene.camera is None:
            raise ValueError(f"scene '{scene.name}' has no camera for the UV pass")
        return scene.camera
    cam = recorded_camera(ob)
    if cam is None:
        raise ValueError(
            f"the camera of rig '{ob.name}' was deleted: re-import the subject rig (the UV pass needs "
            "the camera that frames the face as the backend does)"
        )
    return cam


def rig_objects(scene: bpy.types.Scene) -> list[bpy.types.Object]:
    """Every imported Emo-Avatar head in ``scene``."""
    return [ob for ob in scene.objects if ob.type == "MESH" and PROP_SUBJECT in ob]


def shape_key_mismatch(ob: bpy.types.Object, names: list[str]) -> tuple[list[str], list[str]]:
    """(names the rig lacks, shape keys the subject does not know) - both empty when they match."""
    key = ob.data.shape_keys
    have = [kb.name for kb in key.key_blocks[1:]] if key else []
    missing = [n for n in names if n not in have]
    extra = [n for n in have if n not in names]
    return missing, extra


def find_rig(
    scene: bpy.types.Scene,
    rig_object: bpy.types.Object | None = None,
    view_layer: bpy.types.ViewLayer | None = None,
) -> bpy.types.Object:
    """THE rule that picks the rig an operator works on: the given one, else the active object of
    ``view_layer`` (default: the context's) when it is a rig in ``scene``, else the scene's only
    rig. Raises ``ValueError`` saying what to do otherwise."""
    if rig_object is not None:
        if PROP_SUBJECT not in rig_object:
            raise ValueError(f"'{rig_object.name}' is not an Emo-Avatar rig (import a subject rig first)")
        return rig_object
    if view_layer is None:
        view_layer = bpy.context.view_layer if scene == bpy.context.scene else scene.view_layers[0]
    active = view_layer.objects.active if view_layer is not None else None
    if active is not None and PROP_SUBJECT in active and active.name in scene.objects:
        return active
    rigs = rig_objects(scene)
    if len(rigs) == 1:
        return rigs[0]
    if not rigs:
        raise ValueError(f"scene '{scene.name}' has no Emo-Avatar rig: import a subject rig first")
    raise ValueError(
        f"scene '{scene.name}' has {len(rigs)} rigs ({', '.join(r.name for r in rigs)}): "
        "make the one to use active"
    )
