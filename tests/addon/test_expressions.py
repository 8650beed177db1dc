"""The Expressions sub-panel's operators: key all / key a region at the playhead, reset, and the
expression preset library (no backend needed)."""

from __future__ import annotations

import pytest

from .conftest import SUBJECT_ID

pytestmark = pytest.mark.bpy


def test_regions_pair_left_and_right(addon_mod) -> None:
    ui = addon_mod("expressions_ui")
    names = ["browInnerUp", "eyeBlinkLeft", "jawOpen", "eyeBlinkRight", "mouthSmileRight", "residual_00"]
    assert ui.region_of("browInnerUp") == "BROWS" and ui.region_of("residual_00") == "OTHER"
    assert ui.names_in_region(names, "EYES") == ["eyeBlinkLeft", "eyeBlinkRight"]
    assert ui.paired_rows(ui.names_in_region(names, "EYES")) == [("eyeBlinkLeft", "eyeBlinkRight")]
    assert ui.paired_rows(["mouthSmileRight"]) == [("mouthSmileRight", None)]
    assert [r for r, _label in ui.REGIONS] == ["BROWS", "EYES", "CHEEKS", "NOSE", "JAW", "MOUTH", "OTHER"]


def test_key_region_key_all_reset_and_presets(addon_mod, clean_scene, backend_workdir, tmp_path) -> None:
    import bpy

    api, fcurves, rig, ui = (addon_mod(n) for n in ("api", "fcurves", "rig", "expressions_ui"))
    head = api.import_subject(
        folder=backend_workdir / "subjects" / SUBJECT_ID, scene=clean_scene, with_curves=False
    )
    key = head.data.shape_keys
    names = list(head["emo_avatar_names"])
    jaw = ui.names_in_region(names, "JAW")
    assert jaw and len(jaw) < len(names)
    for n in names:
        key.key_blocks[n].value = 0.25
    clean_scene.frame_current = 12
    assert bpy.ops.emo_avatar.key_expressions(region="JAW") == {"FINISHED"}
    keyed = {fc.data_path for fc in fcurves.fcurves_of(key)}
    assert keyed == {rig.shape_key_path(n) for n in jaw}
    assert bpy.ops.emo_avatar.key_expressions(region="") == {"FINISHED"}  # Key All
    curves = fcurves.fcurve_map(key)
    assert {p for p, _i in curves} == {rig.shape_key_path(n) for n in names}
    assert all([k.co[0] for k in fc.keyframe_points] == [12.0] for fc in curves.values())
    assert bpy.ops.emo_avatar.reset_expressions(region="JAW") == {"FINISHED"}
    assert all(key.key_blocks[n].value == 0.0 for n in jaw)
    assert all(key.key_blocks[n].value == pytest.approx(0.25) for n in names if n not in jaw)
    # presets: save the sliders, change them, apply the preset back
    key.key_blocks["jawOpen"].value = 0.6
    assert bpy.ops.emo_avatar.save_preset(name="wide jaw") == {"FINISHED"}
    for n in names:
        key.key_blocks[n].value = 0.0
    assert bpy.ops.emo_avatar.apply_preset(name="wide jaw") == {"FINISHED"}
    assert key.key_blocks["jawOpen"].value == pytest.approx(0.6)
    with pytest.raises(ValueError, match="preset name"):
        ui.save_preset(tmp_path, "../escape", {})
    bad = tmp_path / ui.PRESET_FOLDER / "bad.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not an Emo-Avatar expression preset"):
        ui.load_preset(tmp_path, "bad")
