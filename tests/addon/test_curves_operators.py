"""Live Link Face CSV / JSON curves <-> the rig, and the operators run as Blender runs them
(``bpy.ops.emo_avatar.*`` in background mode: blocking, with poll messages when unusable)."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest

from .conftest import ROOT, SUBJECT_ID

pytestmark = pytest.mark.bpy


def _select(bpy, ob) -> None:
    for other in bpy.context.view_layer.objects:
        other.select_set(False)
    ob.select_set(True)
    bpy.context.view_layer.objects.active = ob


def test_json_round_trip_and_csv_keeps_arkit_curves(
    addon_mod, clean_scene, backend_workdir, tmp_path
) -> None:
    import bpy

    api, curves_bpy = addon_mod("api"), addon_mod("curves_bpy")
    subject = backend_workdir / "subjects" / SUBJECT_ID
    head = api.import_subject(folder=subject, scene=clean_scene)
    want = curves_bpy.sample_rig(clean_scene, head, 1, 16)
    assert api.export_curves(tmp_path / "a.json", head, 1, 16, clean_scene) == []
    left_out = api.export_curves(tmp_path / "a.csv", head, 1, 16, clean_scene)
    assert left_out and all(n.startswith("residual_") for n in left_out)
    data = json.loads((tmp_path / "a.json").read_text())
    assert data["names"] == want.names and len(data["values"]) == 16

    blank = api.import_subject(folder=subject, scene=clean_scene, with_curves=False)
    assert api.import_curves(tmp_path / "a.json", blank, frame_start=1) == []
    got = curves_bpy.sample_rig(clean_scene, blank, 1, 16)
    np.testing.assert_allclose(got.expressions, want.expressions, atol=1e-6)
    # The JSON head pose drives rotation and location: the head is where it was (the file holds
    # cm offsets around the rest pose, the convention `emo-avatar render --curves` reads).
    np.testing.assert_allclose(got.pose, want.pose, atol=1e-3)
    rest = np.median(want.pose, axis=0)
    s0 = float(np.median(want.scale))
    offsets = np.asarray(data["head_pose"], np.float32)[:, 3:]
    np.testing.assert_allclose(offsets[:, 0], (want.pose[:, 3] - rest[3]) / s0, atol=1e-4)
    np.testing.assert_allclose(offsets[:, 1], (rest[4] - want.pose[:, 4]) / s0, atol=1e-4)
    # the tracked head size varies from frame to frame: the file keeps it relative to the rest
    # size, and import keys it, so the face is as large as it was
    assert np.ptp(want.scale) > 0.01 * s0
    np.testing.assert_allclose(np.asarray(data["head_scale"]), want.scale / s0, rtol=1e-5)
    np.testing.assert_allclose(got.scale, want.scale, rtol=1e-4)

    blank2 = api.import_subject(folder=subject, scene=clean_scene, with_curves=False)
    api.import_curves(tmp_path / "a.csv", blank2, frame_start=1)
    got2 = curves_bpy.sample_rig(clean_scene, blank2, 1, 16)
    arkit = [j for j, n in enumerate(want.names) if n not in left_out]
    np.testing.assert_allclose(got2.expressions[:, arkit], want.expressions[:, arkit], atol=1e-5)
    assert bpy.data.objects[blank2.name].data.shape_keys.animation_data is not None


def test_live_link_performance_onto_the_rig_reports_dropped_names(
    addon_mod, clean_scene, backend_workdir
) -> None:
    api, curves_bpy = addon_mod("api"), addon_mod("curves_bpy")
    head = api.import_subject(folder=backend_workdir / "subjects" / SUBJECT_ID, scene=clean_scene)
    performance = ROOT / "examples" / "curves" / "performance_livelinkface.csv"
    dropped = api.import_curves(performance, head, frame_start=1)
    names = curves_bpy.rig_names(head)
    assert dropped and not set(dropped) & set(names)  # ARKit names this rig has no shape key for
    # a tracked rig has a shape key for every ARKit name but the listed unobservable ones
    assert set(dropped) <= set(addon_mod("protocol.expressions").UNOBSERVABLE_NAMES)
    s = curves_bpy.sample_rig(clean_scene, head, 1, 40)
    assert np.ptp(s.expressions[:, names.index("jawOpen")]) > 0.05  # the performance moves the jaw


def test_operators_poll_messages_and_background_execution(
    addon_mod, clean_scene, backend_workdir, tmp_path
) -> None:
    import bpy

    state = addon_mod("runtime")
    if state.RUNTIME.io is not None:
        addon_mod("api").disconnect()
    for op in (
        "connect",
        "disconnect",
        "refresh",
        "track_video",
        "train",
        "edit",
        "import_rig",
        "import_subject_folder",
        "import_curves",
        "export_curves",
        "render_shot",
        "cancel_job",
    ):
        assert hasattr(bpy.ops.emo_avatar, op), op
    assert not bpy.ops.emo_avatar.render_shot.poll()  # not connected
    assert not bpy.ops.emo_avatar.import_curves.poll()  # no rig selected
    assert bpy.ops.emo_avatar.import_subject_folder(
        filepath=str(backend_workdir / "subjects" / SUBJECT_ID / "meta.json")
    ) == {"FINISHED"}
    head = addon_mod("rig").rig_objects(clean_scene)[0]
    _select(bpy, head)
    assert bpy.ops.emo_avatar.import_curves.poll()
    out = tmp_path / "shot.json"
    assert bpy.ops.emo_avatar.export_curves(filepath=str(out)) == {"FINISHED"}
    assert json.loads(out.read_text())["format"] == "emo-avatar-curves"
    assert bpy.ops.emo_avatar.import_curves(filepath=str(out)) == {"FINISHED"}
    with pytest.raises(RuntimeError, match=r"unknown curves format"):
        bad = tmp_path / "bad.txt"
        bad.write_text("nothing")
        bpy.ops.emo_avatar.import_curves(filepath=str(bad))


def test_panel_and_operator_icons_exist_in_this_blender(addon) -> None:
    """A wrong icon name only fails when Blender draws the panel; check them against this Blender."""
    import re
    from pathlib import Path

    import bpy

    icons = set(bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys())
    used = set()
    for name in ("panels.py", "operators.py"):
        source = (Path(addon.__file__).parent / name).read_text()
        used |= set(re.findall(r'icon="([A-Z_0-9]+)"', source))
    panels = importlib.import_module(f"{addon.__name__}.panels")
    used |= set(panels.STATUS_ICONS.values())
    assert used and not used - icons, sorted(used - icons)
    assert all(cls.is_registered for cls in panels.CLASSES)


@pytest.mark.parametrize("mode", ["QUATERNION", "AXIS_ANGLE", "XYZ", "ZXY"])
def test_head_rotation_keyed_in_any_rotation_mode_is_sampled(
    addon_mod, clean_scene, backend_workdir, mode
) -> None:
    """An animator who switches the head to quaternions (or another Euler order) and keys it must
    get that rotation in the render job and the exported curves, not the static YXZ channels."""
    import mathutils

    api, curves_bpy = addon_mod("api"), addon_mod("curves_bpy")
    head = api.import_subject(
        folder=backend_workdir / "subjects" / SUBJECT_ID, scene=clean_scene, with_curves=False
    )
    head.rotation_mode = mode
    path = curves_bpy.rotation_path(head)
    rng = np.random.default_rng(1)
    for f in (1, 5, 9):
        q = mathutils.Euler(rng.uniform(-0.4, 0.4, size=3)).to_quaternion()
        if mode == "QUATERNION":
            head.rotation_quaternion = q
        elif mode == "AXIS_ANGLE":
            head.rotation_axis_angle = (q.angle, *q.axis)
        else:
            head.rotation_euler = q.to_euler(mode)
        head.keyframe_insert(path, frame=f)
    got = curves_bpy.sample_rig(clean_scene, head, 1, 9)
    want = np.zeros((9, 3))
    for t, f in enumerate(range(1, 10)):
        clean_scene.frame_set(f)
        pitch, neg_roll, yaw = head.matrix_world.to_euler("YXZ")  # what Blender shows and renders
        want[t] = (yaw, pitch, -neg_roll)
    np.testing.assert_allclose(got.pose[:, :3], want, atol=1e-5)


def test_a_60_fps_live_link_take_keeps_its_speed_in_a_25_fps_scene(
    addon_mod, clean_scene, backend_workdir, tmp_path
) -> None:
    """Live Link Face records at 60 fps: one key per file row would play a 60 fps take 2.4 times
    too slowly in a 25 fps shot. The import retimes it to the scene's rate (and says so)."""
    import bpy

    api, curves_bpy = addon_mod("api"), addon_mod("curves_bpy")
    pcurves = addon_mod("protocol.curves")
    take = pcurves.read_curves(ROOT / "examples" / "curves" / "performance_livelinkface.csv")
    take60 = pcurves.Curves(take.names, 60.0, 0, take.values, take.head_pose)
    pcurves.write_curves(take60, tmp_path / "take60.csv")
    assert pcurves.read_curves(tmp_path / "take60.csv").fps == 60.0
    head = api.import_subject(
        folder=backend_workdir / "subjects" / SUBJECT_ID, scene=clean_scene, with_curves=False
    )
    clean_scene.render.fps, clean_scene.render.fps_base = 25, 1.0
    api.import_curves(tmp_path / "take60.csv", head, frame_start=1, scene=clean_scene)
    s = curves_bpy.sample_rig(clean_scene, head, 1, 51)
    jaw = take.names.index("jawOpen")
    k = s.names.index("jawOpen")
    for seconds in (0.0, 1.0, 2.0):  # file row 60 s lands on scene frame 1 + 25 s
        row, frame = round(60 * seconds), round(25 * seconds)
        np.testing.assert_allclose(s.expressions[frame, k], take.values[row, jaw], atol=1e-5)
    yaw = take.head_pose[:, 0]
    np.testing.assert_allclose(s.pose[25, 0], yaw[60], atol=1e-5)
    # the operator reports the retime
    blank = api.import_subject(
        folder=backend_workdir / "subjects" / SUBJECT_ID, scene=clean_scene, with_curves=False
    )
    bpy.context.view_layer.update()
    bpy.context.view_layer.objects.active = blank
    assert bpy.ops.emo_avatar.import_curves(filepath=str(tmp_path / "take60.csv")) == {"FINISHED"}
    op = curves_bpy.sample_rig(clean_scene, blank, 1, 51)
    np.testing.assert_allclose(op.expressions, s.expressions, atol=1e-6)


def test_a_muted_shape_key_is_sent_as_zero(addon_mod, clean_scene, backend_workdir) -> None:
    """Muting a shape key (the checkbox in the Shape Keys list) takes it out of the mesh Blender
    evaluates, and so out of the UV pass: the expression sent with it must be 0 as well."""
    api, curves_bpy = addon_mod("api"), addon_mod("curves_bpy")
    head = api.import_subject(folder=backend_workdir / "subjects" / SUBJECT_ID, scene=clean_scene)
    kb = head.data.shape_keys.key_blocks["jawOpen"]
    for f, v in ((1, 0.2), (4, 0.9)):
        kb.value = v
        kb.keyframe_insert("value", frame=f)
    k = curves_bpy.rig_names(head).index("jawOpen")
    live = curves_bpy.sample_rig(clean_scene, head, 1, 4).expressions
    assert live[:, k].max() > 0.5
    kb.mute = True
    muted = curves_bpy.sample_rig(clean_scene, head, 1, 4).expressions
    assert (muted[:, k] == 0).all()
    np.testing.assert_array_equal(np.delete(muted, k, axis=1), np.delete(live, k, axis=1))
