"""'Start local backend': the add-on starts `emo-avatar serve` itself, connects, and stops only
the process it started."""

from __future__ import annotations

import shutil
import time

import pytest

from .conftest import BACKEND_PYTHON, SUBJECT_ID, use_local_backend

pytestmark = pytest.mark.bpy


def test_start_local_backend_connect_and_stop(addon_mod, backend_workdir, tmp_path) -> None:
    api, state = addon_mod("api"), addon_mod("runtime")
    work = tmp_path / "work"
    p = use_local_backend(addon_mod, backend_workdir, work)
    try:
        info = api.connect(start_backend=True, timeout=120)
        proc = state.RUNTIME.backend_proc
        assert proc is not None and proc.poll() is None
        assert info["server"] and (work / "connection.json").is_file()
        assert SUBJECT_ID in [s["subject_id"] for s in api.subjects()]
    finally:
        api.disconnect()
        api.stop_local_backend()
    assert proc.poll() is not None  # stopped, by its handle
    assert state.RUNTIME.backend_proc is None
    p.backend_command = ""
    with pytest.raises(ValueError, match="Backend command"):
        api.start_local_backend()


def test_connect_with_host_ports_and_key_from_the_preferences(addon_mod, backend) -> None:
    import json

    api, state, preferences = addon_mod("api"), addon_mod("runtime"), addon_mod("preferences")
    if state.RUNTIME.io is not None:
        api.disconnect()
    info = json.loads(backend.connection_file.read_text())
    p = preferences.prefs()
    p.use_manual = True
    try:
        p.shell_port = 0
        with pytest.raises(ValueError, match="three ports and the key"):
            api.connect()
        p.host, p.key = info["ip"], info["key"]
        p.shell_port, p.control_port, p.events_port = (
            info["shell_port"],
            info["control_port"],
            info["events_port"],
        )
        assert api.connect(timeout=60)["instance_id"]
        assert SUBJECT_ID in [s["subject_id"] for s in api.subjects()]
    finally:
        api.disconnect()
        p.use_manual = False


def test_missing_connection_file_fails_at_once_unless_a_local_backend_is_starting(
    addon_mod, backend_workdir, tmp_path
) -> None:
    """A connection file that does not exist is a clear error at once (naming the path and how to
    start a backend), not after the whole timeout; a local backend that was just started and has
    not written its file yet is still waited for."""
    import subprocess

    import bpy

    api, state, preferences = addon_mod("api"), addon_mod("runtime"), addon_mod("preferences")
    backend_proc = addon_mod("backend_proc")
    if state.RUNTIME.io is not None:
        api.disconnect()
    missing = tmp_path / "nowhere" / "connection.json"
    t0 = time.monotonic()
    with pytest.raises(api.EmoAvatarError) as err:
        api.connect(missing)  # default timeout: 30 s
    assert time.monotonic() - t0 < 5
    assert str(missing) in str(err.value) and "emo-avatar serve" in str(err.value)
    assert "Start local backend" in str(err.value)
    assert state.wm_state().status == "UNAVAILABLE"
    api.disconnect()
    # the Connect operator in background mode (blocking through api.connect)
    p = preferences.prefs()
    p.connection_file, p.start_local = str(missing), False
    try:
        t0 = time.monotonic()
        with pytest.raises(RuntimeError, match="no connection file"):
            bpy.ops.emo_avatar.connect()
        assert time.monotonic() - t0 < 5
    finally:
        p.connection_file = ""
        api.disconnect()
    # a local backend just started, its connection file not written yet: connect waits for it
    work = tmp_path / "work"
    shutil.copytree(backend_workdir / "subjects", work / "subjects")
    conn = work / "connection.json"
    state.RUNTIME.backend_proc = subprocess.Popen(
        backend_proc.serve_command(BACKEND_PYTHON, work, conn),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert not conn.exists()
        assert api.connect(conn, timeout=120)["server"]
    finally:
        api.disconnect()
        api.stop_local_backend()
