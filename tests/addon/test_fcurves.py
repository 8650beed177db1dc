"""The one F-curve reader agrees with Blender's own evaluation (scene.frame_set) on 4.5 and 5.0."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.bpy


def _mesh_with_keys(bpy, names):
    bpy.ops.mesh.primitive_cube_add()
    ob = bpy.context.active_object
    ob.shape_key_add(name="Basis")
    for n in names:
        ob.shape_key_add(name=n)
    return ob


def test_reader_matches_frame_set_for_native_keyframes(addon_mod, clean_scene) -> None:
    import bpy

    fcurves = addon_mod("fcurves")
    scene = clean_scene
    ob = _mesh_with_keys(bpy, ["jawOpen", "eyeBlinkLeft"])
    key = ob.data.shape_keys
    rng = np.random.default_rng(0)
    for f in (1, 4, 9, 15):
        for kb in key.key_blocks[1:]:
            kb.value = float(rng.uniform(0, 1))
            kb.keyframe_insert("value", frame=f)
        ob.location = rng.normal(size=3)
        ob.keyframe_insert("location", frame=f)
    frames = list(range(0, 18))
    paths = [(f'key_blocks["{n}"].value', 0) for n in ("jawOpen", "eyeBlinkLeft")]
    got = fcurves.sample_paths(key, paths, frames, [0.0, 0.0])
    got_loc = fcurves.sample_paths(ob, [("location", i) for i in range(3)], frames, [0.0] * 3)
    want = np.zeros_like(got)
    want_loc = np.zeros_like(got_loc)
    for t, f in enumerate(frames):
        scene.frame_set(f)
        want[t] = [key.key_blocks["jawOpen"].value, key.key_blocks["eyeBlinkLeft"].value]
        want_loc[t] = ob.location
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(got_loc, want_loc, atol=1e-5)
    assert len(fcurves.fcurves_of(key)) == 2 and len(fcurves.fcurves_of(ob)) == 3


def test_bulk_writer_round_trips_and_blender_evaluates_it(addon_mod, clean_scene) -> None:
    import bpy

    fcurves = addon_mod("fcurves")
    scene = clean_scene
    ob = _mesh_with_keys(bpy, ["mouthSmileLeft"])
    key = ob.data.shape_keys
    frames = np.arange(3, 3 + 40, dtype=np.float32)
    values = (0.5 + 0.5 * np.sin(frames / 5.0)).astype(np.float32)  # inside the slider range 0..1
    fc = fcurves.ensure_fcurve(key, 'key_blocks["mouthSmileLeft"].value', 0, group="Expressions")
    fcurves.write_keys(fc, frames, values)
    assert len(fc.keyframe_points) == 40
    # Same F-curve found again, not duplicated.
    assert fcurves.ensure_fcurve(key, 'key_blocks["mouthSmileLeft"].value') == fc
    sample_frames = [3, 3.5, 10, 20.25, 42]
    got = fcurves.sample_paths(key, [('key_blocks["mouthSmileLeft"].value', 0)], sample_frames, [0.0])[:, 0]
    want = []
    for f in sample_frames:
        scene.frame_set(int(f), subframe=f - int(f))
        want.append(key.key_blocks["mouthSmileLeft"].value)
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(got[[0, 2, 4]], values[[0, 7, 39]], atol=1e-6)  # keys hit exactly (LINEAR)


def test_missing_curve_gives_the_static_value_and_nla_is_detected(addon_mod, clean_scene) -> None:
    import bpy

    fcurves = addon_mod("fcurves")
    ob = _mesh_with_keys(bpy, ["jawOpen"])
    key = ob.data.shape_keys
    key.key_blocks["jawOpen"].value = 0.25
    got = fcurves.sample_paths(key, [('key_blocks["jawOpen"].value', 0)], [1, 2], [0.25])
    np.testing.assert_allclose(got[:, 0], [0.25, 0.25])
    assert not fcurves.uses_nla(ob)
    ob.keyframe_insert("location", frame=1)
    track = ob.animation_data.nla_tracks.new()
    track.strips.new("s", 1, ob.animation_data.action)
    assert fcurves.uses_nla(ob)
