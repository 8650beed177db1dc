"""The add-on's one I/O thread: it alone owns the protocol ``Client`` (ZeroMQ sockets are not
thread-safe) and never touches bpy. No bpy in this module.

Main thread -> thread: ``IOThread.call(op, **kwargs)`` puts a command on ``inbox`` and returns a
request id. Thread -> main thread: ``Result`` records on ``outbox``; the ``bpy.app.timers``
callback (``state.apply_pending``) drains them and changes Blender data.

The thread loop: (re)connect when asked (with a retry every ``retry_interval`` s while the backend
is down, never blocking the UI), run queued commands, advance each render's frame stream by the
frames that arrived (frames are written to disk here, as PNG, so the main thread only extends the
strip), pass events on, and poll ``job_status`` every ``poll_interval`` s, which also detects a
restarted backend (the client then reconnects and re-grants frame credit from the first missing
frame). Between rounds it sleeps in one poll on the backend's sockets and a wake-up socket that
``call`` writes to, so a command (a live-preview request), a frame and an event are each handled
as soon as they arrive, with no polling delay.

Jobs submitted ``quiet`` (live previews) never trigger a job-list refresh, and a render waiting
in the backend's queue starts receiving frames on its ``job_state`` event, not at the next poll.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .png import encode_png
from .protocol import PROTOCOL_VERSION
from .protocol.errors import BackendUnavailable, ProtocolError, RemoteError
from .protocol.fileio import atomic_write_bytes

log = logging.getLogger(__name__)

_IDS = itertools.count(1)
_ID_LOCK = threading.Lock()
MAX_RESUBMITS = 5
"""How often a render interrupted by backend restarts is submitted again before giving up."""
IDLE_EVENT_WAIT = 0.05
"""Longest sleep of the thread between rounds. A command (``call``), a frame or an event ends the
sleep at once, so this only bounds how late the time-based work (reconnects, ``poll_interval``
checks, ``stop``) runs."""
BUSY_EVENT_WAIT = 0.005
"""The same while frames stream (the job-status and queued re-checks of a stream are due sooner)."""


def frame_filename(prefix: str, frame: int) -> str:
    """``<prefix>_<frame, 5 digits>.png``: the one name of a received frame (written here, listed
    by the VSE strip)."""
    return f"{prefix}_{frame:05d}.png"


@dataclass
class Result:
    """Something the main thread must apply. ``kind`` says what; ``request`` echoes ``call``'s id."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    request: int | None = None
    error: str | None = None


@dataclass
class Stream:
    """A render job whose frames this client receives and writes to ``folder/<prefix>_<frame>.png``."""

    job_id: str
    folder: Path
    prefix: str
    frame_start: int
    total: int
    received: set[int] = field(default_factory=set)
    gen: Any = None
    """The protocol's non-blocking ``FrameStream`` (None until granted, or after a reconnect)."""
    submission: dict[str, Any] | None = None
    resubmits: int = 0
    started: bool = False
    next_check: float = 0.0
    memory: bool = False
    """Frames go to the main thread as pixels (``Result.data["image"]``), not to disk (live preview)."""
    quiet: bool = False
    """Submitted ``quiet``: its end does not refresh the job list."""


def version_warning(proto: str) -> tuple[str | None, bool]:
    """(message, fatal) comparing the backend's "major.minor" with ours."""
    try:
        major, minor = (int(x) for x in str(proto).split(".")[:2])
    except ValueError:
        return f"backend speaks an unreadable protocol version {proto!r}", True
    if major != PROTOCOL_VERSION[0]:
        return (
            f"backend protocol {major}.{minor} is incompatible with this add-on's "
            f"{PROTOCOL_VERSION[0]}.{PROTOCOL_VERSION[1]}: update the add-on or the backend",
            True,
        )
    if minor != PROTOCOL_VERSION[1]:
        return (
            f"backend protocol {major}.{minor} differs from the add-on's "
            f"{PROTOCOL_VERSION[0]}.{PROTOCOL_VERSION[1]} (minor): newer features may be missing",
            False,
        )
    return None, False


