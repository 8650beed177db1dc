"""The built zip (split per platform, vendored protocol, wheels, validated), the add-on imports no
torch, and the example scripts run headless (the blocking path of background Blender)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from .conftest import ROOT, SUBJECT_ID, build_zip

pytestmark = pytest.mark.bpy
PLATFORMS = ("linux-x64", "windows-x64", "macos-arm64", "macos-x64")


def _fresh_blender_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    for var, sub in (
        ("BLENDER_USER_EXTENSIONS", "ext"),
        ("BLENDER_USER_CONFIG", "config"),
        ("BLENDER_USER_SCRIPTS", "scripts"),
        ("BLENDER_USER_DATAFILES", "data"),
    ):
        env[var] = str(tmp / "blender_user" / sub)
    return env


def _run_example(script: str, *args: str, tmp: Path) -> dict:
    """Run ``examples/<script> args`` with this Python (real bpy, Blender user folders under
    ``tmp``) -> its JSON summary (the last line it prints)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        capture_output=True,
        text=True,
        env=_fresh_blender_env(tmp),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_zip_vendors_protocol_and_lists_wheels_for_every_platform(addon_zip: Path) -> None:
    with zipfile.ZipFile(addon_zip) as z:
        names = z.namelist()
        manifest = tomllib.loads(z.read("blender_manifest.toml").decode())
    assert "protocol/client.py" in names and "protocol/curves.py" in names and "__init__.py" in names
    assert manifest["id"] == "emo_avatar" and set(manifest["platforms"]) == set(PLATFORMS)
    assert {"network", "files"} <= set(manifest["permissions"])
    wheels = manifest["wheels"]
    assert all(w.removeprefix("./") in names for w in wheels)
    for pkg in ("pyzmq", "msgpack"):
        for tag in ("manylinux", "win_amd64", "macosx"):
            assert any(Path(w).name.startswith(pkg) and tag in w and "cp311" in w for w in wheels), (pkg, tag)
    assert not any("torch" in n or n.startswith("backend/") for n in names)


def test_split_platforms_gives_one_valid_zip_per_platform(tmp_path: Path) -> None:
    zips = build_zip(tmp_path, "--split-platforms")  # build_addon.py validates each with blender_ext.py
    assert sorted(p.name for p in zips) == sorted(
        f"emo_avatar-0.1.0-{p.replace('-', '_')}.zip" for p in PLATFORMS
    )
    for path in zips:
        with zipfile.ZipFile(path) as z:
            manifest = tomllib.loads(z.read("blender_manifest.toml").decode())
            wheel_files = [n for n in z.namelist() if n.endswith(".whl")]
        generated = manifest["build"]["generated"]  # Blender's builder narrows these per platform
        assert len(generated["platforms"]) == 1
        plat = generated["platforms"][0]
        assert sorted(w.removeprefix("./wheels/") for w in generated["wheels"]) == sorted(
            w.removeprefix("wheels/") for w in wheel_files
        )
        tag = {
            "linux-x64": "linux",
            "windows-x64": "win_amd64",
            "macos-arm64": "macosx",
            "macos-x64": "macosx",
        }[plat]
        assert wheel_files and all(tag in w for w in wheel_files), (plat, wheel_files)


def test_offline_build_without_cached_wheels_fails_clearly(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "build_addon.py"),
            "--offline",
            "--wheel-cache",
            str(tmp_path / "empty"),
            "--output-dir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 1
    assert "no cached pyzmq" in proc.stderr and "without --offline" in proc.stderr


def test_installed_addon_imports_no_torch(addon_zip: Path, tmp_path: Path) -> None:
    code = (
        "import sys, pkgutil, importlib, bpy\n"
        f"bpy.ops.extensions.package_install_files(filepath={str(addon_zip)!r}, repo='user_default',"
        " enable_on_install=True)\n"
        "pkg = importlib.import_module('bl_ext.user_default.emo_avatar')\n"
        "for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "    importlib.import_module(m.name)\n"
        "print('LOADED', len([n for n in sys.modules if n.startswith(pkg.__name__)]))\n"
        "print('BAD', sorted(n for n in ('torch', 'cv2', 'backend', 'mediapipe') if n in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=_fresh_blender_env(tmp_path),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "BAD []" in proc.stdout
    assert int(proc.stdout.split("LOADED")[1].split()[0]) >= 15


def test_batch_render_example_runs_headless(
    addon_zip, backend, backend_workdir, tmp_path, addon_mod, clean_scene
) -> None:
    import bpy

    addon_mod("api").import_subject(folder=backend_workdir / "subjects" / SUBJECT_ID, scene=clean_scene)
    blend = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True)
    out = tmp_path / "frames"
    summary = _run_example(
        "batch_render.py",
        "--install",
        str(addon_zip),
        "--blend",
        str(blend),
        "--connection-file",
        str(backend.connection_file),
        "--frames",
        "2",
        "4",
        "--output",
        str(out),
        "--save",
        str(tmp_path / "rendered.blend"),
        tmp=tmp_path,
    )
    assert summary["state"] == "done" and summary["frames"] == 3 == summary["expected"]
    assert len(list(out.glob("*.png"))) == 3
    assert (tmp_path / "rendered.blend").is_file()


def test_td_scripting_example_runs_headless(addon_zip, backend, backend_workdir, tmp_path) -> None:
    out = tmp_path / "td"
    summary = _run_example(
        "td_scripting.py",
        "--install",
        str(addon_zip),
        "--connection-file",
        str(backend.connection_file),
        "--folder",
        str(backend_workdir / "subjects" / SUBJECT_ID),
        "--frames",
        "3",
        "--out",
        str(out),
        tmp=tmp_path,
    )
    assert set(summary) == {"state", "frames", "strip"}
    assert summary["state"] == "done" and summary["frames"] == 3
    # the strip is named after the rig's subject (the folder's name) and the shot
    assert re.fullmatch(rf"EmoAvatar {SUBJECT_ID} [0-9a-f]{{8}}", summary["strip"]), summary["strip"]
    curves = json.loads((out / "shot.json").read_text())
    assert curves["format"] == "emo-avatar-curves" and len(curves["values"]) == 3
    assert (out / "shot.csv").read_text().startswith("Timecode,BlendShapeCount,EyeBlinkLeft")
