"""The add-on's process-wide runtime: the I/O thread, shots in flight, and the timer that applies
the I/O thread's results on Blender's main thread.

``apply_pending()`` is the ``bpy.app.timers`` callback. Timers never fire in ``blender -b`` or in
the ``bpy`` module, so the blocking paths (``wait_for``) and the tests call it directly. Nothing
here keeps a Blender ID (object, scene) between two calls: shots and runners hold names and
resolve them each time, so an undo or a file load in between never leaves a dangling reference.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import bpy

from . import props, vse
from .io_thread import IOThread, Result

log = logging.getLogger(__name__)

TIMER_INTERVAL = 0.1
"""Seconds between timer calls while nothing is being built (runners with work get 0.001 s)."""
FINAL_STATES = ("done", "failed", "cancelled", "interrupted")
SHUTDOWN_TIMEOUT = 0.8
"""Seconds disabling the add-on may spend cancelling work and closing the connection."""


@dataclass
class Shot:
    """A render whose frames land as one strip of scene ``scene_name`` (the sequencer's scene):
    ``folder/<prefix>_<frame:05d>.png``, scene frames
    ``frame_start .. frame_start + total - 1``. A long shot is rendered by several jobs (chunks of
    the frame range, ``chunks`` planned); the shot is done when every chunk is."""

    shot_id: str
    scene_name: str
    strip_name: str
    folder: Path
    prefix: str
    frame_start: int
    total: int
    channel: int
    subject_id: str = ""
    style: str | None = None
    chunks: int = 1
    job_ids: list[str] = field(default_factory=list)
    job_states: dict[str, str] = field(default_factory=dict)
    frames_done: set[int] = field(default_factory=set)
    state: str = "running"
    error: str = ""
    detached: bool = False
    set_standard_view: bool = False
    relative: bool = False

    @property
    def job_id(self) -> str:
        """The first chunk's job id ("" before anything was submitted)."""
        return self.job_ids[0] if self.job_ids else ""

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def running_jobs(self) -> list[str]:
        return [j for j in self.job_ids if self.job_states.get(j) not in FINAL_STATES]


class Runner(Protocol):
    """Main-thread work driven by the timer (a shot's UV pass, see ``shot.ShotRunner``)."""

    @property
    def busy(self) -> bool: ...  # has work to do now (the timer then comes back at once)

    def tick(self) -> bool: ...  # one step; False once it has nothing left to do

    def cancel(self, reason: str) -> None: ...


@dataclass
class Runtime:
    """Process-wide state that must not live in Blender data (threads, processes, callbacks)."""

    io: IOThread | None = None
    callbacks: dict[int, Callable[[Result], None]] = field(default_factory=dict)
    waiting: set[int] = field(default_factory=set)
    results: dict[int, Result] = field(default_factory=dict)
    shots: dict[str, Shot] = field(default_factory=dict)
    job_shot: dict[str, str] = field(default_factory=dict)
    runners: dict[str, Runner] = field(default_factory=dict)
    frame_listeners: dict[str, Callable[[Result], None]] = field(default_factory=dict)
    hidden_jobs: set[str] = field(default_factory=set)
    preview_camera: str = ""
    backend_proc: Any = None
    messages: list[tuple[str, str]] = field(default_factory=list)
    changed: bool = True


RUNTIME = Runtime()


def wm_state() -> props.EmoAvatarState:
    return bpy.context.window_manager.emo_avatar


def is_connected() -> bool:
    return RUNTIME.io is not None and RUNTIME.io.is_alive() and wm_state().status == "CONNECTED"


def report(level: str, text: str) -> None:
    """An error or warning the user must see: kept whole for the panel, logged, and (with a UI)
    shown in the status bar and the Info editor."""
    RUNTIME.messages.append((level, text))
    del RUNTIME.messages[:-20]
    RUNTIME.changed = True
    (log.error if level == "ERROR" else log.warning if level == "WARNING" else log.info)("%s", text)
    if not bpy.app.background and hasattr(bpy.ops.emo_avatar, "report_message"):
        with contextlib.suppress(RuntimeError):
            bpy.ops.emo_avatar.report_message(level=level, text=text)


# -- talking to the I/O thread --------------------------------------------------------------------
def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(apply_pending):
        bpy.app.timers.register(apply_pending, first_interval=TIMER_INTERVAL, persistent=True)


def start_io(connection_file: str | Path, timeout: float = 3.0, retries: int = 1) -> IOThread:
    """Start (or re-point) the I/O thread and the timer; returns at once (the thread connects)."""
    io = RUNTIME.io
    if io is not None and io.is_alive():
        io.call("connect", connection_file=str(connection_file), timeout=timeout, retries=retries)
    else:
        io = IOThread(connection_file, timeout=timeout, retries=retries)
        RUNTIME.io = io
        io.start()
    st = wm_state()
    st.status, st.message = "CONNECTING", f"connecting with {connection_file}"
    ensure_timer()
    return io


def stop_io(timeout: float = 5.0, cancel_jobs: list[str] | None = None) -> None:
    """Close the connection and end the I/O thread (render streams stop; jobs go on in the backend
    unless listed in ``cancel_jobs``)."""
    io, RUNTIME.io = RUNTIME.io, None
    if io is not None:
        io.stop(timeout, cancel_jobs=cancel_jobs)
        _apply_all(io.drain())
    RUNTIME.callbacks.clear()
    RUNTIME.results.clear()
    st = wm_state()
    st.status, st.message = "DISCONNECTED", "disconnected"


def call(
    op: str, on_done: Callable[[Result], None] | None = None, *, keep: bool = False, **kwargs: Any
) -> int:
    """Queue an I/O operation; ``on_done(result)`` runs on the main thread when it finishes
    (errors are reported when there is no ``on_done``); with ``keep`` the Result is stored in
    ``RUNTIME.results`` for ``call_and_wait``."""
    io = RUNTIME.io
    if io is None or not io.is_alive():
        raise RuntimeError("not connected to a backend: press Connect first")
    rid = io.call(op, **kwargs)
    if on_done is not None:
        RUNTIME.callbacks[rid] = on_done
    if keep:
        RUNTIME.waiting.add(rid)
    return rid


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Blocking path: pump ``apply_pending`` until ``predicate()`` or raise ``TimeoutError``."""
    deadline = time.monotonic() + timeout
    while True:
        apply_pending()
        if predicate():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        if not any(r.busy for r in RUNTIME.runners.values()):
            time.sleep(0.005)


def call_and_wait(op: str, timeout: float = 60.0, **kwargs: Any) -> Result:
    """Blocking: run an I/O operation and return its Result; raises RuntimeError on error."""
    rid = call(op, keep=True, **kwargs)
    try:
        wait_for(lambda: rid in RUNTIME.results, timeout, op)
    finally:
        RUNTIME.waiting.discard(rid)
    result = RUNTIME.results.pop(rid)
    if result.error:
        raise RuntimeError(result.error)
    return result


# -- shots ----------------------------------------------------------------------------------------
def add_shot(shot: Shot) -> None:
    RUNTIME.shots[shot.shot_id] = shot
    RUNTIME.changed = True


def add_shot_job(shot: Shot, job_id: str) -> None:
    """A chunk of ``shot`` was handed to the I/O thread as job ``job_id``."""
    shot.job_ids.append(job_id)
    shot.job_states[job_id] = "submitted"
    RUNTIME.job_shot[job_id] = shot.shot_id


def shot_of_job(job_id: str) -> Shot | None:
    shot_id = RUNTIME.job_shot.get(job_id)
    return RUNTIME.shots.get(shot_id) if shot_id else None


def cancel_shot(shot: Shot, reason: str = "cancelled") -> None:
    """Stop a shot: its UV pass ends, no further chunk is submitted, running chunks get
    ``job_cancel``; the strip keeps every frame received. Returns at once (the cancels travel
    through the I/O thread; the shot ends ``cancelled`` when the backend confirmed the last)."""
    if not _stop_shot_work(shot) and not shot.finished:
        _end_shot(shot, "cancelled", reason if reason != "cancelled" else "")


def _stop_shot_work(shot: Shot) -> bool:
    """End the shot's UV pass and send ``job_cancel`` for its running chunks; True if any runs."""
    runner = RUNTIME.runners.pop(shot.shot_id, None)
    if runner is not None:
        runner.cancel("stopped")
    if shot.finished:
        return False
    running = shot.running_jobs
    for job_id in running:
        if shot.job_states.get(job_id) == "cancelling":
            continue  # asked already
        shot.job_states[job_id] = "cancelling"
        if RUNTIME.io is not None and RUNTIME.io.is_alive():
            call("cancel", on_done=_cancel_done, job_id=job_id)
    return bool(running)


def _cancel_done(result: Result) -> None:
    if result.error:
        report("ERROR", f"cancel failed: {result.error}")


def fail_shot(shot: Shot, error: str) -> None:
    """A shot cannot go on (its UV pass or a chunk failed): cancel what runs, end it ``failed``."""
    if shot.finished:
        return
    shot.error = error
    _stop_shot_work(shot)
    _end_shot(shot, "failed", error)


def _job_ended(job_id: str, state: str, error: str = "") -> None:
    shot = shot_of_job(job_id)
    if shot is None:
        return
    shot.job_states[job_id] = state
    if shot.finished:
        return
    if state == "failed":
        fail_shot(shot, error or f"render job {job_id[:8]} failed")
    elif state in ("cancelled", "interrupted"):
        others = shot.running_jobs
        if others:  # one chunk cancelled (e.g. from the job list): the shot cannot be whole
            cancel_shot(shot)
        else:
            _end_shot(shot, "cancelled", error)
    elif state == "done" and len(shot.job_ids) == shot.chunks and not shot.running_jobs:
        _end_shot(shot, "done")


def _end_shot(shot: Shot, state: str, error: str = "") -> None:
    if shot.finished:
        return
    shot.state, shot.error = state, error or shot.error
    RUNTIME.runners.pop(shot.shot_id, None)
    RUNTIME.changed = True
    update_shot_strip(shot)
    if shot.error and state == "failed":
        report("ERROR", f"shot '{shot.strip_name}': {shot.error}")
    if not shot.detached and find_shot_strip(shot) is not None:
        undo_push(f"Emo-Avatar shot {shot.strip_name} ({state})")


def undo_push(message: str) -> None:
    """An undo step for data the timer changed (so Ctrl-Z never takes a finished strip away)."""
    if bpy.ops.ed.undo_push.poll():
        with contextlib.suppress(RuntimeError):
            bpy.ops.ed.undo_push(message=message)


def find_shot_strip(shot: Shot):
    scene = bpy.data.scenes.get(shot.scene_name)
    return None if scene is None else vse.find_strip(scene, shot.strip_name)


def update_shot_strip(shot: Shot) -> None:
    """Extend the shot's strip to the frames received (nothing for a detached shot)."""
    if shot.detached:
        return
    scene = bpy.data.scenes.get(shot.scene_name)
    if scene is None:
        return
    had = vse.find_strip(scene, shot.strip_name) is not None
    strip = vse.update_strip(
        scene,
        shot.strip_name,
        shot.folder,
        shot.prefix,
        shot.frame_start,
        shot.frames_done,
        shot.channel,
        length=shot.total,
        relative=shot.relative,
    )
    if strip is None:
        return
    shot.channel = strip.channel  # the preferred channel, or the free one above it
    if not had:
        vse.tag_strip(strip, shot.job_ids, shot.subject_id, shot.style or "")
        if shot.set_standard_view:
            vse.set_standard_view(scene)
    elif strip.get(vse.PROP_JOBS) is not None and len(strip[vse.PROP_JOBS]) != len(shot.job_ids):
        strip[vse.PROP_JOBS] = list(shot.job_ids)


# -- the timer ------------------------------------------------------------------------------------
def apply_pending() -> float | None:
    """Apply every Result the I/O thread posted and give each runner one step; the timer callback
    (returns the next interval: at once while a runner has work, else ``TIMER_INTERVAL``)."""
    io = RUNTIME.io
    if io is not None:
        _apply_all(io.drain())
    for shot_id, runner in list(RUNTIME.runners.items()):
        try:
            alive = runner.tick()
        except Exception as exc:  # a failed step ends its shot cleanly, never the timer
            log.exception("shot %s failed", shot_id)
            RUNTIME.runners.pop(shot_id, None)
            shot = RUNTIME.shots.get(shot_id)
            if shot is not None:
                fail_shot(shot, f"{type(exc).__name__}: {exc}")
            continue
        if not alive:
            RUNTIME.runners.pop(shot_id, None)
        RUNTIME.changed = True
    if RUNTIME.changed:
        RUNTIME.changed = False
        _redraw()
    if any(r.busy for r in RUNTIME.runners.values()):
        return 0.001
    if io is None and not RUNTIME.runners:
        return None
    return TIMER_INTERVAL if (io is not None and io.is_alive()) or RUNTIME.runners else None


def _apply_all(results: list[Result]) -> None:
    for result in results:
        try:
            _apply(result)
        except Exception as exc:  # one bad result must not stop the timer
            log.exception("applying %s failed", result.kind)
            report("ERROR", f"applying {result.kind} failed: {type(exc).__name__}: {exc}")


def _apply(r: Result) -> None:
    st = wm_state()
    d = r.data
    RUNTIME.changed = True
    if r.kind == "status":
        st.status = d["state"].upper()
        st.message = d.get("message") or ""
        hello = d.get("hello")
        if hello:
            st.server = str(hello.get("server", ""))
            st.device = str(hello.get("device", ""))
            st.proto = str(hello.get("proto", ""))
            st.instance_id = str(hello.get("instance_id", ""))
        if d.get("instance_id"):
            st.instance_id = str(d["instance_id"])
        if r.request is not None:
            _finish_request(r)
    elif r.kind == "server":
        changed = str(d.get("instance_id") or st.instance_id) != st.instance_id
        st.instance_id = str(d.get("instance_id") or st.instance_id)
        RUNTIME.changed = changed
    elif r.kind == "jobs":
        _fill_jobs(st, d["jobs"])
    elif r.kind == "subjects":
        _fill_subjects(st, d["subjects"])
    elif r.kind == "event":
        _apply_event(st, d["msg_type"], d["content"])
    elif r.kind == "frame":
        listener = RUNTIME.frame_listeners.get(d["job_id"])
        if listener is not None:
            listener(r)
            return
        shot = shot_of_job(d["job_id"])
        if shot is not None:
            shot.frames_done.add(int(d["frame"]))
            update_shot_strip(shot)
            job = _job(st, d["job_id"])
            if job is not None and d.get("total"):
                job.progress = min(1.0, int(d.get("count") or 0) / int(d["total"]))
    elif r.kind == "stream_end":
        listener = RUNTIME.frame_listeners.get(d["job_id"])
        if listener is not None:
            listener(r)
            return
        _job_ended(d["job_id"], d["state"], d.get("error") or "")
    elif r.kind == "done":
        _finish_request(r)
    elif r.kind == "log":
        report(d.get("level", "info").upper(), d.get("text", ""))
    elif r.kind == "stopped" and st.status != "DISCONNECTED":
        st.status = "DISCONNECTED"


def _finish_request(r: Result) -> None:
    callback = RUNTIME.callbacks.pop(r.request, None)
    if callback is not None:
        callback(r)
    elif r.request in RUNTIME.waiting:
        RUNTIME.results[r.request] = r
    elif r.error:
        report("ERROR", r.error)


def job_item(st: props.EmoAvatarState, job_id: str) -> props.EmoAvatarJob | None:
    for job in st.jobs:
        if job.job_id == job_id:
            return job
    return None


_job = job_item


def _fill_jobs(st: props.EmoAvatarState, jobs: list[dict]) -> None:
    keep = {j.job_id: j.progress for j in st.jobs}
    st.jobs.clear()
    for rec in sorted(jobs, key=lambda j: str(j.get("created") or ""), reverse=True):
        job_id = str(rec.get("job_id", ""))
        if job_id in RUNTIME.hidden_jobs:  # live-preview frames do not crowd the job list
            continue
        job = st.jobs.add()
        job.job_id = job_id
        job.kind = str(rec.get("kind", ""))
        job.state = str(rec.get("state", ""))
        job.stage = str(rec.get("stage") or "")
        job.error = str(rec.get("error") or "")
        total = int(rec.get("total") or 0)
        progress = (int(rec.get("step") or 0) / total) if total else keep.get(job.job_id, 0.0)
        job.progress = 1.0 if job.state == "done" else min(1.0, progress)
        subject = (rec.get("params") or {}).get("subject_id", "")
        job.label = f"{job.kind} {subject}".strip()


def _fill_subjects(st: props.EmoAvatarState, subjects: list[dict]) -> None:
    st.subjects.clear()
    for rec in subjects:
        item = st.subjects.add()
        item.name = str(rec.get("subject_id", ""))
        item.has_avatar = bool(rec.get("has_avatar", False))
        item.styles = ",".join(str(s) for s in rec.get("styles") or [])
        item.frames = int(rec.get("frames") or 0)
    if st.subjects and st.subject not in st.subjects:
        st.subject = st.subjects[0].name
    props.fill_styles(st)


def _apply_event(st: props.EmoAvatarState, msg_type: str, content: dict) -> None:
    if msg_type == "job_progress":
        job = _job(st, content.get("job_id", ""))
        if job is not None:
            total = int(content.get("total") or 0)
            if total:
                job.progress = min(1.0, int(content.get("step") or 0) / total)
            job.stage = str(content.get("stage") or "")
    elif msg_type == "job_state":
        job = _job(st, content.get("job_id", ""))
        if job is not None:
            job.state = str(content.get("state", job.state))
            job.error = str(content.get("error") or "")
            if job.state == "done":
                job.progress = 1.0
        if content.get("state") == "failed" and content.get("job_id") not in RUNTIME.hidden_jobs:
            report("ERROR", f"job {str(content.get('job_id', ''))[:8]} failed: {content.get('error') or ''}")
    elif msg_type == "status":
        st.instance_id = str(content.get("instance_id") or st.instance_id)
    elif msg_type == "log" and content.get("level") in ("warning", "error"):
        report(content["level"].upper(), str(content.get("text", "")))


def _redraw() -> None:
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "SEQUENCE_EDITOR", "IMAGE_EDITOR"):
                area.tag_redraw()


