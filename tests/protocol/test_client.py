"""Client over real tcp://127.0.0.1 sockets against a tiny in-test ROUTER server.

The real service is backend/service (tested there); this minimal server answers just enough to
exercise the client: replies, error replies, credit-based frame streaming, events, uploads and
a restart (new instance id, same connection file) for the Lazy-Pirate retry.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from protocol.client import Client
from protocol.connection import ConnectionInfo
from protocol.envelope import PROTO, Message, Session
from protocol.errors import BackendUnavailable, ProtocolError, RemoteError, VersionError
from protocol.link import ZapHandler, secure_server_socket
from tests.conftest import wait_for

N_FRAMES = 10


class MiniServer(threading.Thread):
    """ROUTER shell + ROUTER control + PUB events on the ports of ``info``."""

    def __init__(self, info: ConnectionInfo, *, drop_first: int = 0, fail_job: bool = False,
                 crash_after: int | None = None, known_jobs: tuple[str, ...] = ()) -> None:
        super().__init__(daemon=True)
        self.info = info
        self.instance_id = uuid.uuid4().hex
        self.session = Session(info.key_bytes)
        self.drop_first = drop_first  # requests to swallow without answer (lost replies)
        self.fail_job = fail_job
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.seen: list[str] = []
        self.uploads: dict[str, bytearray] = {}
        self.crash_after = crash_after  # frames to send before "crashing" (closing all sockets)
        self.sent = 0
        self.sent_indices: list[int] = []
        self.credit: dict[str, int] = dict.fromkeys(known_jobs, 0)  # journal of a restarted backend
        self.next_index: dict[str, int] = dict.fromkeys(known_jobs, 0)
        self.owner: dict[str, list[bytes]] = {}
        self.parent: dict[str, dict[str, Any]] = {}

    def run(self) -> None:
        ctx = zmq.Context()  # its own: the ZAP handler's endpoint is per context
        zap = ZapHandler(ctx, password=self.info.link_password)
        shell, control, events = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER), ctx.socket(zmq.PUB)
        for sock, ch in ((shell, "shell"), (control, "control"), (events, "events")):
            sock.linger = 0
            secure_server_socket(sock)
            sock.bind(self.info.url(ch))
        self.events = events
        self.ready.set()
        poller = zmq.Poller()
        poller.register(shell, zmq.POLLIN)
        poller.register(control, zmq.POLLIN)
        try:
            while not self.stop.is_set():
                for sock, _ in poller.poll(20):
                    try:
                        msg = self.session.recv(sock)
                    except ProtocolError as exc:
                        if exc.authenticated and exc.identities is not None:
                            self.session.send_error(sock, exc, ident=exc.identities, parent=exc.header)
                        continue
                    self.seen.append(msg.msg_type)
                    if self.drop_first > 0:
                        self.drop_first -= 1
                        continue
                    self.handle(sock, msg)
                self.pump_frames(shell)
        finally:
            for sock in (shell, control, events):
                sock.close(linger=0)
            zap.close()
            ctx.term()

    def publish(self, msg_type: str, content: dict[str, Any]) -> None:
        self.session.send(self.events, msg_type, content)

    def handle(self, sock: zmq.Socket, msg: Message) -> None:
        c, t = msg.content, msg.msg_type
        reply: dict[str, Any]
        if t == "hello":
            reply = {"server": "mini", "proto": "2.0", "instance_id": self.instance_id, "device": "cpu"}
            self.publish("status", {"instance_id": self.instance_id, "state": "idle"})  # a heartbeat
        elif t == "job_submit":
            job_id = c["job_id"]
            self.credit.setdefault(job_id, 0)
            self.next_index.setdefault(job_id, 0)
            reply = {"job_id": job_id, "state": "queued"}
            self.publish("job_state", {"job_id": job_id, "state": "running"})
            if self.fail_job:
                self.publish("job_state", {"job_id": job_id, "state": "failed", "error": "out of memory"})
        elif t == "job_status":
            state = "failed" if self.fail_job else "running"
            job = {"job_id": c["job_id"], "kind": "render", "state": state, "error": "out of memory"} \
                if c["job_id"] else None
            reply = {"instance_id": self.instance_id, "job": job}
        elif t == "frames_credit":
            job_id = c["job_id"]
            if job_id not in self.credit:
                self.session.send_error(sock, KeyError(f"unknown job {job_id}"), ident=msg.identities,
                                        parent=msg)
                return
            self.credit[job_id] += c["credit"]
            if c["start"] is not None:
                self.next_index[job_id] = max(self.next_index[job_id], c["start"])
            self.owner[job_id], self.parent[job_id] = msg.identities, msg.header
            reply = {"job_id": job_id, "credit": self.credit[job_id]}
        elif t == "job_cancel":
            reply = {"job_id": c["job_id"], "state": "cancelling"}
        elif t == "upload_chunk":
            buf = self.uploads.setdefault(c["upload_id"], bytearray())
            buf += msg.buffers["data"].tobytes()
            reply = {"upload_id": c["upload_id"], "received": len(buf), "done": c["final"]}
        elif t == "subject_get":
            rig = {"neutral": np.zeros((5, 3), np.float32), "deltas": np.ones((2, 5, 3), np.float32),
                   "uvs": np.zeros((5, 2), np.float32), "triangles": np.array([[0, 1, 2]], np.int32)}
            self.session.send_reply(sock, msg, {"subject_id": c["subject_id"], "names": ["jawOpen", "x"],
                                                "fps": 25.0}, buffers=rig)
            return
        else:
            reply = {}
        self.session.send_reply(sock, msg, reply)

    def pump_frames(self, shell: zmq.Socket) -> None:
        for job_id, credit in self.credit.items():
            while (not self.fail_job and credit > 0 and self.next_index[job_id] < N_FRAMES
                   and job_id in self.owner):
                i = self.next_index[job_id]
                image = np.full((6, 8, 3), i, np.uint8)
                checksum = f"crc32:{zlib.crc32(image.tobytes()) & 0xFFFFFFFF:08x}"
                self.session.send(shell, "frame", {"job_id": job_id, "index": i, "total": N_FRAMES,
                                                   "encoding": "raw", "checksum": checksum},
                                  parent=self.parent[job_id], buffers={"image": image},
                                  ident=self.owner[job_id])
                self.next_index[job_id] += 1
                credit -= 1
                self.sent += 1
                self.sent_indices.append(i)
                if self.sent == self.crash_after:
                    self.stop.set()
                    return
            self.credit[job_id] = credit


@pytest.fixture
def conn(tmp_path: Path) -> tuple[ConnectionInfo, Path]:
    info = ConnectionInfo.new()
    return info, info.write(tmp_path / "backend.json")


def start(info: ConnectionInfo, **kw: Any) -> MiniServer:
    server = MiniServer(info, **kw)
    server.start()
    assert server.ready.wait(5)
    return server


def wait_subscribed(client: Client) -> None:
    """Say hello until the mini server's heartbeat arrives on the events channel: a PUB socket
    drops what it sends before a subscriber's (authenticated) connection is up."""
    wait_for(lambda: client.hello() and any(m.msg_type == "status" for m in client.events(timeout=0.1)),
             timeout=5.0, interval=0.0, what="the first event on the events channel")


