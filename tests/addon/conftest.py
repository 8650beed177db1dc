"""Fixtures for the add-on tests: real bpy (4.5 in .venv, 5.0 in .venv-bpy5), the real built zip.

Blender's user folders are redirected to a temporary directory *before* bpy is imported, so the
tests install the extension with ``bpy.ops.extensions.package_install_files`` exactly as a user
would, without touching the developer's own Blender configuration.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ADDON_ID = "emo_avatar"
_USER_DIR = Path(tempfile.mkdtemp(prefix="emo_bpy_user_"))
for _var, _sub in (("BLENDER_USER_EXTENSIONS", "extensions"), ("BLENDER_USER_CONFIG", "config"),
                   ("BLENDER_USER_SCRIPTS", "scripts"), ("BLENDER_USER_DATAFILES", "datafiles")):
    os.environ.setdefault(_var, str(_USER_DIR / _sub))

BACKEND_PYTHON = os.environ.get("EMO_BACKEND_PYTHON", sys.executable)


def build_zip(out_dir: Path, *extra: str) -> list[Path]:
    """Run build_addon.py (wheel cache in .cache/wheels) -> the zip paths it printed."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "build_addon.py"), "--output-dir", str(out_dir),
         "--wheel-cache", str(ROOT / ".cache" / "wheels"), *extra],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 0, f"build_addon.py failed:\n{proc.stdout}\n{proc.stderr}"
    return [Path(line) for line in proc.stdout.split() if line.endswith(".zip")]


@pytest.fixture(scope="session")
def addon_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    zips = build_zip(tmp_path_factory.mktemp("dist"))
    assert len(zips) == 1
    return zips[0]


@pytest.fixture(scope="session")
def addon(addon_zip: Path):
    """The installed + enabled extension package (``bl_ext.user_default.emo_avatar``)."""
    import bpy

    module_name = f"bl_ext.user_default.{ADDON_ID}"
    if module_name not in sys.modules:
        result = bpy.ops.extensions.package_install_files(
            filepath=str(addon_zip), repo="user_default", enable_on_install=True)
        assert result == {"FINISHED"}
    assert module_name in bpy.context.preferences.addons, "extension did not enable"
    return importlib.import_module(module_name)


@pytest.fixture(scope="session")
def addon_mod(addon):
    """``addon_mod("rig")`` -> the installed extension's submodule."""
    return lambda name: importlib.import_module(f"{addon.__name__}.{name}")


@pytest.fixture
def clean_scene():
    """An empty factory scene for each test."""
    import bpy

    for coll in (bpy.data.objects, bpy.data.meshes, bpy.data.cameras, bpy.data.actions, bpy.data.images):
        for block in list(coll):
            coll.remove(block)
    for scene in list(bpy.data.scenes)[1:]:
        bpy.data.scenes.remove(scene)
    scene = bpy.data.scenes[0]
    if scene.sequence_editor is not None:
        scene.sequence_editor_clear()
    scene.frame_start, scene.frame_end, scene.frame_current = 1, 250, 1
    return scene
