"""A raw ZMTP 3.0 peer over a plain TCP socket (the NULL mechanism, no credentials).

libzmq's own sockets never put an unfinished multipart message on the wire, so an attacker
writes ZMTP by hand; so do the tests, to check that such a peer is refused in the handshake.
"""

import socket
import struct


def greeting() -> bytes:
    return b"\xff" + b"\x00"*8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00"*31


def command(name: bytes, body: bytes) -> bytes:
    data = bytes([len(name)]) + name + body
    head = (b"\x04" + bytes([len(data)])) if len(data) < 256 else (b"\x06" + struct.pack(">Q", len(data)))
    return head + data


def prop(name: bytes, value: bytes) -> bytes:
    return bytes([len(name)]) + name + struct.pack(">I", len(value)) + value


def frame(data: bytes, more: bool) -> bytes:
    flags = 0x01 if more else 0
    if len(data) < 256:
        return bytes([flags, len(data)]) + data
    return bytes([flags | 0x02]) + struct.pack(">Q", len(data)) + data


def connect(port: int, socktype: bytes = b"DEALER") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(greeting())
    g = b""
    while len(g) < 64:
        part = s.recv(64 - len(g))
        if not part:
            raise ConnectionResetError("the server closed the connection during the greeting")
        g += part
    s.sendall(command(b"READY", prop(b"Socket-Type", socktype)))
    return s
