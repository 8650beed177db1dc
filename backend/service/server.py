"""The ZeroMQ backend service: one I/O thread owns the sockets, one worker thread computes.

Sockets (ports and key in the connection file, mode 0600)::

    shell   ROUTER  hello, job_submit, job_status, job_list, frames_credit, subject_list,
                    subject_get, upload_chunk  -> replies; `frame` messages to the asking client
    control ROUTER  job_cancel, shutdown (and the shell requests, so status works while shell is busy)
    events  PUB     status heartbeats, job_state, job_progress, log (notices only, never frames)

A connection is admitted in the ZeroMQ handshake (``zap.ZapHandler``: PLAIN with the derived
link password, or CURVE with an allow-listed client key), so an outsider cannot make the server
buffer anything. Every message is then checked by ``protocol.envelope.Session``: frame count and
dict sizes, then the HMAC, then (authenticated) size, bounds, replay, schema and buffers.

- A message that fails before its signature is verified is **dropped unanswered** and counted
  in ``unauthenticated``.
- Every authenticated message gets exactly one reply: its result, or an error naming what was
  wrong. Handlers run inside the same ``try`` that sends their reply; a reply that cannot be
  built becomes an error reply; a last-resort handler around each message and each loop step
  logs and counts (``internal_errors``) anything else, so the loop never dies of a request.
- The I/O thread does linear-time work only, and none that reads every buffer byte. Slow request
  work (a job submission's buffer checksums, value scans, preparation and journal row; an upload
  chunk's checksum and write) runs on the intake thread (``intake.Intake``), whose continuation
  sends the reply from the I/O thread. The intake also frees big messages (``release``). Other
  requests have no buffers in the message table: buffers sent with them are dropped unread (their
  checksums unverified: nothing reads those bytes).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import signal
import socket as pysocket
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from backend import paths
from backend.service import journal as J
from backend.service.events import Outbox
from backend.service.intake import Intake
from backend.service.jobs import JobError, JobKind, JobManager, ServiceEnv
from backend.service.lock import WorkdirBusyError, WorkdirLock
from backend.service.sandbox import ReadPolicy, SandboxError, check_id, inside
from backend.service.streams import FrameStream, StreamTable
from backend.service.uploads import Uploads
from protocol import PROTOCOL_VERSION
from protocol.buffers import compute_checksum
from protocol.connection import buffer_checksum, is_loopback_ip
from protocol.envelope import PROTO, Message, Session
from protocol.errors import ProtocolError
from protocol.keys import link_password
from protocol.limits import DEFAULT_MAX_MESSAGE_BYTES, JOB_LIST_PAGE
from protocol.link import ZapHandler, secure_server_socket
from protocol.messages import reply_type, scan_values
from protocol.replay import ReplayGuard

log = logging.getLogger(__name__)

SERVER_NAME = "emo-avatar-studio backend 0.2"
HEARTBEAT_SECONDS = 1.0
SHELL_SNDHWM = 1000
"""Messages ZeroMQ may queue per peer. Frames are bounded far below by credit (streams.MAX_CREDIT);
a reply that finds the queue full is dropped and counted (the client's Lazy-Pirate retry resends)."""
RCVHWM = 8
"""Complete messages libzmq may queue per admitted peer before it stops reading that peer's
connection (a client has one request in flight, plus its frames_credit notes)."""
MAX_BATCH = 256
"""Messages taken from one socket per loop iteration (so no socket starves the others)."""
SHELL_ONLY_ON_CONTROL = ("shutdown",)
SLOW_REQUESTS = ("job_submit", "upload_chunk")
"""Requests whose work runs on the intake thread (their reply follows when it is done)."""
RETENTION_SWEEP_SECONDS = 600.0
"""How often finished jobs' stored inputs are checked against ``retain_inputs_hours``."""
ZMQ_IO_THREADS = 2
"""libzmq's own I/O threads. With one, a hello's bytes wait behind a 511 MiB message that the
same thread is reading from another connection: on 2 busy cores (load average 3.5-4.9), rounds
of a maximal submit gave worst hellos of 14-88 ms (median 1.9-5.7 ms) with one thread and 8-23
ms (median 1.2-2.0 ms) with two, 12 rounds each, interleaved. Connections are spread over them."""
RELEASE_OFF_THREAD_BYTES = 4 << 20
"""Messages at least this big are freed on the intake thread (``Server._release``)."""


@dataclass
class ServerConfig:
    """Everything ``emo-avatar serve`` can set."""

    workdir: Path
    ip: str = "127.0.0.1"
    connection_file: Path | None = None
    device: str | None = None
    compile: bool = False
    allow_read: list[Path] = field(default_factory=list)
    insecure: bool = False
    resume_jobs: bool = False
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    heartbeat: float = HEARTBEAT_SECONDS
    max_active_jobs: int = 64
    """Queued + running jobs at once; a submission beyond it gets ``QuotaExceeded``."""
    max_open_uploads: int = 16
    """Unfinished uploads at once; a new upload beyond it gets ``QuotaExceeded``."""
    retain_inputs_hours: float = 72.0
    """Finished jobs' stored inputs (``jobs/<id>/``) are deleted after this many hours."""
    ageing_seconds: float = 60.0
    """A queued compute job gains one priority level per this many seconds of waiting."""
    train_procs: int = 1
    """Train jobs run in this many processes (torchrun, DDP) when > 1; checked by ``ddp.check_launch``."""


class _EventLogHandler(logging.Handler):
    """Forwards the work modules' log records (INFO and up, ``backend.*`` outside the service) as
    ``log`` events, tagged with the running job, so the add-on shows e.g. fallback warnings."""

    def __init__(self, server: Server) -> None:
        super().__init__(logging.INFO)
        self.server = server
        self.levels = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning"}

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("backend.") or record.name.startswith("backend.service"):
            return
        try:
            content = {"level": self.levels.get(record.levelno, "error"), "text": record.getMessage()[:2000],
                       "logger": record.name}
            job = self.server.manager.running_job if hasattr(self.server, "manager") else None
            if job:
                content["job_id"] = job
            self.server.outbox.event("log", content)
        except Exception:
            self.handleError(record)


class ServerError(RuntimeError):
    """The server cannot start as configured (message says why and what to do)."""


class Server:
    """The backend service. ``bind()`` then ``serve_forever()`` (or ``start()`` in a thread)."""

    def __init__(self, config: ServerConfig, kinds: dict[str, JobKind] | None = None) -> None:
        self.config = config
        self.workdir = Path(config.workdir).expanduser().resolve()
        _private_dir(self.workdir)
        self.lock = WorkdirLock(self.workdir)
        self.lock.acquire()  # before anything else in the workdir is touched
        for sub in (paths.workdir_subjects, paths.workdir_renders, paths.workdir_uploads):
            _private_dir(sub(self.workdir))
        self.connection_file = Path(config.connection_file or self.workdir / paths.CONNECTION_FILE_NAME)
        self.instance_id = uuid.uuid4().hex
        self.started = time.time()
        self.rejected = 0
        """Authenticated messages refused by a protocol check (each got an error reply): while
        decoding, or on the intake thread (buffer checksums, value scans)."""
        self.unauthenticated = 0
        """Messages dropped unanswered: no valid signature (or not even an envelope)."""
        self.internal_errors = 0
        """Exceptions caught by the last-resort handlers (logged with a traceback)."""
        self.error_replies = 0
        self.dropped_replies = 0
        self.device_name = config.device or "auto"
        self._stop = threading.Event()
        self.started_up = threading.Event()
        """Set once the start-up import of torch is done (state ``starting`` until then)."""
        self._io_thread: threading.Thread | None = None
        if kinds is None:
            from backend.service.kinds import default_kinds

            kinds = default_kinds()
        self.kinds = kinds
        self.env = ServiceEnv(self.workdir, device=config.device, read_policy=ReadPolicy(config.allow_read),
                              compile=config.compile, train_procs=config.train_procs)
        self.uploads = Uploads(paths.workdir_uploads(self.workdir), max_open=config.max_open_uploads)
        self.curve_public: str | None = None
        self.context: zmq.Context | None = None
        self.zap: ZapHandler | None = None

    # -- setup --------------------------------------------------------------------------------
    def bind(self) -> Path:
        """Bind the sockets, open the journal, start the worker, write the connection file."""
        from protocol.connection import ConnectionInfo

        ip = self.config.ip
        if not is_loopback_ip(ip) and self.config.insecure:
            log.warning("binding %s WITHOUT encryption (--insecure): anyone on the network who can read "
                        "the traffic sees frames and curves; the HMAC key still guards every request", ip)
        previous = self._previous_connection(ConnectionInfo)
        key = secrets.token_hex(32)  # a new key on every start: nothing signed before verifies now
        use_curve = not is_loopback_ip(ip) and not self.config.insecure
        self.encrypted = use_curve
        self.session = Session(key.encode("ascii"), max_message_bytes=self.config.max_message_bytes,
                               checksum=buffer_checksum(is_loopback_ip(ip), use_curve),
                               replay_guard=ReplayGuard())
        # a frame's image is covered by the checksum in its (signed) content: see _send_frame
        self.frame_session = Session(key.encode("ascii"), session_id=self.session.session_id,
                                     max_message_bytes=self.config.max_message_bytes, checksum="none")
        self.context = zmq.Context(io_threads=ZMQ_IO_THREADS)
        client_keys: tuple[str, str] | None = None
        allowed = list(previous.allowed_client_keys) if previous is not None else []
        if use_curve:
            self._load_curve_keys()
            client_public, client_secret = zmq.curve_keypair()
            client_keys = (client_public.decode("ascii"), client_secret.decode("ascii"))
            self.zap = ZapHandler(self.context, password=None,
                                  curve_keys={client_public, *(k.encode("ascii") for k in allowed)})
            log.info("binding %s with CURVE encryption (server public key in the connection file; "
                     "%d client key(s) allowed)", ip, 1 + len(allowed))
        else:
            self.zap = ZapHandler(self.context, password=link_password(key.encode("ascii")))
        self.shell = self._router(use_curve)
        self.control = self._router(use_curve)
        self.events = self.context.socket(zmq.PUB)
        self.events.setsockopt(zmq.LINGER, 0)
        self.events.setsockopt(zmq.SNDHWM, 10_000)
        self._secure(self.events, use_curve)
        ports = self._bind_all(ip, previous)
        self.lock.record(ip=ip, ports=list(ports))
        self.outbox = Outbox(self.context, self.instance_id)
        self.intake = Intake(self.outbox.put, max_pending_bytes=2 * self.config.max_message_bytes)
        self.streams = StreamTable(self._send_frame)
        self.journal = J.Journal(self.workdir / paths.JOURNAL_NAME)
        self.manager = JobManager(self.journal, self.kinds, self.env, self.outbox.event,
                                  self._frame_from_worker, max_active=self.config.max_active_jobs,
                                  ageing_seconds=self.config.ageing_seconds)
        requeued = self.manager.start(requeue_interrupted=self.config.resume_jobs)
        for job_id in requeued:
            log.info("resuming job %s (--resume-jobs)", job_id)
            self._reopen_stream_if_render(job_id)
        self._log_handler = _EventLogHandler(self)
        logging.getLogger("backend").addHandler(self._log_handler)
        self._resolve_device_async()
        info = ConnectionInfo(shell_port=ports[0], control_port=ports[1], events_port=ports[2], key=key,
                              ip=ip, transport="tcp", instance_id=self.instance_id, pid=os.getpid(),
                              server_public_key=self.curve_public, proto=PROTO,
                              client_public_key=client_keys[0] if client_keys else None,
                              client_secret_key=client_keys[1] if client_keys else None,
                              allowed_client_keys=allowed)
        info.write(self.connection_file)
        self._next_sweep = 0.0
        log.info("backend %s listening on %s (shell %d, control %d, events %d)", self.instance_id, ip, *ports)
        return self.connection_file

    def _previous_connection(self, connection_info_cls: Any) -> Any:
        """The ports (and CURVE allow-list) of an existing connection file, reused when free."""
        if not self.connection_file.is_file():
            return None
        try:
            info = connection_info_cls.load(self.connection_file)
        except (ProtocolError, OSError, ValueError) as exc:
            log.warning("ignoring unreadable connection file %s: %s", self.connection_file, exc)
            return None
        if info.ip != self.config.ip:
            return None
        return info

    def _router(self, curve: bool) -> zmq.Socket:
        assert self.context is not None
        sock = self.context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.SNDHWM, SHELL_SNDHWM)
        sock.setsockopt(zmq.RCVHWM, RCVHWM)
        # libzmq's per-frame cap: no buffer can be larger than the message that holds it; a bigger
        # frame makes libzmq drop the connection
        sock.setsockopt(zmq.MAXMSGSIZE, self.config.max_message_bytes)
        self._secure(sock, curve)
        return sock

    def _secure(self, sock: zmq.Socket, curve: bool) -> None:
        """Make ``sock`` ask the ZAP handler about every connection (PLAIN or CURVE server)."""
        secure_server_socket(sock, self._curve_keys if curve else None)

    def _load_curve_keys(self) -> None:
        import zmq.auth

        keys = self.workdir / "curve"
        secret = keys / "server.key_secret"
        if not secret.is_file():
            _private_dir(keys)
            zmq.auth.create_certificates(str(keys), "server")
        public, secret_key = zmq.auth.load_certificate(str(secret))
        self._curve_keys = (public, secret_key)
        self.curve_public = public.decode("ascii")

    def _bind_all(self, ip: str, previous: Any) -> tuple[int, int, int]:
        socks = (self.shell, self.control, self.events)
        host = f"[{ip}]" if ":" in ip else ip
        if previous is not None:
            try:
                wanted = (previous.shell_port, previous.control_port, previous.events_port)
                for s, port in zip(socks, wanted, strict=True):
                    s.bind(f"tcp://{host}:{port}")
                return wanted
            except zmq.ZMQError as exc:
                log.warning("ports of %s are taken (%s); choosing new ones", self.connection_file, exc)
                for s in socks:
                    with contextlib.suppress(zmq.ZMQError):
                        s.unbind(s.last_endpoint)
        try:
            return tuple(s.bind_to_random_port(f"tcp://{host}") for s in socks)  # type: ignore[return-value]
        except zmq.ZMQError as exc:
            raise ServerError(f"cannot bind {ip}: {exc}") from None

    def _resolve_device_async(self) -> None:
        requested = self.config.device

        def resolve() -> None:
            try:
                from backend.device import pick_device

                dev = pick_device(requested)
                self.device_name = str(dev)
                self.env.device = str(dev)
            except Exception as exc:
                log.error("device %r unusable: %s", requested, exc)
                self.outbox.event("log", {"level": "error", "text": f"device {requested!r} unusable: {exc}",
                                          "logger": "server"})
            try:  # jobs import these themselves if this fails: it only saves the first job the wait
                _import_request_modules()
                _freeze_start_up_objects()
            except Exception as exc:
                log.error("start-up import failed (the first job imports again): %s", exc)
            finally:
                self.started_up.set()

        if requested in (None, "", "auto", "cpu"):
            # no CUDA to verify: answer at once and import torch in the background, so the first
            # job does not pay for it and the sockets are up in well under a second
            threading.Thread(target=resolve, name="emo-device", daemon=True).start()
        else:
            resolve()  # an explicit CUDA device must exist before we accept jobs for it

    # -- running ------------------------------------------------------------------------------
    def serve_forever(self) -> None:
        """Run the I/O loop until ``shutdown`` (a message, SIGTERM/SIGINT or ``stop()``)."""
        try:
            self._loop()
        finally:
            self.close()

    def start(self) -> threading.Thread:
        """Run ``serve_forever`` in a background thread (embedding, benchmarks)."""
        self._io_thread = threading.Thread(target=self.serve_forever, name="emo-io", daemon=True)
        self._io_thread.start()
        return self._io_thread

    def stop(self) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())

    def close(self) -> None:
        if self.context is None:
            self.lock.release()
            return
        logging.getLogger("backend").removeHandler(self._log_handler)
        self.outbox.event("status", self._status_content("stopping"))
        self._flush_outbox()
        self.intake.close()
        self.manager.close()
        self._flush_outbox()  # final job states
        self.journal.close()
        for s in (self.shell, self.control, self.events):
            s.close(0)
        self.outbox.close()
        if self.zap is not None:
            self.zap.close()
        self.context.term()
        self.context = None
        with contextlib.suppress(OSError):
            self.connection_file.unlink()
        self.lock.release()
        log.info("backend %s stopped (rejected %d, unauthenticated %d, internal errors %d)",
                 self.instance_id, self.rejected, self.unauthenticated, self.internal_errors)

    def _loop(self) -> None:
        self.outbox.owner = threading.get_ident()
        poller = zmq.Poller()
        for s in (self.shell, self.control, self.outbox.pull):
            poller.register(s, zmq.POLLIN)
        next_beat = 0.0
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                if now >= next_beat:
                    self.outbox.event("status", self._status_content())
                    next_beat = now + self.config.heartbeat
                    self._maybe_sweep(now)
                timeout = max(0.0, min(next_beat - now, 0.25))
                ready = dict(poller.poll(timeout * 1000))
                if self.control in ready:
                    self._drain(self.control, "control")
                if self.shell in ready:
                    self._drain(self.shell, "shell")
                self._flush_outbox()
                self.streams.pump_all()
            except Exception:  # last resort: log, count, keep serving
                self.internal_errors += 1
                log.exception("I/O loop step failed (kept serving)")
                time.sleep(0.01)  # never spin on a persistent failure

    def _drain(self, sock: zmq.Socket, channel: str) -> None:
        for _ in range(MAX_BATCH):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._handle(sock, channel, frames)  # a request handed to the intake takes its frames along
            self._release(frames)
            del frames
            if channel == "shell" and self.control.poll(0):
                self._drain(self.control, "control")  # cancels jump ahead of a busy shell

    def _release(self, frames: list[zmq.Frame]) -> None:
        """Free a big message's memory on the intake thread, not here.

        Closing a ZeroMQ frame of hundreds of MiB returns it to the kernel (munmap), tens of
        milliseconds that would stall this thread. The intake thread releases the frames
        (``release.release_frames``) after the work queued before them. A request handed to the
        intake took its frames along (``frames`` is empty then): they are released there when
        its work is done."""
        nbytes = sum(len(f) for f in frames)  # zmq.Frame: len() is its byte count
        if nbytes < RELEASE_OFF_THREAD_BYTES:
            return
        # counted in the intake's byte budget: a flood of big refused messages cannot pile up;
        # over the budget the frames are freed here after all
        self.intake.submit(nbytes, _nothing, None, frames)

    # -- requests -----------------------------------------------------------------------------
    def _handle(self, sock: zmq.Socket, channel: str, frames: list[zmq.Frame]) -> None:
        """Answer one message (see the module docstring); never raises."""
        msg: Message | None = None
        try:
            try:
                msg = self.session.deserialize(frames, scan_values=False)
            except ProtocolError as exc:
                if not exc.authenticated or not exc.identities:
                    self.unauthenticated += 1  # dropped: no reply to a sender we cannot trust
                    log.debug("dropped an unauthenticated message on %s: %s: %s", channel, exc.ename, exc)
                    return
                self.rejected += 1
                log.debug("rejected message on %s: %s: %s", channel, exc.ename, exc)
                self._reply_error(sock, exc, exc.identities, exc.header)
                return
            self._dispatch(sock, channel, msg, frames)
        except Exception as exc:  # last resort: the request still gets an answer
            self.internal_errors += 1
            log.exception("internal error handling a message on %s", channel)
            if msg is not None:
                with contextlib.suppress(Exception):
                    self._reply_error(sock, _InternalError(exc), msg.identities, msg.header)

    def _dispatch(self, sock: zmq.Socket, channel: str, msg: Message, frames: list[zmq.Frame]) -> None:
        if msg.msg_type.endswith("_reply") or msg.msg_type in ("status", "job_progress", "job_state", "log",
                                                               "frame"):
            self.rejected += 1
            self._reply_error(sock, ProtocolError(f"{msg.msg_type} is not a request; send one of hello, "
                                                  "job_submit, job_status, ..."), msg.identities, msg.header)
            return
        if channel == "shell" and msg.msg_type in SHELL_ONLY_ON_CONTROL:
            self._reply_error(sock, JobError(f"{msg.msg_type} is accepted on the control channel only"),
                              msg.identities, msg.header)
            return
        if msg.msg_type in SLOW_REQUESTS:
            self._dispatch_slow(sock, channel, msg, frames)
            return
        handler = getattr(self, f"_on_{msg.msg_type}", None)
        try:
            if handler is None:
                raise JobError(f"{msg.msg_type} is not handled by this server")
            result = handler(msg, channel)
        except Exception as exc:
            self._reply_failure(sock, msg, exc)
            return
        self._reply(sock, msg, result)

    def _dispatch_slow(self, sock: zmq.Socket, channel: str, msg: Message, frames: list[zmq.Frame]) -> None:
        """Hand a request's slow part to the intake thread; its continuation replies."""
        work = getattr(self, f"_work_{msg.msg_type}")
        nbytes = sum(int(b.nbytes) for b in msg.buffers.values())
        # the reply needs only the header and identities: the buffers and their frames stay with
        # the work, so the intake thread frees them when it is done (``release.release_frames``)
        head = Message(header=msg.header, content=msg.content, identities=msg.identities)

        def done(result: Any, error: BaseException | None) -> None:
            try:
                if error is not None:
                    if isinstance(error, ProtocolError):
                        # a message check left to the intake (buffer checksums, value scans):
                        # refused like the checks done while decoding
                        self.rejected += 1
                    raise error
                finish = getattr(self, f"_done_{head.msg_type}", None)
                self._reply(sock, head, finish(head, channel, result) if finish else result)
            except Exception as exc:
                self._reply_failure(sock, head, exc)

        if not self.intake.submit(nbytes, lambda: work(msg, channel), done, frames):
            self._reply_error(sock, ServerBusy(
                f"the backend is still storing {self.intake.pending_bytes / 2**20:.0f} MiB of earlier "
                "requests; send this one again in a moment"), msg.identities, msg.header)

    def _reply(self, sock: zmq.Socket, msg: Message, result: Any) -> None:
        if result is None:
            return
        content, buffers = result if isinstance(result, tuple) else (result, None)
        try:
            frames = self.session.serialize(f"{msg.msg_type}_reply", {"status": "ok", **content}, parent=msg,
                                            buffers=buffers, ident=msg.identities)
        except ProtocolError as exc:  # a reply the table refuses: the client hears why
            self.internal_errors += 1
            log.error("reply to %s could not be built: %s", msg.msg_type, exc)
            self._reply_error(sock, _InternalError(exc), msg.identities, msg.header)
            return
        self._send(sock, lambda: frames)

    def _reply_failure(self, sock: zmq.Socket, msg: Message, exc: BaseException) -> None:
        if not isinstance(exc, JobError | SandboxError | ProtocolError):
            self.internal_errors += 1
            log.error("internal error handling %s", msg.msg_type, exc_info=exc)
        self._reply_error(sock, exc, msg.identities, msg.header)

    @staticmethod
    def _identities_of(frames: list[Any]) -> list[bytes] | None:
        """Routing identity of a message too broken for the envelope to parse (first frame on a ROUTER)."""
        try:
            first = frames[0].bytes if isinstance(frames[0], zmq.Frame) else bytes(frames[0])
        except (IndexError, TypeError):
            return None
        return [first] if first else None

    def _reply_error(self, sock: zmq.Socket, exc: BaseException, ident: list[bytes],
                     parent: dict[str, Any] | None) -> None:
        parent = parent or {}
        self.error_replies += 1
        msg_type = reply_type(parent.get("msg_type", "")) if parent else "error_reply"
        content = self.session.error_content(exc)
        self._send(sock, lambda: self.session.serialize(msg_type, content, parent=parent, ident=ident,
                                                        check=False))

    def _send(self, sock: zmq.Socket, build: Any) -> bool:
        try:
            sock.send_multipart(build(), flags=zmq.NOBLOCK, copy=False)
            return True
        except zmq.Again:
            self.dropped_replies += 1
        except zmq.ZMQError as exc:
            if exc.errno != errno.EHOSTUNREACH:
                raise
        return False

    def _status_content(self, state: str | None = None) -> dict[str, Any]:
        running = self.manager.running_job if hasattr(self, "manager") else None
        return {"instance_id": self.instance_id, "state": state or self._state(running),
                "queue": self.manager.queue_length(), "running": [running] if running else [],
                "device": self.device_name, "uptime": time.time() - self.started,
                "rejected": self.rejected, "pid": os.getpid()}

    def _state(self, running: str | None) -> str:
        """busy (a job runs), starting (torch is still being imported) or idle."""
        return "busy" if running else ("idle" if self.started_up.is_set() else "starting")

    def counters(self) -> dict[str, int]:
        """What the server refused, dropped and caught so far (also in hello replies)."""
        guard = self.session.replay_guard
        return {"rejected": self.rejected, "unauthenticated": self.unauthenticated,
                "internal_errors": self.internal_errors, "error_replies": self.error_replies,
                "dropped_replies": self.dropped_replies, "replays": guard.refused if guard else 0,
                "link_refused": self.zap.refused if self.zap else 0}

    def _on_hello(self, msg: Message, channel: str) -> dict[str, Any]:
        return {"server": SERVER_NAME, "proto": PROTO, "instance_id": self.instance_id,
                "device": self.device_name, "pid": os.getpid(),
                "capabilities": ["frames_credit", "upload_chunk", "subject_get", "encoding:raw",
                                 "encoding:png", "job_list_pages", *(["curve"] if self.curve_public else [])],
                "job_kinds": sorted(self.kinds), "max_message_bytes": self.config.max_message_bytes,
                "state": self._state(self.manager.running_job),
                "host": pysocket.gethostname(), **self.counters(),
                "protocol_major": PROTOCOL_VERSION[0]}

    def _work_job_submit(self, msg: Message, channel: str) -> tuple[J.JobRecord, bool]:
        """Intake thread: buffer checksums, value scans, preparation (stored inputs), journal row."""
        c = msg.content
        self.session.verify_checksums(msg)
        scan_values("job_submit", c, msg.buffers)
        return self.manager.submit(c["kind"], c["params"], msg.buffers, job_id=c.get("job_id"))

    def _done_job_submit(self, msg: Message, channel: str, result: tuple[J.JobRecord, bool]
                         ) -> dict[str, Any]:
        rec, created = result
        if rec.kind == "render":
            stream = self._reopen_stream_if_render(rec.id, msg.identities if channel == "shell" else None,
                                                   msg.header)
            if stream is not None and not created and channel == "shell":
                self.streams.credit(rec.id, msg.identities, msg.header, 0)
        return {"job_id": rec.id, "state": rec.state, "existing": not created}

    def _on_job_status(self, msg: Message, channel: str) -> dict[str, Any]:
        job_id = msg.content.get("job_id")
        out = {"instance_id": self.instance_id, "queue": self.manager.queue_length(),
               "state": "busy" if self.manager.running_job else "idle"}
        if job_id is not None:
            rec = self.manager.get(job_id)
            if rec is None:
                raise JobError(f"no job {job_id!r} in this backend's journal")
            out["job"] = rec.to_dict()
        return out

    def _on_job_list(self, msg: Message, channel: str) -> dict[str, Any]:
        offset = int(msg.content.get("offset") or 0)
        limit = int(msg.content.get("limit") or JOB_LIST_PAGE)
        records, total = self.manager.page(offset, limit)
        after = offset + len(records)
        return {"instance_id": self.instance_id, "jobs": [r.to_dict() for r in records], "total": total,
                "next_offset": after if after < total else None}

    def _on_job_cancel(self, msg: Message, channel: str) -> dict[str, Any]:
        rec = self.manager.cancel(check_id(msg.content["job_id"], "job id"))
        return {"job_id": rec.id, "state": rec.state}

    def _on_shutdown(self, msg: Message, channel: str) -> dict[str, Any]:
        log.info("shutdown requested: %s", msg.content.get("reason") or "(no reason given)")
        self._stop.set()
        return {}

    def _on_frames_credit(self, msg: Message, channel: str) -> dict[str, Any]:
        c = msg.content
        job_id = check_id(c["job_id"], "job id")
        if job_id not in self.streams.streams:
            rec = self.manager.get(job_id)
            if rec is None or rec.kind != "render":
                raise JobError(f"no render job {job_id!r}; frames exist only for render jobs")
            self._reopen_stream_if_render(job_id)
        st = self.streams.credit(job_id, msg.identities, msg.header, int(c["credit"]), c.get("start"),
                                 encoding=c.get("encoding"))
        assert st is not None  # frames follow the reply (the loop pumps after handling requests)
        return {"job_id": job_id, "credit": st.credit, "next_index": st.next_index}

    def _on_subject_list(self, msg: Message, channel: str) -> dict[str, Any]:
        root = paths.workdir_subjects(self.workdir)
        subjects = []
        for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if not (d / "meta.json").is_file():
                continue
            styles = sorted(p.stem for p in paths.styles_dir(d).glob(f"*{paths.STYLE_SUFFIX}")) \
                if paths.styles_dir(d).is_dir() else []
            entry: dict[str, Any] = {"subject_id": d.name, "has_avatar": paths.checkpoint_path(d).is_file(),
                                     "styles": styles}
            with contextlib.suppress(OSError, ValueError):
                import json

                meta = json.loads((d / "meta.json").read_text())
                for k in ("frames", "num_frames", "size", "fps"):
                    if isinstance(meta.get(k), int | float):
                        entry[k] = meta[k]
            subjects.append(entry)
        return {"subjects": subjects}

    def _on_subject_get(self, msg: Message, channel: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        from backend.data.subject import Subject

        subject_id = check_id(msg.content["subject_id"], "subject id")
        d = inside(paths.workdir_subjects(self.workdir), subject_id, what="subject id")
        if not (d / "meta.json").is_file():
            raise JobError(f"no subject {subject_id!r} in the workdir")
        subj = Subject.open(d)
        rig = subj.rig
        buffers = {"neutral": np.asarray(rig.neutral, np.float32),
                   "deltas": np.asarray(rig.deltas, np.float32), "uvs": np.asarray(rig.uvs, np.float32),
                   "triangles": np.asarray(rig.triangles, np.int32)}
        for name in ("expressions", "pose", "scale"):
            value = getattr(subj, name, None)
            if value is not None:
                buffers[name] = np.asarray(value, np.float32)
        meta = subj.meta if isinstance(getattr(subj, "meta", None), dict) else {}
        fps = float(meta.get("fps") or 25.0)
        return ({"subject_id": subject_id, "names": list(rig.names), "fps": fps,
                 "meta": {k: v for k, v in meta.items() if isinstance(v, str | int | float | bool)},
                 "size": int(subj.size)}, buffers)

    def _work_upload_chunk(self, msg: Message, channel: str) -> dict[str, Any]:
        """Intake thread: the chunk's buffer checksum, then append it to the upload's file."""
        self.session.verify_checksums(msg)
        c = msg.content
        upload_id = check_id(c["upload_id"], "upload id")
        data = msg.buffers["data"]
        received, done = self.uploads.chunk(upload_id, c["filename"], c["offset"], c["total"],
                                            memoryview(data).cast("B") if data.size else b"",
                                            final=bool(c.get("final")), checksum=c.get("checksum"))
        return {"upload_id": upload_id, "received": received, "done": done}

    def _maybe_sweep(self, now: float) -> None:
        """Every RETENTION_SWEEP_SECONDS: delete stored inputs of jobs finished long ago (intake thread)."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + RETENTION_SWEEP_SECONDS
        hours = self.config.retain_inputs_hours
        self.intake.submit(0, lambda: self.manager.sweep_inputs(hours * 3600.0), None)

    # -- frames -------------------------------------------------------------------------------
    def _reopen_stream_if_render(self, job_id: str, identities: list[bytes] | None = None,
                                 parent: dict[str, Any] | None = None) -> FrameStream | None:
        """(Re)create the frame stream of a render job from the journal and the frames on disk."""
        from backend.service.kinds import RenderKind
        from backend.service.streams import frame_file

        rec = self.manager.get(job_id)
        if rec is None or rec.kind != "render":
            return None
        p = rec.params
        out_dir = RenderKind.out_dir(self.env, job_id)
        st = self.streams.streams.get(job_id)
        if st is None:
            st = self.streams.open(job_id, out_dir, identities, parent or {},
                                   encoding=p.get("encoding", "raw"))
            st.first = st.next_index = int(p.get("first", 0))
            st.frame_start = int(p.get("frame_start", 0))
            st.total = int(p.get("last", 0)) - st.first + 1
            end = st.first
            while end <= int(p.get("last", 0)) and frame_file(out_dir, end).is_file():
                end += 1
            st.available = end
            st.finished = rec.state in J.FINAL_STATES
        elif identities is not None:
            st.identities, st.parent = identities, parent or {}
        return st

    def _frame_from_worker(self, job_id: str, index: int, image: Any, png_path: Path) -> None:
        self.outbox.put(("frame", job_id, index, image))

    def _send_frame(self, st: FrameStream, index: int, encoding: str, payload: Any, png_path: str) -> bool:
        """Send one frame; its image is covered by the checksum in the signed content: an HMAC
        with the buffer key on a link without CURVE, a crc32 under CURVE (which authenticates
        every byte already)."""
        if encoding == "png":
            buf = np.frombuffer(payload, np.uint8)
        else:
            buf = np.ascontiguousarray(payload, np.uint8)
        view = memoryview(buf).cast("B")
        checksum = (f"crc32:{zlib.crc32(view) & 0xFFFFFFFF:08x}" if self.encrypted
                    else compute_checksum(view, "hmac-sha256", self.session.buffer_key))
        content = {"job_id": st.job_id, "index": index, "total": st.total, "encoding": encoding,
                   "checksum": checksum, "frame": index + int(st.frame_start)}
        frames = self.frame_session.serialize("frame", content, parent=st.parent, buffers={"image": buf},
                                              ident=st.identities, check=False)
        try:
            self.shell.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno == errno.EHOSTUNREACH:
                raise LookupError(st.job_id) from None
            raise
        return True

    def _forget_stream_if_done(self, st: FrameStream) -> None:
        if st.done:
            self.streams.streams.pop(st.job_id, None)

    def _flush_outbox(self) -> None:
        for item in self.outbox.drain():
            if item[0] == "event":
                _, msg_type, content = item
                if msg_type == "job_state" and content.get("state") in J.FINAL_STATES:
                    self._finish_stream(content["job_id"], content.get("state"))
                try:
                    self.events.send_multipart(self.session.serialize(msg_type, content), flags=zmq.NOBLOCK,
                                               copy=False)
                except zmq.Again:
                    pass  # PUB drops at its high-water mark: events are notices, never data
                except ProtocolError as exc:
                    log.error("event %s not sent: %s", msg_type, exc)
            elif item[0] == "frame":
                _, job_id, index, image = item
                self.streams.offer(job_id, index, image)
            elif item[0] == "call":  # an intake continuation: sends its request's reply
                _, done, result, error = item
                done(result, error)

    def _finish_stream(self, job_id: str, state: str) -> None:
        st = self.streams.streams.get(job_id)
        if st is None:
            return
        self.streams.finish(job_id, None)
        self._forget_stream_if_done(st)


class ServerBusy(JobError):  # noqa: N818 (the ename clients see)
    """Too many bytes of earlier requests are still being stored; send again in a moment."""


class _InternalError(Exception):
    """Wraps an unexpected exception for the error reply (``ename`` InternalError)."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(f"the backend failed on this request ({type(exc).__name__}: {str(exc)[:500]}); "
                         "it keeps running, see its log")


