"""Rig import from arrays, round trip of the sampled curves, Cycles UV pass vs the analytic map."""

from __future__ import annotations

import numpy as np
import pytest

from .helpers import analytic_uv_map, grid_rig_arrays

pytestmark = pytest.mark.bpy


def _rig(addon_mod, T: int = 6, size: int = 48, shear: bool = True):
    rigdata = addon_mod("rigdata")
    arrays = grid_rig_arrays()
    t = np.arange(T, dtype=np.float32)
    expressions = np.stack([0.1 * t, (0.5 - 0.05 * t) * shear], axis=1)
    pose = np.stack(
        [0.15 * np.sin(t), 0.1 * np.cos(t), 0.2 + 0.05 * t, size / 2 + t, size / 2 - 0.5 * t, np.zeros(T)],
        axis=1,
    )
    scale = 14.0 + 0.5 * t
    return rigdata.RigData(
        **arrays, expressions=expressions, pose=pose, scale=scale, size=size, fps=24.0, subject_id="grid"
    )


def test_import_rig_builds_mesh_keys_curves_and_camera(addon_mod, clean_scene) -> None:
    import bpy

    rig_mod, curves_bpy = addon_mod("rig"), addon_mod("curves_bpy")
    data = _rig(addon_mod)
    head, cam = rig_mod.build_rig(data, clean_scene, frame_start=10)
    assert len(head.data.vertices) == 81 and len(head.data.polygons) == 128
    assert [kb.name for kb in head.data.shape_keys.key_blocks] == ["Basis", "jawOpen", "mouthSmileLeft"]
    assert head.data.uv_layers.active is not None
    assert cam.data.type == "ORTHO" and clean_scene.camera == cam
    assert (clean_scene.frame_start, clean_scene.frame_end) == (10, 15)
    # Sampling the rig gives back what was imported (pose through the Blender transforms and back).
    s = curves_bpy.sample_rig(clean_scene, head, 10, 15)
    assert s.names == ["jawOpen", "mouthSmileLeft"]
    np.testing.assert_allclose(s.expressions, data.expressions, atol=1e-5)
    np.testing.assert_allclose(s.pose, data.pose, atol=1e-3)
    np.testing.assert_allclose(s.scale, data.scale, rtol=1e-5)
    # Blender's own evaluation of the shape keys: the mesh at frame 12 = neutral + sum e_k * delta_k.
    clean_scene.frame_set(12)
    dg = bpy.context.evaluated_depsgraph_get()
    ev = head.evaluated_get(dg)
    co = np.empty(len(ev.data.vertices) * 3, np.float32)
    ev.data.vertices.foreach_get("co", co)
    want = addon_mod("rigdata").blender_vertices(
        data.neutral + np.tensordot(data.expressions[2], data.deltas, 1)
    )
    np.testing.assert_allclose(co.reshape(-1, 3), want, atol=1e-5)


def test_rig_without_curves_rests_at_the_median_tracked_pose(addon_mod, clean_scene) -> None:
    """A performance that keys only expressions (and head rotation) must put the head where the
    subject sat in its video, as the backend does for curves without a pose."""
    rig_mod, curves_bpy = addon_mod("rig"), addon_mod("curves_bpy")
    data = _rig(addon_mod)
    head, _cam = rig_mod.build_rig(data, clean_scene, with_curves=False)
    assert head.animation_data is None or head.animation_data.action is None
    s = curves_bpy.sample_rig(clean_scene, head, 1, 2)
    np.testing.assert_allclose(s.pose, np.repeat(np.median(data.pose, axis=0)[None], 2, 0), atol=1e-3)
    np.testing.assert_allclose(s.scale, np.median(data.scale), rtol=1e-5)


def test_shape_key_mismatch_is_listed(addon_mod, clean_scene) -> None:
    rig_mod, curves_bpy = addon_mod("rig"), addon_mod("curves_bpy")
    head, _cam = rig_mod.build_rig(_rig(addon_mod), clean_scene)
    missing, extra = rig_mod.shape_key_mismatch(head, ["jawOpen", "browInnerUp"])
    assert missing == ["browInnerUp"] and extra == ["mouthSmileLeft"]
    with pytest.raises(KeyError, match="browInnerUp"):
        curves_bpy.sample_rig(clean_scene, head, 1, 3, names=["jawOpen", "browInnerUp"])
    with pytest.raises(ValueError, match="reversed"):
        curves_bpy.sample_rig(clean_scene, head, 5, 4)


