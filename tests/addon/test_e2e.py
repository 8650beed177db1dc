"""End to end against a real backend subprocess (tiny subject): connect, import the subject rig,
keyframe, render a shot into the sequencer (the timer function driven directly, as timers never
fire in module mode), cancel, a backend restart mid-job, and the bad inputs of the issue."""

from __future__ import annotations

import time

import numpy as np
import pytest

from .conftest import SUBJECT_ID
from .helpers import assert_uv_maps_agree, backend_job_state, pump, render_sequencer

pytestmark = pytest.mark.bpy


def test_no_backend_gives_a_clear_status_and_no_hang(addon_mod, tmp_path) -> None:
    api, state = addon_mod("api"), addon_mod("runtime")
    t0 = time.monotonic()
    with pytest.raises(api.EmoAvatarError, match="no connection file"):
        api.connect(tmp_path / "missing.json", timeout=2, reply_timeout=0.5)
    assert state.wm_state().status == "UNAVAILABLE"
    # a connection file whose ports nobody listens on: the client gives up after its retries
    from importlib import import_module

    ConnectionInfo = import_module(f"{api.__package__}.protocol.connection").ConnectionInfo
    dead = ConnectionInfo(shell_port=1, control_port=2, events_port=3, key="00" * 32)
    dead.write(tmp_path / "dead.json")
    # the I/O thread's two hello attempts (0.5 s each) fail after about 1 s; the wait ends at 4 s
    with pytest.raises(api.EmoAvatarError, match="no backend answered within 4 s"):
        api.connect(tmp_path / "dead.json", timeout=4, reply_timeout=0.5)
    assert state.wm_state().status == "UNAVAILABLE"
    assert "did not answer" in state.wm_state().message
    assert time.monotonic() - t0 < 30
    api.disconnect()
    assert state.wm_state().status == "DISCONNECTED"


def test_uv_pass_of_the_imported_rig_equals_the_backends_uv_maps(
    addon_mod, clean_scene, backend_workdir
) -> None:
    api, uv_pass = addon_mod("api"), addon_mod("uv_pass")
    subject = backend_workdir / "subjects" / SUBJECT_ID
    head = api.import_subject(folder=subject, scene=clean_scene)
    want = np.load(subject / "uv" / "uv.npy").astype(np.float32)
    assert_uv_maps_agree(dict(uv_pass.iter_uv_maps(head, clean_scene.camera, [1, 9], (64, 64))), want)


def test_import_keyframe_render_shot_into_the_sequencer(
    addon_mod, connected, backend, clean_scene, tmp_path
) -> None:
    import bpy

    api, state, vse, fcurves, png = (addon_mod(n) for n in ("api", "runtime", "vse", "fcurves", "png"))
    assert SUBJECT_ID in [s["subject_id"] for s in api.subjects()]
    head = api.import_subject(SUBJECT_ID, scene=clean_scene)
    names = list(head["emo_avatar_names"])
    assert [kb.name for kb in head.data.shape_keys.key_blocks[1:]] == names
    assert len(fcurves.fcurves_of(head.data.shape_keys)) == len(names)
    assert (clean_scene.frame_start, clean_scene.frame_end) == (1, 16)
    kb = head.data.shape_keys.key_blocks["jawOpen"]
    kb.value = 0.9
    kb.keyframe_insert("value", frame=4)
    before = clean_scene.view_settings.view_transform
    shot = api.render_shot(clean_scene, 2, 7, wait=False, output_dir=str(tmp_path / "frames"), channel=3)
    pump(state, lambda: shot.finished)
    assert clean_scene.view_settings.view_transform == before  # colour management is opt-in
    again = api.render_shot(
        clean_scene, 2, 7, output_dir=str(tmp_path / "frames2"), channel=3, set_standard_view=True
    )
    assert again.state == "done", again.error
    assert shot.state == "done", shot.error
    strip = vse.find_strip(clean_scene, shot.strip_name)
    assert strip is not None and strip.channel == 3
    assert (strip.frame_final_start, strip.frame_final_duration) == (2, 6)
    assert len(strip.elements) == 6
    assert clean_scene.view_settings.view_transform == "Standard"  # asked for by the second take
    assert [s.name for s in bpy.data.scenes] == [clean_scene.name]  # the UV scene is gone
    assert list(strip["emo_avatar_jobs"]) == shot.job_ids and strip["emo_avatar_subject"] == SUBJECT_ID
    # the sequencer's output at frame 5 is the backend's frame for row 3 (frame_start 2 + 3)
    seq = png.decode_png(render_sequencer(bpy, clean_scene, 5, tmp_path / "seq.png"))
    ref = png.decode_png((backend.workdir / "renders" / shot.job_id / "000003.png").read_bytes())
    assert seq.shape == ref.shape
    assert np.abs(seq.astype(int) - ref.astype(int)).max() <= 1
    # the keyframed jawOpen reached the backend: job list shows the render as done
    assert any(j["job_id"] == shot.job_id and j["state"] == "done" for j in api.jobs())


