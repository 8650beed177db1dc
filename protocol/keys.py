"""Keys derived from the connection file's key (HKDF-SHA256, RFC 5869).

One secret (``ConnectionInfo.key``, 256 random bits, new on every ``serve`` start) gives every
key the protocol uses, each for one purpose only, so that no MAC made for one purpose is
accepted for another (a buffer checksum can never pass as a message signature):

- ``envelope``: HMAC-SHA256 over header + parent_header + content (the message signature);
- ``buffers``: HMAC-SHA256 over buffer bytes and frame images (``hmac-sha256:`` checksums);
- ``link``: the ZeroMQ PLAIN password that admits a connection on links without CURVE, checked
  in the handshake, before a single message byte is buffered (see docs/service.md).
"""

from __future__ import annotations

import hashlib
import hmac

PURPOSES = ("envelope", "buffers", "link")
_SALT = b"emo-avatar protocol 2"
LINK_USERNAME = "emo-avatar"
"""ZeroMQ PLAIN user name (the password is the derived ``link`` key)."""


def hkdf_sha256(secret: bytes, info: bytes, length: int = 32, salt: bytes = _SALT) -> bytes:
    """RFC 5869 HKDF with SHA-256: extract with ``salt``, expand with ``info`` to ``length`` bytes."""
    prk = hmac.new(salt, secret, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def derive(secret: bytes, purpose: str) -> bytes:
    """The 32-byte key for ``purpose`` (one of :data:`PURPOSES`)."""
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}")
    return hkdf_sha256(secret, purpose.encode("ascii"))


def link_password(secret: bytes) -> str:
    """The PLAIN password (hex of the derived ``link`` key)."""
    return derive(secret, "link").hex()


__all__ = ["LINK_USERNAME", "PURPOSES", "derive", "hkdf_sha256", "link_password"]
