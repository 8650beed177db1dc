"""The server stays up through bad input and answers every identifiable message with an error.

Real server subprocess on 127.0.0.1, raw DEALER sockets driven with protocol.envelope.Session
(the Client validates before sending, so it cannot send most of these)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import zmq

from protocol.envelope import DELIM, Session, pack
from protocol.errors import RemoteError

FUZZ_MESSAGES = 10_000
BATCH = 250


def _dealer(ctx: zmq.Context, url: str) -> zmq.Socket:
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(url)
    return s


def _base_messages(session: Session) -> list[list[bytes]]:
    curves = np.zeros((3, 2), np.float32)
    bases = [
        session.serialize("hello", {"client": "fuzz"}),
        session.serialize("job_status", {"job_id": "nope"}),
        session.serialize("job_list", {}),
        session.serialize("frames_credit", {"job_id": "nope", "credit": 3}),
        session.serialize("job_submit", {"kind": "render", "job_id": "fuzz-render",
                                         "params": {"subject_id": "missing", "names": ["jawOpen", "x"],
                                                    "fps": 25.0}},
                          buffers={"curves": curves}),
    ]
    return [[bytes(f) for f in b] for b in bases]


def _signed(session: Session, msg_type: str, content: dict, proto: str = "1.0") -> list[bytes]:
    header = session.msg_header(msg_type)
    header["proto"] = proto
    return [bytes(f) for f in session.serialize(msg_type, content, header=header, check=False)]


def _mutate(rng: random.Random, frames: list[bytes], session: Session, wrong: Session) -> list[bytes]:
    """One fuzzed message that is never valid (see the comments for why each is invalid)."""
    frames = [bytearray(f) for f in frames]
    op = rng.randrange(12)
    if op == 0:  # flip bits in one frame: HMAC, crc32, delimiter or nbytes breaks
        f = frames[rng.randrange(len(frames))]
        if f:
            f[rng.randrange(len(f))] ^= rng.randrange(1, 256)
        else:
            f.extend(b"x")
    elif op == 1:  # truncate a frame
        i = rng.randrange(len(frames))
        frames[i] = frames[i][: rng.randrange(len(frames[i]))] if frames[i] else bytearray(b"?")
    elif op == 2:  # drop a frame
        del frames[rng.randrange(len(frames))]
    elif op == 3:  # an extra frame after the delimiter
        frames.insert(rng.randrange(1, len(frames) + 1), bytearray(rng.randbytes(rng.randrange(0, 40))))
    elif op == 4:  # random signature
        frames[1] = bytearray(rng.randbytes(32).hex().encode())
    elif op == 5:  # signed with another key
        return [bytes(f) for f in wrong.serialize("hello", {})]
    elif op == 6:  # another protocol major
        return _signed(session, "hello", {}, proto=rng.choice(["2.0", "0.9", "x", "1"]))
    elif op == 7:  # unknown message type, correctly signed
        return _signed(session, rng.choice(["exec", "", "job_submit_reply2", "frame"]), {})
    elif op == 8:  # schema errors, correctly signed
        return _signed(session, "job_submit", rng.choice([
            {"kind": "bake", "params": {}}, {"kind": "render"},
            {"kind": "train", "params": {"subject_id": 3}},
            {"kind": "track", "params": {"subject_id": "s", "path": "/etc/passwd"}},
            {"kind": "train", "params": {"subject_id": "../../etc"}}]))
    elif op == 9:  # garbage only
        return [rng.randbytes(rng.randrange(1, 64)) for _ in range(rng.randrange(1, 6))]
    elif op == 10:  # a reply or event sent as a request
        return _signed(session, rng.choice(["hello_reply", "status", "job_state"]), {"status": "ok"})
    else:  # content that is not msgpack / not a map, correctly signed
        h, p = pack(session.msg_header("hello")), pack({})
        c = rng.choice([b"\xc1", pack([1, 2]), rng.randbytes(10)])
        return [DELIM, session.sign([h, p, c]), h, p, c]
    if not frames:
        frames = [bytearray(b"\x00")]
    return [bytes(f) for f in frames]


def test_fuzzed_messages_all_answered_with_errors(server_factory) -> None:
    srv = server_factory("--max-message-mb", "1")
    session = Session(srv.info.key_bytes)
    wrong = Session(b"not-the-key-" * 3)
    rng = random.Random(1234)
    bases = _base_messages(session)
    ctx = zmq.Context()
    sock = _dealer(ctx, srv.info.url("shell"))
    replies = errors = 0
    try:
        sent = 0
        while sent < FUZZ_MESSAGES:
            n = min(BATCH, FUZZ_MESSAGES - sent)
            for _ in range(n):
                sock.send_multipart(_mutate(rng, rng.choice(bases), session, wrong))
            sent += n
            for _ in range(n):
                assert sock.poll(10_000), f"no reply after {replies} replies to {sent} messages\n{srv.log()}"
                msg = session.deserialize(sock.recv_multipart())  # replies are signed and valid
                replies += 1
                errors += msg.content.get("status") == "error"
                assert msg.content.get("evalue"), msg.content
        assert replies == FUZZ_MESSAGES and errors == FUZZ_MESSAGES
        assert not sock.poll(200), "more replies than messages"

        # oversized: over the 1 MiB limit, answered with MessageTooLarge
        big = [bytes(f) for f in session.serialize("upload_chunk", {
            "upload_id": "u1", "filename": "v.mp4", "offset": 0, "total": 3 << 20},
            buffers={"data": np.zeros(3 << 20, np.uint8)})]
        sock.send_multipart(big)
        assert sock.poll(10_000)
        reply = session.deserialize(sock.recv_multipart())
        assert reply.content["status"] == "error" and reply.content["ename"] == "MessageTooLarge"
    finally:
        sock.close(0)
        ctx.term()
    assert srv.alive()
    with srv.client() as client:
        hello = client.hello()
        assert hello["error_replies"] == FUZZ_MESSAGES + 1
        assert hello["rejected"] > FUZZ_MESSAGES * 0.8  # most fail the envelope checks
        assert hello["dropped_replies"] == 0
        assert client.jobs() == []  # nothing was acted on


def test_requests_with_bad_values_get_readable_errors(server_factory, tmp_path: Path) -> None:
    allowed = tmp_path / "inputs"
    allowed.mkdir()
    (tmp_path / "secret.mp4").write_bytes(b"not a video")
    srv = server_factory("--allow-read", str(allowed))
    with srv.client() as client:
        cases = [
            ("track", {"subject_id": "s1", "path": str(tmp_path / "secret.mp4")}, "outside the allowed"),
            ("track", {"subject_id": "s1", "path": str(allowed / ".." / "secret.mp4")},
             "outside the allowed"),
            ("track", {"subject_id": "s1", "path": "relative.mp4"}, "absolute path"),
            ("track", {"subject_id": "../s1", "upload_id": "abc"}, "invalid subject id"),
            ("track", {"subject_id": "s1", "upload_id": "../../etc"}, "invalid upload id"),
            ("track", {"subject_id": "s1", "upload_id": "never-sent"}, "missing or not finished"),
            ("train", {"subject_id": "/abs/path"}, "invalid subject id"),
            ("train", {"subject_id": "ghost"}, "no subject 'ghost'"),
            ("edit", {"subject_id": "ghost", "style": "x", "reference_path": "/etc/hosts"}, "no subject"),
        ]
        for kind, params, expected in cases:
            with pytest.raises(RemoteError, match=expected):
                client.submit(kind, params)
        curves = np.zeros((2, 1), np.float32)
        with pytest.raises(RemoteError, match="no subject 'ghost'"):
            client.submit("render", {"subject_id": "ghost", "names": ["jawOpen"], "fps": 24.0},
                          buffers={"curves": curves})
        with pytest.raises(RemoteError, match="invalid job id"):
            client.submit("train", {"subject_id": "x"}, job_id="../../x")
        with pytest.raises(RemoteError, match="no render job"):
            client.request("frames_credit", {"job_id": "nothing", "credit": 2})
        with pytest.raises(RemoteError, match="no job 'nothing'"):
            client.status("nothing")
        with pytest.raises(RemoteError, match="no job"):
            client.cancel("nothing")
        with pytest.raises(RemoteError, match="invalid subject id"):
            client.subject("../..")
        with pytest.raises(RemoteError, match="control channel only"):
            client.request("shutdown", {}, channel="shell")
        # uploads: wrong offset, then the right ones, then a checksum mismatch
        data = np.frombuffer(b"0123456789", np.uint8)
        head = {"upload_id": "up1", "filename": "a.mp4", "total": 10}
        with pytest.raises(RemoteError, match="resend from offset 0"):
            client.request("upload_chunk", {**head, "offset": 5}, buffers={"data": data[5:]})
        r = client.request("upload_chunk", {**head, "offset": 0}, buffers={"data": data[:5]})
        assert r.content["received"] == 5 and not r.content["done"]
        with pytest.raises(RemoteError, match="checksum mismatch"):
            client.request("upload_chunk", {**head, "offset": 5, "final": True, "checksum": "crc32:00000000"},
                           buffers={"data": data[5:]})
        up = client.upload(Path(__file__))
        assert (srv.workdir / "uploads" / up / "data.py").read_bytes() == Path(__file__).read_bytes()
        assert client.jobs() == []
        assert client.subjects() == []
    assert srv.alive()


def test_connection_file_and_restart_keep_ports_and_key(server_factory) -> None:
    srv = server_factory()
    mode = srv.connection_file.stat().st_mode & 0o777
    assert mode == 0o600
    first = srv.info
    with srv.client() as client:
        old_instance = client.hello()["instance_id"]
    srv.kill()
    srv2 = server_factory(workdir=srv.workdir)
    assert (srv2.info.shell_port, srv2.info.key) == (first.shell_port, first.key)
    with srv2.client() as client:
        assert client.hello()["instance_id"] != old_instance
    srv2.stop()
    assert not srv2.connection_file.exists()  # a clean stop removes it


def test_non_loopback_needs_curve_or_insecure(server_factory, tmp_path: Path) -> None:
    """Binding 0.0.0.0 turns CURVE on (server key in the connection file); the client uses it."""
    srv = server_factory("--ip", "0.0.0.0", workdir=tmp_path / "remote")
    assert srv.info.server_public_key and len(srv.info.server_public_key) == 40
    with srv.client() as client:
        assert "curve" in client.hello()["capabilities"]
    assert "CURVE" in srv.log()
