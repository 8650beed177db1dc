"""Hostile messages for the service fuzz tests: signed ones that reach the handlers, and
unauthenticated ones that must be dropped unanswered; ``run_fuzz`` sends them to a running server
and ``check_fuzz`` checks what it answered (``tests/service/test_bad_input.py``, and the stress run
``python bench/service.py --fuzz N``).

Signed messages cover every request type (and replies/events sent as requests) with content
built from the message table and then spoiled: wrong types anywhere, ints at the edges of and
beyond every range, deep nesting, long strings and lists, bad buffer descriptors (huge
dimensions, nbytes 0, wrong dtypes), and job submissions that pass the schema but fail inside
the job kind's preparation (existing subjects with wrong curve names, UV sizes, NaN curves, an
untrained subject, files outside --allow-read). None of them can start a job.
"""

from __future__ import annotations

import random
import time
from typing import Any

import msgpack
import numpy as np
import zmq

from protocol.envelope import DELIM, Session, pack
from protocol.limits import FRAME_MAX, MAX_NAMES
from protocol.messages import EVENTS, MESSAGES, REPLIES, REQUESTS

TRAINED = "s1"
"""A subject with a trained avatar (installed by the test)."""
UNTRAINED = "s0"
"""A tracked subject without an avatar."""

BATCH = 200
"""Messages ``run_fuzz`` sends before it waits for their replies."""

_EDGE_INTS = [0, -1, 1, 2**31 - 1, -(2**31), 2**31, 2**53, 2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1]


def _deep(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def hostile_value(rng: random.Random) -> Any:
    makers = [
        lambda: None, lambda: True, lambda: rng.choice(_EDGE_INTS), lambda: rng.random() * 1e308,
        lambda: float("nan"), lambda: "x" * rng.choice([0, 1, 300, 5000, 70_000]),
        lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(8))),
        lambda: _deep(rng.choice([5, 33, 200, 1000])), lambda: ["a"] * rng.choice([2, MAX_NAMES + 1]),
        lambda: {str(i): i for i in range(rng.choice([1, 1100]))}, lambda: [1.5, "a", None],
        lambda: {"job_id": {"nested": [[{"x": 1}]]}},
    ]
    return rng.choice(makers)()


def _descriptor_attack(rng: random.Random) -> list[dict[str, Any]]:
    name = rng.choice(["curves", "uv_maps", "pose", "data", "reference", "x"])
    return [rng.choice([
        {"name": name, "dtype": "float32", "shape": [2**31, 0, 2**31, 2**31], "nbytes": 0},
        {"name": name, "dtype": "float32", "shape": [2**40], "nbytes": 0},
        {"name": name, "dtype": "object", "shape": [1], "nbytes": 8},
        {"name": name, "dtype": "float32", "shape": [-1], "nbytes": 0},
        {"name": name, "dtype": "float32", "shape": [3, 4], "nbytes": 48, "checksum": "crc32:00000000"},
        {"name": name, "dtype": "uint8", "shape": _deep(40), "nbytes": 1},
        {"name": "", "dtype": "uint8", "shape": [1], "nbytes": 1},
    ])]


