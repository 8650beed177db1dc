"""Fixtures for the add-on tests: real bpy (4.5 in .venv, 5.0 in .venv-bpy5), the real built zip.

Blender's user folders are redirected to a temporary directory *before* bpy is imported, so the
tests install the extension with ``bpy.ops.extensions.package_install_files`` exactly as a user
would, without touching the developer's own Blender configuration.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.processes import run_side_by_side

ROOT = Path(__file__).resolve().parents[2]
ADDON_ID = "emo_avatar"
_USER_DIR = Path(tempfile.mkdtemp(prefix="emo_bpy_user_"))
for _var, _sub in (
    ("BLENDER_USER_EXTENSIONS", "extensions"),
    ("BLENDER_USER_CONFIG", "config"),
    ("BLENDER_USER_SCRIPTS", "scripts"),
    ("BLENDER_USER_DATAFILES", "datafiles"),
):
    os.environ[_var] = str(_USER_DIR / _sub)  # never the developer's own Blender folders

BACKEND_PYTHON = os.environ.get("EMO_BACKEND_PYTHON", sys.executable)


def build_zip(out_dir: Path, *extra: str) -> list[Path]:
    """Run build_addon.py (wheel cache in .cache/wheels) -> the zip paths it printed."""
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "build_addon.py"),
            "--output-dir",
            str(out_dir),
            "--wheel-cache",
            str(ROOT / ".cache" / "wheels"),
            *extra,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
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
            filepath=str(addon_zip), repo="user_default", enable_on_install=True
        )
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

    for coll in (
        bpy.data.objects,
        bpy.data.meshes,
        bpy.data.cameras,
        bpy.data.actions,
        bpy.data.images,
        bpy.data.collections,
    ):
        for block in list(coll):
            coll.remove(block)
    for other in [s for s in bpy.data.scenes if s != bpy.context.scene]:
        bpy.data.scenes.remove(other)
    scene = bpy.context.scene
    if scene.sequence_editor is not None:
        scene.sequence_editor_clear()
    scene.frame_start, scene.frame_end, scene.frame_current = 1, 250, 1
    return scene


# -- backend pieces (built by the backend's own Python, which has torch; never imported here) ----
SUBJECT_ID = "tiny"


def _backend(*args: str, cwd: Path, timeout: float = 900) -> None:
    proc = subprocess.run(
        [BACKEND_PYTHON, "-m", "backend.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    assert proc.returncode == 0, f"backend {args[0]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"


def _backend_all(*commands: tuple[str, ...], timeout: float = 900) -> None:
    """Run independent ``emo-avatar`` commands side by side (each process spends seconds of one
    core importing torch; the machine's cores share them); all must succeed."""
    run_side_by_side([[BACKEND_PYTHON, "-m", "backend.cli", *args] for args in commands], cwd=ROOT,
                     env={**os.environ, "OMP_NUM_THREADS": "2"}, timeout=timeout)


_RECIPE = ("sample --tiny", "track --size 64 --max-frames 16", "train --preset tiny --steps 2", "+sample.mp4")
STUDIO_SUBJECT_ID = "studio"
_STUDIO_RECIPE = ("track sample.mp4 --size 256 --max-frames 16", "train --preset studio --steps 2")


def _backend_sources_key(recipe: tuple[str, ...]) -> str:
    """Hash of the backend + protocol sources and ``recipe``: the cache key of a built subject."""
    h = hashlib.sha256(repr(recipe).encode())
    for path in sorted([*ROOT.glob("backend/**/*.py"), *ROOT.glob("protocol/**/*.py")]):
        h.update(path.relative_to(ROOT).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _cached(name: str, recipe: tuple[str, ...], build: Callable[[Path], None],
            tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``.cache/addon-tests/<name>-<hash of sources + recipe>``, made by ``build(work)`` (which
    fills ``work/subjects``, and may add files beside it) when missing. Written atomically (a
    half-copied cache is never used); older caches of ``name`` are removed."""
    root = ROOT / ".cache" / "addon-tests"
    cache = root / f"{name}-{_backend_sources_key(recipe)}"
    if not (cache / "subjects").is_dir():
        work = tmp_path_factory.mktemp(f"{name}_build") / "work"
        build(work)
        root.mkdir(parents=True, exist_ok=True)
        staging = root / f".{cache.name}.{os.getpid()}"
        shutil.copytree(work, staging)
        try:
            staging.rename(cache)
        except OSError:  # another run made it first
            shutil.rmtree(staging, ignore_errors=True)
        for old in root.iterdir():  # subjects built from older sources (or before caches were named)
            if old != cache and not old.name.startswith(".") and (old.name.startswith(f"{name}-")
                                                                  or "-" not in old.name):
                shutil.rmtree(old, ignore_errors=True)
    return cache


def _build_subject(work: Path) -> None:
    subject = work / "subjects" / SUBJECT_ID
    sample = work.parent / "sample"
    _backend("sample", "-o", str(sample), "--tiny", cwd=work.parent)
    _backend(
        "track",
        str(sample / "sample.mp4"),
        "-o",
        str(subject),
        "--size",
        "64",
        "--max-frames",
        "16",
        cwd=work.parent,
    )
    _backend(
        "train", str(subject), "--preset", "tiny", "--steps", "2", "--preview-every", "0", cwd=work.parent
    )
    assert (subject / "avatar" / "checkpoint.pt").is_file()
    shutil.copy2(sample / "sample.mp4", work / "sample.mp4")


@pytest.fixture(scope="session")
def backend_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A service workdir holding subject 'tiny': the tiny sample, tracked at 64 px (16 frames),
    trained with the tiny preset for 2 steps (enough to render; quality is not tested here).

    Built by ``EMO_BACKEND_PYTHON -m backend.cli sample/track/train`` in subprocesses, so it works
    from the bpy 5.0 venv, which has no torch. The result is cached in
    ``.cache/addon-tests/tiny-<hash of backend/ + protocol/ sources>`` so the 4.5 and 5.0 runs of
    ``make test`` build it once; any source change gives a new key (a fresh build)."""
    work = tmp_path_factory.mktemp("backend") / "work"
    cache = _cached("tiny", _RECIPE, _build_subject, tmp_path_factory)
    shutil.copytree(cache / "subjects", work / "subjects")
    shutil.copy2(cache / "sample.mp4", work.parent / "sample.mp4")  # the tracked clip, beside the workdir
    return work


@pytest.fixture(scope="session")
def studio_subject(backend_workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Subject 'studio' (read-only): the tiny sample tracked at 256 px (16 frames), trained with
    the 256 px ``studio`` preset for 2 steps; built and cached like ``backend_workdir``."""

    def build(work: Path) -> None:
        subject = work / "subjects" / STUDIO_SUBJECT_ID
        _backend("track", str(backend_workdir.parent / "sample.mp4"), "-o", str(subject), "--size", "256",
                 "--max-frames", "16", cwd=work.parent)
        _backend("train", str(subject), "--preset", "studio", "--steps", "2", "--preview-every", "0",
                 cwd=work.parent)
        assert (subject / "avatar" / "checkpoint.pt").is_file()

    return _cached("studio", _STUDIO_RECIPE, build, tmp_path_factory) / "subjects" / STUDIO_SUBJECT_ID


class Backend:
    """A running ``emo-avatar serve`` subprocess (started and stopped by its handle only)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.connection_file = workdir / "connection.json"
        self.proc: subprocess.Popen | None = None

    def start(self, *extra: str) -> None:
        before = self.connection_file.stat().st_mtime_ns if self.connection_file.exists() else None
        log = open(self.workdir / "serve.log", "ab")  # noqa: SIM115 (kept by the child)
        self.proc = subprocess.Popen(
            [
                BACKEND_PYTHON,
                "-m",
                "backend.cli",
                "serve",
                "--workdir",
                str(self.workdir),
                "--connection-file",
                str(self.connection_file),
                "--device",
                "cpu",
                *extra,
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "2"},
        )
        log.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.workdir / "serve.log").read_text()[-3000:]
            if self.connection_file.exists() and self.connection_file.stat().st_mtime_ns != before:
                time.sleep(0.2)
                return
            time.sleep(0.1)
        raise TimeoutError("emo-avatar serve did not write its connection file")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


@pytest.fixture(scope="session")
def backend(backend_workdir: Path):
    server = Backend(backend_workdir)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def connected(addon_mod, backend):
    """The add-on connected to the session's backend for a test module (disconnected after it)."""
    api = addon_mod("api")
    info = api.connect(backend.connection_file, timeout=90)
    yield info
    api.disconnect()


def use_local_backend(addon_mod, backend_workdir: Path, work: Path):
    """Disconnect, copy the test subjects into the fresh workdir ``work`` and point the
    preferences' local backend at it (``BACKEND_PYTHON``, no connection file) -> the preferences."""
    api, runtime, preferences = addon_mod("api"), addon_mod("runtime"), addon_mod("preferences")
    if runtime.RUNTIME.io is not None:
        api.disconnect()
    shutil.copytree(backend_workdir / "subjects", work / "subjects")
    p = preferences.prefs()
    p.backend_command, p.workdir, p.connection_file = BACKEND_PYTHON, str(work), ""
    return p