def test_cycles_uv_pass_matches_the_backend_projection(addon_mod, clean_scene, tmp_path) -> None:
    rig_mod, uv_pass = addon_mod("rig"), addon_mod("uv_pass")
    size = 48
    # 'jawOpen' moves the flat grid by 0.3 cm along z (seen through the rotation); no shear key here.
    data = _rig(addon_mod, size=size, shear=False)
    head, cam = rig_mod.build_rig(data, clean_scene, frame_start=1)
    # Frames 1 and 4: different yaw / pitch / roll / translation / scale.
    maps = _assert_uv_pass_shows_pose(uv_pass, head, cam, data, [1, 4], size)
    assert not np.array_equal(maps[1], maps[4])


def test_uv_pass_looks_through_the_rigs_camera_not_a_layout_camera(addon_mod, clean_scene, tmp_path) -> None:
    """An animator who makes a layout camera the scene camera must still get the rig's framing
    (the one the backend's avatar was trained on); a deleted rig camera is a clear error."""
    import bpy

    rig, shot, uv_pass = addon_mod("rig"), addon_mod("shot"), addon_mod("uv_pass")
    head, rig_cam = rig.build_rig(_rig(addon_mod), clean_scene)
    want = dict(uv_pass.iter_uv_maps(head, rig_cam, [1, 2], (48, 48)))
    layout = bpy.data.objects.new("Layout", bpy.data.cameras.new("Layout"))
    clean_scene.collection.objects.link(layout)
    layout.location, layout.rotation_euler = (0.3, -0.6, 0.15), (1.45, 0.0, 0.4)
    clean_scene.camera = layout
    head.name = "Renamed head"
    builder = shot.ShotBuilder(clean_scene, 1, 2, rig_object=head, output_dir=str(tmp_path))
    assert builder.camera_name == rig_cam.name
    builder.run_all()
    uv_maps = builder.next_job()["buffers"]["uv_maps"]
    for t, frame in enumerate((1, 2)):
        np.testing.assert_array_equal(uv_maps[t], want[frame].astype(np.float16))
    bpy.data.objects.remove(rig_cam)
    with pytest.raises(ValueError, match="camera of rig 'Renamed head' was deleted"):
        shot.ShotBuilder(clean_scene, 1, 2, rig_object=head, output_dir=str(tmp_path))


def _pose_from_matrix_world(bpy, addon_mod, scene, head, frames) -> tuple[np.ndarray, np.ndarray]:
    """The pose Blender shows: the head's evaluated world matrix at each frame (the rig camera is
    where the add-on built it, so world = the projection's frame) -> backend pose and scale."""
    rigdata = addon_mod("rigdata")
    loc, rot, scl = [], [], []
    for frame in frames:
        scene.frame_set(frame)
        world = head.evaluated_get(bpy.context.evaluated_depsgraph_get()).matrix_world
        t, q, s = world.decompose()
        loc.append(tuple(t))
        rot.append(tuple(q.to_euler(rigdata.ROTATION_MODE)))
        scl.append(tuple(s))
    return rigdata.transforms_to_pose(
        np.array(loc),
        np.array(rot),
        np.array(scl),
        int(head["emo_avatar_size"]),
        float(head["emo_avatar_s0"]),
    )


def _assert_uv_pass_shows_pose(uv_pass, head, cam, s, frames, size: int) -> dict[int, np.ndarray]:
    """The Cycles UV pass through ``cam`` at ``frames`` (1-based, from frame 1) equals the analytic
    map of the pose ``s`` (rig arrays or a sampled rig: ``pose``, ``scale``, ``expressions``):
    (size, size, 3) float32, exact coverage away from edges, UV error < 2e-4, zero where nothing
    is covered -> the maps by frame."""
    maps = dict(uv_pass.iter_uv_maps(head, cam, frames, (size, size)))
    for frame, uv in maps.items():
        t = frame - 1
        assert uv.shape == (size, size, 3) and uv.dtype == np.float32
        want, clear = analytic_uv_map(s.pose[t], float(s.scale[t]), size, dz=0.3 * float(s.expressions[t, 0]))
        cov_err = np.abs(uv[..., 2] - want[..., 2])[clear]
        assert cov_err.max() == 0.0, f"frame {frame}: coverage differs at {int(cov_err.sum())} pixels"
        inside = clear & (want[..., 2] > 0)
        assert inside.sum() > 100
        np.testing.assert_allclose(uv[..., :2][inside], want[..., :2][inside], atol=2e-4)
        assert (uv[~(want[..., 2] > 0) & clear] == 0).all()
    return maps


