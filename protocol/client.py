"""Client of the backend service, used by the Blender add-on and by scripts.

Sockets (no REQ: a lost reply never wedges a DEALER):
- ``shell``   DEALER: requests and their replies, and ``frame`` messages for jobs this client
  gave credit to;
- ``control`` DEALER: ``job_cancel`` and ``shutdown`` (answered even while shell is busy);
- ``events``  SUB: ``status``, ``job_progress``, ``job_state``, ``log`` notices (may drop).

Every request waits ``timeout`` seconds for the reply whose ``parent_header.msg_id`` matches;
on timeout the DEALER is closed and reopened and the request re-sent (Lazy Pirate), at most
``retries`` times, then :class:`BackendUnavailable`. Requests are safe to repeat: ``submit``
always sends a ``job_id`` (idempotency key). Before each reopen the connection file is re-read
(a restarted backend may have new ports and key). A changed ``instance_id`` in a hello/status
reply or a ``status`` event means the backend restarted: the client reconnects all sockets,
counts it in ``restarts`` and ``frames()`` re-grants credit from the first missing frame.

Thread safety: one :class:`Client` belongs to one thread (the add-on's I/O thread); ZeroMQ
sockets must not be shared between threads.

Frames: ``frames(job_id)`` (blocking generator) or ``frame_stream(job_id).poll(timeout)``
(non-blocking, for an I/O loop that serves other requests meanwhile) give ``(index, image)``:
``image`` is a read-only uint8 H x W x 3 array for ``raw`` frames and the PNG file bytes for
``png`` frames (decoding PNG needs an image library the protocol must not depend on; Blender
loads PNG files natively).
"""

from __future__ import annotations

import collections
import logging
import os
import time
import uuid
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from .buffers import verify_checksum
from .connection import ConnectionInfo
from .envelope import DEFAULT_MAX_MESSAGE_BYTES, Message, Session, configure_socket
from .errors import (
    BackendUnavailable,
    BufferSpecError,
    ProtocolError,
    RemoteError,
    SignatureError,
    VersionError,
)
from .limits import MAX_CREDIT_BYTES
from .link import secure_client_socket
from .messages import FINAL_JOB_STATES, is_error, reply_type

log = logging.getLogger(__name__)

UPLOAD_CHUNK_BYTES = 4 * 1024 * 1024
EVENT_BACKLOG = 1000
"""Events seen while waiting for replies are kept (newest ``EVENT_BACKLOG``) for ``events()``."""


