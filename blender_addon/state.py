"""Connection state on the WindowManager (never saved into .blend files) and the timer that
applies the I/O thread's results on Blender's main thread.

``apply_pending()`` is the ``bpy.app.timers`` callback. Timers never fire in ``blender -b`` or in
the ``bpy`` module, so the blocking paths (``wait_for``) and the tests call it directly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from . import vse
from .io_thread import IOThread, Result

log = logging.getLogger(__name__)

TIMER_INTERVAL = 0.1
STATUS_ITEMS = [
    ("DISCONNECTED", "Disconnected", "Not connected to a backend"),
    ("CONNECTING", "Connecting", "Looking for the backend"),
    ("CONNECTED", "Connected", "Talking to the backend"),
    ("UNAVAILABLE", "Unavailable", "No backend answers; retrying"),
    ("ERROR", "Error", "Cannot use this backend"),
]
FINAL_STATES = ("done", "failed", "cancelled", "interrupted")


class EmoAvatarJob(bpy.types.PropertyGroup):
    job_id: StringProperty(name="Job")
    kind: StringProperty(name="Kind")
    state: StringProperty(name="State")
    stage: StringProperty(name="Stage")
    progress: FloatProperty(name="Progress", min=0.0, max=1.0, subtype="FACTOR")
    error: StringProperty(name="Error")
    label: StringProperty(name="Label")


class EmoAvatarSubject(bpy.types.PropertyGroup):
    # ``name`` (built in) is the subject id, so prop_search can list these.
    has_avatar: BoolProperty(name="Trained")
    styles: StringProperty(name="Styles", description="Comma-separated style names")
    frames: IntProperty(name="Frames")


class EmoAvatarStyle(bpy.types.PropertyGroup):
    pass


def _subject_changed(self, _context) -> None:
    _fill_styles(self)


class EmoAvatarState(bpy.types.PropertyGroup):
    status: EnumProperty(name="Status", items=STATUS_ITEMS, default="DISCONNECTED")
    message: StringProperty(name="Message")
    server: StringProperty(name="Server")
    device: StringProperty(name="Device")
    proto: StringProperty(name="Protocol")
    instance_id: StringProperty(name="Instance")
    jobs: CollectionProperty(type=EmoAvatarJob)
    job_index: IntProperty(name="Active job")
    subjects: CollectionProperty(type=EmoAvatarSubject)
    subject: StringProperty(
        name="Subject", description="Subject (tracked person) on the backend", update=_subject_changed
    )
    styles: CollectionProperty(type=EmoAvatarStyle)
    style: StringProperty(name="Style", description="Style to render with (empty: the un-styled avatar)")


@dataclass
class Shot:
    """A render whose frames land as a strip: ``folder/<prefix>_<frame:05d>.png`` from ``frame_start``."""

    job_id: str
    scene_name: str
    strip_name: str
    folder: Path
    prefix: str
    frame_start: int
    total: int
    channel: int
    frames_done: set[int] = field(default_factory=set)
    state: str = "running"
    error: str = ""

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES


@dataclass
class Runtime:
    """Process-wide state that must not live in Blender data (threads, processes, callbacks)."""

    io: IOThread | None = None
    callbacks: dict[int, Callable[[Result], None]] = field(default_factory=dict)
    waiting: set[int] = field(default_factory=set)
    results: dict[int, Result] = field(default_factory=dict)
    shots: dict[str, Shot] = field(default_factory=dict)
    backend_proc: Any = None
    messages: list[tuple[str, str]] = field(default_factory=list)


RUNTIME = Runtime()


def wm_state() -> EmoAvatarState:
    return bpy.context.window_manager.emo_avatar


def is_connected() -> bool:
    return RUNTIME.io is not None and RUNTIME.io.is_alive() and wm_state().status == "CONNECTED"


# -- talking to the I/O thread --------------------------------------------------------------------
def start_io(connection_file: str | Path, timeout: float = 3.0, retries: int = 1) -> IOThread:
    """Start (or re-point) the I/O thread and the timer; returns at once."""
    io = RUNTIME.io
    if io is not None and io.is_alive():
        io.call("connect", connection_file=str(connection_file), timeout=timeout, retries=retries)
    else:
        io = IOThread(connection_file, timeout=timeout, retries=retries)
        RUNTIME.io = io
        io.start()
    st = wm_state()
    st.status, st.message = "CONNECTING", f"connecting with {connection_file}"
    if not bpy.app.timers.is_registered(apply_pending):
        bpy.app.timers.register(apply_pending, first_interval=TIMER_INTERVAL, persistent=True)
    return io


def stop_io() -> None:
    """Close the connection and end the I/O thread (render streams stop; jobs go on in the backend)."""
    io, RUNTIME.io = RUNTIME.io, None
    if io is not None:
        io.stop()
        _apply_all(io.drain())
    RUNTIME.callbacks.clear()
    RUNTIME.results.clear()
    st = wm_state()
    st.status, st.message = "DISCONNECTED", "disconnected"


def call(
    op: str, on_done: Callable[[Result], None] | None = None, *, keep: bool = False, **kwargs: Any
) -> int:
    """Queue an I/O operation; ``on_done(result)`` runs on the main thread when it finishes
    (errors are shown in the panel when there is no ``on_done``); with ``keep`` the Result is
    stored in ``RUNTIME.results`` for ``call_and_wait``."""
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
        time.sleep(0.01)


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


# -- the timer ------------------------------------------------------------------------------------
def apply_pending() -> float | None:
    """Apply every Result the I/O thread posted; the timer callback (returns the next interval)."""
    io = RUNTIME.io
    if io is None:
        return None
    _apply_all(io.drain())
    _redraw()
    return TIMER_INTERVAL if io.is_alive() else None


def _apply_all(results: list[Result]) -> None:
    for result in results:
        try:
            _apply(result)
        except Exception:  # one bad result must not stop the timer
            log.exception("applying %s failed", result.kind)


def _apply(r: Result) -> None:
    st = wm_state()
    d = r.data
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
        st.instance_id = str(d.get("instance_id") or st.instance_id)
    elif r.kind == "jobs":
        _fill_jobs(st, d["jobs"])
    elif r.kind == "subjects":
        _fill_subjects(st, d["subjects"])
    elif r.kind == "event":
        _apply_event(st, d["msg_type"], d["content"])
    elif r.kind == "frame":
        shot = RUNTIME.shots.get(d["job_id"])
        if shot is not None:
            shot.frames_done.add(int(d["frame"]))
            _update_shot_strip(shot)
            job = _job(st, shot.job_id)
            if job is not None and shot.total:
                job.progress = len(shot.frames_done) / shot.total
    elif r.kind == "stream_end":
        shot = RUNTIME.shots.get(d["job_id"])
        if shot is not None:
            shot.state = d["state"]
            shot.error = d.get("error") or ""
            _update_shot_strip(shot)
            if shot.error:
                RUNTIME.messages.append(("ERROR", f"render {shot.job_id[:8]}: {shot.error}"))
    elif r.kind == "done":
        _finish_request(r)
    elif r.kind == "log":
        RUNTIME.messages.append((d.get("level", "info").upper(), d.get("text", "")))
    elif r.kind == "stopped" and st.status != "DISCONNECTED":
        st.status = "DISCONNECTED"


def _finish_request(r: Result) -> None:
    callback = RUNTIME.callbacks.pop(r.request, None)
    if callback is not None:
        callback(r)
    elif r.request in RUNTIME.waiting:
        RUNTIME.results[r.request] = r
    elif r.error:
        RUNTIME.messages.append(("ERROR", r.error))


def _job(st: EmoAvatarState, job_id: str) -> EmoAvatarJob | None:
    for job in st.jobs:
        if job.job_id == job_id:
            return job
    return None


def _fill_jobs(st: EmoAvatarState, jobs: list[dict]) -> None:
    keep = {j.job_id: j.progress for j in st.jobs}
    st.jobs.clear()
    for rec in sorted(jobs, key=lambda j: str(j.get("created") or ""), reverse=True):
        job = st.jobs.add()
        job.job_id = str(rec.get("job_id", ""))
        job.kind = str(rec.get("kind", ""))
        job.state = str(rec.get("state", ""))
        job.stage = str(rec.get("stage") or "")
        job.error = str(rec.get("error") or "")
        total = int(rec.get("total") or 0)
        progress = (int(rec.get("step") or 0) / total) if total else keep.get(job.job_id, 0.0)
        job.progress = 1.0 if job.state == "done" else min(1.0, progress)
        subject = (rec.get("params") or {}).get("subject_id", "")
        job.label = f"{job.kind} {subject}".strip()


def _fill_subjects(st: EmoAvatarState, subjects: list[dict]) -> None:
    st.subjects.clear()
    for rec in subjects:
        item = st.subjects.add()
        item.name = str(rec.get("subject_id", ""))
        item.has_avatar = bool(rec.get("has_avatar", False))
        item.styles = ",".join(str(s) for s in rec.get("styles") or [])
        item.frames = int(rec.get("frames") or 0)
    if st.subjects and st.subject not in st.subjects:
        st.subject = st.subjects[0].name
    _fill_styles(st)


def _fill_styles(st: EmoAvatarState) -> None:
    st.styles.clear()
    subject = st.subjects.get(st.subject) if st.subject else None
    names = [s for s in (subject.styles.split(",") if subject else []) if s]
    for name in names:
        st.styles.add().name = name
    if st.style and st.style not in names:
        st.style = ""


def _apply_event(st: EmoAvatarState, msg_type: str, content: dict) -> None:
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
    elif msg_type == "status":
        st.instance_id = str(content.get("instance_id") or st.instance_id)
    elif msg_type == "log" and content.get("level") in ("warning", "error"):
        RUNTIME.messages.append((content["level"].upper(), str(content.get("text", ""))))


def _update_shot_strip(shot: Shot) -> None:
    scene = bpy.data.scenes.get(shot.scene_name)
    if scene is None:
        return
    strip = vse.update_strip(
        scene,
        shot.strip_name,
        shot.folder,
        shot.prefix,
        shot.frame_start,
        shot.frames_done,
        shot.channel,
        length=shot.total,
    )
    if strip is not None:
        shot.channel = strip.channel  # the preferred channel, or the free one above it


def _redraw() -> None:
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "SEQUENCE_EDITOR"):
                area.tag_redraw()


@bpy.app.handlers.persistent
def _on_load_post(*_args) -> None:
    """A new file has a new WindowManager: refill its lists from the backend."""
    if RUNTIME.io is not None and RUNTIME.io.is_alive():
        wm_state().status = "CONNECTING"
        RUNTIME.io.call("connect")
        RUNTIME.io.call("refresh")


CLASSES = (EmoAvatarJob, EmoAvatarSubject, EmoAvatarStyle, EmoAvatarState)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.WindowManager.emo_avatar = PointerProperty(type=EmoAvatarState)
    bpy.app.handlers.load_post.append(_on_load_post)


def unregister() -> None:
    if _on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load_post)
    if bpy.app.timers.is_registered(apply_pending):
        bpy.app.timers.unregister(apply_pending)
    io, RUNTIME.io = RUNTIME.io, None
    if io is not None:
        io.stop()
    del bpy.types.WindowManager.emo_avatar
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