def test_requests_frames_upload_and_subject(conn, tmp_path) -> None:
    info, path = conn
    server = start(info)
    try:
        with Client.from_connection_file(path, timeout=2.0) as client:
            hello = client.hello()
            assert hello["instance_id"] == server.instance_id and client.instance_id == server.instance_id
            wait_subscribed(client)
            job_id = client.submit("render", {"subject_id": "s", "names": ["jawOpen"], "fps": 24},
                                   buffers={"curves": np.zeros((N_FRAMES, 1), np.float32)})
            got = list(client.frames(job_id, credit=3))
            assert [i for i, _ in got] == list(range(N_FRAMES))
            assert all(img.shape == (6, 8, 3) and img[0, 0, 0] == i for i, img in got)
            assert server.seen.count("frames_credit") >= N_FRAMES // 3  # credit is topped up, not bulk
            states, deadline = [], time.monotonic() + 5.0  # a loaded machine may deliver it late
            for m in client.events(timeout=1.0):
                if m.msg_type == "job_state":
                    states.append(m.content["state"])
                if "running" in states or time.monotonic() > deadline:
                    break
            assert "running" in states, states
            video = tmp_path / "take.mp4"
            video.write_bytes(bytes(range(256)) * 40)
            upload_id = client.upload(video, chunk_bytes=3000)
            assert bytes(server.uploads[upload_id]) == video.read_bytes()
            rig = client.subject("s")
            assert rig["names"] == ["jawOpen", "x"] and rig["deltas"].shape == (2, 5, 3)
            assert client.cancel(job_id) == "cancelling"
            with pytest.raises(RemoteError, match=r"KeyError.*unknown job nope"):
                list(client.frames("nope"))
    finally:
        server.stop.set()
        server.join(5)


def test_failed_job_ends_the_frame_stream_with_its_error(conn) -> None:
    info, path = conn
    server = start(info, fail_job=True)
    try:
        with Client.from_connection_file(path, timeout=0.5) as client:
            client.hello()
            job_id = client.submit("train", {"subject_id": "s"})
            with pytest.raises(RemoteError, match="out of memory"):
                list(client.frames(job_id))
    finally:
        server.stop.set()
        server.join(5)


