"""Every error the protocol raises: one base class, one subclass per kind of bad input.

Decoding arbitrary bytes (``Session.deserialize``), validating content (``messages.validate``),
reading curve files and connection files raise only :class:`ProtocolError` subclasses, so a
server loop needs exactly one ``except ProtocolError`` to stay up. Each message says what was
wrong and what to do about it.

When the sender is known (identities parsed, header decoded) the exception carries them in
``identities`` / ``header`` so a server can address an error reply::

    try:
        msg = session.deserialize(frames)
    except ProtocolError as exc:
        if exc.identities is not None:
            session.send_error(sock, exc, ident=exc.identities, parent=exc.header)

``ename`` (the class name) and ``str(exc)`` are what go into an error reply's ``ename`` /
``evalue``.
"""

from __future__ import annotations

from typing import Any


class ProtocolError(Exception):
    """Base class: a message, file or reply that breaks the protocol.

    Attributes:
        identities: ZeroMQ routing identities of the offending message, when they were parsed.
        header: its decoded header (a dict), when it was decoded and correctly signed.
        authenticated: True once the message's signature was verified. A server answers an
            authenticated message with an error reply and drops an unauthenticated one unanswered.
    """

    def __init__(self, message: str, *, identities: list[bytes] | None = None,
                 header: dict[str, Any] | None = None, authenticated: bool = False) -> None:
        super().__init__(message)
        self.identities = identities
        self.header = header
        self.authenticated = authenticated

    @property
    def ename(self) -> str:
        """Name used as ``ename`` in an error reply (e.g. ``"SchemaError"``)."""
        return type(self).__name__

    @property
    def evalue(self) -> str:
        return str(self)


class FrameError(ProtocolError):
    """Truncated or garbage multipart message: no delimiter, too few frames, not msgpack,
    header/content not a map, a buffer frame count that disagrees with the content."""


class SignatureError(ProtocolError):
    """Missing or wrong HMAC signature: the peer uses another key (another connection file)
    or the message was altered in transit."""


class SchemaError(ProtocolError):
    """Content does not match the message table: a required field is missing or a field has
    the wrong type or an unknown choice. ``field`` names the offending field (dotted path)."""

    def __init__(self, message: str, *, field: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.field = field


class BufferSpecError(ProtocolError):
    """A binary buffer disagrees with its description: dtype not allowed, shape/nbytes
    mismatch, checksum mismatch, a required buffer missing or of the wrong rank."""


class VersionError(ProtocolError):
    """The peer speaks a different protocol major version; both versions are named."""


class MessageTooLarge(ProtocolError):  # noqa: N818 (established name)
    """The message is bigger than the receiver's ``max_message_bytes`` (or a dict frame is over
    ``limits.MAX_DICT_BYTES``); checked before decoding. Send less per message (e.g. split a
    render with ``frame_range``)."""


class ReplayError(ProtocolError):
    """A correctly signed request that was already accepted once (same signature), or whose
    header date is outside the receiver's window (``limits.REPLAY_WINDOW_SECONDS``): a replay,
    or clocks that disagree. The message says which."""


class UnknownMessageType(ProtocolError):  # noqa: N818 (established name)
    """``msg_type`` (or a job ``kind``) that is not in the message table."""


class CurveError(ProtocolError):
    """Bad expression curves: NaN/inf values, shape mismatch, unknown or missing names,
    an unreadable Live Link Face CSV / curves JSON file."""


class ConnectionFileError(ProtocolError):
    """A connection file that is missing, unreadable, incomplete or unsafe."""


class BackendUnavailable(ProtocolError):  # noqa: N818 (established name)
    """The backend did not answer within the timeout after all retries (Lazy Pirate).
    Start it with ``emo-avatar serve`` or check the connection file."""


class RemoteError(ProtocolError):
    """The backend answered a request with ``status: error``. ``remote_ename`` and
    ``remote_evalue`` hold what the backend said."""

    def __init__(self, msg_type: str, remote_ename: str, remote_evalue: str, **kw: Any) -> None:
        super().__init__(f"{msg_type} failed on the backend: {remote_ename}: {remote_evalue}", **kw)
        self.msg_type = msg_type
        self.remote_ename = remote_ename
        self.remote_evalue = remote_evalue


__all__ = [
    "BackendUnavailable",
    "BufferSpecError",
    "ConnectionFileError",
    "CurveError",
    "FrameError",
    "MessageTooLarge",
    "ProtocolError",
    "RemoteError",
    "ReplayError",
    "SchemaError",
    "SignatureError",
    "UnknownMessageType",
    "VersionError",
]