# -- file load and shutdown -----------------------------------------------------------------------
@bpy.app.handlers.persistent
def _on_load_pre(*_args) -> None:
    """Another file is about to replace this one: nothing may keep working on its data. A shot
    still building its UV maps is cancelled (it cannot be finished without its scene); a shot
    whose jobs are all submitted is detached: its frames keep landing on disk and "Attach Strip
    From Job" puts them into a strip later."""
    for shot_id in list(RUNTIME.runners):
        shot = RUNTIME.shots.get(shot_id)
        if shot is not None:
            cancel_shot(shot, "the file was closed while the shot was being prepared")
        RUNTIME.runners.pop(shot_id, None)
    for shot in RUNTIME.shots.values():
        if not shot.finished:
            shot.detached = True
    from . import preview

    preview.stop()


@bpy.app.handlers.persistent
def _on_load_post(*_args) -> None:
    """A new file has a new WindowManager: refill its lists from the backend."""
    if RUNTIME.io is not None and RUNTIME.io.is_alive():
        wm_state().status = "CONNECTING"
        RUNTIME.io.call("connect")
        RUNTIME.io.call("refresh")


def shutdown(timeout: float = SHUTDOWN_TIMEOUT) -> None:
    """Disabling the add-on: cancel every shot's UV pass and running render jobs and close the
    connection, within ``timeout`` s (the I/O thread sends the cancels with short timeouts)."""
    cancel: list[str] = []
    for shot in RUNTIME.shots.values():
        runner = RUNTIME.runners.pop(shot.shot_id, None)
        if runner is not None:
            runner.cancel("the add-on was disabled")
        if not shot.finished:
            cancel += shot.running_jobs
            shot.state, shot.error = "cancelled", "the add-on was disabled"
    RUNTIME.runners.clear()
    io, RUNTIME.io = RUNTIME.io, None
    if io is not None:
        io.stop(timeout, cancel_jobs=cancel)
    RUNTIME.callbacks.clear()
    RUNTIME.results.clear()
    RUNTIME.frame_listeners.clear()


def register() -> None:
    bpy.app.handlers.load_pre.append(_on_load_pre)
    bpy.app.handlers.load_post.append(_on_load_post)


def unregister() -> None:
    for handlers, fn in (
        (bpy.app.handlers.load_pre, _on_load_pre),
        (bpy.app.handlers.load_post, _on_load_post),
    ):
        if fn in handlers:
            handlers.remove(fn)
    if bpy.app.timers.is_registered(apply_pending):
        bpy.app.timers.unregister(apply_pending)
    shutdown()
