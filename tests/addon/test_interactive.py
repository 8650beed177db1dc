"""The add-on as animators use it, with real bpy and a real backend: non-destructive import, keys
outside a take left alone, the Render Shot operator's state machine (``operators.ShotModal``,
the seam the modal operator feeds with timer ticks and Esc), safe undo, the I/O-thread paths the
buttons take (connect, import, refresh, disconnect, stop backend), long shots in chunks, the live
preview, and disabling the add-on while a shot renders."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from .conftest import ROOT, SUBJECT_ID, use_local_backend
from .helpers import backend_job_state, pump

pytestmark = pytest.mark.bpy


def _folder(backend_workdir: Path) -> Path:
    return backend_workdir / "subjects" / SUBJECT_ID


# -- 1. non-destructive import ------------------------------------------------------------------
def test_import_leaves_the_scene_alone_and_never_touches_another_rigs_camera(
    addon_mod, clean_scene, backend_workdir
) -> None:
    import bpy

    api, rig = addon_mod("api"), addon_mod("rig")
    layout = bpy.data.objects.new("Layout", bpy.data.cameras.new("Layout"))
    clean_scene.collection.objects.link(layout)
    clean_scene.camera = layout
    r = clean_scene.render
    r.resolution_x, r.resolution_y, r.fps, r.fps_base = 1920, 1080, 24, 1.0
    clean_scene.frame_start, clean_scene.frame_end = 101, 348
    vs = clean_scene.view_settings.view_transform
    head = api.import_subject(folder=_folder(backend_workdir), scene=clean_scene)
    # the scene is the animator's: camera, resolution, fps, range and colour unchanged
    assert clean_scene.camera == layout
    assert (r.resolution_x, r.resolution_y, r.fps, r.fps_base) == (1920, 1080, 24, 1.0)
    assert (clean_scene.frame_start, clean_scene.frame_end) == (101, 348)
    assert clean_scene.view_settings.view_transform == vs
    # the rig is in its own collection, active and selected (so Import Curves is usable at once)
    cam = rig.recorded_camera(head)
    assert [c.name for c in head.users_collection] == [c.name for c in cam.users_collection]
    assert (
        head.users_collection[0].name.startswith("EmoAvatar")
        and head.users_collection[0] != clean_scene.collection
    )
    assert bpy.context.view_layer.objects.active == head and head.select_get()
    assert bpy.ops.emo_avatar.import_curves.poll()
    # a second import of the same subject gets its own camera; the first camera is not moved
    cam.location.x += 0.25
    before = tuple(cam.location), cam.data.ortho_scale
    head2 = api.import_subject(folder=_folder(backend_workdir), scene=clean_scene)
    cam2 = rig.recorded_camera(head2)
    assert cam2 != cam and (tuple(cam.location), cam.data.ortho_scale) == before
    assert not layout.select_get() and not head.select_get() and head2.select_get()
    # "Match scene to subject" on request
    head3 = api.import_subject(folder=_folder(backend_workdir), scene=clean_scene, match_scene=True)
    assert clean_scene.camera == rig.recorded_camera(head3)
    assert (r.resolution_x, clean_scene.frame_start, clean_scene.frame_end) == (64, 1, 16)


def test_import_curves_replaces_keys_only_inside_the_take(addon_mod, clean_scene, backend_workdir, tmp_path):
    import bpy

    api, curves_bpy, fcurves, rig = (addon_mod(n) for n in ("api", "curves_bpy", "fcurves", "rig"))
    head = api.import_subject(folder=_folder(backend_workdir), scene=clean_scene)
    api.export_curves(tmp_path / "take.json", head, 1, 16, clean_scene)
    kb = head.data.shape_keys.key_blocks["jawOpen"]
    kb.value = 0.77
    kb.keyframe_insert("value", frame=200)  # the animator's key, far outside the take
    fc = fcurves.fcurve_map(head.data.shape_keys)[(rig.shape_key_path("jawOpen"), 0)]
    fc.keyframe_points[-1].interpolation = "BEZIER"
    api.import_curves(tmp_path / "take.json", head, frame_start=1)
    keys = {round(k.co[0]): (k.co[1], k.interpolation) for k in fc.keyframe_points}
    assert keys[200] == (pytest.approx(0.77), "BEZIER")  # kept exactly
    assert sorted(keys) == [*range(1, 17), 200]
    # the playhead start, key reduction and smoothing (operator path)
    clean_scene.frame_current = 40
    assert bpy.ops.emo_avatar.import_curves(
        filepath=str(tmp_path / "take.json"), start_at="PLAYHEAD", reduce=0.05, smooth=3
    ) == {"FINISHED"}
    frames = sorted(round(k.co[0]) for k in fc.keyframe_points)
    assert 40 in frames and 55 in frames and 200 in frames and frames[:16] == list(range(1, 17))
    in_take = [f for f in frames if 40 <= f <= 55]
    assert 2 <= len(in_take) < 16  # reduced
    # a new action: the old one is kept (fake user), keys untouched
    old = head.data.shape_keys.animation_data.action
    api.import_curves(tmp_path / "take.json", head, frame_start=1, mode="NEW_ACTION")
    new = head.data.shape_keys.animation_data.action
    assert new != old and old.use_fake_user and old.name in bpy.data.actions
    # an NLA strip: the active action stays, the take lies on a track above it
    api.import_curves(tmp_path / "take.json", head, frame_start=300, mode="NLA")
    ad = head.data.shape_keys.animation_data
    assert ad.action == new and len(ad.nla_tracks) == 1
    strip = ad.nla_tracks[0].strips[0]
    assert strip.action not in (old, new)
    assert (strip.frame_start, strip.frame_end) == (300, 315)
    assert tuple(strip.action.frame_range) == (300, 315)
    # muting the active action lets the strip drive the rig: the take plays at 300..315
    want = curves_bpy.sample_rig(clean_scene, head, 1, 16).expressions
    ad.action = None
    got = curves_bpy.sample_rig(clean_scene, head, 300, 315).expressions
    np.testing.assert_allclose(got, want, atol=1e-5)


# -- 9. the I/O-thread paths of the buttons -----------------------------------------------------
def test_io_thread_connect_refresh_import_rig_and_disconnect(addon_mod, backend, clean_scene) -> None:
    """The non-blocking paths the UI takes: connect (the I/O thread connects while the timer
    runs), refresh, Import Subject Rig (fetched by the thread, built by the timer as its own undo
    step) and Disconnect."""
    import bpy

    api, runtime = addon_mod("api"), addon_mod("runtime")
    if runtime.RUNTIME.io is not None:
        api.disconnect()
    assert api.connect(backend.connection_file, wait=False) == {}
    st = runtime.wm_state()
    assert st.status == "CONNECTING"
    pump(runtime, lambda: st.status == "CONNECTED", timeout=60)
    st.subjects.clear()
    runtime.call("refresh")
    pump(runtime, lambda: SUBJECT_ID in st.subjects, timeout=30)
    done: list = []
    api.import_subject_async(SUBJECT_ID, clean_scene.name, on_done=lambda name, err: done.append((name, err)))
    assert not done
    pump(runtime, lambda: bool(done), timeout=60)
    name, err = done[0]
    assert err == "" and name in bpy.data.objects
    assert bpy.context.view_layer.objects.active.name == name
    io = runtime.RUNTIME.io
    assert bpy.ops.emo_avatar.disconnect() == {"FINISHED"}
    assert st.status == "DISCONNECTED" and runtime.RUNTIME.io is None and not io.is_alive()


def test_stop_backend_operator_stops_the_backend_it_started(addon_mod, backend_workdir, tmp_path) -> None:
    import bpy

    api, runtime = addon_mod("api"), addon_mod("runtime")
    p = use_local_backend(addon_mod, backend_workdir, tmp_path / "work")
    try:
        t0 = time.monotonic()
        assert bpy.ops.emo_avatar.connect.poll()
        api.connect(start_backend=True, wait=False)  # what the Connect button does: no waiting
        assert time.monotonic() - t0 < 2.0
        proc = runtime.RUNTIME.backend_proc
        pump(runtime, lambda: runtime.wm_state().status == "CONNECTED", timeout=120)
        assert bpy.ops.emo_avatar.stop_backend.poll()
        assert bpy.ops.emo_avatar.stop_backend() == {"FINISHED"}
        assert proc.poll() is not None and runtime.RUNTIME.backend_proc is None
        assert runtime.wm_state().status == "DISCONNECTED"
        assert not bpy.ops.emo_avatar.stop_backend.poll()
    finally:
        api.disconnect()
        api.stop_local_backend()
        p.backend_command, p.workdir = "", ""


def test_workdir_defaults_to_the_extension_user_folder_and_remote_hosts_need_online_access(
    addon_mod, tmp_path
) -> None:
    import bpy

    preferences, api = addon_mod("preferences"), addon_mod("api")
    p = preferences.prefs()
    assert p.workdir == ""
    user = Path(bpy.utils.extension_path_user(preferences.ADDON_ID, path="", create=True))
    assert Path(preferences.workdir()).parent == user
    remote = tmp_path / "remote.json"
    remote.write_text(json.dumps({"ip": "192.0.2.7"}))
    if bpy.app.online_access:
        preferences.check_online_access(remote)  # allowed
    else:
        with pytest.raises(api.EmoAvatarError, match="online access is off"):
            api.connect(remote, wait=False)
    preferences.check_online_access(tmp_path / "missing.json")  # unknown host: the connect reports it


# -- 9. the Render Shot operator's state machine ------------------------------------------------
def _shot_rig(addon_mod, backend_workdir: Path, scene, frames_dir: Path):
    """The test subject's rig imported into ``scene``, its shots' frames going to ``frames_dir``."""
    head = addon_mod("api").import_subject(folder=_folder(backend_workdir), scene=scene)
    head.emo_avatar.output_dir = str(frames_dir)  # the rig's own settings are used
    return head


def _session(addon_mod, scene, end: int, reports: list, uv_source: str):
    """A started ``ShotModal`` for frames 1..end; its reports go to ``reports`` as (level, text)."""
    operators = addon_mod("operators")
    session = operators.ShotModal(
        scene, 1, end, lambda level, text: reports.append((next(iter(level)), text)), uv_source=uv_source
    )
    assert session.start() == {"RUNNING_MODAL"}
    return session


def _tick_until(runtime, session, reports: list, until, timeout: float = 120.0) -> None:
    """Feed the operator timer ticks (and run the add-on's timer) until ``until(session)``; the
    operator must keep running meanwhile."""
    deadline = time.monotonic() + timeout
    while not until(session):
        runtime.apply_pending()
        assert session.on_timer() in ({"RUNNING_MODAL"}, {"PASS_THROUGH"}), reports
        assert time.monotonic() < deadline, "timed out ticking the modal operator"


def _drive(runtime, session, timeout=180.0) -> set:
    deadline = time.monotonic() + timeout
    while True:
        runtime.apply_pending()
        result = session.on_timer()
        if "FINISHED" in result or "CANCELLED" in result:
            return result
        assert time.monotonic() < deadline, "the modal operator never finished"
        time.sleep(0.005)


def test_render_shot_modal_runs_to_the_end_and_pushes_an_undo_step(
    addon_mod, connected, backend_workdir, clean_scene, tmp_path
) -> None:
    import bpy

    runtime, vse = addon_mod("runtime"), addon_mod("vse")
    head = _shot_rig(addon_mod, backend_workdir, clean_scene, tmp_path / "frames")
    head.emo_avatar.channel = 5
    bpy.ops.ed.undo_push(message="before the shot")
    reports: list = []
    session = _session(addon_mod, clean_scene, 6, reports, "BLENDER")
    assert session.phase == "names"
    result = _drive(runtime, session)
    assert result == {"FINISHED"}, reports
    shot = session.shot
    assert shot.state == "done" and len(shot.frames_done) == 6
    assert reports[-1][0] == "INFO" and shot.strip_name in reports[-1][1]
    strip = vse.find_strip(clean_scene, shot.strip_name)
    assert strip.channel == 5 and Path(bpy.path.abspath(strip.directory)) == tmp_path / "frames"
    assert [s.name for s in bpy.data.scenes] == [clean_scene.name]  # no UV scene left behind
    # Ctrl-Z after the animator's next step must not take the strip away
    scene_name, strip_name = clean_scene.name, shot.strip_name
    bpy.data.objects.new("after the shot", None)
    bpy.ops.ed.undo_push(message="the animator's next step")
    bpy.ops.ed.undo()
    scene = bpy.data.scenes[scene_name]
    assert "after the shot" not in bpy.data.objects
    assert vse.find_strip(scene, strip_name) is not None


def test_render_shot_modal_escape_cancels_the_backend_job(
    addon_mod, connected, backend_workdir, clean_scene, tmp_path
) -> None:
    runtime = addon_mod("runtime")
    _shot_rig(addon_mod, backend_workdir, clean_scene, tmp_path / "f")
    reports: list = []
    session = _session(addon_mod, clean_scene, 2000, reports, "BACKEND")
    _tick_until(runtime, session, reports, lambda s: s.shot is not None and len(s.shot.frames_done) >= 1)
    t0 = time.monotonic()
    assert session.on_escape() == {"CANCELLED"}
    assert reports[-1][0] == "WARNING" and "cancelled" in reports[-1][1]
    job_id = session.shot.job_id
    pump(runtime, lambda: session.shot.finished, timeout=30)
    acknowledged = time.monotonic() - t0  # the backend answered job_cancel
    pump(runtime, lambda: backend_job_state(runtime, job_id) == "cancelled", timeout=30)
    latency = time.monotonic() - t0  # the backend's job reached 'cancelled'
    assert latency < 1.0, f"cancel took {latency:.2f} s (job_cancel answered after {acknowledged:.2f} s)"
    assert session.shot.state == "cancelled" and session.on_timer() == {"CANCELLED"}


def test_render_shot_modal_reports_a_backend_error_in_full(
    addon_mod, connected, backend_workdir, clean_scene, tmp_path
) -> None:
    runtime = addon_mod("runtime")
    head = _shot_rig(addon_mod, backend_workdir, clean_scene, tmp_path / "f")
    head.emo_avatar.style = "no_such_style_" + "x" * 80  # refused by the backend at submit
    reports: list = []
    session = _session(addon_mod, clean_scene, 4, reports, "BACKEND")
    assert _drive(runtime, session) == {"CANCELLED"}
    level, text = reports[-1]
    assert level == "ERROR" and "no style" in text and "x" * 80 in text  # never cut short
    assert session.shot.state == "failed"
    assert any("x" * 80 in m for _lvl, m in runtime.RUNTIME.messages)


def test_ctrl_z_during_the_uv_pass_ends_the_shot_cleanly(
    addon_mod, connected, backend_workdir, clean_scene, tmp_path
) -> None:
    """Names, not ID references, across ticks: an undo that takes the rig away mid UV pass ends
    the shot with a clear error, never a ReferenceError out of the timer."""
    import bpy

    runtime = addon_mod("runtime")
    bpy.ops.ed.undo_push(message="before the import")
    head = _shot_rig(addon_mod, backend_workdir, clean_scene, tmp_path / "f")
    rig_name, scene_name = head.name, clean_scene.name
    bpy.ops.ed.undo_push(message="imported")
    reports: list = []
    session = _session(addon_mod, clean_scene, 12, reports, "BLENDER")
    _tick_until(runtime, session, reports, lambda s: s.runner and s.runner.builder.steps_done >= 2)
    for _ in range(3):  # Ctrl-Z until the import is undone
        if rig_name not in bpy.data.objects:
            break
        bpy.ops.ed.undo()
    assert rig_name not in bpy.data.objects
    assert _drive(runtime, session) == {"CANCELLED"}
    assert session.shot.state == "failed" and f"the rig '{rig_name}' is gone" in session.shot.error
    assert reports[-1][0] == "ERROR" and "gone" in reports[-1][1]
    assert [s.name for s in bpy.data.scenes] == [scene_name]  # no UV scene left behind


# -- 5. long shots --------------------------------------------------------------------------------
def test_a_chunked_shot_renders_the_same_frames_as_one_job(
    addon_mod, connected, backend_workdir, clean_scene, tmp_path
) -> None:
    """Chunks carry their neighbours' curves (the expression window), so splitting changes nothing
    but float rounding where a frame lands in another batch (the renderer's own caveat: at most 1
    level on CPU)."""
    api, png = addon_mod("api"), addon_mod("png")
    head = api.import_subject(folder=_folder(backend_workdir), scene=clean_scene)
    kb = head.data.shape_keys.key_blocks["jawOpen"]
    for f, v in ((1, 0.0), (6, 1.0), (11, 0.0)):
        kb.value = v
        kb.keyframe_insert("value", frame=f)
    whole = api.render_shot(clean_scene, 1, 16, output_dir=str(tmp_path / "a"), uv_source="BACKEND")
    row_bytes = 4 * len(head["emo_avatar_names"]) + 4 * 6 + 4
    chunked = api.render_shot(
        clean_scene,
        1,
        16,
        output_dir=str(tmp_path / "b"),
        uv_source="BACKEND",
        chunk_bytes=64 * 1024 + 9 * row_bytes,  # 5 frames + 4 context rows per job
    )
    assert whole.state == chunked.state == "done"
    assert len(whole.job_ids) == 1 and len(chunked.job_ids) == 4
    for f in range(1, 17):
        a = png.decode_png((tmp_path / "a" / f"{whole.prefix}_{f:05d}.png").read_bytes())
        b = png.decode_png((tmp_path / "b" / f"{chunked.prefix}_{f:05d}.png").read_bytes())
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1, f"frame {f} differs"


def test_a_shot_no_message_can_carry_is_refused_before_the_uv_pass(
    addon_mod, connected, backend_workdir, clean_scene, tmp_path
) -> None:
    import bpy

    api = addon_mod("api")
    api.import_subject(folder=_folder(backend_workdir), scene=clean_scene)
    renders: list = []
    bpy.app.handlers.render_pre.append(lambda *a: renders.append(1))
    try:
        with pytest.raises(ValueError, match="more than a render message may carry"):
            api.render_shot(clean_scene, 1, 16, output_dir=str(tmp_path / "f"), chunk_bytes=100 * 1024)
    finally:
        bpy.app.handlers.render_pre.pop()
    assert renders == []


@pytest.mark.slow
@pytest.mark.timeout(1800)  # 2,000 frames through a CPU backend; minutes on a busy machine
def test_a_2000_frame_shot_at_256_px_renders_over_the_wire_in_chunks(
    addon_mod, connected, backend, backend_workdir, clean_scene, tmp_path
) -> None:
    """2,000 frames of 256 px UV maps (786 MB of float16) in chunks of at most 64 MiB. Reduced
    frame content, for time: the UV maps are one analytic map repeated instead of 2,000 Cycles
    renders, and the frames come back at the avatar's own 32 px instead of resized to 256 px;
    everything else is the real path: chunk jobs over ZeroMQ, frames back, one strip."""
    import shutil

    api, runtime, vse, shot_mod = (addon_mod(n) for n in ("api", "runtime", "vse", "shot"))
    big = backend.workdir / "subjects" / "tiny256"
    if not big.exists():  # the tiny subject declared at 256 px (the avatar resamples the maps)
        shutil.copytree(backend.workdir / "subjects" / SUBJECT_ID, big)
        meta = json.loads((big / "meta.json").read_text())
        meta["size"] = 256
        (big / "meta.json").write_text(json.dumps(meta))
        uv_file = big / "uv" / "uv.npy"  # the tracked UV maps at the declared size (nearest, x4)
        np.save(uv_file, np.load(uv_file).repeat(4, axis=1).repeat(4, axis=2))
    head = api.import_subject(folder=big, scene=clean_scene)
    assert head["emo_avatar_size"] == 256
    uv = np.zeros((256, 256, 3), np.float32)
    uv[64:192, 64:192, 0] = np.linspace(0.2, 0.8, 128)[None, :]
    uv[64:192, 64:192, 1] = np.linspace(0.8, 0.2, 128)[:, None]
    uv[64:192, 64:192, 2] = 1.0
    t0 = time.monotonic()
    shot = api.render_shot(
        clean_scene, 1, 2000, wait=False, output_dir=str(tmp_path / "f"), uv_maps=lambda _f: uv, frame_size=32
    )
    chunks = runtime.RUNTIME.runners[shot.shot_id].builder.chunks
    assert len(chunks) >= 12 and all(c.hi - c.lo + 1 <= 170 for c in chunks)
    peak_rows = 0
    while not shot.finished:
        # Blender's timer: the callback runs again after the interval it returns (1 ms while the
        # runner has work, else TIMER_INTERVAL), leaving the CPU to the I/O thread and the backend
        interval = runtime.apply_pending()
        runner = runtime.RUNTIME.runners.get(shot.shot_id)
        if runner is not None:
            peak_rows = max(peak_rows, len(runner.builder._uv))
        assert time.monotonic() - t0 < 1200
        time.sleep(runtime.TIMER_INTERVAL if interval is None else interval)
    assert shot.state == "done", shot.error
    assert len(shot.job_ids) == len(chunks) and sorted(shot.frames_done) == list(range(1, 2001))
    assert peak_rows <= 170 + 2 * shot_mod.WINDOW_RADIUS  # only the next chunk's maps are held
    strip = vse.find_strip(clean_scene, shot.strip_name)
    assert (strip.frame_final_start, strip.frame_final_duration, len(strip.elements)) == (1, 2000, 2000)


def test_window_radius_matches_the_backend() -> None:
    """The add-on cannot import the backend; its copy of the expression window radius must agree."""
    import ast

    def radius(path: Path) -> int:
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "WINDOW_RADIUS":
                return ast.literal_eval(node.value)
        raise AssertionError(f"no WINDOW_RADIUS in {path}")

    assert radius(ROOT / "backend" / "data" / "windows.py") == radius(ROOT / "blender_addon" / "shot.py")


# -- 3. live preview ------------------------------------------------------------------------------
def test_preview_frame_and_live_preview_are_latest_wins(
    addon_mod, connected, backend, backend_workdir, clean_scene, tmp_path
) -> None:
    import bpy

    api, runtime, preview, png = (addon_mod(n) for n in ("api", "runtime", "preview", "png"))
    head = api.import_subject(folder=_folder(backend_workdir), scene=clean_scene)
    kb = head.data.shape_keys.key_blocks["jawOpen"]
    for f, v in ((1, 0.0), (8, 1.0)):
        kb.value = v
        kb.keyframe_insert("value", frame=f)
    clean_scene.frame_set(8)
    assert bpy.ops.emo_avatar.preview_frame() == {"FINISHED"}
    img = bpy.data.images[preview.IMAGE_NAME]
    assert tuple(img.size) == (64, 64) and preview.PREVIEW.shown_frame == 8
    # the preview's pixels are the shot's pixels for that frame
    shot = api.render_shot(clean_scene, 1, 10, output_dir=str(tmp_path / "f"), uv_source="BACKEND")
    ref = png.decode_png((tmp_path / "f" / f"{shot.prefix}_00008.png").read_bytes())
    px = np.empty(64 * 64 * 4, np.float32)
    img.pixels.foreach_get(px)
    got = np.round(px.reshape(64, 64, 4)[::-1, :, :3] * 255).astype(int)
    assert np.abs(got - ref.astype(int)).max() <= 1
    assert shot.job_id not in runtime.RUNTIME.hidden_jobs
    assert not any(j.job_id in runtime.RUNTIME.hidden_jobs for j in runtime.wm_state().jobs)
    # live: switching it on previews the current frame (8); scrubbing 1..7 while that frame is in
    # flight sends only the newest
    dropped = preview.PREVIEW.dropped
    sent = []
    real_send = preview._send
    preview._send = lambda *a: (sent.append(a[2]), real_send(*a))[1]
    try:
        clean_scene.emo_avatar_preview.live = True
        try:
            for f in range(1, 8):
                clean_scene.frame_set(f)
            pump(runtime, lambda: preview.PREVIEW.in_flight is None and preview.PREVIEW.pending is None, 60)
        finally:
            preview._send = real_send
        assert sent == [8, 7]  # 1..6 were replaced by newer frames while 8 was in flight
        assert preview.PREVIEW.dropped - dropped == 6
        assert preview.PREVIEW.shown_frame == 7
    finally:
        clean_scene.emo_avatar_preview.live = False


def test_a_preview_is_applied_by_its_own_fast_timer(
    addon_mod, connected, backend_workdir, clean_scene
) -> None:
    """Blender calls the add-on's timer every ``runtime.TIMER_INTERVAL`` (0.1 s) while idle, which
    alone would add up to 100 ms to each preview: a request registers the preview's own timer,
    which alone (``runtime.apply_pending`` is never called here) shows the frame, asking to come
    back within 10 ms while the frame is in flight, and ends once nothing is. The preview is a
    preview job (kept out of the backend's journal) and its end never refreshes the job list;
    its stage times are recorded in order."""
    import bpy

    api, preview, runtime = addon_mod("api"), addon_mod("preview"), addon_mod("runtime")
    head = api.import_subject(folder=_folder(backend_workdir), scene=clean_scene)
    clean_scene.frame_set(5)
    if bpy.app.timers.is_registered(preview.poll_results):  # `blender -b` never ran an earlier one
        bpy.app.timers.unregister(preview.poll_results)
    client = runtime.RUNTIME.io.client
    listed: list[float] = []
    real_jobs = client.jobs
    client.jobs = lambda *a, **k: (listed.append(time.monotonic()), real_jobs(*a, **k))[1]
    t0 = time.perf_counter()
    try:
        assert preview.request(clean_scene, 5, head)
        job_id = preview.PREVIEW.in_flight
        assert bpy.app.timers.is_registered(preview.poll_results)
        intervals = []
        deadline = time.monotonic() + 60
        while (interval := preview.poll_results()) is not None:
            intervals.append(interval)
            assert time.monotonic() < deadline, f"no preview within 60 s: {preview.PREVIEW.error}"
            time.sleep(interval)
        time.sleep(0.3)  # the job's final job_state event has come in by now
        runtime.apply_pending()
    finally:
        client.jobs = real_jobs
    assert preview.PREVIEW.shown_frame == 5 and preview.PREVIEW.shown_at >= t0, preview.PREVIEW.error
    assert preview.PREVIEW.in_flight is None and intervals and max(intervals) <= 0.01
    bpy.app.timers.unregister(preview.poll_results)  # what Blender does when a timer returns None
    assert listed == []  # a preview never makes the I/O thread fetch the job list
    stages = preview.PREVIEW.stages[job_id]
    order = ["change", "sent", "accepted", "received", "shown"]
    assert sorted(stages, key=stages.get) == order, stages
    assert job_id not in {j["job_id"] for j in runtime.call_and_wait("jobs_raw").data["jobs"]}


# -- 7. pipeline state ---------------------------------------------------------------------------
def test_relative_frames_folder_strip_tags_attach_and_the_sequencer_scene(
    addon_mod, connected, backend_workdir, clean_scene, tmp_path
) -> None:
    """A '//' frames folder gives a blend-relative strip; strips carry job, subject and style; a
    job's frames can be attached as a strip later (a render that finished while Blender was
    closed); on Blender 5.0 the strip goes to the workspace's sequencer scene."""
    import bpy

    api, vse, png = (addon_mod(n) for n in ("api", "vse", "png"))
    head = api.import_subject(folder=_folder(backend_workdir), scene=clean_scene)
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    edit = None
    workspace = bpy.context.workspace
    if "sequencer_scene" in workspace.bl_rna.properties:  # 5.0+
        edit = bpy.data.scenes.new("Edit")
        workspace.sequencer_scene = edit
    try:
        shot = api.render_shot(
            clean_scene, 3, 6, output_dir="//frames/", uv_source="BACKEND", rig_object=head
        )
        assert shot.state == "done", shot.error
        strip_scene = edit or clean_scene
        assert shot.scene_name == strip_scene.name
        strip = vse.find_strip(strip_scene, shot.strip_name)
        assert (
            strip.directory.startswith("//")
            and Path(bpy.path.abspath(strip.directory)) == tmp_path / "frames"
        )
        assert list(strip["emo_avatar_jobs"]) == shot.job_ids and strip["emo_avatar_style"] == ""
        attached = api.attach_strip(shot.job_id, clean_scene, output_dir=str(tmp_path / "again"))
        assert (
            attached.state == "done"
            and attached.frame_start == 3
            and sorted(attached.frames_done) == [3, 4, 5, 6]
        )
        again = vse.find_strip(strip_scene, attached.strip_name)
        assert (again.frame_final_start, len(again.elements)) == (3, 4)
        for f in (3, 6):
            a = png.decode_png((tmp_path / "frames" / f"{shot.prefix}_{f:05d}.png").read_bytes())
            b = png.decode_png((tmp_path / "again" / f"{attached.prefix}_{f:05d}.png").read_bytes())
            assert np.array_equal(a, b)
        with pytest.raises(api.EmoAvatarError, match="knows no job"):
            api.attach_strip("0" * 32, clean_scene, output_dir=str(tmp_path / "x"))
    finally:
        if edit is not None:
            workspace.sequencer_scene = None
            bpy.data.scenes.remove(edit)
        bpy.ops.wm.read_homefile()  # the following tests expect an unsaved file


# -- 6. file load and disabling (last: they replace the file and reload the add-on) --------------
def test_file_load_detaches_a_running_shot_and_ends_the_modal(
    addon_mod, connected, backend_workdir, clean_scene, tmp_path
) -> None:
    import bpy

    api, runtime = addon_mod("api"), addon_mod("runtime")
    _shot_rig(addon_mod, backend_workdir, clean_scene, tmp_path / "f")
    reports: list = []
    session = _session(addon_mod, clean_scene, 400, reports, "BACKEND")
    _tick_until(runtime, session, reports, lambda s: s.shot is not None and bool(s.shot.frames_done))
    bpy.ops.wm.read_homefile()  # load_pre runs
    assert session.shot.detached
    assert session.on_timer() == {"CANCELLED"} and "another file" in reports[-1][1]
    n = len(session.shot.frames_done)
    pump(runtime, lambda: len(list((tmp_path / "f").glob("*.png"))) > n, timeout=60)  # frames go on to disk
    api.cancel_shot(session.shot)
    pump(runtime, lambda: session.shot.finished, timeout=30)


def test_disabling_the_addon_cancels_a_running_shot_within_two_seconds(
    addon_mod, backend, backend_workdir, tmp_path
) -> None:
    import importlib

    import bpy

    api, runtime = addon_mod("api"), addon_mod("runtime")
    scene = bpy.context.scene
    api.connect(backend.connection_file, timeout=60)
    api.import_subject(folder=_folder(backend_workdir), scene=scene)
    shot = api.render_shot(scene, 1, 2000, wait=False, output_dir=str(tmp_path / "f"), uv_source="BACKEND")
    pump(runtime, lambda: len(shot.frames_done) >= 1, timeout=120)
    job_id = shot.job_id
    module = addon_mod("api").__package__
    t0 = time.monotonic()
    bpy.ops.preferences.addon_disable(module=module)
    took = time.monotonic() - t0
    assert took < 2.0, f"disabling took {took:.2f} s"
    Client = addon_mod("protocol.client").Client
    with Client.from_connection_file(backend.connection_file, timeout=5) as client:
        deadline = time.monotonic() + 10
        while (state := (client.status(job_id).get("job") or {}).get("state")) != "cancelled":
            assert time.monotonic() < deadline, state
            time.sleep(0.1)
    bpy.ops.preferences.addon_enable(module=module)
    assert importlib.import_module(f"{module}.runtime").RUNTIME.io is None