def test_cancel_ends_the_job_cancelled_within_a_second_and_keeps_the_frames(
    addon_mod, connected, backend_workdir, clean_scene, tmp_path
) -> None:
    """Cancel must really cancel: the shot is 2,000 frames (minutes of rendering), so 'done' is
    impossible; the backend's own job state must reach 'cancelled' within 1 s of the cancel."""
    api, state, vse = addon_mod("api"), addon_mod("runtime"), addon_mod("vse")
    api.import_subject(folder=backend_workdir / "subjects" / SUBJECT_ID, scene=clean_scene)
    shot = api.render_shot(
        clean_scene, 1, 2000, wait=False, output_dir=str(tmp_path / "f"), uv_source="BACKEND"
    )
    pump(state, lambda: len(shot.frames_done) >= 2 or shot.finished)
    assert not shot.finished, (shot.state, shot.error)
    t0 = time.monotonic()
    api.cancel_shot(shot)  # what Esc in the modal operator does
    pump(state, lambda: shot.finished, timeout=30)
    acknowledged = time.monotonic() - t0  # the backend answered job_cancel
    pump(state, lambda: backend_job_state(state, shot.job_id) == "cancelled", timeout=30)
    latency = time.monotonic() - t0  # the backend's job reached 'cancelled'
    assert shot.state == "cancelled" and backend_job_state(state, shot.job_id) == "cancelled"
    assert latency < 1.0, f"cancel took {latency:.2f} s (job_cancel answered after {acknowledged:.2f} s)"
    n = len(shot.frames_done)
    assert 2 <= n < 2000
    strip = vse.find_strip(clean_scene, shot.strip_name)
    assert len(strip.elements) == n
    assert sorted(shot.frames_done) == list(range(1, 1 + n))
    assert all((tmp_path / "f" / vse.frame_filename(shot.prefix, f)).is_file() for f in shot.frames_done)


def test_bad_inputs_are_refused_with_clear_errors(
    addon_mod, connected, backend_workdir, clean_scene, tmp_path
) -> None:
    api = addon_mod("api")
    head = api.import_subject(folder=backend_workdir / "subjects" / SUBJECT_ID, scene=clean_scene)
    with pytest.raises(ValueError, match="reversed or empty"):
        api.render_shot(clean_scene, 5, 4)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="not writable"):
        api.render_shot(clean_scene, 1, 2, output_dir=str(blocker / "frames"))
    # the default Frames folder '//emo_frames/' in an unsaved file: no .blend to be relative to
    # (bpy.path.abspath would put the frames in Blender's working directory without a word)
    import bpy

    assert not bpy.data.filepath
    with pytest.raises(OSError, match="not saved yet"):
        api.render_shot(clean_scene, 1, 2, output_dir="//emo_frames/")
    head.data.shape_keys.key_blocks["jawOpen"].name = "jawOpenRenamed"
    with pytest.raises(ValueError, match="jawOpen"):
        api.render_shot(clean_scene, 1, 2, output_dir=str(tmp_path / "ok"))