def test_a_parented_or_constrained_head_is_sampled_where_blender_shows_it(addon_mod, clean_scene) -> None:
    """A head parented to a moving empty (or moved by a constraint) must be sampled from its world
    transform, the one the Cycles UV pass renders, not from its own location / rotation / scale
    channels: otherwise 'Backend rasterises' and JSON export put the face somewhere else."""
    import bpy

    rig_mod, curves_bpy, uv_pass = addon_mod("rig"), addon_mod("curves_bpy"), addon_mod("uv_pass")
    size = 48
    data = _rig(addon_mod, size=size, shear=False)
    head, cam = rig_mod.build_rig(data, clean_scene, frame_start=1)
    own = curves_bpy.sample_rig(clean_scene, head, 1, 6)
    mover = bpy.data.objects.new("Mover", None)
    clean_scene.collection.objects.link(mover)
    for frame, loc, yaw in ((1, (0.002, 0.0, 0.001), 0.0), (6, (-0.003, 0.001, -0.002), 0.25)):
        mover.location, mover.rotation_euler = loc, (0.0, 0.1 * yaw, yaw)
        mover.keyframe_insert("location", frame=frame)
        mover.keyframe_insert("rotation_euler", frame=frame)
    head.parent = mover
    s = curves_bpy.sample_rig(clean_scene, head, 1, 6)
    want_pose, want_scale = _pose_from_matrix_world(bpy, addon_mod, clean_scene, head, range(1, 7))
    np.testing.assert_allclose(s.pose, want_pose, atol=1e-3)
    np.testing.assert_allclose(s.scale, want_scale, rtol=1e-5)
    assert np.abs(s.pose - own.pose)[:, 3:5].max() > 1.0  # the parent moved the face by pixels
    np.testing.assert_allclose(s.expressions, own.expressions, atol=1e-6)
    # the sampled pose is where the Cycles UV pass sees the face
    _assert_uv_pass_shows_pose(uv_pass, head, cam, s, [1, 4], size)
    # an object constraint instead of a parent
    head.parent = None
    limit = head.constraints.new("LIMIT_LOCATION")
    limit.use_min_x, limit.min_x = True, 0.002
    s = curves_bpy.sample_rig(clean_scene, head, 1, 6)
    want_pose, want_scale = _pose_from_matrix_world(bpy, addon_mod, clean_scene, head, range(1, 7))
    np.testing.assert_allclose(s.pose, want_pose, atol=1e-3)
    assert np.abs(s.pose - own.pose)[:, 3].max() > 1.0
    # without parent or constraints the fast F-curve path gives the head's own channels again
    head.constraints.remove(limit)
    np.testing.assert_allclose(curves_bpy.sample_rig(clean_scene, head, 1, 6).pose, own.pose, atol=1e-5)


def test_a_moved_rig_camera_is_sampled_as_the_uv_pass_sees_it(addon_mod, clean_scene) -> None:
    """Moving (or rolling) the rig camera moves the face in the UV pass; the sampled pose must
    follow, so 'Backend rasterises' and JSON export frame the head as Blender shows it."""
    rig_mod, curves_bpy, uv_pass = addon_mod("rig"), addon_mod("curves_bpy"), addon_mod("uv_pass")
    size = 48
    head, cam = rig_mod.build_rig(_rig(addon_mod, size=size, shear=False), clean_scene, frame_start=1)
    own = curves_bpy.sample_rig(clean_scene, head, 1, 6)
    assert not curves_bpy.camera_moved(head, size, float(head["emo_avatar_s0"]))
    cam.location.x += 0.003
    cam.location.z -= 0.002
    cam.rotation_euler.y += 0.05  # a roll of the view
    cam.data.ortho_scale *= 0.9  # a zoom in
    assert curves_bpy.camera_moved(head, size, float(head["emo_avatar_s0"]))
    s = curves_bpy.sample_rig(clean_scene, head, 1, 6)
    assert np.abs(s.pose - own.pose)[:, 3:5].max() > 1.0  # the face moved by pixels in the view
    np.testing.assert_allclose(s.scale, own.scale / 0.9, rtol=1e-4)  # and looks 1/0.9 as large
    np.testing.assert_allclose(s.expressions, own.expressions, atol=1e-6)
    _assert_uv_pass_shows_pose(uv_pass, head, cam, s, [1, 5], size)
