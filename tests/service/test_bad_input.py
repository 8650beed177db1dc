"""The server stays up through bad input and answers every identifiable message with an error.

Real server subprocess on 127.0.0.1, raw DEALER sockets driven with protocol.envelope.Session
(the Client validates before sending, so it cannot send most of these)."""

from __future__ import annotations

import random
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from protocol.envelope import Session
from protocol.errors import RemoteError

FUZZ_MESSAGES = 10_000
BATCH = 200


def _dealer(ctx: zmq.Context, info, channel: str) -> zmq.Socket:
    from protocol.link import secure_client_socket

    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    secure_client_socket(s, info)
    s.connect(info.url(channel))
    return s


def run_fuzz(srv, n_messages: int, seed: int = 1234) -> dict[str, int]:
    """Send ``n_messages`` hostile messages (80 % signed, 20 % unauthenticated, some replays) and
    require exactly one reply per signed message and none for the others."""
    from protocol.link import secure_client_socket  # noqa: F401 (used by _dealer)

    from .hostile import signed_request, unauthenticated

    session = Session(srv.info.key_bytes)
    wrong = Session(b"not-the-key-" * 3)
    names = srv.names
    rng = random.Random(seed)
    ctx = zmq.Context()
    socks = {ch: _dealer(ctx, srv.info, ch) for ch in ("shell", "control")}
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
                assert ready, f"no reply for {sum(waiting.values())} signed messages\n{srv.log()}"
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
    assert srv.alive()
    return {**stats, **{f"ename:{k}": v for k, v in enames.items()}}


@pytest.fixture
def fuzz_server(server_factory, tiny_avatar_subject: Path, tiny_subject: Path, tmp_path: Path):
    from backend.data.subject import Subject

    from .conftest import install_subject

    workdir = tmp_path / "work"
    workdir.mkdir()
    install_subject(tiny_avatar_subject, workdir, "s1")
    install_subject(tiny_subject, workdir, "s0")
    srv = server_factory("--max-message-mb", "16", workdir=workdir)
    srv.names = list(Subject.open(workdir / "subjects" / "s1").expression_names)
    return srv


def _check_fuzz(srv, stats: dict[str, int], n: int) -> None:
    print("fuzz:", stats)
    assert stats["signed"] + stats["unauthenticated"] == n
    assert stats["replies"] == stats["signed"]  # every authenticated message answered, once
    assert stats.get("ename:ReplayError", 0) >= stats["replays"] > 0
    for reached in ("SchemaError", "JobError", "BufferSpecError", "FrameError", "SandboxError"):
        assert stats.get(f"ename:{reached}", 0) > 0, (reached, stats)  # handlers and every layer reached
    with srv.client() as client:
        hello = client.hello()
        assert hello["unauthenticated"] == stats["unauthenticated"]
        assert hello["internal_errors"] == 0 and hello["dropped_replies"] == 0
        assert all(j["state"] not in ("queued", "running") for j in client.jobs())  # nothing runs
        assert "s1" in {s["subject_id"] for s in client.subjects()}


def test_fuzzed_messages_reach_the_handlers_and_all_signed_ones_are_answered(fuzz_server) -> None:
    stats = run_fuzz(fuzz_server, FUZZ_MESSAGES)
    _check_fuzz(fuzz_server, stats, FUZZ_MESSAGES)


@pytest.mark.slow
def test_fuzz_100k(fuzz_server) -> None:
    stats = run_fuzz(fuzz_server, 100_000, seed=99)
    _check_fuzz(fuzz_server, stats, 100_000)


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


def _corrupted(frames: list, buffer_index: int = -1) -> list:
    """``frames`` of a signed message with one byte of a buffer frame flipped after its checksum
    was computed (buffers are outside the signature; their checksum is in the signed content)."""
    frames = list(frames)
    data = bytearray(frames[buffer_index])
    data[len(data) // 2] ^= 0xFF
    frames[buffer_index] = bytes(data)
    return frames


def test_intake_checksum_mismatches_are_rejected_and_counted(server_factory) -> None:
    """A job submission and an upload chunk whose buffer checksum fails (checked on the intake
    thread) each get an error reply and count in ``rejected`` like any refused message; the server
    keeps serving (the upload then completes)."""
    srv = server_factory()
    session = Session(srv.info.key_bytes)
    ctx = zmq.Context()
    shell = _dealer(ctx, srv.info, "shell")
    data = np.frombuffer(b"0123456789", np.uint8)
    upload = {"upload_id": "up1", "filename": "a.mp4", "offset": 0, "total": 10, "final": True}
    try:
        with srv.client() as client:
            before = client.hello()["rejected"]
            for msg_type, content, buffers in (
                    ("job_submit", {"kind": "render", "params": {"subject_id": "ghost", "names": ["jawOpen"],
                                                                 "fps": 24.0}},
                     {"curves": np.arange(8, dtype=np.float32).reshape(8, 1)}),
                    ("upload_chunk", upload, {"data": data})):
                shell.send_multipart(_corrupted(session.serialize(msg_type, content, buffers=buffers)))
                assert shell.poll(30_000), f"no reply to the corrupted {msg_type}"
                reply = session.deserialize(shell.recv_multipart())
                assert reply.msg_type == f"{msg_type}_reply", reply.msg_type
                assert reply.content["ename"] == "BufferSpecError", reply.content
                assert "crc32 checksum mismatch" in reply.content["evalue"], reply.content
            hello = client.hello()
            assert hello["rejected"] == before + 2, hello
            assert hello["internal_errors"] == 0, hello
            # the status heartbeat (every second) carries the same counter; older ones may be queued
            beats: list[int] = []
            deadline = time.monotonic() + 10.0
            for event in client.events(timeout=5.0):
                if event.msg_type == "status":
                    beats.append(event.content["rejected"])
                if (beats and beats[-1] == before + 2) or time.monotonic() > deadline:
                    break
            assert beats and beats[-1] == before + 2, beats
            # nothing of the refused chunk was kept: the same chunk, intact, completes the upload
            r = client.request("upload_chunk", upload, buffers={"data": data})
            assert r.content["received"] == 10 and r.content["done"], r.content
            assert client.jobs() == []
            assert client.hello()["rejected"] == before + 2
    finally:
        shell.close(0)
        ctx.term()
    assert srv.alive()


def test_restart_keeps_ports_and_rotates_the_key(server_factory) -> None:
    """A restart reuses the ports but never the key: nothing signed for the old run verifies, and
    a client holding the old file reloads it on its next retry."""
    srv = server_factory()
    mode = srv.connection_file.stat().st_mode & 0o777
    assert mode == 0o600
    first = srv.info
    client = srv.client(timeout=2.0, retries=3)
    old_instance = client.hello()["instance_id"]
    srv.kill()
    srv2 = server_factory(workdir=srv.workdir)
    assert srv2.info.shell_port == first.shell_port and srv2.info.key != first.key
    assert client.hello()["instance_id"] != old_instance  # reloaded the file after a timeout
    client.close()
    srv2.stop()
    assert not srv2.connection_file.exists()  # a clean stop removes it


def test_non_loopback_needs_curve_or_insecure(server_factory, tmp_path: Path) -> None:
    """Binding 0.0.0.0 turns CURVE on (server key in the connection file); the client uses it."""
    srv = server_factory("--ip", "0.0.0.0", workdir=tmp_path / "remote")
    assert srv.info.server_public_key and len(srv.info.server_public_key) == 40
    with srv.client() as client:
        assert "curve" in client.hello()["capabilities"]
    assert "CURVE" in srv.log()