def test_backend_restart_mid_job_reconnects_and_finishes(
    addon_mod, connected, backend, backend_workdir, clean_scene, tmp_path
) -> None:
    api, state = addon_mod("api"), addon_mod("runtime")
    api.import_subject(folder=backend_workdir / "subjects" / SUBJECT_ID, scene=clean_scene)
    old_instance = state.wm_state().instance_id
    io = state.RUNTIME.io
    io.credit = 1  # one frame in flight, so the restart lands mid-stream
    try:
        shot = api.render_shot(
            clean_scene, 1, 16, wait=False, output_dir=str(tmp_path / "f"), uv_source="BACKEND"
        )
        pump(state, lambda: len(shot.frames_done) >= 1 or shot.finished)
        backend.stop()
        backend.start("--resume-jobs")
        pump(state, lambda: shot.finished, timeout=240)
    finally:
        io.credit = 8
    assert shot.state == "done", (
        shot.error,
        state.RUNTIME.messages,
        [(j.job_id, j.state, j.error) for j in state.wm_state().jobs],
    )
    assert sorted(shot.frames_done) == list(range(1, 17))
    pump(
        state, lambda: state.wm_state().status == "CONNECTED" and state.wm_state().instance_id != old_instance
    )
    assert any(j.job_id == shot.job_id for j in state.wm_state().jobs)


def test_render_queued_behind_training_can_be_cancelled(
    addon_mod, connected, backend, backend_workdir, clean_scene, tmp_path
) -> None:
    """A render waiting in the backend's queue must not block the I/O thread: cancel goes through."""
    import shutil

    api, state, vse = addon_mod("api"), addon_mod("runtime"), addon_mod("vse")
    shutil.copytree(backend.workdir / "subjects" / SUBJECT_ID, backend.workdir / "subjects" / "busy")
    train_id = api.submit("train", {"subject_id": "busy", "preset": "tiny", "steps": 500})
    pump(
        state,
        lambda: any(j.job_id == train_id and j.state == "running" for j in state.wm_state().jobs),
        timeout=120,
    )
    api.import_subject(folder=backend_workdir / "subjects" / SUBJECT_ID, scene=clean_scene)
    shot = api.render_shot(clean_scene, 1, 4, wait=False, output_dir=str(tmp_path / "f"), uv_source="BACKEND")
    try:
        pump(state, lambda: any(j.job_id == shot.job_id for j in state.wm_state().jobs), timeout=30)
        assert state.RUNTIME.io.streams[shot.job_id].started is False  # still queued: no frame wait
        api.cancel_shot(shot)
        pump(state, lambda: shot.finished, timeout=30)
        assert shot.state == "cancelled" and not shot.frames_done
        assert vse.find_strip(clean_scene, shot.strip_name) is None
    finally:
        api.cancel(train_id)
        pump(
            state,
            lambda: any(
                j.job_id == train_id and j.state in state.FINAL_STATES for j in state.wm_state().jobs
            ),
            timeout=120,
        )


