"""Envelope: signing, version rule, size limit, and one ProtocolError subclass per bad input."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from protocol.buffers import BUFFERS_KEY
from protocol.envelope import DELIM, MAX_DICT_BYTES, PROTO, Message, Session, pack
from protocol.errors import (
    BufferSpecError,
    CurveError,
    FrameError,
    MessageTooLarge,
    ProtocolError,
    ReplayError,
    SchemaError,
    SignatureError,
    UnknownMessageType,
    VersionError,
)
from protocol.limits import FRAME_MAX, MAX_NAMES, MAX_NESTING
from protocol.replay import ReplayGuard

KEY = b"0123456789abcdef0123456789abcdef"


def render_submit(session: Session, **overrides: object) -> list:
    params = {"subject_id": "s1", "names": ["jawOpen", "eyeBlinkLeft"], "fps": 24.0}
    params.update(overrides)
    curves = np.linspace(0, 1, 10, dtype=np.float32).reshape(5, 2)
    return session.serialize("job_submit", {"kind": "render", "params": params},
                             buffers={"curves": curves}, ident=[b"client-1"])


def resign(session: Session, frames: list, header: dict | None = None, parent: dict | None = None,
           content: dict | None = None) -> list:
    """Replace dict frames and sign them correctly (to reach checks behind the signature)."""
    frames = [bytes(f) for f in frames]
    d = frames.index(DELIM)
    parts = [frames[d + 2], frames[d + 3], frames[d + 4]]
    for i, new in enumerate((header, parent, content)):
        if new is not None:
            parts[i] = msgpack.packb(new, use_bin_type=True)
    return [*frames[:d + 1], session.sign(parts), *parts, *frames[d + 5:]]


def unpack_frame(frames: list, offset: int) -> dict:
    return msgpack.unpackb(bytes(frames[frames.index(DELIM) + offset]), raw=False)


def test_round_trip_keeps_identities_header_content_and_buffers() -> None:
    s = Session(KEY)
    uv = np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float16)
    params = {"subject_id": "s1", "names": ["jawOpen"], "fps": 30, "encoding": "png"}
    frames = s.serialize("job_submit", {"kind": "render", "params": params, "job_id": "j1"},
                         buffers={"curves": np.ones((2, 1), np.float32), "uv_maps": uv}, ident=[b"a", b"b"])
    msg = s.deserialize(frames)
    assert msg.identities == [b"a", b"b"]
    assert msg.msg_type == "job_submit" and msg.header["proto"] == PROTO == "2.6" and msg.header["seq"] == 0
    assert msg.content["params"]["fps"] == 30.0 and msg.content["params"]["frame_start"] == 0
    assert BUFFERS_KEY not in msg.content
    assert msg.buffers["uv_maps"].dtype == np.float16 and np.array_equal(msg.buffers["uv_maps"], uv)
    assert not msg.buffers["uv_maps"].flags.writeable  # zero-copy view of the frame
    reply = Session(KEY).deserialize(s.serialize("job_submit_reply", {"status": "ok", "job_id": "j1",
                                                                      "state": "queued"}, parent=msg))
    assert reply.parent_header == msg.header and reply.content["existing"] is False


def test_tampered_signature_content_and_key_mismatch_are_rejected() -> None:
    s = Session(KEY)
    frames = [bytes(f) for f in render_submit(s)]
    d = frames.index(DELIM)
    bad_sig = list(frames)
    bad_sig[d + 1] = bytes([bad_sig[d + 1][0] ^ 1]) + bad_sig[d + 1][1:]
    with pytest.raises(SignatureError) as exc:
        s.deserialize(bad_sig)
    assert exc.value.identities == [b"client-1"]  # a server can still address an error reply
    altered = list(frames)
    content = unpack_frame(frames, 4)
    content["params"]["subject_id"] = "someone-else"
    altered[d + 4] = msgpack.packb(content, use_bin_type=True)
    with pytest.raises(SignatureError):
        s.deserialize(altered)
    with pytest.raises(SignatureError, match="different key"):
        Session(b"another key entirely").deserialize(frames)


def test_major_version_mismatch_is_refused_naming_both_versions() -> None:
    s = Session(KEY)
    frames = render_submit(s)
    header = unpack_frame(frames, 2)
    header["proto"] = "3.3"
    with pytest.raises(VersionError, match=rf"3\.3.*{PROTO}") as exc:
        s.deserialize(resign(s, frames, header=header))
    assert exc.value.header["msg_type"] == "job_submit"  # enough to send job_submit_reply error
    assert exc.value.authenticated  # signed with the key: the server answers it
    header["proto"] = "2.7"  # a newer minor is fine
    assert s.deserialize(resign(s, frames, header=header)).header["proto"] == "2.7"


def test_size_limits_are_checked_before_decoding() -> None:
    """Dict frames are size-checked before the HMAC runs (unauthenticated: no reply); the total
    size is checked right after the signature, before anything is unpacked (authenticated)."""
    s = Session(KEY, max_message_bytes=1000)
    huge = [DELIM, b"0" * 64, b"\xc1" * (MAX_DICT_BYTES + 1), b"\x80", b"\x80"]
    with pytest.raises(MessageTooLarge, match="header frame is") as exc:
        s.deserialize(huge)
    assert not exc.value.authenticated
    big = Session(KEY).serialize("upload_chunk", {"upload_id": "u", "filename": "v.mp4", "offset": 0,
                                                  "total": 2000}, buffers={"data": np.zeros(2000, np.uint8)})
    with pytest.raises(MessageTooLarge, match="exceeds the limit of 1000") as exc:
        s.deserialize(big)
    assert exc.value.authenticated and exc.value.header["msg_type"] == "upload_chunk"
    garbage = [b"\xc1" * 600, b"\xc1" * 600]
    with pytest.raises(FrameError):
        s.deserialize(garbage)


def test_unknown_fields_are_ignored_and_kept() -> None:
    s = Session(KEY)
    frames = s.serialize("hello", {"client": "t", "future_field": [1, 2]})
    assert s.deserialize(frames).content["future_field"] == [1, 2]


@pytest.mark.parametrize(("mutate", "error", "text"), [
    (lambda h, c: c["params"].pop("names"), SchemaError, "'names' is missing"),
    (lambda h, c: c["params"].update(fps="fast"), SchemaError, "'fps' must be float"),
    (lambda h, c: c["params"].update(fps=True), SchemaError, "'fps' must be float"),
    (lambda h, c: c["params"].update(encoding="jpeg"), SchemaError, "expected one of raw, png"),
    (lambda h, c: c.update(kind="teleport"), SchemaError, "'kind' is 'teleport'"),
    (lambda h, c: c.update(params=[1]), SchemaError, "'params' must be dict"),
    (lambda h, c: h.update(msg_type="launch_missiles"), UnknownMessageType, "unknown msg_type"),
    (lambda h, c: h.pop("msg_id"), FrameError, "'msg_id' missing"),
    (lambda h, c: h.update(proto="one"), FrameError, "major.minor"),
    (lambda h, c: c[BUFFERS_KEY][0].update(dtype="object"), BufferSpecError, "dtype 'object' not allowed"),
    (lambda h, c: c[BUFFERS_KEY][0].update(shape=[4, 2]), BufferSpecError, "nbytes says 40"),
    (lambda h, c: c[BUFFERS_KEY][0].update(shape=[5, 2, 1], nbytes=40), BufferSpecError, "2 dimensions"),
    (lambda h, c: c[BUFFERS_KEY][0].update(dtype="float64", nbytes=80), BufferSpecError,
     "frame has 40 bytes"),
    (lambda h, c: c[BUFFERS_KEY][0].update(checksum="crc32:00000000"), BufferSpecError, "checksum mismatch"),
    (lambda h, c: c[BUFFERS_KEY].append(dict(c[BUFFERS_KEY][0])), BufferSpecError, "2 buffers but 1"),
    (lambda h, c: c["params"].update(names=["jawOpen"]), BufferSpecError, "must equal len"),
])
def test_each_bad_input_gets_its_subclass(mutate, error, text) -> None:
    s = Session(KEY)
    frames = render_submit(s)
    header, content = unpack_frame(frames, 2), unpack_frame(frames, 4)
    mutate(header, content)
    with pytest.raises(error, match=text) as exc:
        s.deserialize(resign(s, frames, header=header, content=content))
    assert exc.value.identities == [b"client-1"]
    if text.startswith("'names'"):
        assert exc.value.field == "params.names"


def test_nan_curves_and_damaged_buffer_bytes() -> None:
    s = Session(KEY)
    curves = np.zeros((3, 1), np.float32)
    curves[1, 0] = np.nan
    params = {"subject_id": "s", "names": ["jawOpen"], "fps": 24}
    with pytest.raises(CurveError, match="NaN/inf"):  # the sender finds out first ...
        s.serialize("job_submit", {"kind": "render", "params": params}, buffers={"curves": curves})
    frames = s.serialize("job_submit", {"kind": "render", "params": params}, buffers={"curves": curves},
                         check=False)
    with pytest.raises(CurveError, match="'jawOpen'"):  # ... and the receiver too
        s.deserialize(frames)
    good = [bytes(f) for f in render_submit(s)]
    buf = bytearray(good[-1])
    buf[3] ^= 0x40
    with pytest.raises(BufferSpecError, match="crc32 checksum mismatch"):
        s.deserialize([*good[:-1], bytes(buf)])


def test_a_receiver_can_verify_buffer_checksums_later() -> None:
    """``scan_values=False`` (the server's I/O thread) reads no buffer byte: the checksums wait in
    ``pending_checksums`` until ``verify_checksums`` (the server's intake thread)."""
    s = Session(KEY, checksum="hmac-sha256")
    good = [bytes(f) for f in render_submit(s)]
    msg = s.deserialize(good, scan_values=False)
    assert list(msg.pending_checksums) == ["curves"]
    s.verify_checksums(msg)
    assert msg.pending_checksums == {}
    buf = bytearray(good[-1])
    buf[3] ^= 0x40
    late = s.deserialize([*good[:-1], bytes(buf)], scan_values=False)  # no error yet
    with pytest.raises(BufferSpecError, match="hmac-sha256 checksum mismatch") as info:
        s.verify_checksums(late)
    assert info.value.authenticated and info.value.header["msg_type"] == "job_submit"
    with pytest.raises(BufferSpecError, match="hmac-sha256 checksum mismatch"):
        s.deserialize([*good[:-1], bytes(buf)])  # the default still verifies at once
    content = unpack_frame(good, 4)
    content[BUFFERS_KEY][0]["checksum"] = "md5:abc"
    with pytest.raises(BufferSpecError, match="unknown checksum scheme"):  # the form: checked at once
        s.deserialize(resign(s, good, content=content), scan_values=False)


def test_truncated_and_garbage_frames() -> None:
    s = Session(KEY)
    frames = [bytes(f) for f in render_submit(s)]
    d = frames.index(DELIM)
    with pytest.raises(FrameError, match="delimiter"):
        s.deserialize([b"hello", b"world"])
    with pytest.raises(FrameError, match="at most 1024"):
        s.deserialize([b""] * 5000)
    with pytest.raises(FrameError, match="at least 4"):
        s.deserialize(frames[: d + 3])
    with pytest.raises(BufferSpecError, match="1 buffers but 0"):
        s.deserialize(frames[:-1])
    with pytest.raises(FrameError, match="not valid msgpack"):
        parts = [b"\xc1", b"\x80", b"\x80"]
        s.deserialize([DELIM, s.sign(parts), *parts])
    parts = [pack([1, 2]), b"\x80", b"\x80"]
    with pytest.raises(FrameError, match="expected a map"):
        s.deserialize([DELIM, s.sign(parts), *parts])


def test_sender_errors_are_protocol_errors() -> None:
    s = Session(KEY)
    with pytest.raises(SchemaError, match="buffers"):
        s.serialize("hello", {"extra": np.zeros(3)})
    with pytest.raises(BufferSpecError, match="cannot travel"):
        s.serialize("hello", {}, buffers={"extra": np.array([object()])})
    with pytest.raises(BufferSpecError, match="expected uint8"):
        s.serialize("upload_chunk", {"upload_id": "u", "filename": "f", "offset": 0, "total": 1},
                    buffers={"data": np.zeros(3, np.float32)})
    with pytest.raises(SignatureError):
        Session(b"")


def test_error_reply_needs_only_ename_evalue() -> None:
    s = Session(KEY)
    request = s.deserialize(s.serialize("subject_get", {"subject_id": "x"}, ident=b"c"))
    frames = s.serialize("subject_get_reply", s.error_content(KeyError("no subject 'x'")), parent=request,
                         ident=request.identities)
    reply = s.deserialize(frames)
    assert reply.content == {"status": "error", "ename": "KeyError", "evalue": "\"no subject 'x'\""}
    assert isinstance(reply, Message) and reply.parent_header["msg_id"] == request.msg_id


def test_every_protocol_error_is_documented_and_named() -> None:
    import protocol.errors as errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, ProtocolError) and cls.__doc__, name


def _signed(s: Session, msg_type: str, content: dict, header: dict | None = None) -> list:
    return s.serialize(msg_type, content, check=False, header=header)


def test_hostile_content_is_refused_with_protocol_errors_only() -> None:
    """The confirmed crash triggers and their relatives: every one a ProtocolError, authenticated."""
    s = Session(KEY)
    deep: list = []
    node = deep
    for _ in range(1000):
        node.append([])
        node = node[0]
    params = {"subject_id": "s", "names": ["jawOpen"], "fps": 24}
    cases = {
        # a huge dimension with nbytes 0 (an empty array that numpy cannot represent)
        "huge dim": (lambda c: c.update({"_buffers": [{"name": "curves", "dtype": "float32",
                                                        "shape": [2**31, 0, 2**31, 2**31], "nbytes": 0}]}),
                     BufferSpecError),
        "dim over 2^31": (lambda c: c.update({"_buffers": [{"name": "curves", "dtype": "float32",
                                                             "shape": [2**31 + 1, 0], "nbytes": 0}]}),
                          BufferSpecError),
        # a wrongly typed field nested 1,000 levels deep
        "nesting": (lambda c: c["params"].update({"names": deep}), FrameError),
        # a frame number that would not fit in the frame messages
        "frame_start": (lambda c: c["params"].update({"frame_start": 2**63}), SchemaError),
        "frame_range": (lambda c: c["params"].update({"frame_range": [0, 2**40]}), SchemaError),
        "too many names": (lambda c: c["params"].update({"names": ["n"] * (MAX_NAMES + 1)}), FrameError),
        "long name": (lambda c: c["params"].update({"names": ["n" * 300]}), SchemaError),
        "float range": (lambda c: c["params"].update({"fps": 1e300}), SchemaError),
        "int range": (lambda c: c["params"].update({"png_level": 2**64 - 1}), SchemaError),
        "wrong type deep": (lambda c: c.update({"job_id": {"a": [[{"b": 1}]]}}), SchemaError),
        "long string": (lambda c: c["params"].update({"style": "x" * 5000}), SchemaError),
        "huge string": (lambda c: c["params"].update({"style": "x" * 70_000}), FrameError),
    }
    for name, (mutate, error) in cases.items():
        content = {"kind": "render", "params": dict(params), "job_id": "j"}
        mutate(content)
        frames = _signed(s, "job_submit", content)
        with pytest.raises(error) as exc:
            s.deserialize(frames)
        assert exc.value.authenticated and exc.value.header["msg_type"] == "job_submit", name
        assert len(str(exc.value)) < 1000, name
    # frame_start + rows past the last frame number
    frames = s.serialize("job_submit", {"kind": "render", "params": {**params, "frame_start": FRAME_MAX},
                                        "job_id": "j"}, buffers={"curves": np.zeros((2, 1), np.float32)},
                         check=False)
    with pytest.raises(SchemaError, match="last frame number"):
        s.deserialize(frames)


def test_nesting_limit_is_exact() -> None:
    s = Session(KEY)
    for depth, ok in ((MAX_NESTING, True), (MAX_NESTING + 1, False)):
        value: list = []
        node = value
        for _ in range(depth - 2):  # content itself is level 1, the field's list level 2
            node.append([])
            node = node[0]
        frames = _signed(s, "hello", {"client": "x", "extra": value})
        if ok:
            assert s.deserialize(frames).content["extra"] == value
        else:
            with pytest.raises(FrameError, match=f"deeper than {MAX_NESTING}"):
                s.deserialize(frames)


def test_linear_validation_of_many_names() -> None:
    """4,096 names (the bound) decode and validate in milliseconds; Curves checks duplicates linearly."""
    import time

    from protocol.curves import Curves

    s = Session(KEY)
    names = [f"name_{i:05d}" for i in range(MAX_NAMES)]
    frames = s.serialize("job_submit", {"kind": "render", "job_id": "j",
                                        "params": {"subject_id": "s", "names": names, "fps": 24}},
                         buffers={"curves": np.zeros((3, MAX_NAMES), np.float32)})
    t0 = time.perf_counter()
    msg = s.deserialize(frames)
    decode = time.perf_counter() - t0
    t0 = time.perf_counter()
    Curves(names, 24, 0, np.zeros((3, MAX_NAMES), np.float32))
    curves = time.perf_counter() - t0
    assert msg.content["params"]["names"] == names
    assert decode < 0.5 and curves < 0.5, (decode, curves)  # O(K^2) took 4.5 s for 20k names
    with pytest.raises(CurveError, match="duplicate curve names: a"):
        Curves(["a", *names[:10], "a"], 24, 0, np.zeros((1, 12), np.float32))


def test_replay_guard_refuses_repeats_and_stale_dates() -> None:
    clock = [1_000_000.0]
    guard = ReplayGuard(window=60, history=4, clock=lambda: clock[0])
    s = Session(KEY)
    server = Session(KEY, replay_guard=guard)

    def at(t: float) -> list:
        header = s.msg_header("hello")
        stamp = np.datetime64(int(t * 1e6), "us")
        header["date"] = f"{stamp}Z"
        return s.serialize("hello", {}, header=header)

    first = at(clock[0])
    server.deserialize(first)
    with pytest.raises(ReplayError, match="already accepted") as exc:
        server.deserialize(first)
    assert exc.value.authenticated
    with pytest.raises(ReplayError, match=r"\+61\.0 s"):
        server.deserialize(at(clock[0] + 61))
    with pytest.raises(ReplayError, match=r"-61\.0 s"):
        server.deserialize(at(clock[0] - 61))
    # the history is full: what it forgets sets a horizon, older messages are refused
    for k in range(6):
        server.deserialize(at(clock[0] + k))
    assert len(guard) == 4 and guard.horizon >= clock[0] + 1
    with pytest.raises(ReplayError, match="older than this side's replay history"):
        server.deserialize(at(clock[0] + 0.5))
    clock[0] += 120  # everything remembered is outside the window now: forgotten on the next accept
    server.deserialize(at(clock[0]))
    assert len(guard) == 1


def test_buffer_checksums_use_a_key_of_their_own() -> None:
    """HKDF separates the envelope key from the buffer key: a buffer HMAC is no signature."""
    from protocol.buffers import compute_checksum
    from protocol.keys import derive

    s = Session(KEY, checksum="hmac-sha256")
    assert len({s.key, s.envelope_key, s.buffer_key}) == 3
    assert s.envelope_key == derive(KEY, "envelope") and s.buffer_key == derive(KEY, "buffers")
    h, p, c = pack(s.msg_header("hello")), pack({}), pack({})
    forged = compute_checksum(h + p + c, "hmac-sha256", s.buffer_key).split(":", 1)[1].encode()
    with pytest.raises(SignatureError):
        s.deserialize([DELIM, forged, h, p, c])
    assert s.deserialize([DELIM, s.sign([h, p, c]), h, p, c]).msg_type == "hello"


def test_docs_print_the_bounds_table_of_the_code() -> None:
    """docs/protocol.md carries protocol.limits.BOUNDS verbatim (one source of truth)."""
    from pathlib import Path

    from protocol.limits import bounds_markdown

    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    assert bounds_markdown() in doc, "regenerate the table: python -c 'from protocol.limits import *; " \
                                     "print(bounds_markdown())'"


def test_docs_job_kind_table_lists_each_fields_choices() -> None:
    """docs/protocol.md's job-kind rows name every choice the message table accepts (the train
    job's presets, the render job's encodings), so a new choice cannot go undocumented."""
    from pathlib import Path

    from protocol.messages import JOB_KINDS

    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    rows = {line.split("|")[1].strip(" `"): line for line in doc.splitlines() if line.startswith("| `")}
    for kind, spec in JOB_KINDS.items():
        for name, field in spec.fields.items():
            if field.choices is not None:
                listed = "\\|".join(map(str, field.choices))
                assert f"`{name}`: {field.type} ({listed})" in rows[kind], (kind, name, field.choices)


def test_the_edit_asks_for_steadying_along_the_motion_with_a_bool() -> None:
    """``steady_motion`` (since 2.5): true or false (or absent), nothing else, on either side."""
    s = Session(KEY)
    ref = np.zeros((8, 8, 3), np.uint8)

    def submit(value: object, check: bool = True) -> list:
        content = {"kind": "edit", "params": {"subject_id": "s", "style": "t", "steady_motion": value}}
        return s.serialize("job_submit", content, buffers={"reference": ref}, ident=[b"c"], check=check)

    assert s.deserialize(submit(True)).content["params"]["steady_motion"] is True
    assert s.deserialize(submit(None)).content["params"]["steady_motion"] is False  # not given: off
    for bad in ("yes", 1, 0.0):
        with pytest.raises(SchemaError, match="steady_motion"):
            submit(bad)
        with pytest.raises(SchemaError, match="steady_motion"):
            s.deserialize(submit(bad, check=False))


def test_edit_references_are_checked_on_both_sides() -> None:
    """An edit's further references (since 2.4): as many as ``more_frames`` names, in buffer order
    or as paths (not both), at most MAX_KEYFRAMES in all, one per frame; a receiver refuses a
    sender that skipped the check."""
    from protocol.limits import MAX_KEYFRAMES

    s = Session(KEY)
    ref = np.zeros((8, 8, 3), np.uint8)

    def submit(params: dict, buffers: dict, check: bool = True) -> list:
        content = {"kind": "edit", "params": {"subject_id": "s", "style": "t", **params}}
        return s.serialize("job_submit", content, buffers=buffers, ident=[b"c"], check=check)

    good = submit({"frame": 0, "more_frames": [7, 9]},
                  {"reference": ref, "reference_1": ref, "reference_2": ref})
    assert s.deserialize(good).content["params"]["more_frames"] == [7, 9]
    assert s.deserialize(submit({"more_frames": [7], "more_reference_paths": ["/r/b.png"]},
                                {"reference": ref})).content["params"]["more_reference_paths"] == ["/r/b.png"]
    bad = [
        ({"more_frames": [7]}, {"reference": ref}, "1 frames but 0 further references"),
        ({"more_frames": [7]}, {"reference": ref, "reference_2": ref}, "in order"),
        ({"more_frames": [7], "more_reference_paths": ["/r/b.png"]}, {"reference": ref, "reference_1": ref},
         "not both"),
        ({"frame": 3, "more_frames": [3]}, {"reference": ref, "reference_1": ref}, "two references for one"),
        ({"more_frames": list(range(1, MAX_KEYFRAMES + 1))},
         {"reference": ref, **{f"reference_{i}": ref for i in range(1, MAX_KEYFRAMES + 1)}}, "at most"),
    ]
    for params, buffers, match in bad:
        with pytest.raises(SchemaError, match=match):
            submit(params, buffers)
        with pytest.raises(SchemaError, match=match):
            s.deserialize(submit(params, buffers, check=False))
