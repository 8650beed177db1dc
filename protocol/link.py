"""Link security: who may connect at all, decided in the ZeroMQ handshake.

``secure_client_socket`` sets a client socket's credentials from the connection file;
``secure_server_socket`` makes a server socket ask the ZAP handler about every connection.

The ZAP handler (:class:`ZapHandler`): ZeroMQ asks ``inproc://zeromq.zap.01`` of the socket's
context about every new connection of a socket that has a ZAP domain (RFC 27). It admits:

- PLAIN (links without CURVE: loopback, ipc, ``--insecure``): user ``emo-avatar`` with the link
  password derived from the connection key (``protocol.keys``), compared in constant time;
- CURVE (non-loopback links): a client public key on the allow-list (the connection file's
  ``client_public_key`` plus its ``allowed_client_keys``).

Anything else is refused and counted in ``refused``. A refused peer never gets past the
handshake, so whatever it sends next is never buffered: this is what bounds the memory an
unauthenticated peer can make the server use (libzmq buffers an unfinished multipart message
without limit once a connection is admitted).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import threading

import zmq
from zmq.utils import z85

from .connection import ConnectionInfo
from .keys import LINK_USERNAME

log = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_DOMAIN = "emo-avatar"


def secure_client_socket(sock: zmq.Socket, info: ConnectionInfo) -> None:
    """Set a client socket's link credentials from ``info`` (before ``connect``): CURVE with the
    file's client key pair when the backend has a CURVE key, else PLAIN with the link password."""
    if info.server_public_key:
        sock.curve_serverkey = info.server_public_key.encode("ascii")
        if info.client_public_key and info.client_secret_key:
            sock.curve_publickey = info.client_public_key.encode("ascii")
            sock.curve_secretkey = info.client_secret_key.encode("ascii")
        else:  # a key of our own: admitted only if the operator listed it in allowed_client_keys
            sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
    else:
        sock.plain_username = LINK_USERNAME.encode()
        sock.plain_password = info.link_password.encode()


def secure_server_socket(sock: zmq.Socket, curve_keys: tuple[bytes, bytes] | None = None) -> None:
    """Make a server socket (before ``bind``) ask the ZAP handler about every connection: as a
    CURVE server with ``curve_keys`` (public, secret), else as a PLAIN server."""
    sock.zap_domain = ZAP_DOMAIN.encode()
    if curve_keys is not None:
        sock.curve_publickey, sock.curve_secretkey = curve_keys
        sock.curve_server = True
    else:
        sock.plain_server = True


class ZapHandler:
    """A thread answering ZAP requests with a fixed policy (see the module docstring)."""

    def __init__(self, context: zmq.Context, *, password: str | None,
                 curve_keys: set[bytes] | None = None, username: str = LINK_USERNAME) -> None:
        self.context = context
        self.username = username.encode()
        self.password = password.encode() if password is not None else None
        # ZAP hands over the raw 32-byte key; the connection file holds Z85 (40 characters)
        self.curve_keys = {z85.decode(k) if len(k) == 40 else bytes(k) for k in (curve_keys or ())}
        self.admitted = 0
        self.refused = 0
        self._stop = threading.Event()
        self._sock = context.socket(zmq.REP)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.bind(ZAP_ENDPOINT)
        self._thread = threading.Thread(target=self._run, name="emo-zap", daemon=True)
        self._thread.start()

    def _decide(self, mechanism: bytes, credentials: list[bytes]) -> tuple[bool, str]:
        if mechanism == b"PLAIN" and self.password is not None and len(credentials) == 2:
            user, password = credentials
            if hmac.compare_digest(user, self.username) and hmac.compare_digest(password, self.password):
                return True, "OK"
            return False, "wrong user or link password (another connection file?)"
        if mechanism == b"CURVE" and self.curve_keys and len(credentials) == 1:
            if credentials[0] in self.curve_keys:
                return True, "OK"
            return False, "client key not on the allow-list"
        return False, f"mechanism {mechanism.decode(errors='replace')[:16]} not accepted"

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(200):
                continue
            try:
                msg = self._sock.recv_multipart(zmq.NOBLOCK)
            except zmq.ZMQError:
                continue
            try:
                version, request_id, _domain, address, _identity, mechanism, *credentials = msg
                ok, reason = self._decide(mechanism, credentials)
            except ValueError:
                version, request_id, ok, reason, address = b"1.0", b"", False, "malformed ZAP request", b"?"
            if ok:
                self.admitted += 1
            else:
                self.refused += 1
                log.info("refused a connection from %s: %s", address.decode(errors="replace"), reason)
            with contextlib.suppress(zmq.ZMQError):
                self._sock.send_multipart([version, request_id, b"200" if ok else b"400",
                                           reason.encode(), b"client" if ok else b"", b""])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._sock.close(0)


__all__ = ["ZAP_DOMAIN", "ZAP_ENDPOINT", "ZapHandler", "secure_client_socket",
           "secure_server_socket"]
