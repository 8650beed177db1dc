"""The connection file: how a client finds and authenticates to a running backend.

JSON, written atomically with mode 0600 (it holds the keys)::

    {"transport": "tcp", "ip": "127.0.0.1", "shell_port": 53011, "control_port": 53012,
     "events_port": 53013, "key": "<64 hex chars>", "signature_scheme": "hkdf-hmac-sha256",
     "proto": "2.0", "instance_id": "<hex>", "pid": 1234, "server_public_key": null,
     "client_public_key": null, "client_secret_key": null, "allowed_client_keys": []}

- ``key``: 256 random bits, new on every ``serve`` start. Every key the protocol uses is derived
  from it (:mod:`protocol.keys`): the envelope HMAC key, the buffer HMAC key and the link
  password. ``signature_scheme`` names that scheme; a 1.x file (``hmac-sha256``) is refused with
  a message naming the version mismatch.
- ``transport`` ``tcp`` (endpoint ``tcp://ip:port``) or ``ipc`` (``ipc://<ip>-<port>``, where
  ``ip`` is a filesystem path prefix).
- The link (:func:`protocol.link.secure_client_socket`): on a CURVE link (``server_public_key`` set: a
  non-loopback backend) the client presents ``client_public_key``/``client_secret_key``, and the
  server admits only that key and those in ``allowed_client_keys`` (an operator's list, kept
  across restarts). Without CURVE (loopback, ipc, ``--insecure``) the client logs in with ZeroMQ
  PLAIN and the derived link password. Either way the server refuses a peer in the handshake,
  before it buffers a byte of its messages.
- :meth:`ConnectionInfo.load` refuses a file that group or others can read or write (on POSIX):
  anybody who reads the key can submit jobs. Fix with ``chmod 600 <file>``.
- :func:`buffer_checksum` picks what covers the buffer bytes from the transport: nothing where the
  transport already guarantees them (loopback and ipc stay in the kernel; CURVE authenticates
  every byte), ``hmac-sha256`` on an unencrypted network link (``--insecure``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import socket
import stat
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from . import PROTOCOL_VERSION
from .errors import ConnectionFileError, VersionError
from .fileio import atomic_write_text
from .keys import link_password

TRANSPORTS = ("tcp", "ipc")
SIGNATURE_SCHEME = "hkdf-hmac-sha256"
LEGACY_SIGNATURE_SCHEMES = ("hmac-sha256",)
"""What protocol 1.x wrote (the raw key signed envelopes)."""
CHANNELS = ("shell", "control", "events")


def is_loopback_ip(ip: str) -> bool:
    """True for ``localhost`` and any loopback address (127.0.0.0/8, ::1)."""
    if ip == "localhost":
        return True
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def buffer_checksum(loopback: bool, encrypted: bool) -> str:
    """The ``Session(checksum=...)`` scheme for buffer bytes on a link (see the module docstring):
    ``"none"`` on loopback / ipc or under CURVE, else ``"hmac-sha256"``."""
    return "none" if loopback or encrypted else "hmac-sha256"


@dataclass
class ConnectionInfo:
    """Contents of a connection file; see the module docstring for the JSON layout."""

    shell_port: int
    control_port: int
    events_port: int
    key: str
    ip: str = "127.0.0.1"
    transport: str = "tcp"
    signature_scheme: str = SIGNATURE_SCHEME
    instance_id: str | None = None
    pid: int | None = None
    server_public_key: str | None = None
    proto: str | None = None
    client_public_key: str | None = None
    client_secret_key: str | None = None
    allowed_client_keys: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ConnectionFileError(f"transport {self.transport!r} not supported; use tcp or ipc")
        if self.signature_scheme in LEGACY_SIGNATURE_SCHEMES:
            raise VersionError(
                f"protocol version mismatch: the connection file was written by a protocol 1.x backend "
                f"(signature_scheme {self.signature_scheme!r}); this side speaks "
                f"{PROTOCOL_VERSION[0]}.{PROTOCOL_VERSION[1]}. Install matching add-on and backend versions")
        if self.signature_scheme != SIGNATURE_SCHEME:
            raise ConnectionFileError(f"signature_scheme {self.signature_scheme!r} not supported; "
                                      f"only {SIGNATURE_SCHEME}")
        if not isinstance(self.allowed_client_keys, list) or not all(
                isinstance(k, str) and len(k) == 40 for k in self.allowed_client_keys):
            raise ConnectionFileError("allowed_client_keys must be a list of Z85 CURVE public keys "
                                      "(40 characters each)")
        for name in ("shell_port", "control_port", "events_port"):
            port = getattr(self, name)
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise ConnectionFileError(f"{name} {port!r} is not a port number (1..65535)")
        if not isinstance(self.key, str) or len(self.key) < 16:
            raise ConnectionFileError("key must be a string of at least 16 characters "
                                      "(use ConnectionInfo.new)")
        if not isinstance(self.ip, str) or not self.ip:
            raise ConnectionFileError("ip must be a non-empty string")

    @property
    def key_bytes(self) -> bytes:
        """The HMAC key as bytes (what :class:`protocol.envelope.Session` takes)."""
        return self.key.encode("ascii")

    def url(self, channel: str) -> str:
        """ZeroMQ endpoint of ``channel`` (shell, control or events)."""
        if channel not in CHANNELS:
            raise ValueError(f"channel must be one of {CHANNELS}")
        port = getattr(self, f"{channel}_port")
        return f"tcp://{self.ip}:{port}" if self.transport == "tcp" else f"ipc://{self.ip}-{port}"

    def is_loopback(self) -> bool:
        return self.transport == "ipc" or is_loopback_ip(self.ip)

    @property
    def link_password(self) -> str:
        """The ZeroMQ PLAIN password of links without CURVE (derived from ``key``)."""
        return link_password(self.key_bytes)

    @property
    def buffer_checksum(self) -> str:
        """What covers buffer bytes on this link (:func:`buffer_checksum`)."""
        return buffer_checksum(self.is_loopback(), self.server_public_key is not None)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def new(cls, ip: str = "127.0.0.1", transport: str = "tcp", **extra: Any) -> ConnectionInfo:
        """Fresh info: a random 256-bit key and three free ports on ``ip`` (tcp) or 1..3 (ipc).

        Ports are probed by binding port 0 and releasing it; bind ZeroMQ right after.
        """
        if transport == "ipc":
            ports = [1, 2, 3]
        else:
            ports = _free_ports(ip, 3)
        return cls(shell_port=ports[0], control_port=ports[1], events_port=ports[2],
                   key=secrets.token_hex(32), ip=ip, transport=transport, **extra)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "connection info") -> ConnectionInfo:
        if not isinstance(data, dict):
            raise ConnectionFileError(f"{source}: expected a JSON object")
        known = {f.name for f in fields(cls)}
        required = ("shell_port", "control_port", "events_port", "key")
        missing = [k for k in required if k not in data]
        if missing:
            raise ConnectionFileError(f"{source}: missing {', '.join(missing)}; re-create it with "
                                      "`emo-avatar serve`")
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except ConnectionFileError as exc:
            raise ConnectionFileError(f"{source}: {exc}") from None

    # -- files ----------------------------------------------------------------------------------
    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically with mode 0600; returns the path."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n", mode=0o600)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, check_permissions: bool = True) -> ConnectionInfo:
        """Read and validate a connection file.

        Raises :class:`ConnectionFileError` when it is missing, not JSON, incomplete, or (POSIX,
        ``check_permissions``) readable or writable by group/others.
        """
        path = Path(path)
        try:
            st = path.stat()
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConnectionFileError(f"connection file {path} does not exist; start the backend with "
                                      "`emo-avatar serve` (it prints the file's path)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConnectionFileError(f"cannot read connection file {path}: {exc}") from None
        if check_permissions and os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConnectionFileError(
                f"connection file {path} is accessible to other users (mode {stat.S_IMODE(st.st_mode):o}); "
                f"it holds the signing key. Run `chmod 600 {path}`")
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConnectionFileError(f"connection file {path} is not valid JSON: {exc}") from None
        return cls.from_dict(data, str(path))


def _free_ports(ip: str, n: int) -> list[int]:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(family, socket.SOCK_STREAM)
            s.bind((ip, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


__all__ = ["SIGNATURE_SCHEME", "ConnectionInfo", "buffer_checksum", "is_loopback_ip"]
