"""Envelope: signing, version rule, size limit, and one ProtocolError subclass per bad input."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from protocol.buffers import BUFFERS_KEY
from protocol.envelope import DELIM, PROTO, Message, Session, pack
from protocol.errors import (
    BufferSpecError,
    CurveError,
    FrameError,
    MessageTooLarge,
    ProtocolError,
    SchemaError,
    SignatureError,
    UnknownMessageType,
    VersionError,
)

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
    assert msg.msg_type == "job_submit" and msg.header["proto"] == PROTO == "1.1" and msg.header["seq"] == 0
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
    header["proto"] = "2.3"
    with pytest.raises(VersionError, match=r"2\.3.*1\.1") as exc:
        s.deserialize(resign(s, frames, header=header))
    assert exc.value.header["msg_type"] == "job_submit"  # enough to send job_submit_reply error
    header["proto"] = "1.7"  # a newer minor is fine
    assert s.deserialize(resign(s, frames, header=header)).header["proto"] == "1.7"


def test_size_limit_is_checked_before_decoding() -> None:
    s = Session(KEY, max_message_bytes=1000)
    garbage = [b"\xc1" * 600, b"\xc1" * 600]  # would be a FrameError if it were decoded
    with pytest.raises(MessageTooLarge, match="1200 bytes exceeds the limit of 1000"):
        s.deserialize(garbage)
    big = Session(KEY).serialize("upload_chunk", {"upload_id": "u", "filename": "v.mp4", "offset": 0,
                                                  "total": 2000}, buffers={"data": np.zeros(2000, np.uint8)})
    with pytest.raises(MessageTooLarge):
        s.deserialize(big)


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
