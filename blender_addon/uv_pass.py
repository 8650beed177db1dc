"""UV maps of the rig seen from a camera: Cycles (CPU, 1 sample) UV render pass, read back as float.

The maps follow the backend rasteriser's convention (``backend/face/uv_raster.py``): an
H x W x 3 float32 array (u, v, coverage), top row first, uncovered pixels (0, 0, 0), (u, v) the
mesh's per-vertex UVs as stored in its UV layer, interpolated at pixel centres.

How: a private scene ("EmoAvatar UV", removed again after the pass) links only the rig object and
the camera (so nothing else in the user's scene occludes the face and the user's render settings
are untouched), renders the UV pass with a 0.01 px box filter (one sample at the pixel centre, no
anti-aliasing: coverage is 0 or 1) into an uncompressed multilayer EXR, which ``exr.py`` parses.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import bpy
import numpy as np

from . import compat
from .exr import read_exr

UV_SCENE_NAME = "EmoAvatar UV"
PROP_UV_SCENE = "emo_avatar_uv_scene"
"""Marks the private scene, so a user's scene of the same name is never taken over."""


def uv_scene(rig: bpy.types.Object, camera: bpy.types.Object, size: tuple[int, int]) -> bpy.types.Scene:
    """A new private UV scene for ``rig`` seen by ``camera`` at ``size`` = (W, H) px."""
    scene = bpy.data.scenes.new(UV_SCENE_NAME)
    scene[PROP_UV_SCENE] = True
    link_uv_objects(scene, rig, camera)
    r = scene.render
    r.engine = "CYCLES"
    r.resolution_x, r.resolution_y = int(size[0]), int(size[1])
    r.resolution_percentage = 100
    r.pixel_aspect_x = r.pixel_aspect_y = 1.0
    r.film_transparent = True
    r.use_motion_blur = False
    r.use_border = False
    r.use_compositing = False
    r.use_sequencer = False
    # No Cycles session may outlive a frame's render: with persistent data, Blender intermittently
    # crashed in the next image load (the sequencer strip of the shot's first frame) under load.
    r.use_persistent_data = False
    r.filter_size = 0.01
    c = scene.cycles
    c.device = "CPU"
    c.samples = 1
    c.use_adaptive_sampling = False
    c.use_denoising = False
    c.max_bounces = 0
    c.pixel_filter_type = "BOX"
    c.filter_width = 0.01
    c.seed = 0
    c.use_animated_seed = False
    scene.view_layers[0].use_pass_uv = True
    im = r.image_settings
    compat.set_multilayer_exr(im)
    im.exr_codec = "NONE"
    im.color_depth = "32"
    return scene


def link_uv_objects(scene: bpy.types.Scene, rig: bpy.types.Object, camera: bpy.types.Object) -> None:
    """The UV scene holds exactly ``rig`` and ``camera``, and looks through ``camera``."""
    coll = scene.collection
    for ob in list(coll.objects):
        if ob.name not in (rig.name, camera.name):
            coll.objects.unlink(ob)
    for ob in (rig, camera):
        if ob.name not in coll.objects:
            coll.objects.link(ob)
    if scene.camera is None or scene.camera.name != camera.name:
        scene.camera = camera


def remove_uv_scenes() -> None:
    """Remove every private UV scene (after a pass; also one an interrupted pass left behind)."""
    for scene in [s for s in bpy.data.scenes if s.get(PROP_UV_SCENE)]:
        bpy.data.scenes.remove(scene)


def _channels(layers: dict[str, np.ndarray]) -> np.ndarray:
    def find(suffix: str) -> np.ndarray:
        for name, arr in layers.items():
            if name.endswith(suffix):
                return arr
        raise RuntimeError(f"UV pass channel '*{suffix}' missing from the render (got {sorted(layers)})")

    u, v, a = find(".UV.U"), find(".UV.V"), find(".UV.A")
    cover = (a > 0.5).astype(np.float32)
    return np.stack([u * cover, v * cover, cover], axis=-1)


def _object(name: str, what: str) -> bpy.types.Object:
    ob = bpy.data.objects.get(name)
    if ob is None:
        raise RuntimeError(f"the {what} '{name}' is gone (deleted or undone) during the UV pass")
    return ob


def iter_uv_maps(
    rig: bpy.types.Object | str,
    camera: bpy.types.Object | str,
    frames: Sequence[int],
    size: tuple[int, int],
    workdir: str | os.PathLike[str] | None = None,
    scene: bpy.types.Scene | str | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame, uv_map)`` for each frame; uv_map (H, W, 3) float32 (u, v, coverage).

    Objects and the user's ``scene`` (default: the context scene) are held by name and looked up
    again for every frame, so an undo between two frames (the modal operator renders one per
    timer tick) never leaves a dangling reference: a rig that is gone raises ``RuntimeError``.
    The private UV scene is removed when the generator ends or is closed.
    """
    rig_name = rig if isinstance(rig, str) else rig.name
    cam_name = camera if isinstance(camera, str) else camera.name
    first = _object(rig_name, "rig")
    if first.type != "MESH" or not first.data.uv_layers:
        raise ValueError(f"'{rig_name}' has no UV map: import the subject rig first")
    if scene is None:
        scene = bpy.context.scene
    user_name = scene if isinstance(scene, str) else (scene.name if scene is not None else None)
    uv_name: str | None = None
    keep = None
    if user_name is not None and user_name in bpy.data.scenes:
        keep = bpy.data.scenes[user_name].frame_current
    with tempfile.TemporaryDirectory(prefix="emo_uv_", dir=workdir) as tmp:
        path = str(Path(tmp) / "uv.exr")
        try:
            for frame in frames:
                ob, cam = _object(rig_name, "rig"), _object(cam_name, "rig camera")
                uv_scene_ = bpy.data.scenes.get(uv_name) if uv_name else None
                if uv_scene_ is None:  # first frame, or an undo removed it
                    uv_scene_ = uv_scene(ob, cam, size)
                    uv_name = uv_scene_.name
                else:
                    link_uv_objects(uv_scene_, ob, cam)
                uv_scene_.render.filepath = path
                # The render of a scene that is not the context scene uses the objects' original
                # (un-animated) values, so evaluate the frame in the user's scene too: that writes
                # the animated values back to the originals the UV scene then renders.
                user = bpy.data.scenes.get(user_name) if user_name else None
                if user is not None and user.name != uv_name:
                    user.frame_set(int(frame))
                uv_scene_.frame_set(int(frame))
                bpy.ops.render.render(write_still=True, scene=uv_name)
                if not os.path.exists(path):
                    raise RuntimeError(f"Cycles did not write the UV pass for frame {frame}")
                uv = _channels(read_exr(path))
                os.unlink(path)
                yield int(frame), uv
        finally:
            user = bpy.data.scenes.get(user_name) if user_name else None
            if keep is not None and user is not None:
                user.frame_set(keep)
            uv_scene_ = bpy.data.scenes.get(uv_name) if uv_name else None
            if uv_scene_ is not None:
                bpy.data.scenes.remove(uv_scene_)


def render_uv_maps(
    rig: bpy.types.Object, camera: bpy.types.Object, frames: Sequence[int], size: tuple[int, int]
) -> np.ndarray:
    """All frames at once -> (T, H, W, 3) float32."""
    maps = [m for _f, m in iter_uv_maps(rig, camera, frames, size)]
    return np.stack(maps) if maps else np.zeros((0, size[1], size[0], 3), np.float32)
