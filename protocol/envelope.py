"""The signed multipart envelope (Jupyter style, msgpack instead of JSON, never pickle).

Wire layout of one message (each item one ZeroMQ frame)::

    [identity ...] b"<EMO|MSG>" signature header parent_header content buffer ...

- identities: ROUTER routing ids (none on a DEALER/SUB socket);
- signature: lowercase hex HMAC-SHA256 (64 ASCII bytes) over the three serialised dicts
  header + parent_header + content, keyed with the ``envelope`` key derived from the
  connection file's key (:mod:`protocol.keys`), checked with ``hmac.compare_digest`` before
  anything is unpacked;
- header: ``{msg_id: 32 hex chars (128 random bits), session: hex id of the sender, msg_type,
  proto: PROTO ("major.minor" of PROTOCOL_VERSION), date: ISO-8601 UTC
  "YYYY-MM-DDTHH:MM:SS.ffffffZ", seq: per-session counter}``;
  parent_header: the request's header echoed in its replies/frames (``{}`` otherwise);
- content: msgpack map, validated against :mod:`protocol.messages`; its reserved
  ``"_buffers"`` list describes the buffer frames (see :mod:`protocol.buffers`).

Checks, in order (bounds in :mod:`protocol.limits`): frame count and identities, then the size
of each dict frame, then the signature. Only a message that passes these is *authenticated*
(``ProtocolError.authenticated``); a server answers only those. Then the total size, msgpack
with length and nesting limits, the header, the protocol major, replay (a
:class:`~protocol.replay.ReplayGuard`, when the receiver has one), the schema and the buffers.

Thread safety: a :class:`Session` is cheap and holds only the key and a counter; use one per
thread (ZeroMQ sockets are single-threaded anyway).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import zmq

from . import PROTOCOL_VERSION
from .buffers import BUFFERS_KEY, CHECKSUMS, decode_buffers, encode_buffers, verify_pending
from .errors import (
    FrameError,
    MessageTooLarge,
    ProtocolError,
    SchemaError,
    SignatureError,
    VersionError,
)
from .keys import derive
from .limits import (
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_DICT_BYTES,
    MAX_FIELD_CHARS,
    MAX_FRAMES,
    MAX_HEADER_STR,
    MAX_IDENTITIES,
    MAX_LIST_ITEMS,
    MAX_MAP_ITEMS,
    MAX_NESTING,
    MAX_STR_BYTES,
)
from .messages import reply_type, validate, validate_buffers
from .replay import ReplayGuard

DELIM = b"<EMO|MSG>"
"""Frame separating routing identities from the signed message."""

PROTO = f"{PROTOCOL_VERSION[0]}.{PROTOCOL_VERSION[1]}"
SIGNATURE_BYTES = 64
"""Length of the hex HMAC-SHA256 signature frame."""

Frame = bytes | memoryview | zmq.Frame


@dataclass(eq=False)
class Message:
    """One decoded message.

    Attributes:
        header: dict with msg_id, session, msg_type, proto, date, seq.
        content: validated content with defaults filled (no ``_buffers`` key).
        buffers: name -> read-only numpy array (zero-copy views of the received frames).
        parent_header: header of the request this answers, ``{}`` when none.
        identities: ROUTER routing identities (address a reply with them).
        pending_checksums: buffer name -> checksum not verified yet (only after
            ``Session.deserialize(..., scan_values=False)``; see :meth:`Session.verify_checksums`).
    """

    header: dict[str, Any]
    content: dict[str, Any]
    buffers: dict[str, np.ndarray] = field(default_factory=dict)
    parent_header: dict[str, Any] = field(default_factory=dict)
    identities: list[bytes] = field(default_factory=list)
    pending_checksums: dict[str, str] = field(default_factory=dict)

    @property
    def msg_type(self) -> str:
        return self.header["msg_type"]

    @property
    def msg_id(self) -> str:
        return self.header["msg_id"]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        if (self.header, self.parent_header, self.content, list(self.identities)) != (
                other.header, other.parent_header, other.content, list(other.identities)):
            return False
        if self.buffers.keys() != other.buffers.keys():
            return False
        return all(_same_array(self.buffers[k], other.buffers[k]) for k in self.buffers)

    __hash__ = None  # type: ignore[assignment]


def _same_array(a: np.ndarray, b: np.ndarray) -> bool:
    return (a.dtype == b.dtype and a.shape == b.shape
            and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))


def _default(obj: Any) -> Any:
    """msgpack hook: numpy scalars become Python numbers; arrays must travel as buffers."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        raise SchemaError("numpy arrays cannot go in content; pass them as buffers=(name -> array)")
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    raise SchemaError(f"content value of type {type(obj).__name__} is not serialisable; "
                      "use str, int, float, bool, None, list, dict or bytes")