def test_track_train_edit_operators_submit_jobs_the_backend_accepts(
    addon_mod, connected, backend, backend_workdir, tmp_path
) -> None:
    """The job operators build requests the backend validates and queues (then they are cancelled:
    running the jobs is the backend's tests' business)."""
    import bpy

    state, png = addon_mod("runtime"), addon_mod("png")
    st = state.wm_state()
    frame = (backend_workdir / "subjects" / SUBJECT_ID / "frames" / "000000.png").read_bytes()
    reference = tmp_path / "reference.png"
    png.write_png(reference, np.ascontiguousarray(png.decode_png(frame)[:, ::-1]))  # a mirrored frame
    addon_mod("api").refresh()
    st.subject = SUBJECT_ID
    before = {j.job_id for j in st.jobs}
    video = str(backend_workdir.parent / "sample.mp4")
    track = bpy.ops.emo_avatar.track_video
    assert track(filepath=video, subject_id="tracked_by_test", size=32, framing="bust") == {"FINISHED"}
    assert track(filepath=video, subject_id="tracked_default", size=32) == {"FINISHED"}
    addon_mod("api").track_video(video, "tracked_by_api", size=32, framing="head")
    assert bpy.ops.emo_avatar.train(preset="tiny") == {"FINISHED"}
    assert bpy.ops.emo_avatar.edit(filepath=str(reference), style="mirror", frame=0) == {"FINISHED"}
    # two references, one per shot: selected together, the second one's frame in "More subject frames"
    second = tmp_path / "reference_b.png"
    second.write_bytes(reference.read_bytes())
    files = [{"name": "reference.png"}, {"name": "reference_b.png"}]
    edit = bpy.ops.emo_avatar.edit
    assert edit(directory=str(tmp_path), files=files, style="two", frame=0, more_frames="3",
                steady_motion=True, dither=True) == {"FINISHED"}
    with pytest.raises(RuntimeError, match=r"2 reference image\(s\) selected but 1 subject frame"):
        edit(directory=str(tmp_path), files=files, style="bad", frame=0)

    def new_jobs():
        return [j for j in st.jobs if j.job_id not in before]

    kinds = ["edit", "edit", "track", "track", "track", "train"]
    pump(state, lambda: sorted(j.kind for j in new_jobs()) == kinds, timeout=120)
    assert not [m for m in state.RUNTIME.messages if m[0] == "ERROR" and "edit" in m[1]]
    for job in new_jobs():
        assert job.state in ("queued", "running", "done"), (job.kind, job.state, job.error)
        bpy.ops.emo_avatar.cancel_job(job_id=job.job_id)
    # the framing picked in the operator (or api.track_video) reached the backend; "Backend
    # default" sent none
    from backend.face.framing import DEFAULT_FRAMING

    client_cls = addon_mod("protocol.client").Client
    with client_cls.from_connection_file(backend.connection_file, timeout=5) as client:
        params = [client.status(j.job_id)["job"]["params"] for j in new_jobs() if j.kind == "track"]
    assert {p["subject_id"]: p["framing"] for p in params} == {
        "tracked_by_test": "bust", "tracked_default": DEFAULT_FRAMING, "tracked_by_api": "head"}
    with client_cls.from_connection_file(backend.connection_file, timeout=5) as client:
        edits = {p["style"]: p for j in new_jobs() if j.kind == "edit"
                 for p in [client.status(j.job_id)["job"]["params"]]}
    assert edits["two"]["frame"] == 0 and edits["two"]["more_frames"] == [3]
    assert len(edits["two"]["more_references"]) == 1 and not edits["mirror"]["more_frames"]
    assert edits["two"]["steady_motion"] is True and edits["mirror"]["steady_motion"] is False
    assert edits["two"]["dither"] is True and edits["mirror"]["dither"] is False
    pump(state, lambda: all(j.state in state.FINAL_STATES for j in new_jobs()), timeout=180)


def test_edit_references_pair_each_selected_image_with_its_frame(addon_mod) -> None:
    """The Edit operator's images (file-name order) and frames; what it refuses, and why."""
    pairs = addon_mod("operators").edit_references
    assert pairs("/r", ["b.png", "a.png"], "", 10, "85") == [("/r/a.png", 10), ("/r/b.png", 85)]
    assert pairs("/r", [], "/x/one.png", 3, "") == [("/x/one.png", 3)]
    assert pairs("/r", ["a", "b", "c"], "", 0, " 40; 80 ") == [("/r/a", 0), ("/r/b", 40), ("/r/c", 80)]
    for names, more, match in [(["a", "b"], "", "2 reference image.s. selected but 1"),
                               (["a", "b"], "0", "its own frame"), (["a", "b"], "x", "separated by commas"),
                               (list("abcde"), "1,2,3,4", "at most 4")]:
        with pytest.raises(ValueError, match=match):
            pairs("/r", names, "", 0, more)