class Client:
    """Talks to one backend described by a :class:`ConnectionInfo` (see the module doc).

    Args:
        info: connection info (or use :meth:`from_connection_file`).
        timeout: seconds to wait for each reply attempt.
        retries: re-sends after a timeout before :class:`BackendUnavailable`.
        name: client name sent in ``hello``.
        connection_file: re-read on reconnect when given.
    """

    def __init__(self, info: ConnectionInfo, *, timeout: float = 10.0, retries: int = 2,
                 name: str = "emo-avatar-client", connection_file: str | os.PathLike[str] | None = None,
                 context: zmq.Context | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.info = info
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.name = name
        self.connection_file = Path(connection_file) if connection_file is not None else None
        self.max_message_bytes = max_message_bytes
        self.context = context or zmq.Context.instance()
        self.session = Session(info.key_bytes, max_message_bytes=max_message_bytes,
                               checksum=info.buffer_checksum)
        self.instance_id: str | None = None  # learnt from the first hello / status reply
        self.restarts = 0
        self._events: collections.deque[Message] = collections.deque(maxlen=EVENT_BACKLOG)
        self._frames: dict[str, collections.deque[Message]] = collections.defaultdict(collections.deque)
        self._async_errors: list[Message] = []
        self._sockets: dict[str, zmq.Socket] = {}
        self._closed = False
        self.bad_signatures = 0
        self._open_all()

    @classmethod
    def from_connection_file(cls, path: str | os.PathLike[str], timeout: float = 10.0,
                             **kwargs: Any) -> Client:
        """Client for the backend whose ``emo-avatar serve`` wrote ``path``."""
        return cls(ConnectionInfo.load(path), timeout=timeout, connection_file=path, **kwargs)

    # -- sockets ----------------------------------------------------------------------------------
    def _open(self, channel: str) -> zmq.Socket:
        old = self._sockets.pop(channel, None)
        if old is not None:
            old.close(linger=0)
        sock = self.context.socket(zmq.SUB if channel == "events" else zmq.DEALER)
        configure_socket(sock, self.max_message_bytes)
        secure_client_socket(sock, self.info)
        if channel == "events":
            sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(self.info.url(channel))
        self._sockets[channel] = sock
        return sock

    def _open_all(self) -> None:
        for channel in ("shell", "control", "events"):
            self._open(channel)

    def _reload_info(self) -> None:
        """Re-read the connection file (a restarted backend may have new ports / key)."""
        if self.connection_file is None:
            return
        try:
            info = ConnectionInfo.load(self.connection_file)
        except ProtocolError as exc:
            log.warning("keeping the old connection info: %s", exc)
            return
        if info.key != self.info.key or info.buffer_checksum != self.info.buffer_checksum:
            self.session = Session(info.key_bytes, max_message_bytes=self.max_message_bytes,
                                   checksum=info.buffer_checksum)
        if info != self.info:
            self.info = info
            self._open_all()

    def close(self) -> None:
        """Close the sockets (idempotent). The context is left to its owner."""
        for sock in self._sockets.values():
            sock.close(linger=0)
        self._sockets.clear()
        self._closed = True

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- receiving --------------------------------------------------------------------------------
    def _recv_any(self, channels: tuple[str, ...], timeout: float) -> tuple[str, Message] | None:
        """Next well-formed message from ``channels`` within ``timeout`` s (bad ones are logged)."""
        deadline = time.monotonic() + timeout
        poller = zmq.Poller()
        for ch in channels:
            poller.register(self._sockets[ch], zmq.POLLIN)
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            ready = dict(poller.poll(remaining * 1000))
            for ch in channels:
                sock = self._sockets[ch]
                if ready.get(sock, 0) & zmq.POLLIN:
                    try:
                        msg = self.session.recv(sock, flags=zmq.NOBLOCK)
                    except zmq.Again:
                        continue
                    except VersionError:
                        raise  # actionable: the add-on and backend versions must match
                    except ProtocolError as exc:
                        if isinstance(exc, SignatureError):
                            self.bad_signatures += 1
                        log.warning("dropped a bad message on %s: %s: %s", ch, exc.ename, exc)
                        continue
                    if ch == "events":
                        self._note_event(msg)
                    return ch, msg
            if time.monotonic() >= deadline:
                return None

    def _note_event(self, msg: Message) -> None:
        if msg.msg_type == "status":
            self._check_instance(msg.content.get("instance_id"))

    def _check_instance(self, instance_id: str | None) -> None:
        if not instance_id:
            return
        if self.instance_id is not None and instance_id != self.instance_id:
            log.warning("backend restarted (instance %s -> %s); reconnecting", self.instance_id, instance_id)
            self.restarts += 1
            self.instance_id = instance_id
            self._reload_info()
            self._open_all()
        self.instance_id = instance_id

    def _stash(self, msg: Message) -> None:
        """Keep a message that is not the reply being waited for."""
        if msg.msg_type == "frame":
            self._frames[msg.content["job_id"]].append(msg)
        elif msg.msg_type == "frames_credit_reply" and is_error(msg.content):
            self._async_errors.append(msg)
        elif msg.msg_type in ("status", "job_progress", "job_state", "log"):
            self._events.append(msg)
        else:
            log.debug("ignored %s (not awaited; a late reply after a retry?)", msg.msg_type)

    # -- requests ---------------------------------------------------------------------------------
    def request(self, msg_type: str, content: Mapping[str, Any] | None = None, *,
                buffers: Mapping[str, np.ndarray] | None = None, channel: str = "shell",
                timeout: float | None = None, retries: int | None = None) -> Message:
        """Send a request and return its ``ok`` reply (Lazy Pirate; see the module doc).

        Raises :class:`RemoteError` for an error reply, :class:`BackendUnavailable` when no reply
        came after ``retries`` re-sends.
        """
        if self._closed:
            raise ProtocolError("this Client is closed; create a new one")
        timeout = self.timeout if timeout is None else timeout
        retries = self.retries if retries is None else retries
        expected = reply_type(msg_type)
        self.bad_signatures = 0
        for attempt in range(retries + 1):
            frames, header = self.session.build(msg_type, content, None, buffers, None, True, None)
            try:
                self._sockets[channel].send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                log.warning("%s: send queue full; reconnecting", msg_type)
            else:
                deadline = time.monotonic() + timeout
                while (remaining := deadline - time.monotonic()) > 0:
                    got = self._recv_any((channel, "events"), remaining)
                    if got is None:
                        break
                    ch, msg = got
                    if ch == channel and msg.parent_header.get("msg_id") == header["msg_id"]:
                        return self._handle_reply(msg, expected)
                    self._stash(msg)
            log.warning("no %s within %.1f s (attempt %d of %d); reopening the %s socket",
                        expected, timeout, attempt + 1, retries + 1, channel)
            self._reload_info()
            self._open(channel)
        hint = (f"{self.bad_signatures} answer(s) had a bad signature: the connection file's key is stale "
                "(the backend was restarted with a new file?)" if self.bad_signatures
                else "is `emo-avatar serve` running with this connection file?")
        raise BackendUnavailable(
            f"the backend did not answer {msg_type} on {self.info.url(channel)} after {retries + 1} attempts "
            f"of {timeout:.1f} s; {hint}")

    def _handle_reply(self, msg: Message, expected: str) -> Message:
        if is_error(msg.content):
            raise RemoteError(msg.msg_type, msg.content.get("ename", "Error"), msg.content.get("evalue", ""))
        if msg.msg_type != expected:
            raise ProtocolError(f"expected {expected} but the backend answered {msg.msg_type}")
        if "instance_id" in msg.content:
            self._check_instance(msg.content["instance_id"])
        return msg

    def hello(self) -> dict[str, Any]:
        """Handshake: server name, proto, instance_id, device, capabilities, job kinds."""
        return self.request("hello", {"client": self.name}).content

    def submit(self, kind: str, params: Mapping[str, Any], buffers: Mapping[str, np.ndarray] | None = None,
               job_id: str | None = None) -> str:
        """Submit a job and return its id (a fresh uuid unless ``job_id`` is given; resubmitting
        the same id returns the same job)."""
        job_id = job_id or uuid.uuid4().hex
        reply = self.request("job_submit", {"kind": kind, "params": dict(params), "job_id": job_id},
                             buffers=buffers)
        return reply.content["job_id"]

    def status(self, job_id: str | None = None) -> dict[str, Any]:
        """``job_status`` reply content: instance_id, job (record or None), queue, state."""
        return self.request("job_status", {"job_id": job_id}).content

    def jobs(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Job records the backend knows (its journal), oldest first: all of them, page by page
        (``job_list`` is paginated), or the first ``limit``."""
        out: list[dict[str, Any]] = []
        offset: int | None = 0
        while offset is not None and (limit is None or len(out) < limit):
            page = self.request("job_list", {"offset": offset}).content
            out.extend(page["jobs"])
            offset = page.get("next_offset")
        return out if limit is None else out[:limit]

    def cancel(self, job_id: str) -> str:
        """Ask to cancel ``job_id`` (control channel); returns the state it is now in."""
        return self.request("job_cancel", {"job_id": job_id}, channel="control").content["state"]

    def shutdown(self, reason: str = "") -> None:
        """Stop the backend (control channel)."""
        self.request("shutdown", {"reason": reason}, channel="control")

    def subjects(self) -> list[dict[str, Any]]:
        return self.request("subject_list").content["subjects"]

    def subject(self, subject_id: str) -> dict[str, Any]:
        """A subject's rig: subject_id, names, fps, meta + arrays neutral (V,3), deltas (K,V,3),
        uvs (V,2), triangles (F,3) int32 and, when tracked, expressions (T,K), pose (T,6), scale (T,)."""
        reply = self.request("subject_get", {"subject_id": subject_id})
        return {**reply.content, **reply.buffers}

    def upload(self, path: str | os.PathLike[str], chunk_bytes: int = UPLOAD_CHUNK_BYTES) -> str:
        """Send a file in chunks; returns the upload_id to use in a track job."""
        path = Path(path)
        total = path.stat().st_size
        upload_id = uuid.uuid4().hex
        crc = 0
        offset = 0
        with open(path, "rb") as f:
            while True:
                chunk = f.read(chunk_bytes)
                crc = zlib.crc32(chunk, crc)
                final = offset + len(chunk) >= total
                content: dict[str, Any] = {"upload_id": upload_id, "filename": path.name, "offset": offset,
                                           "total": total, "final": final}
                if final:
                    content["checksum"] = f"crc32:{crc & 0xFFFFFFFF:08x}"
                self.request("upload_chunk", content, buffers={"data": np.frombuffer(chunk, np.uint8)})
                offset += len(chunk)
                if final:
                    return upload_id

    # -- streams ----------------------------------------------------------------------------------
    def events(self, timeout: float = 1.0) -> Iterator[Message]:
        """Yield events (status, job_progress, job_state, log) until none arrives for ``timeout`` s.

        Events that came in while the client waited for replies are yielded first. PUB/SUB may
        drop events under load; poll ``status()`` for the truth.
        """
        while self._events:
            yield self._events.popleft()
        while True:
            got = self._recv_any(("events", "shell"), timeout)
            if got is None:
                return
            ch, msg = got
            if ch == "events":
                yield msg
            else:
                self._stash(msg)

    def frames(self, job_id: str, credit: int = 8, *, start: int = 0,
               timeout: float | None = None) -> Iterator[tuple[int, np.ndarray | bytes]]:
        """Stream a render job's frames: yields ``(index, image)`` (see the module doc).

        Blocks until the next frame; for a loop that must not block, use :meth:`frame_stream`.
        Grants ``credit`` frames at a time with ``frames_credit`` (topping up when half is used),
        verifies each frame's checksum, and ends when all ``total`` frames from ``start`` arrived.
        When nothing arrives for ``timeout`` s it asks ``job_status``: a failed, cancelled or
        interrupted job raises :class:`RemoteError` (``remote_ename`` JobFailed / JobCancelled /
        JobInterrupted); otherwise credit is granted again from the first missing frame (a
        restarted backend resumes the stream). Frames are never yielded twice.
        """
        stream = self.frame_stream(job_id, credit, start=start, timeout=timeout)
        while not stream.done:
            yield from stream.poll(stream.idle)

    def frame_stream(self, job_id: str, credit: int = 8, *, start: int = 0,
                     timeout: float | None = None) -> FrameStream:
        """A non-blocking :class:`FrameStream` of ``job_id`` (same rules as :meth:`frames`)."""
        return FrameStream(self, job_id, credit, start=start,
                           idle=self.timeout if timeout is None else timeout)

    def _next_frame(self, job_id: str, timeout: float) -> Message | None:
        """Next frame of ``job_id`` or job_state event about it, else None after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            if self._frames.get(job_id):
                return self._frames[job_id].popleft()
            if self._async_errors:
                err = self._async_errors.pop(0)
                raise RemoteError(err.msg_type, err.content["ename"], err.content["evalue"])
            got = self._recv_any(("shell", "events"), max(0.0, deadline - time.monotonic()))
            if got is None:
                return None
            _, msg = got
            if msg.msg_type == "frame" and msg.content["job_id"] == job_id:
                return msg
            if msg.msg_type == "job_state" and msg.content["job_id"] == job_id:
                self._events.append(msg)
                if msg.content["state"] in FINAL_JOB_STATES:
                    return msg
                continue
            if msg.msg_type == "frames_credit_reply" and not is_error(msg.content):
                continue
            self._stash(msg)


class FrameStream:
    """Credit-based reception of one render job's frames, polled without blocking.

    ``poll(timeout)`` returns the frames that arrived within ``timeout`` s (waiting at most
    that long, returning as soon as some are there) as ``[(index, image), ...]``; ``done`` is true
    once all ``total`` frames from ``start`` arrived (or the job finished without frames).
    Every ``idle`` s without a frame it checks ``job_status`` (raises :class:`RemoteError` for a
    failed / cancelled / interrupted job, re-grants credit from the first missing frame, e.g.
    after a backend restart). Use it from the Client's thread only.
    """

    def __init__(self, client: Client, job_id: str, credit: int = 8, *, start: int = 0,
                 idle: float = 10.0) -> None:
        self.client = client
        self.job_id = job_id
        self.credit = max(1, int(credit))
        self.start = int(start)
        self.idle = float(idle)
        self.received: set[int] = set()
        self.total: int | None = None
        self.done = False
        self._outstanding = 0
        self._frame_bytes = 0
        self._granted = False
        self._done_checks = 0
        self._last_activity = time.monotonic()

    def first_missing(self) -> int:
        i = self.start
        while i in self.received:
            i += 1
        return i

    def _grant(self, n: int) -> None:
        content = {"job_id": self.job_id, "credit": n, "start": self.first_missing()}
        try:
            self.client.session.send(self.client._sockets["shell"], "frames_credit", content,
                                     flags=zmq.NOBLOCK)
        except zmq.Again:  # queue full (backend gone): the idle check grants again later
            return
        self._outstanding += n

    def _credit_now(self) -> int:
        """Frames of credit to hold: ``credit``, clamped like the server clamps it to
        ``MAX_CREDIT_BYTES`` worth of frames once the frame size is known."""
        if self._frame_bytes <= 0:
            return self.credit
        return max(1, min(self.credit, MAX_CREDIT_BYTES // self._frame_bytes))

    def _complete(self) -> bool:
        return self.total is not None and len(self.received) >= self.total - self.start

    def poll(self, timeout: float = 0.0) -> list[tuple[int, np.ndarray | bytes]]:
        """Frames that arrived within ``timeout`` s (see the class doc)."""
        out: list[tuple[int, np.ndarray | bytes]] = []
        if self.done:
            return out
        if not self._granted:
            self._granted = True
            self._grant(self.credit)
        deadline = time.monotonic() + timeout
        while not self.done:
            wait = 0.0 if out else max(0.0, deadline - time.monotonic())
            msg = self.client._next_frame(self.job_id, wait)
            if msg is None:
                if not out and time.monotonic() - self._last_activity >= self.idle:
                    self._check_backend()
                return out
            if msg.msg_type == "job_state":
                _raise_if_unsuccessful(self.job_id, msg.content)
                continue
            self._last_activity = time.monotonic()
            index = int(msg.content["index"])
            if msg.content.get("total") is not None:
                self.total = int(msg.content["total"])
            self._frame_bytes = int(msg.buffers["image"].nbytes)
            self._outstanding = min(max(0, self._outstanding - 1), self._credit_now())
            if index not in self.received and index >= self.start:
                image = self._verified(msg)
                if image is not None:
                    self.received.add(index)
                    out.append((index, image))
            self.done = self._complete()
            credit = self._credit_now()
            if not self.done and self._outstanding <= credit // 2:
                self._grant(credit - self._outstanding)
        return out

    def _verified(self, msg: Message) -> np.ndarray | bytes | None:
        """The frame's image after its checksum holds, or None (not received: asked for again).

        A restarted backend signs with its new key, which this side learns by re-reading the
        connection file; so a mismatch re-reads it once before the frame is given up."""
        try:
            return _frame_image(msg, self.client.session.buffer_key)
        except BufferSpecError:
            self.client._reload_info()
        try:
            return _frame_image(msg, self.client.session.buffer_key)
        except BufferSpecError as exc:
            log.warning("%s; asking for it again", exc)
            return None

    def _check_backend(self) -> None:
        """Nothing for ``idle`` s: ask the backend (this also detects a restart)."""
        self._last_activity = time.monotonic()
        job = self.client.status(self.job_id).get("job") or {}
        _raise_if_unsuccessful(self.job_id, job)
        if job.get("state") == "done":
            self._done_checks += 1
            no_frames = (job.get("outputs") or {}).get("frame_count") == 0
            if self.total is None and (self._done_checks > 1 or no_frames):
                self.done = True
                return
            if self._done_checks > self.client.retries + 1:
                raise ProtocolError(f"job {self.job_id} is done but frames from {self.first_missing()} never "
                                    f"arrived ({len(self.received)} of {self.total} received)")
        self._outstanding = 0  # credit may be lost (restart): grant again from the first missing frame
        self._grant(self._credit_now())


def _raise_if_unsuccessful(job_id: str, record: Mapping[str, Any]) -> None:
    state = record.get("state")
    if state in ("failed", "cancelled", "interrupted"):
        raise RemoteError("frames", f"Job{str(state).capitalize()}",
                          record.get("error") or f"job {job_id} is {state}")


def _frame_image(msg: Message, key: bytes) -> np.ndarray | bytes:
    """Verify a frame's checksum; raw -> read-only (H, W, 3) uint8 array, png -> file bytes."""
    image = msg.buffers["image"]
    verify_checksum(memoryview(np.ascontiguousarray(image)).cast("B"), msg.content["checksum"], key,
                    what=f"frame {msg.content['index']} of job {msg.content['job_id']}")
    if msg.content["encoding"] == "png":
        return image.tobytes()
    if image.ndim != 3 or image.shape[2] != 3:
        raise ProtocolError(f"raw frame has shape {image.shape}; expected (H, W, 3)")
    return image


__all__ = ["Client", "FrameStream"]
