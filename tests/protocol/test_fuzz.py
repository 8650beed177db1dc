"""10,000 random and mutated byte frames through decode: only ProtocolError subclasses escape."""

from __future__ import annotations

import random
from typing import Any

import msgpack
import numpy as np

from protocol.envelope import DELIM, Message, Session
from protocol.errors import ProtocolError

KEY = b"fuzz-key-0123456789abcdef"
N_CASES = 10_000


def valid_messages(s: Session) -> list[list[bytes]]:
    """A few real messages to mutate (with and without buffers)."""
    msgs = [
        s.serialize("hello", {"client": "fuzz"}, ident=[b"peer"]),
        s.serialize("job_submit", {"kind": "render", "params": {"subject_id": "s", "names": ["jawOpen", "a"],
                                                                "fps": 24}},
                    buffers={"curves": np.ones((3, 2), np.float32),
                             "pose": np.zeros((3, 6), np.float32)}),
        s.serialize("frame", {"job_id": "j", "index": 2, "encoding": "raw", "checksum": "crc32:00000000"},
                    buffers={"image": np.zeros((4, 4, 3), np.uint8)}),
        s.serialize("job_status_reply", {"status": "ok", "instance_id": "i",
                                         "job": {"job_id": "j", "kind": "train", "state": "running"}}),
        s.serialize("job_progress", {"job_id": "j", "stage": "pti", "step": 1, "total": 9,
                                     "losses": {"l1": 0.5}}),
    ]
    return [[bytes(f) for f in m] for m in msgs]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    makers = [
        lambda: None, lambda: True, lambda: rng.randint(-(2**63), 2**64 - 1),
        lambda: rng.random() * 1e300 * rng.choice([-1, 1]), lambda: "x" * rng.randrange(5),
        lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(5))), lambda: float("nan"),
        lambda: [random_value(rng, depth + 1) for _ in range(rng.randrange(3))],
        lambda: {str(rng.randrange(9)): random_value(rng, depth + 1) for _ in range(rng.randrange(3))},
    ]
    return makers[rng.randrange(9 if depth < 2 else 7)]()


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        if op == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 1:
            b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
        elif op == 2 and b:
            del b[rng.randrange(len(b)):rng.randrange(len(b) + 1)]
        else:
            b = b[: rng.randrange(len(b) + 1)]
    return bytes(b)


def mutate_dict(rng: random.Random, d: Any) -> Any:
    """Replace, drop or add a key somewhere in a decoded map."""
    if not isinstance(d, dict) or not d:
        return random_value(rng)
    d = dict(d)
    key = rng.choice(list(d))
    op = rng.randrange(4)
    if op == 0:
        d.pop(key)
    elif op == 1:
        d[key] = random_value(rng)
    elif op == 2:
        d[key] = mutate_dict(rng, d[key])
    else:
        d[rng.choice(["_buffers", "msg_type", "proto", "params", "names", "kind", "status", "x"])] = \
            random_value(rng)
    return d


def make_case(rng: random.Random, s: Session, base: list[list[bytes]]) -> list[bytes]:
    kind = rng.randrange(5)
    if kind == 0:  # pure garbage, sometimes with a delimiter
        frames = [rng.randbytes(rng.randrange(40)) for _ in range(rng.randrange(7))]
        if frames and rng.random() < 0.5:
            frames.insert(rng.randrange(len(frames)), DELIM)
        return frames
    frames = list(rng.choice(base))
    d = frames.index(DELIM)
    if kind == 1:  # damage bytes of any frame (mostly a signature error)
        i = rng.randrange(len(frames))
        frames[i] = mutate_bytes(rng, frames[i])
        return frames
    if kind == 2:  # drop / duplicate / reorder frames
        i = rng.randrange(len(frames))
        op = rng.randrange(3)
        if op == 0:
            del frames[i]
        elif op == 1:
            frames.insert(i, frames[rng.randrange(len(frames))])
        else:
            j = rng.randrange(len(frames))
            frames[i], frames[j] = frames[j], frames[i]
        return frames
    # kinds 3 and 4: correctly signed but bad inside (reaches msgpack, header and schema checks)
    parts = frames[d + 2: d + 5]
    i = rng.randrange(3)
    if kind == 3:
        parts[i] = mutate_bytes(rng, parts[i])
    else:
        obj = msgpack.unpackb(parts[i], raw=False)
        parts[i] = msgpack.packb(mutate_dict(rng, obj), use_bin_type=True)
    tail = frames[d + 5:]
    if tail and rng.random() < 0.3:
        tail[-1] = mutate_bytes(rng, tail[-1])
    return [*frames[:d + 1], s.sign(parts), *parts, *tail]


def test_random_and_mutated_frames_raise_only_protocol_errors() -> None:
    rng = random.Random(1234)
    s = Session(KEY, max_message_bytes=4096)
    base = valid_messages(s)
    outcomes: dict[str, int] = {}
    for _ in range(N_CASES):
        frames = make_case(rng, s, base)
        try:
            result = s.deserialize(frames)
            assert isinstance(result, Message)
            name = "decoded"
        except ProtocolError as exc:
            name = exc.ename
            assert str(exc)  # a readable message
        outcomes[name] = outcomes.get(name, 0) + 1
    # the fuzzer reached every layer, not only the signature check
    for name in ("FrameError", "SignatureError", "SchemaError", "BufferSpecError", "decoded"):
        assert outcomes.get(name, 0) > 20, outcomes