def pack(obj: Any) -> bytes:
    """msgpack-encode a dict (raises :class:`SchemaError` for unserialisable values)."""
    try:
        return msgpack.packb(obj, default=_default, use_bin_type=True)
    except SchemaError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise SchemaError(f"content cannot be serialised: {exc}") from None


def _ext_hook(code: int, data: bytes) -> Any:
    raise FrameError(f"msgpack extension type {code} is not allowed in messages")


def unpack_dict(data: memoryview | bytes, what: str) -> dict[str, Any]:
    """Decode one msgpack map frame within the bounds of :mod:`protocol.limits` (sizes, lengths,
    nesting); any failure becomes :class:`FrameError` (:class:`MessageTooLarge` for size)."""
    if len(data) > MAX_DICT_BYTES:
        raise MessageTooLarge(f"{what} frame is {len(data)} bytes; at most {MAX_DICT_BYTES} allowed "
                              "(send large data as buffers)")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=_ext_hook, use_list=True,
                              max_str_len=MAX_STR_BYTES, max_bin_len=MAX_STR_BYTES,
                              max_array_len=MAX_LIST_ITEMS, max_map_len=MAX_MAP_ITEMS)
    except FrameError:
        raise
    except Exception as exc:  # msgpack raises many types (ExtraData, FormatError, StackError, ...)
        raise FrameError(f"{what} frame is not valid msgpack or breaks a bound (lists <= {MAX_LIST_ITEMS}, "
                         f"maps <= {MAX_MAP_ITEMS}, strings <= {MAX_STR_BYTES} bytes): "
                         f"{type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(obj, dict):
        raise FrameError(f"{what} frame decodes to a {type(obj).__name__}, expected a map")
    check_nesting(obj, what)
    return obj


_CONTAINERS = (list, dict)


def check_nesting(obj: dict[str, Any] | list[Any], what: str, limit: int = MAX_NESTING) -> None:
    """Raise :class:`FrameError` when maps/lists nest deeper than ``limit`` (``obj`` is depth 1).

    Linear in the number of items, iterative (no recursion), and it only walks into the
    containers: ``set(map(type, ...))`` finds them at C speed.
    """
    level = [obj]
    depth = 1
    while level:
        if depth > limit:
            raise FrameError(f"{what} nests maps/lists deeper than {limit} levels")
        deeper: list[Any] = []
        for node in level:
            items = node.values() if type(node) is dict else node
            kinds = set(map(type, items))
            if list in kinds or dict in kinds:
                deeper.extend(x for x in items if type(x) in _CONTAINERS)
        level = deeper
        depth += 1


def _frame_view(frame: Any) -> memoryview:
    if isinstance(frame, zmq.Frame):
        return frame.buffer
    if isinstance(frame, memoryview):
        return frame if frame.format == "B" and frame.ndim == 1 else frame.cast("B")
    if isinstance(frame, bytes | bytearray):
        return memoryview(frame)
    raise FrameError(f"message frame of type {type(frame).__name__}; expected bytes")


def parse_version(proto: Any) -> tuple[int, int]:
    """``"1.0"`` -> (1, 0); anything else raises :class:`FrameError`."""
    if isinstance(proto, str):
        parts = proto.split(".")
        if len(parts) == 2 and all(p.isdigit() and len(p) < 6 for p in parts):
            return int(parts[0]), int(parts[1])
    raise FrameError(f"header 'proto' {proto!r} is not a 'major.minor' version string")


def configure_socket(sock: zmq.Socket, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
    """Apply the protocol's socket options: per-frame ``MAXMSGSIZE`` and ``LINGER`` 0."""
    sock.setsockopt(zmq.MAXMSGSIZE, int(max_message_bytes))
    sock.setsockopt(zmq.LINGER, 0)


def _bad_header(header: dict[str, Any]) -> str | None:
    for key in ("msg_id", "msg_type", "session", "proto"):
        value = header.get(key)
        if not isinstance(value, str) or len(value) > MAX_HEADER_STR:
            return f"header field {key!r} missing, not a string or over {MAX_HEADER_STR} characters"
    return None


class Session:
    """Signs, serialises, verifies and decodes messages for one side of a connection.

    Args:
        key: the connection file's key (``ConnectionInfo.key_bytes``); must be non-empty. The
            signature and buffer checksums use keys derived from it (:mod:`protocol.keys`).
        session_id: this sender's id (uuid4 hex by default), put in every header.
        max_message_bytes: receive limit over all frames of one message.
        checksum: scheme for outgoing buffers: ``"crc32"`` (default), ``"hmac-sha256"``, ``"none"``.
        require_checksum: refuse incoming buffers without a checksum.
        replay_guard: refuse replayed or stale messages (a server passes one; see
            :mod:`protocol.replay`).
    """

    def __init__(self, key: bytes, session_id: str | None = None, *,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, checksum: str = "crc32",
                 require_checksum: bool = False, replay_guard: ReplayGuard | None = None) -> None:
        if isinstance(key, str):
            key = key.encode("ascii")
        if not isinstance(key, bytes) or not key:
            raise SignatureError("a non-empty HMAC key is required (take it from the connection file)")
        if checksum not in CHECKSUMS:
            raise ValueError(f"checksum must be one of {CHECKSUMS}, got {checksum!r}")
        self.key = key
        self.envelope_key = derive(key, "envelope")
        self.buffer_key = derive(key, "buffers")
        self.session_id = session_id or uuid.uuid4().hex
        self.max_message_bytes = int(max_message_bytes)
        self.checksum = checksum
        self.require_checksum = require_checksum
        self.replay_guard = replay_guard
        self._seq = itertools.count()
        self._hmac = hmac.new(self.envelope_key, digestmod=hashlib.sha256)

    # -- signing ------------------------------------------------------------------------------
    def sign(self, parts: Sequence[bytes | memoryview]) -> bytes:
        """Hex HMAC-SHA256 of the concatenated serialised parts."""
        h = self._hmac.copy()
        for p in parts:
            h.update(p)
        return h.hexdigest().encode("ascii")

    # -- building -----------------------------------------------------------------------------
    def msg_header(self, msg_type: str) -> dict[str, Any]:
        now = time.time()
        return {
            "msg_id": os.urandom(16).hex(),  # 128 random bits (uuid4().hex costs 15x more)
            "session": self.session_id,
            "msg_type": msg_type,
            "proto": PROTO,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z",
            "seq": next(self._seq),
        }

    def serialize(self, msg_type: str, content: Mapping[str, Any] | None = None, *,
                  parent: Message | Mapping[str, Any] | None = None,
                  buffers: Mapping[str, np.ndarray] | None = None,
                  ident: bytes | Sequence[bytes] | None = None, check: bool = True,
                  header: Mapping[str, Any] | None = None) -> list[bytes | memoryview]:
        """Build the frames of one message.

        ``parent`` is the request (a :class:`Message` or its header) this message answers.
        ``check`` validates content and buffers against the message table first (so a sender's
        bug raises here, not on the peer). ``header`` overrides the generated header (tests).
        Returns frames for ``socket.send_multipart(frames, copy=False)``.
        """
        return self.build(msg_type, content, parent, buffers, ident, check, header)[0]

    def build(self, msg_type: str, content: Mapping[str, Any] | None,
               parent: Message | Mapping[str, Any] | None, buffers: Mapping[str, np.ndarray] | None,
               ident: bytes | Sequence[bytes] | None, check: bool,
               header: Mapping[str, Any] | None) -> tuple[list[bytes | memoryview], dict[str, Any]]:
        """Like :meth:`serialize` (positional arguments) but returns (frames, header)."""
        content = dict(content or {})
        if check:
            content = validate(msg_type, content)
            validate_buffers(msg_type, content, buffers or {})
        descriptors, buffer_frames = encode_buffers(buffers, self.checksum, self.buffer_key)
        if descriptors:
            content[BUFFERS_KEY] = descriptors
        parent_header = parent.header if isinstance(parent, Message) else dict(parent or {})
        hdr = dict(header) if header is not None else self.msg_header(msg_type)
        parts = [pack(hdr), pack(parent_header), pack(content)]
        frames: list[bytes | memoryview] = []
        if ident is not None:
            frames.extend([ident] if isinstance(ident, bytes) else list(ident))
        frames.append(DELIM)
        frames.append(self.sign(parts))
        frames.extend(parts)
        frames.extend(buffer_frames)
        return frames, hdr

    def error_content(self, exc: BaseException | str, evalue: str | None = None) -> dict[str, Any]:
        """Content of an error reply: ``{"status": "error", "ename", "evalue"}``; always
        serialisable (strings cut to ``limits.MAX_FIELD_CHARS``), whatever the exception holds."""
        if isinstance(exc, BaseException):
            ename = exc.ename if isinstance(exc, ProtocolError) else type(exc).__name__
            try:
                text = evalue or str(exc) or ename
            except Exception:  # an exception whose __str__ fails
                text = ename
        else:
            ename = text = str(exc)
            text = evalue or text
        return {"status": "error", "ename": str(ename)[:MAX_HEADER_STR],
                "evalue": str(text)[:MAX_FIELD_CHARS]}

    # -- parsing ------------------------------------------------------------------------------
    def split_identities(self, frames: Sequence[Any]) -> tuple[list[bytes], list[memoryview]]:
        """Split at the delimiter; returns (identities, frames after the delimiter)."""
        try:
            views = [_frame_view(f) for f in frames]
        except TypeError:
            raise FrameError("message frames must be bytes-like") from None
        for i, v in enumerate(views[: MAX_IDENTITIES + 1]):
            if len(v) == len(DELIM) and v.tobytes() == DELIM:
                return [x.tobytes() for x in views[:i]], views[i + 1:]
        raise FrameError(f"no {DELIM!r} delimiter frame within the first {MAX_IDENTITIES + 1} frames; "
                         "the peer does not speak this protocol")

    def deserialize(self, frames: Sequence[Any], *, validate_content: bool = True,
                    scan_values: bool = True) -> Message:
        """Verify and decode received frames (``recv_multipart(copy=False)`` output or bytes).

        Order of checks (see the module docstring): frame count, delimiter and dict frame sizes
        (:class:`FrameError`, :class:`MessageTooLarge`), signature (:class:`SignatureError`);
        then, authenticated: total size (:class:`MessageTooLarge`), msgpack and header fields
        (:class:`FrameError`), protocol major (:class:`VersionError`), replay
        (:class:`ReplayError`), content schema (:class:`UnknownMessageType`,
        :class:`SchemaError`), buffers (:class:`BufferSpecError`). ``scan_values=False`` skips
        the checks that read every buffer byte, for a receiver that runs them elsewhere: the
        value scans (``messages.scan_values``) and the buffer checksums (their form is checked;
        they are left in ``Message.pending_checksums`` for :meth:`verify_checksums`). Raises only
        :class:`ProtocolError` subclasses.
        """
        if not isinstance(frames, Sequence):
            raise FrameError("message frames must be a sequence of bytes-like frames")
        if len(frames) > MAX_FRAMES:
            raise FrameError(f"message has {len(frames)} frames; at most {MAX_FRAMES} allowed "
                             "(put many small arrays into one buffer)")
        identities, rest = self.split_identities(frames)
        if len(rest) < 4:
            raise FrameError(f"message has {len(rest)} frames after the delimiter; at least 4 "
                             "(signature, header, parent_header, content) are required",
                             identities=identities)
        signature, h, p, c, *bufs = rest
        for frame, what in ((h, "header"), (p, "parent_header"), (c, "content")):
            if len(frame) > MAX_DICT_BYTES:
                raise MessageTooLarge(f"{what} frame is {len(frame)} bytes; at most {MAX_DICT_BYTES} "
                                      "allowed (send large data as buffers)", identities=identities)
        if len(signature) != SIGNATURE_BYTES or not hmac.compare_digest(self.sign([h, p, c]),
                                                                        signature.tobytes()):
            raise SignatureError("bad message signature: the sender uses a different key (connection file) "
                                 "or the message was altered", identities=identities)
        try:
            header = unpack_dict(h, "header")
        except ProtocolError as exc:
            exc.identities, exc.authenticated = identities, True
            raise
        kw: dict[str, Any] = {"identities": identities, "authenticated": True}
        problem = _bad_header(header)
        if problem is not None:
            raise FrameError(problem, **kw)
        kw["header"] = header
        total = sum(len(f) for f in rest) + len(DELIM) + sum(len(i) for i in identities)
        if total > self.max_message_bytes:
            raise MessageTooLarge(f"message of {total} bytes exceeds the limit of {self.max_message_bytes} "
                                  "bytes; send less per message (e.g. split a render with frame_range)", **kw)
        try:
            major, minor = parse_version(header["proto"])
        except FrameError as exc:
            exc.identities, exc.header, exc.authenticated = identities, header, True
            raise
        if major != PROTOCOL_VERSION[0]:
            raise VersionError(
                f"protocol version mismatch: peer speaks {major}.{minor}, this side speaks {PROTO}; "
                "install matching add-on and backend versions (same major)", **kw)
        try:
            if self.replay_guard is not None:
                self.replay_guard.check(signature.tobytes(), header.get("date"))
            parent_header = unpack_dict(p, "parent_header")
            content = unpack_dict(c, "content")
            descriptors = content.pop(BUFFERS_KEY, None)
            pending: dict[str, str] | None = None if scan_values else {}
            buffers = decode_buffers(descriptors, bufs, self.buffer_key, self.require_checksum, pending)
            if validate_content:
                content = validate(header["msg_type"], content)
                validate_buffers(header["msg_type"], content, buffers, scan_values=scan_values)
        except ProtocolError as exc:
            exc.identities, exc.header, exc.authenticated = identities, header, True
            raise
        return Message(header=header, content=content, buffers=buffers, parent_header=parent_header,
                       identities=identities, pending_checksums=pending or {})

    def verify_checksums(self, msg: Message) -> None:
        """Verify the buffer checksums ``deserialize(..., scan_values=False)`` left pending
        (linear in the buffer bytes; hashing releases the GIL). Raises :class:`BufferSpecError`
        (authenticated, addressed to the sender) at the first mismatch. Thread-safe."""
        try:
            verify_pending(msg.buffers, msg.pending_checksums, self.buffer_key)
        except ProtocolError as exc:
            exc.identities, exc.header, exc.authenticated = msg.identities, msg.header, True
            raise

    # -- sockets ------------------------------------------------------------------------------
    def send(self, socket: zmq.Socket, msg_type: str, content: Mapping[str, Any] | None = None,
             parent: Message | Mapping[str, Any] | None = None,
             buffers: Mapping[str, np.ndarray] | None = None,
             ident: bytes | Sequence[bytes] | None = None, *, flags: int = 0) -> dict[str, Any]:
        """Serialise and send (buffers zero-copy). Returns the header sent (for matching replies)."""
        frames, hdr = self.build(msg_type, content, parent, buffers, ident, True, None)
        socket.send_multipart(frames, flags=flags, copy=False)
        return hdr

    def send_reply(self, socket: zmq.Socket, request: Message, content: Mapping[str, Any] | None = None,
                   buffers: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
        """Send ``<request type>_reply`` (status ok unless content says otherwise) back to its sender."""
        body = {"status": "ok", **(content or {})}
        return self.send(socket, reply_type(request.msg_type), body, parent=request, buffers=buffers,
                         ident=request.identities)

    def send_error(self, socket: zmq.Socket, exc: BaseException | str, *, ident: Sequence[bytes] | None,
                   parent: Message | Mapping[str, Any] | None = None, msg_type: str | None = None) -> None:
        """Send an error reply. Its type is ``<parent type>_reply`` when the parent's type is a
        known request, else ``error_reply``."""
        parent_header = parent.header if isinstance(parent, Message) else dict(parent or {})
        if msg_type is None:
            msg_type = reply_type(parent_header.get("msg_type", "")) if parent_header else "error_reply"
        self.send(socket, msg_type, self.error_content(exc), parent=parent_header, ident=ident)

    def recv(self, socket: zmq.Socket, *, flags: int = 0, validate_content: bool = True) -> Message:
        """Receive and decode one message (raises :class:`ProtocolError` subclasses on bad input,
        ``zmq.Again`` with ``zmq.NOBLOCK`` when none is waiting)."""
        frames = socket.recv_multipart(flags=flags, copy=False)
        return self.deserialize(frames, validate_content=validate_content)


__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DELIM",
    "MAX_DICT_BYTES",
    "MAX_FRAMES",
    "PROTO",
    "Message",
    "Session",
    "check_nesting",
    "configure_socket",
    "pack",
    "parse_version",
    "unpack_dict",
]
