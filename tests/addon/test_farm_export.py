"""Export Farm Job under real bpy: the scene's shot (curves, and Blender's UV pass) becomes a job
bundle the backend's `farm-bundle --check` accepts and whose UV maps are the ones Blender renders;
bad setups are reported without a bundle. Nothing contacts a farm."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import yaml

from .conftest import BACKEND_PYTHON, ROOT, SUBJECT_ID

pytestmark = pytest.mark.bpy


def _check(bundle) -> dict:
    argv = [BACKEND_PYTHON, "-m", "backend.cli", "farm-bundle", "--check", str(bundle), "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_export_farm_job_writes_a_bundle_with_curves_and_uv_maps(addon_mod, clean_scene, backend_workdir,
                                                                 tmp_path) -> None:
    import bpy

    api, preferences, rig, uv_pass = (addon_mod(m) for m in ("api", "preferences", "rig", "uv_pass"))
    p = preferences.prefs()
    p.backend_command, p.workdir = BACKEND_PYTHON, str(backend_workdir)
    try:
        assert not bpy.ops.emo_avatar.export_farm_job.poll()  # no rig yet
        head = api.import_subject(folder=backend_workdir / "subjects" / SUBJECT_ID, scene=clean_scene)
        clean_scene.frame_start, clean_scene.frame_end = 3, 5
        bundle = tmp_path / "bundle"
        done = bpy.ops.emo_avatar.export_farm_job(directory=str(bundle), uv_maps=True, batch=2)
        assert done == {"FINISHED"}
        values = _check(bundle)
        assert values["Frames"] == "3-5" and values["Batch"] == "2"
        assert values["Subject"] == str(backend_workdir / "subjects" / SUBJECT_ID)
        curves = json.loads((bundle / "inputs" / f"{clean_scene.name}.json").read_text())
        assert curves["frame_start"] == 3 and len(curves["values"]) == 3
        assert values["Curves"].endswith(f"inputs/{clean_scene.name}.json")
        refs = yaml.safe_load((bundle / "asset_references.yaml").read_text())["assetReferences"]
        assert values["UVMaps"] in refs["inputs"]["directories"]
        size, _ = rig.rig_frame(head, clean_scene)
        want = uv_pass.render_uv_maps(head, rig.rig_camera(head, clean_scene), [4], (size, size))[0]
        got = np.load(bundle / "inputs" / "uv" / "000004.npy")
        assert got.dtype == np.float16 and got.shape == want.shape
        np.testing.assert_allclose(got.astype(np.float32), want, atol=2e-3)  # float16 of Blender's pass
        assert sorted(f.name for f in (bundle / "inputs" / "uv").iterdir()) == [
            "000003.npy", "000004.npy", "000005.npy"]

        # without UV maps the farm rasterises the rig; a second export updates the bundle in place
        assert bpy.ops.emo_avatar.export_farm_job(directory=str(bundle), uv_maps=False) == {"FINISHED"}
        assert _check(bundle)["UVMaps"] == ""

        # a subject folder the farm cannot see, and no backend command: reported, no bundle
        other = tmp_path / "other"
        with pytest.raises(RuntimeError, match=r"subject folder .* not found"):
            bpy.ops.emo_avatar.export_farm_job(directory=str(other), subject_folder=str(tmp_path / "nobody"),
                                               uv_maps=False)
        assert not (other / "template.yaml").exists()
        p.backend_command = ""
        with pytest.raises(RuntimeError, match="Backend command"):
            bpy.ops.emo_avatar.export_farm_job(directory=str(other), uv_maps=False)
        assert not (other / "template.yaml").exists()
    finally:
        p.backend_command, p.workdir = "", ""