def test_track_framings_are_the_backends(addon_mod) -> None:
    """The Track Video operator offers exactly the backend's framings, plus its default."""
    import bpy

    from backend.face.framing import FRAMINGS

    assert [name for name, _, _ in addon_mod("api").TRACK_FRAMINGS] == list(FRAMINGS)
    items = bpy.ops.emo_avatar.track_video.get_rna_type().properties["framing"].enum_items
    assert [i.identifier for i in items] == [addon_mod("operators").DEFAULT_FRAMING, *FRAMINGS]


def test_a_second_take_of_the_same_frames_gets_its_own_channel(
    addon_mod, connected, backend_workdir, clean_scene, tmp_path
) -> None:
    """Re-rendering a shot must not stack two strips over the same frames of one channel (an
    invalid sequencer state): the new take goes to the first free channel above, on top."""
    api, vse, compat = addon_mod("api"), addon_mod("vse"), addon_mod("compat")
    api.import_subject(folder=backend_workdir / "subjects" / SUBJECT_ID, scene=clean_scene)
    kw = {"output_dir": str(tmp_path / "f"), "channel": 3, "uv_source": "BACKEND"}
    first = api.render_shot(clean_scene, 3, 6, **kw)
    before = api.render_shot(clean_scene, 1, 2, **kw)  # ends right before: same channel is fine
    again = api.render_shot(clean_scene, 5, 8, **kw)  # overlaps the first take's frames 5-6
    assert [s.state for s in (first, before, again)] == ["done"] * 3
    strips = {s.name: s for s in compat.sequencer_strips(clean_scene)}
    assert strips[first.strip_name].channel == 3 and strips[before.strip_name].channel == 3
    assert strips[again.strip_name].channel == 4 == again.channel
    take = strips[again.strip_name]
    assert (take.frame_final_start, take.frame_final_duration, len(take.elements)) == (5, 4, 4)
    for a in strips.values():
        for b in strips.values():
            if a != b and a.channel == b.channel:
                assert a.frame_final_end <= b.frame_final_start or b.frame_final_end <= a.frame_final_start
    assert vse.free_channel(clean_scene, 3, 1, 8) == 5


def test_rig_names_the_backend_would_refuse_are_refused_before_the_uv_pass(
    addon_mod, connected, backend_workdir, clean_scene, tmp_path
) -> None:
    """The rig's expression names are checked against the connected backend's subject before the
    Cycles UV pass (which is the slow part), with the missing / extra names listed; not at submit."""
    import bpy

    api = addon_mod("api")
    head = api.import_subject(folder=backend_workdir / "subjects" / SUBJECT_ID, scene=clean_scene)
    names = list(head["emo_avatar_names"])
    renders: list[str] = []

    def count_render(scene, *_args) -> None:
        renders.append(scene.name)

    bpy.app.handlers.render_pre.append(count_render)
    try:
        # a name dropped from the rig's subject names (its shape key is still there)
        head["emo_avatar_names"] = [n for n in names if n != "jawOpen"]
        with pytest.raises(ValueError, match=r"missing 1 name\(s\): jawOpen; extra 0") as err:
            api.render_shot(clean_scene, 1, 3, output_dir=str(tmp_path / "a"))
        assert f"subject '{SUBJECT_ID}'" in str(err.value)
        # a renamed one: missing and extra both listed; the Render Shot operator (background mode)
        head["emo_avatar_names"] = ["notAShape" if n == "jawOpen" else n for n in names]
        head.data.shape_keys.key_blocks["jawOpen"].name = "notAShape"
        with pytest.raises(ValueError, match=r"missing 1 name\(s\): jawOpen; extra 1 name\(s\): notAShape"):
            api.render_shot(clean_scene, 1, 3, output_dir=str(tmp_path / "b"), uv_source="BACKEND")
        with pytest.raises(RuntimeError, match=r"missing 1 name\(s\): jawOpen; extra 1 name\(s\): notAShape"):
            bpy.ops.emo_avatar.render_shot()
        assert renders == []  # no UV map was rendered
    finally:
        bpy.app.handlers.render_pre.remove(count_render)
