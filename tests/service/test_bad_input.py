"""The server stays up through bad input and answers every identifiable message with an error.

Real server subprocess on 127.0.0.1, raw DEALER sockets driven with protocol.envelope.Session
(the Client validates before sending, so it cannot send most of these)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from protocol.envelope import Session
from protocol.errors import RemoteError

from .hostile import check_fuzz, dealer, run_fuzz

FUZZ_MESSAGES = 10_000
"""Messages of the fuzz test (``python bench/service.py --fuzz 100000`` sends more)."""


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


def test_fuzzed_messages_reach_the_handlers_and_all_signed_ones_are_answered(fuzz_server) -> None:
    stats = run_fuzz(fuzz_server.info, fuzz_server.names, FUZZ_MESSAGES, log=fuzz_server.log)
    print("fuzz:", stats)
    assert fuzz_server.alive()
    with fuzz_server.client() as client:
        check_fuzz(stats, FUZZ_MESSAGES, client)


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
    shell = dealer(ctx, srv.info, "shell")
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