class IOThread(threading.Thread):
    """Owns the Client; see the module docstring."""

    def __init__(
        self,
        connection_file: str | Path,
        *,
        timeout: float = 3.0,
        retries: int = 1,
        retry_interval: float = 2.0,
        poll_interval: float = 1.0,
        client_name: str = "blender-emo-avatar",
        credit: int = 8,
    ) -> None:
        super().__init__(name="emo-avatar-io", daemon=True)
        self.connection_file = Path(connection_file)
        self.timeout = timeout
        self.retries = retries
        self.retry_interval = retry_interval
        self.poll_interval = poll_interval
        self.client_name = client_name
        self.credit = credit
        self.inbox: queue.Queue[tuple[int, str, dict[str, Any]]] = queue.Queue()
        self.outbox: queue.Queue[Result] = queue.Queue()
        self._stopping = threading.Event()
        self.client: Any = None
        self.streams: dict[str, Stream] = {}
        self._want_connected = True
        self._next_connect = 0.0
        self._next_poll = 0.0
        self._restarts = 0
        self._failed_before = False
        self._hello: dict[str, Any] | None = None
        self._final_cancels: list[str] = []
        self._quiet: set[str] = set()
        """Jobs submitted ``quiet`` whose final state has not been seen yet."""
        self._wake_r, self._wake_w = socket.socketpair()
        for end in (self._wake_r, self._wake_w):
            end.setblocking(False)

    # -- main-thread API -----------------------------------------------------------------------
    def call(self, op: str, **kwargs: Any) -> int:
        """Queue ``op`` for the thread; returns the request id its Result will carry."""
        with _ID_LOCK:
            rid = next(_IDS)  # unique across I/O threads, so a stale result never answers a new request
        self.inbox.put((rid, op, kwargs))
        self._wake()
        return rid

    def _wake(self) -> None:
        """End the thread's sleep now (a full wake-up socket already says so)."""
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def stop(self, timeout: float = 5.0, cancel_jobs: list[str] | None = None) -> None:
        """Ask the thread to close its sockets and end; waits up to ``timeout`` s. ``cancel_jobs``
        get a ``job_cancel`` first (one attempt each, within the same ``timeout``)."""
        self._final_cancels = list(cancel_jobs or [])
        self._cancel_deadline = time.monotonic() + 0.8 * timeout
        self._stopping.set()
        self._wake()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    def drain(self) -> list[Result]:
        out = []
        while True:
            try:
                out.append(self.outbox.get_nowait())
            except queue.Empty:
                return out

    # -- thread ------------------------------------------------------------------------------------
    def _post(self, kind: str, request: int | None = None, error: str | None = None, **data: Any) -> None:
        self.outbox.put(Result(kind, data, request, error))

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._loop_once()
        except Exception as exc:  # never die silently: tell the UI
            log.exception("I/O thread crashed")
            self._post("status", state="error", message=f"I/O thread crashed: {exc}")
        finally:
            self._send_final_cancels()
            self._close_client()
            for end in (self._wake_r, self._wake_w):
                end.close()
            self._post("stopped")

    def _send_final_cancels(self) -> None:
        """``job_cancel`` for the jobs ``stop`` named, each one attempt, all within its deadline."""
        for job_id in self._final_cancels:
            left = getattr(self, "_cancel_deadline", 0.0) - time.monotonic()
            if self.client is None or left <= 0.05:
                log.warning("job %s not cancelled: no time left while stopping", job_id)
                continue
            try:
                self.client.request(
                    "job_cancel", {"job_id": job_id}, channel="control", timeout=left, retries=0
                )
            except Exception as exc:  # stopping must go on
                log.warning("cancelling %s while stopping failed: %s", job_id, exc)

    def _loop_once(self) -> None:
        now = time.monotonic()
        if self.client is None and self._want_connected and now >= self._next_connect:
            self._connect()
        busy = self._run_commands()
        if self.client is not None:
            try:
                busy |= self._advance_streams()
                self._forward_events(0.0)
                if time.monotonic() >= self._next_poll:
                    self._poll()
            except BackendUnavailable as exc:
                self._lost(str(exc))
            except ProtocolError as exc:
                self._post("log", level="error", text=str(exc))
        if not busy:
            self._sleep(BUSY_EVENT_WAIT if self.streams else IDLE_EVENT_WAIT)

    def _sleep(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for a message from the backend or a ``call`` (wake-up socket)."""
        import zmq

        poller = zmq.Poller()
        poller.register(self._wake_r, zmq.POLLIN)
        sockets = getattr(self.client, "_sockets", None) or {}  # the Client's shell and events sockets
        for channel in ("shell", "events"):
            if channel in sockets:
                poller.register(sockets[channel], zmq.POLLIN)
        try:
            ready = dict(poller.poll(timeout * 1000))
        except zmq.ZMQError:  # a socket closed under us (reconnect): go round again
            return
        if self._wake_r.fileno() in ready or self._wake_r in ready:
            with contextlib.suppress(OSError):
                while self._wake_r.recv(4096):
                    pass

    def _connect(self) -> None:
        from .protocol.client import Client

        if not self._failed_before:
            self._post("status", state="connecting", message=f"connecting with {self.connection_file}")
        try:
            if not self.connection_file.is_file():
                raise BackendUnavailable(
                    f"no connection file at {self.connection_file}: start the backend "
                    "(`emo-avatar serve`) or use 'Start local backend'"
                )
            client = Client.from_connection_file(
                self.connection_file, timeout=self.timeout, retries=self.retries, name=self.client_name
            )
            try:
                hello = client.hello()
            except Exception:
                client.close()
                raise
        except ProtocolError as exc:
            self._next_connect = time.monotonic() + self.retry_interval
            self._failed_before = True
            self._post(
                "status", state="unavailable", message=f"{exc} (retrying every {self.retry_interval:g} s)"
            )
            return
        self._failed_before = False
        self._hello = hello
        self.client = client
        self._restarts = client.restarts
        warning, fatal = version_warning(hello.get("proto", "?"))
        if fatal:
            self._close_client()
            self._want_connected = False
            self._post("status", state="error", message=warning)
            return
        self._post("status", state="connected", message=warning or "", hello=hello)
        self._refresh()
        for stream in self.streams.values():  # resume after a reconnect
            stream.gen = None

    def _close_client(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception:  # closing must not raise
                log.debug("closing the client failed", exc_info=True)
            self.client = None

    def _lost(self, message: str) -> None:
        self._close_client()
        self._next_connect = time.monotonic() + self.retry_interval
        for stream in self.streams.values():
            stream.gen = None
        self._post("status", state="unavailable", message=f"lost the backend: {message}; retrying")

    def _refresh(self) -> None:
        jobs = self.client.jobs()
        subjects = self.client.subjects()
        self._post("jobs", jobs=jobs)
        self._post("subjects", subjects=subjects)

    def _poll(self) -> None:
        self._next_poll = time.monotonic() + self.poll_interval
        status = self.client.status()
        if self.client.restarts != self._restarts:
            self._restarts = self.client.restarts
            self._post(
                "status",
                state="connected",
                message="backend restarted; job list refreshed",
                instance_id=status.get("instance_id"),
            )
            for stream in self.streams.values():
                stream.gen = None
            self._refresh()
        else:
            self._post("server", **status)
            if any(not s.quiet for s in self.streams.values()):
                self._post("jobs", jobs=self.client.jobs())

    def _forward_events(self, timeout: float) -> None:
        final = False
        for n, msg in enumerate(self.client.events(timeout=timeout)):
            self._post("event", msg_type=msg.msg_type, content=dict(msg.content))
            if msg.msg_type == "job_state":
                job_id, state = msg.content.get("job_id"), msg.content.get("state")
                stream = self.streams.get(job_id)
                if stream is not None and not stream.started and state != "queued":
                    stream.next_check = 0.0  # left the queue: ask for its frames now, not at the next poll
                if state in ("done", "failed", "cancelled"):
                    if job_id in self._quiet:
                        self._quiet.discard(job_id)  # a preview: not in the job list
                    else:
                        final = True
            if n >= 100:  # let commands and frames run; the rest comes next round
                break
        if final:
            self._post("jobs", jobs=self.client.jobs())

    def _run_commands(self) -> bool:
        ran = False
        while True:
            try:
                rid, op, kwargs = self.inbox.get_nowait()
            except queue.Empty:
                return ran
            ran = True
            if op == "connect":
                self._want_connected = True
                self._next_connect = 0.0
                self._failed_before = False
                for name in ("timeout", "retries"):
                    if kwargs.get(name) is not None:
                        setattr(self, name, kwargs[name])
                if kwargs.get("connection_file") and Path(kwargs["connection_file"]) != self.connection_file:
                    self.connection_file = Path(kwargs["connection_file"])
                    self._close_client()
                if self.client is None:
                    self._connect()
                elif self._hello is not None:  # already connected (e.g. after a file load): say so again
                    self._post("status", state="connected", message="", hello=self._hello)
                self._post("done", rid)
                continue
            if op == "disconnect":
                self._want_connected = False
                self._close_client()
                self._post("status", rid, state="disconnected", message="disconnected")
                continue
            if self.client is None:
                self._post("done", rid, error="not connected to a backend: press Connect (or start one)")
                continue
            try:
                data = self._dispatch(op, kwargs)
            except BackendUnavailable as exc:
                self._post("done", rid, error=str(exc))
                self._lost(str(exc))
            except (ProtocolError, OSError, ValueError) as exc:
                self._post("done", rid, error=str(exc))
            else:
                self._post("done", rid, **data)

    def _dispatch(self, op: str, kw: dict[str, Any]) -> dict[str, Any]:
        c = self.client
        if op == "refresh":
            self._refresh()
            return {}
        if op == "jobs_raw":
            return {"jobs": c.jobs()}
        if op == "subject":
            return {"subject": c.subject(kw["subject_id"])}
        if op == "submit":
            sent = time.monotonic()
            if kw.get("quiet") and kw.get("job_id"):
                self._quiet.add(kw["job_id"])
            job_id = c.submit(kw["kind"], kw["params"], kw.get("buffers"), job_id=kw.get("job_id"))
            stamps = {"t_sent": sent, "t_accepted": time.monotonic()}
            stream = kw.get("stream")
            if stream:
                memory = bool(stream.get("memory"))
                self.streams[job_id] = Stream(
                    job_id=job_id,
                    folder=Path(stream.get("folder") or "."),
                    prefix=stream.get("prefix") or "",
                    frame_start=int(stream["frame_start"]),
                    total=int(stream["total"]),
                    submission={"kind": kw["kind"], "params": kw["params"], "buffers": kw.get("buffers")},
                    memory=memory,
                    started=memory,  # a preview frame is waited for at once (never queued long)
                    quiet=bool(kw.get("quiet")),
                )
            if not kw.get("quiet"):
                self._post("jobs", jobs=c.jobs())
            return {"job_id": job_id, **stamps}
        if op == "attach":
            # frames of a render that finished (or runs) without this Blender: stream them again
            self.streams[kw["job_id"]] = Stream(
                job_id=kw["job_id"],
                folder=Path(kw["folder"]),
                prefix=kw["prefix"],
                frame_start=int(kw["frame_start"]),
                total=int(kw["total"]),
            )
            return {"job_id": kw["job_id"]}
        if op == "track":
            upload_id = c.upload(kw["path"])
            params = {"subject_id": kw["subject_id"], "upload_id": upload_id, **kw.get("params", {})}
            job_id = c.submit("track", params)
            self._post("jobs", jobs=c.jobs())
            return {"job_id": job_id}
        if op == "cancel":
            state = c.cancel(kw["job_id"])
            stream = self.streams.pop(kw["job_id"], None)
            if stream is not None:
                self._post(
                    "stream_end", job_id=stream.job_id, state="cancelled", received=sorted(stream.received)
                )
            self._post("jobs", jobs=c.jobs())
            return {"job_id": kw["job_id"], "state": state}
        if op == "shutdown":
            c.shutdown(kw.get("reason", "asked by Blender"))
            return {}
        raise ValueError(f"unknown I/O operation {op!r}")

    def _advance_streams(self) -> bool:
        """Receive the frames that arrived for each stream (waiting at most a few ms in all, so
        commands such as a cancel or a stop are never held up); True when any arrived."""
        got = False
        for job_id in list(self.streams):
            stream = self.streams.get(job_id)
            if stream is None:
                continue
            if not stream.started:
                # Frame credit is granted only once the job left the queue (a render queued
                # behind a long training job must not keep asking for frames).
                if time.monotonic() < stream.next_check:
                    continue
                stream.next_check = time.monotonic() + self.poll_interval
                job = self.client.status(job_id).get("job") or {}
                if job.get("state") == "queued":
                    continue
                stream.started = True
            if stream.gen is None:
                start = 0
                while start in stream.received:
                    start += 1
                stream.gen = self.client.frame_stream(
                    job_id, credit=self.credit, start=start, timeout=self.poll_interval
                )
            try:
                frames = stream.gen.poll(0.0)  # the loop's sleep waits for frames (see _sleep)
            except RemoteError as exc:
                remote = getattr(exc, "remote_ename", "")
                if remote == "JobInterrupted" and stream.submission and stream.resubmits < MAX_RESUBMITS:
                    # The backend stopped while rendering: the job id is an idempotency key, so the
                    # same submission queues it again and it continues from the frames on disk.
                    stream.resubmits += 1
                    stream.gen = None
                    stream.started = False
                    s = stream.submission
                    self.client.submit(s["kind"], s["params"], s["buffers"], job_id=job_id)
                    self._post(
                        "log",
                        level="warning",
                        text=f"render {job_id[:8]} was interrupted by a backend "
                        f"restart; resubmitted (attempt {stream.resubmits})",
                    )
                    continue
                del self.streams[job_id]
                self._quiet.discard(job_id)
                state = "cancelled" if remote == "JobCancelled" else "failed"
                self._post(
                    "stream_end", job_id=job_id, state=state, error=str(exc), received=sorted(stream.received)
                )
                continue
            for index, image in frames:
                if not self._deliver(stream, int(index), image):
                    break
                got = True
            if job_id in self.streams and stream.gen.done:
                del self.streams[job_id]
                self._post("stream_end", job_id=job_id, state="done", received=sorted(stream.received))
        return got

    def _deliver(self, stream: Stream, index: int, image: Any) -> bool:
        """Hand one frame on (to disk, or as pixels for a memory stream); False if the stream ended."""
        frame = stream.frame_start + index
        stream.received.add(index)
        if stream.memory:
            self._post(
                "frame",
                job_id=stream.job_id,
                index=index,
                frame=frame,
                image=image,
                count=len(stream.received),
                total=stream.total,
                t_received=time.monotonic(),
            )
            return True
        path = stream.folder / frame_filename(stream.prefix, frame)
        try:
            data = image if isinstance(image, bytes) else encode_png(np.asarray(image))
            atomic_write_bytes(path, data)
        except OSError as exc:
            stream.received.discard(index)
            self.streams.pop(stream.job_id, None)
            self._post(
                "stream_end",
                job_id=stream.job_id,
                state="failed",
                error=f"cannot write {path}: {exc.strerror or exc}",
                received=sorted(stream.received),
            )
            return False
        self._post(
            "frame",
            job_id=stream.job_id,
            index=index,
            frame=frame,
            path=str(path),
            count=len(stream.received),
            total=stream.total,
        )
        return True