_InternalError.__name__ = "InternalError"


WARM_MODULES = ("backend.data.subject", "backend.train.presets", "backend.render", "protocol.curves")
"""Modules the intake and worker threads import on first use, imported at start-up instead: loading
an extension module (cv2, torch) holds the GIL for up to seconds, which would stall the I/O thread
in the middle of the first request instead of during the start (state ``starting``)."""


def _import_request_modules() -> None:
    import importlib

    for name in WARM_MODULES:
        importlib.import_module(name)


def _freeze_start_up_objects() -> None:
    """Put every object alive after the start-up imports (torch's, about 200,000) out of the
    cyclic garbage collector's reach (``gc.freeze``). A full collection walked them all holding the
    GIL: 0.5-2.8 s here, on whichever thread's allocation triggered it, the I/O thread included.
    Frozen objects are never collected; they are modules and their constants, alive anyway."""
    import gc

    gc.freeze()


def _nothing() -> None:
    """The work of an intake item that only releases frames."""


def _private_dir(path: Path) -> None:
    """Create ``path`` (and parents) as 0700; an existing one is made 0700 when we own it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        if path.stat().st_uid == os.getuid():
            os.chmod(path, 0o700)


__all__ = ["Server", "ServerBusy", "ServerConfig", "ServerError", "WorkdirBusyError"]
