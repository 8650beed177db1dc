"""hypothesis: deserialize(serialize(m)) == m for every message type in the table, with random
content (built from the table's own field specs) and random buffers."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from protocol.envelope import Message, Session
from protocol.limits import FRAME_MAX, MAX_KEYFRAMES
from protocol.messages import JOB_KINDS, MESSAGES, MORE_REFERENCES, BufferSpec, Field, validate

KEY = b"round-trip-key-0123456789"
text = st.text(max_size=12)
leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), text,
                 st.floats(allow_nan=False, allow_infinity=False))
json_like = st.recursive(leaf, lambda inner: st.lists(inner, max_size=3)
                         | st.dictionaries(text, inner, max_size=3), max_leaves=8)


def field_strategy(f: Field) -> st.SearchStrategy[Any]:
    if f.choices is not None:
        return st.sampled_from(f.choices)
    lo = f.minimum
    hi = f.maximum
    if f.type == "int":
        return st.integers(int(np.ceil(lo)) if lo is not None else -(2**53),
                           int(hi) if hi is not None else 2**53)
    if f.type == "float":
        return st.floats(lo if lo is not None else -1e12, hi if hi is not None else 1e12,
                         allow_nan=False, allow_infinity=False)
    if f.type == "dict" and f.schema is not None:
        return content_strategy(f.schema)
    if f.type == "list[dict]" and f.schema is not None:
        return st.lists(content_strategy(f.schema), max_size=3)
    cap = f.max_len if f.max_len is not None else 6

    def listed(items: st.SearchStrategy[Any], size: int) -> st.SearchStrategy[list[Any]]:
        return st.lists(items, max_size=min(size, cap))

    return {
        "str": text,
        "bool": st.booleans(),
        "dict": st.dictionaries(text, json_like, max_size=4),
        "list": listed(json_like, 4),
        "any": json_like,
        "list[str]": listed(text, 6),
        "list[dict]": listed(st.dictionaries(text, json_like, max_size=3), 3),
        "list[int]": listed(st.integers(-1000, 1000), 4),
        "list[float]": listed(st.floats(allow_nan=False, allow_infinity=False), 4),
        "dict[str,float]": st.dictionaries(text, st.floats(allow_nan=False, allow_infinity=False),
                                           max_size=4),
    }[f.type]


def content_strategy(fields: dict[str, Field]) -> st.SearchStrategy[dict[str, Any]]:
    required = {k: field_strategy(f) for k, f in fields.items() if f.required}
    optional = {k: st.one_of(st.none(), field_strategy(f)) for k, f in fields.items() if not f.required}
    optional["x_unknown_field"] = json_like  # unknown fields are ignored and kept
    return st.fixed_dictionaries(required, optional=optional)


def draw_buffers(draw: st.DrawFn, specs: dict[str, BufferSpec], content: dict[str, Any],
                 bind: dict[str, str]) -> dict[str, np.ndarray]:
    sizes = {sym: len(content[f]) for sym, f in bind.items() if isinstance(content.get(f), list)}
    out = {}
    for name, spec in specs.items():
        if not spec.required and not draw(st.booleans()):
            continue
        if spec.shape is None:
            shape = tuple(draw(st.lists(st.integers(0, 5), min_size=1, max_size=3)))
        else:
            shape = tuple(s if isinstance(s, int) else sizes.setdefault(s, draw(st.integers(0, 4))) if s
                          else draw(st.integers(0, 4)) for s in spec.shape)
        dtype = np.dtype(draw(st.sampled_from(spec.dtypes)))
        elements = st.floats(-1e3, 1e3, width=16) if dtype.kind == "f" else None
        out[name] = draw(arrays(dtype, shape, elements=elements))
    return out


@st.composite
def messages(draw: st.DrawFn, msg_type: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    spec = MESSAGES[msg_type]
    if spec.role == "reply" and draw(st.booleans()):
        return {"status": "error", "ename": draw(text), "evalue": draw(text)}, {}
    content = draw(content_strategy(dict(spec.fields)))
    if spec.role == "reply":
        content["status"] = "ok"
    buffer_specs, bind, where = dict(spec.buffers), dict(spec.bind), content
    if msg_type == "job_submit":
        kind = JOB_KINDS[content["kind"]]
        params = draw(content_strategy(dict(kind.fields)))
        if content["kind"] == "track":
            choice = draw(st.sampled_from(["upload_id", "path"]))
            params[choice] = draw(text)
            params.pop({"upload_id": "path", "path": "upload_id"}[choice], None)
        if content["kind"] == "edit":
            params.pop("reference_path", None)
        if content["kind"] == "render" and params.get("frame_range") is not None:
            params["frame_range"] = sorted(draw(st.lists(st.integers(0, 99), min_size=2, max_size=2)))
        content["params"] = params
        buffer_specs, bind, where = dict(kind.buffers), dict(kind.bind), params
    buffers = draw_buffers(draw, buffer_specs, where, bind)
    if msg_type == "job_submit" and content["kind"] == "edit":
        if "reference" not in buffers:
            where["reference_path"] = draw(text)
        # further references: one frame each in more_frames, as buffers in order or as paths
        kept = list(itertools.takewhile(lambda name: name in buffers, MORE_REFERENCES))
        for name in MORE_REFERENCES[len(kept):]:
            buffers.pop(name, None)
        n = min(len(kept) or len(where.get("more_frames") or []), len(MORE_REFERENCES))
        if n:
            first = where.get("frame") or 0
            where["more_frames"] = [f for f in range(MAX_KEYFRAMES) if f != first][:n]
        if kept or not n:
            where.pop("more_reference_paths", None)
        else:
            where["more_reference_paths"] = [draw(text) for _ in range(n)]
    if msg_type == "job_submit" and content["kind"] == "render" and where.get("frame_start") is not None:
        rows = len(buffers["curves"]) if "curves" in buffers else 0
        where["frame_start"] = min(where["frame_start"], FRAME_MAX - max(rows - 1, 0))
    return content, buffers


@pytest.mark.parametrize("msg_type", sorted(MESSAGES))
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_every_message_type_round_trips(msg_type: str, data: st.DataObject) -> None:
    content, buffers = data.draw(messages(msg_type))
    ident = data.draw(st.lists(st.binary(min_size=1, max_size=8), max_size=2))
    parent = data.draw(st.one_of(st.just({}), st.fixed_dictionaries({"msg_id": text, "msg_type": text})))
    checksum = data.draw(st.sampled_from(["crc32", "hmac-sha256", "none"]))
    sender, receiver = Session(KEY, checksum=checksum), Session(KEY)
    frames, header = sender.build(msg_type, content, parent, buffers, ident, True, None)
    expected = Message(header=header, content=validate(msg_type, content), buffers=buffers,
                       parent_header=parent, identities=ident)
    got = receiver.deserialize([bytes(f) for f in frames])
    assert got == expected
    assert {k: v.dtype for k, v in got.buffers.items()} == {k: v.dtype for k, v in buffers.items()}


def test_table_is_complete() -> None:
    requests = {"hello", "job_submit", "job_status", "job_list", "job_cancel", "frames_credit", "shutdown",
                "subject_list", "subject_get", "upload_chunk"}
    events = {"status", "job_progress", "job_state", "log", "frame"}
    assert requests | {f"{r}_reply" for r in requests} | events | {"error_reply"} == set(MESSAGES)
    assert set(JOB_KINDS) == {"track", "train", "edit", "render"}