def test_lazy_pirate_retries_a_lost_reply_and_survives_a_restart(conn) -> None:
    info, path = conn
    server = start(info, drop_first=1)
    try:
        client = Client.from_connection_file(path, timeout=0.3, retries=3)
        first = client.hello()  # the first attempt is swallowed; the retry is answered
        assert server.seen == ["hello", "hello"] and first["instance_id"] == server.instance_id
        server.stop.set()
        server.join(5)

        restarted: list[MiniServer] = []

        def restart_later() -> None:
            time.sleep(0.4)
            restarted.append(start(info))

        threading.Thread(target=restart_later, daemon=True).start()
        again = client.hello()  # times out while the backend is down, then reaches the new one
        assert restarted and again["instance_id"] == restarted[0].instance_id != first["instance_id"]
        assert client.restarts == 1
        server = restarted[0]
        client.close()
    finally:
        server.stop.set()
        server.join(5)


def test_frame_stream_resumes_after_a_backend_restart(conn) -> None:
    info, path = conn
    server = start(info, crash_after=4)
    servers = [server]
    try:
        client = Client.from_connection_file(path, timeout=0.3, retries=5)
        client.hello()
        job_id = client.submit("render", {"subject_id": "s", "names": ["jawOpen"], "fps": 24},
                               buffers={"curves": np.zeros((N_FRAMES, 1), np.float32)})

        def restart_when_crashed() -> None:
            server.join(5)
            time.sleep(0.2)
            servers.append(start(info, known_jobs=(job_id,)))

        threading.Thread(target=restart_when_crashed, daemon=True).start()
        indices = [i for i, _ in client.frames(job_id, credit=2)]
        assert indices == list(range(N_FRAMES))  # every frame exactly once, across the restart
        assert server.sent == 4  # (queued credit may reach the new backend before any timeout)
        servers[1].stop.set()
        servers[1].join(5)
        # The restarted backend resumes from the client's first missing frame: 4 unless the crash
        # (sockets closed with linger 0) lost the last frame(s) in flight, which are then sent again.
        resumed = servers[1].sent_indices
        assert resumed == list(range(resumed[0], N_FRAMES)) and resumed[0] <= 4, resumed
        client.close()
    finally:
        for s in servers:
            s.stop.set()
            s.join(5)


def test_major_version_mismatch_is_reported_not_retried(conn) -> None:
    info, path = conn
    future = Session(info.key_bytes)
    ctx = zmq.Context()
    zap = ZapHandler(ctx, password=info.link_password)
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    secure_server_socket(router)
    router.bind(info.url("shell"))

    def answer_as_v3() -> None:
        request = future.recv(router)
        header = {**future.msg_header("hello_reply"), "proto": "3.0"}
        router.send_multipart(future.serialize(
            "hello_reply", {"status": "ok", "server": "future", "proto": "3.0", "instance_id": "x",
                            "device": "cpu"}, parent=request, ident=request.identities, header=header))

    thread = threading.Thread(target=answer_as_v3)
    thread.start()
    client = Client.from_connection_file(path, timeout=2.0)
    try:
        with pytest.raises(VersionError, match=rf"peer speaks 3\.0, this side speaks {re.escape(PROTO)}"):
            client.hello()
    finally:
        thread.join(5)
        client.close()
        router.close(0)
        zap.close()
        ctx.term()


def test_backend_unavailable_after_bounded_retries(conn) -> None:
    _, path = conn
    client = Client.from_connection_file(path, timeout=0.1, retries=2)
    t0 = time.monotonic()
    with pytest.raises(BackendUnavailable, match="after 3 attempts"):
        client.hello()
    assert time.monotonic() - t0 < 5
    client.close()


def test_wrong_key_gets_no_answer_and_the_server_stays_up(conn) -> None:
    """Another key means another link password: refused in the handshake, nothing answered."""
    info, _ = conn
    server = start(info)
    try:
        wrong = ConnectionInfo(**{**info.to_dict(), "key": "f" * 64})
        with pytest.raises(BackendUnavailable, match="did not answer hello"):
            Client(wrong, timeout=0.2, retries=0).hello()
        assert server.seen == []  # the request never reached the server's code
        assert Client(info, timeout=1.0).hello()["server"] == "mini"
    finally:
        server.stop.set()
        server.join(5)


def test_frame_stream_polls_without_blocking(conn) -> None:
    info, path = conn
    server = start(info)
    try:
        with Client.from_connection_file(path, timeout=2.0) as client:
            job_id = client.submit("render", {"subject_id": "s", "names": ["jawOpen"], "fps": 24},
                                   buffers={"curves": np.zeros((N_FRAMES, 1), np.float32)})
            stream = client.frame_stream(job_id, credit=4)
            t0 = time.monotonic()
            got = [i for i, _ in stream.poll(0.0)]  # returns at once, frames there or not
            assert time.monotonic() - t0 < 0.5
            deadline = time.monotonic() + 10
            while not stream.done and time.monotonic() < deadline:
                got += [i for i, _ in stream.poll(0.05)]
                assert client.hello()["server"] == "mini"  # the loop keeps serving other requests
            assert stream.done and sorted(got) == list(range(N_FRAMES)) and len(got) == N_FRAMES
            assert stream.poll(0.0) == []
    finally:
        server.stop.set()
        server.join(5)