def _render(rng: random.Random, names: list[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A render that passes the schema but fails in preparation or the value scan."""
    t = rng.randrange(1, 6)
    k = len(names)
    params: dict[str, Any] = {"subject_id": TRAINED, "names": list(names), "fps": 25.0}
    buffers = {"curves": np.zeros((t, k), np.float32)}
    case = rng.randrange(6)
    if case == 0:
        params["names"] = [*names[:-1], "notAShape"]
    elif case == 1:
        buffers["curves"][0, 0] = np.nan
    elif case == 2:
        buffers["uv_maps"] = np.zeros((t, 8, 8, 3), np.float16)
    elif case == 3:
        params["subject_id"] = UNTRAINED
    elif case == 4:
        params.update(frame_start=FRAME_MAX - t + 1, frame_range=[FRAME_MAX, FRAME_MAX - 1])
    else:
        params["style"] = "no-such-style"
    return params, buffers


def signed_request(rng: random.Random, s: Session, names: list[str]) -> tuple[str, list[bytes]]:
    """(channel, frames) of one correctly signed hostile message."""
    msg_type = rng.choice([*REQUESTS, *REQUESTS, *REQUESTS, rng.choice([*REPLIES, *EVENTS]), "exec"])
    spec = MESSAGES.get(msg_type)
    content: dict[str, Any] = {}
    buffers: dict[str, np.ndarray] | None = None
    if msg_type == "job_submit":
        kind = rng.choice(["track", "train", "edit", "render"])
        if kind == "render":
            params, buffers = _render(rng, names)
        elif kind == "track":
            params = {"subject_id": rng.choice(["new1", TRAINED]),
                      **rng.choice([{"upload_id": "never-sent"}, {"path": "/etc/passwd"}, {}])}
        elif kind == "train":
            params = {"subject_id": rng.choice(["ghost", "../x", 5])}
        else:
            params = {"subject_id": rng.choice([UNTRAINED, "ghost"]), "style": "st",
                      "reference_path": "/etc/hosts"}
        content = {"kind": kind, "params": params, "job_id": f"fz{rng.randrange(10**9)}"}
    elif spec is not None:
        for field_name, f in spec.fields.items():
            content[field_name] = {"str": "x", "int": 1, "float": 1.0, "bool": True}.get(f.type)
        content.update({"job_id": rng.choice(["nope", "../x", "fz1"]), "subject_id": TRAINED})
        if msg_type == "upload_chunk":
            content.update(upload_id=f"u{rng.randrange(4)}", filename="v.mp4", offset=0, total=4)
            buffers = {"data": np.zeros(rng.choice([4, 5]), np.uint8)}
        if msg_type == "shutdown":
            content["reason"] = 7  # never a valid shutdown: the server must stay up
    spoil = rng.randrange(4)
    if spoil == 1 and content:  # a field of the wrong type or out of range
        key = rng.choice(list(content))
        content[key] = hostile_value(rng)
    elif spoil == 2:
        content[rng.choice(["params", "extra", "names", "_buffers"])] = hostile_value(rng)
    channel = "control" if msg_type in ("job_cancel", "shutdown") and rng.random() < 0.7 else "shell"
    if msg_type == "shutdown" and channel == "control" and not isinstance(content.get("reason"), int):
        content["reason"] = 7
    try:
        frames = s.serialize(msg_type, content, buffers=buffers, check=False)
    except Exception:  # our own packer refuses the value (e.g. NaN is fine, sets are not)
        frames = s.serialize(msg_type, {"x": 1}, check=False)
    if spoil == 3:  # swap in a hostile buffer descriptor, re-signed
        content = dict(content)
        content["_buffers"] = _descriptor_attack(rng)
        h, p, c = pack(s.msg_header(msg_type)), pack({}), pack(content)
        frames = [DELIM, s.sign([h, p, c]), h, p, c, b"\0" * rng.choice([0, 1, 48])]
    return channel, [bytes(f) for f in frames]


def unauthenticated(rng: random.Random, s: Session, wrong: Session) -> list[bytes]:
    """A message that fails before its signature verifies (dropped unanswered)."""
    frames = [bytearray(f) for f in s.serialize("hello", {"client": "fz"})]
    op = rng.randrange(5)
    if op == 0:
        frames[1][rng.randrange(64)] ^= 1
    elif op == 1:
        frames[2] += b"\0"
    elif op == 2:
        return [bytes(f) for f in wrong.serialize("hello", {})]
    elif op == 3:
        return [rng.randbytes(rng.randrange(1, 64)) for _ in range(rng.randrange(1, 6))]
    else:
        del frames[rng.randrange(1, len(frames))]
    return [bytes(f) for f in frames]


def dealer(ctx: zmq.Context, info, channel: str) -> zmq.Socket:
    """A raw DEALER connected to the server's ``channel`` (CURVE when ``info`` has a server key)."""
    from protocol.link import secure_client_socket

    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    secure_client_socket(s, info)
    s.connect(info.url(channel))
    return s


def run_fuzz(info, names: list[str], n_messages: int, seed: int = 1234, log=lambda: "") -> dict[str, int]:
    """Send ``n_messages`` hostile messages (80 % signed, 20 % unauthenticated, some replays) to the
    server of connection ``info`` (subjects ``TRAINED`` with expression ``names`` and ``UNTRAINED``)
    and require exactly one reply per signed message and none for the others; return the counts
    (``ename:<type>`` per error type; ``seconds`` for the messages). ``log()`` is the server's log
    for a failure message."""
    session = Session(info.key_bytes)
    wrong = Session(b"not-the-key-" * 3)
    rng = random.Random(seed)
    ctx = zmq.Context()
    socks = {ch: dealer(ctx, info, ch) for ch in ("shell", "control")}
    poller = zmq.Poller()
    for sock in socks.values():
        poller.register(sock, zmq.POLLIN)
    stats = {"signed": 0, "unauthenticated": 0, "replays": 0, "replies": 0, "ok": 0, "error": 0}
    enames: dict[str, int] = {}
    recent: list[tuple[str, list[bytes]]] = []
    t0 = time.perf_counter()
    try:
        sent = 0
        while sent < n_messages:
            waiting: dict[str, int] = {}
            for _ in range(min(BATCH, n_messages - sent)):
                roll = rng.random()
                if roll < 0.2:
                    socks["shell"].send_multipart(unauthenticated(rng, session, wrong))
                    stats["unauthenticated"] += 1
                else:
                    if roll < 0.23 and recent:
                        channel, frames = rng.choice(recent)  # a replay: answered with ReplayError
                        stats["replays"] += 1
                    else:
                        channel, frames = signed_request(rng, session, names)
                        recent = [*recent[-50:], (channel, frames)]
                    msg_id = msgpack.unpackb(frames[2], raw=False)["msg_id"]
                    waiting[msg_id] = waiting.get(msg_id, 0) + 1
                    socks[channel].send_multipart(frames)
                    stats["signed"] += 1
                sent += 1
            while waiting:
                ready = dict(poller.poll(20_000))
                assert ready, f"no reply for {sum(waiting.values())} signed messages\n{log()}"
                for sock in ready:
                    reply = session.deserialize(sock.recv_multipart())  # replies are signed and valid
                    parent = reply.parent_header.get("msg_id")
                    assert waiting.get(parent), f"a reply nobody asked for: {reply.msg_type} {reply.content}"
                    waiting[parent] -= 1
                    if not waiting[parent]:
                        del waiting[parent]
                    stats["replies"] += 1
                    status = reply.content.get("status")
                    stats[status] += 1
                    if status == "error":
                        assert reply.content.get("evalue"), reply.content
                        enames[reply.content["ename"]] = enames.get(reply.content["ename"], 0) + 1
        assert not poller.poll(300), "more replies than signed messages"
        stats["seconds"] = round(time.perf_counter() - t0 - 0.3, 1)
    finally:
        for sock in socks.values():
            sock.close(0)
        ctx.term()
    return {**stats, **{f"ename:{k}": v for k, v in enames.items()}}


def check_fuzz(stats: dict[str, int], n_messages: int, client) -> None:
    """What the server must have done with ``run_fuzz``'s ``n_messages`` (its ``stats``): answer
    every signed message once, reach the handlers and every layer of checks, count the
    unauthenticated ones, make no internal error and drop no reply, run no job and keep its
    subjects. ``client``: a ``protocol.client.Client`` of the same server."""
    assert stats["signed"] + stats["unauthenticated"] == n_messages
    assert stats["replies"] == stats["signed"]  # every authenticated message answered, once
    assert stats.get("ename:ReplayError", 0) >= stats["replays"] > 0
    for reached in ("SchemaError", "JobError", "BufferSpecError", "FrameError", "SandboxError"):
        assert stats.get(f"ename:{reached}", 0) > 0, (reached, stats)  # handlers and every layer reached
    hello = client.hello()
    assert hello["unauthenticated"] == stats["unauthenticated"]
    assert hello["internal_errors"] == 0 and hello["dropped_replies"] == 0
    assert all(j["state"] not in ("queued", "running") for j in client.jobs())  # nothing runs
    assert TRAINED in {s["subject_id"] for s in client.subjects()}
