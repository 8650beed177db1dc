"""Resource bounds of a real server subprocess: memory before authentication, a maximal message
next to a ping, one server per workdir, private files, a corrupt journal."""

from __future__ import annotations

import os
import pwd
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from protocol.connection import ConnectionInfo
from protocol.envelope import Session
from protocol.errors import RemoteError
from protocol.link import secure_client_socket

from . import zmtp_raw
from .conftest import ROOT, install_subject

FRAME = b"x" * (4 << 20)
def _unfinished_multipart(port: int, frames: int, out: list[str]) -> None:
    """A raw ZMTP peer (no credentials) sending ``frames`` 4 MiB frames, never the last one."""
    try:
        sock = zmtp_raw.connect(port)
        for _ in range(frames):
            sock.sendall(zmtp_raw.frame(FRAME, more=True))
        out.append("sent")
        time.sleep(1.0)
        sock.close()
    except OSError as exc:
        out.append(type(exc).__name__)


def _settled_rss(srv, timeout: float = 120.0) -> int:
    """The server's RSS once it stops changing (it imports torch in the background at start)."""
    deadline = time.monotonic() + timeout
    last = srv.rss_kib()
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = srv.rss_kib()
        if abs(now - last) < 1024:
            return now
        last = now
    return last


def test_unauthenticated_peers_cannot_grow_the_servers_memory(server_factory) -> None:
    srv = server_factory()
    with srv.client() as client:
        client.hello()
        rss0 = _settled_rss(srv)  # after the background import of torch the server starts with
        outcomes: list[str] = []
        threads = [threading.Thread(target=_unfinished_multipart, args=(port, 100, outcomes))
                   for port in (srv.info.shell_port, srv.info.control_port, srv.info.shell_port)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        time.sleep(0.5)
        grown = (srv.rss_kib() - rss0) / 1024
        print(f"RSS growth after 3 x 400 MiB of unfinished multipart from raw ZMTP peers: {grown:.1f} MiB; "
              f"peers: {outcomes}")
        assert grown < 64, grown
        # a ZeroMQ peer with the wrong link password is refused by the ZAP handler and counted
        wrong = ConnectionInfo(**{**srv.info.to_dict(), "key": "e" * 64})
        ctx = zmq.Context()
        dealer = ctx.socket(zmq.DEALER)
        dealer.linger = 0
        secure_client_socket(dealer, wrong)
        dealer.connect(srv.info.url("shell"))
        dealer.send_multipart(Session(wrong.key_bytes).serialize("hello", {}))
        assert not dealer.poll(500)
        dealer.close(0)
        ctx.term()
        hello = client.hello()
        assert hello["link_refused"] >= 1 and hello["internal_errors"] == 0
    assert srv.alive()


def test_a_maximal_message_does_not_stall_a_concurrent_hello(server_factory, tiny_avatar_subject: Path,
                                                             tmp_path: Path) -> None:
    """A render job_submit filling the default 512 MiB limit (UV maps) is received, decoded, scanned
    and stored while another process's signed hellos are each answered within 250 ms."""
    from backend.data.subject import Subject
    from backend.service.hello_probe import maximal_render_buffers, wait_started

    workdir = tmp_path / "work"
    workdir.mkdir()
    install_subject(tiny_avatar_subject, workdir, "s1")
    subj = Subject.open(workdir / "subjects" / "s1")
    names, size = list(subj.expression_names), int(subj.size)
    srv = server_factory(workdir=workdir)
    buffers = maximal_render_buffers(names, size)
    curves, uv = buffers["curves"], buffers["uv_maps"]
    rows = len(curves)
    big = srv.client(timeout=120, retries=0)
    wait_started(big)  # the import of torch at start-up is not what this test measures
    # with hmac-sha256 buffer checksums (what a client sends on a link that is neither loopback
    # nor CURVE): the server also verifies 511 MiB of them, the most work a valid message asks for
    big.session.checksum = "hmac-sha256"
    # the pinger is another process, so its latencies are the server's, not this process's GIL
    pinger = subprocess.Popen([sys.executable, "-m", "backend.service.hello_probe", str(srv.connection_file),
                               "--timeout", "5", "--warm-up"], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert pinger.stdout.readline().strip() == "ready"
    try:
        time.sleep(0.5)  # hellos without the message, for the printout
        t0 = time.monotonic()
        job = big.submit("render", {"subject_id": "s1", "names": names, "fps": 25.0, "frame_range": [0, 0]},
                         buffers={"curves": curves, "uv_maps": uv})
        t1 = time.monotonic()
    finally:
        out, _ = pinger.communicate("stop\n", timeout=60)
    assert pinger.returncode == 0, out.split()[-1:]  # every hello answered (else: error:<type>)
    pings = [(float(sent), float(lat)) for sent, lat, _ in (x.split(",") for x in out.split())]
    before = [lat for sent, lat in pings if sent + lat < t0]
    during = [lat for sent, lat in pings if sent < t1 and sent + lat > t0]
    nbytes = uv.nbytes + curves.nbytes
    print(f"maximal message {nbytes / 2**20:.0f} MiB ({rows} rows) accepted in {t1 - t0:.2f} s; "
          f"{len(during)} hellos meanwhile from another process: max {max(during) * 1000:.1f} ms, "
          f"median {sorted(during)[len(during) // 2] * 1000:.1f} ms; {len(before)} before it: "
          f"max {max(before, default=0) * 1000:.1f} ms; load average {os.getloadavg()[0]:.1f}")
    assert job and len(during) >= 3
    # every hello that overlapped the message: its reception, decoding, validation, checksums,
    # value scan, inputs.npz write and release all happen without holding the I/O thread or the
    # GIL for long: a stall lasts as long as one of those steps (seconds for 511 MiB); the bound
    # leaves room for a loaded machine's scheduling (0.14 s seen under `make test`'s load, 0.1 s
    # was the bound before)
    assert max(during) < 0.25, sorted(during)[-5:]
    big.cancel(job)
    # the checksums were verified (on the intake thread), not skipped: a wrong one is refused
    big.session.buffer_key = b"not the link's buffer key"
    with pytest.raises(RemoteError, match="hmac-sha256 checksum mismatch"):
        big.submit("render", {"subject_id": "s1", "names": names, "fps": 25.0},
                   buffers={"curves": curves[:2], "uv_maps": uv[:2]})
    big.close()


def _received(nbytes: int) -> zmq.Frame:
    """A real received ZeroMQ frame of ``nbytes`` (values 0..250 repeating)."""
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    try:
        b.connect(f"tcp://127.0.0.1:{a.bind_to_random_port('tcp://127.0.0.1')}")
        a.send(np.tile(np.arange(251, dtype=np.uint8), nbytes // 251 + 1)[:nbytes], copy=False)
        return b.recv(copy=False)
    finally:
        a.close(0)
        b.close(0)
        ctx.term()


def test_release_frames_hands_back_only_unshared_big_frames() -> None:
    from backend.service.release import MIN_DISCARD_BYTES, release_frames

    size = 64 << 20
    big = _received(size)
    view = np.frombuffer(big, np.uint8)[123:456]  # a live view: its bytes must survive
    frames = [big]
    del big
    assert release_frames(frames) == 0 and frames == []
    assert np.array_equal(view, np.arange(123, 456) % 251)
    del view
    frames = [_received(size), _received(MIN_DISCARD_BYTES // 2), b"small"]
    discarded = release_frames(frames)
    assert frames == []
    if sys.platform.startswith("linux"):  # all whole pages of the big frame, none of the others
        assert size - 2 * 4096 <= discarded <= size
    else:
        assert discarded == 0
    alive = np.ones(size, np.uint8)  # a view of memory something else owns is never discarded
    assert release_frames([memoryview(alive)]) == 0 and int(alive.min()) == 1


def test_one_server_per_workdir(server_factory, tmp_path: Path) -> None:
    srv = server_factory()
    second = subprocess.run([sys.executable, "-m", "backend.cli", "serve", "--workdir", str(srv.workdir),
                             "--device", "cpu"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    info = srv.info
    assert f"pid {srv.pid}" in second.stderr, second.stderr
    assert f"ports {info.shell_port}, {info.control_port}, {info.events_port}" in second.stderr
    assert ConnectionInfo.load(srv.connection_file).key == info.key  # the first one's file is intact
    with srv.client() as client:
        client.hello()


def _as_nobody(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` as user nobody (the way permission tests run under root)."""
    nobody = pwd.getpwnam("nobody")

    def drop() -> None:
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    return subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, text=True, timeout=30,
                          preexec_fn=drop)


def test_workdir_and_files_are_private(server_factory, tmp_path: Path) -> None:
    srv = server_factory()
    with srv.client() as client:
        upload = client.upload(Path(__file__))
    work = srv.workdir
    for path in (work, work / "uploads", work / "uploads" / upload, work / "subjects"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in (srv.connection_file, work / "journal.sqlite3", work / "serve.lock",
                 next((work / "uploads" / upload).glob("data*"))):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    if os.geteuid() == 0:  # root reads anything: check as another user that nobody else can
        os.chmod(tmp_path, 0o755)  # let nobody reach the workdir, so only its own mode stops it
        result = _as_nobody(f"open({str(srv.connection_file)!r}).read()")
        assert result.returncode != 0 and "PermissionError" in result.stderr, result


def test_a_corrupt_journal_is_moved_aside(server_factory, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "journal.sqlite3").write_bytes(b"this is not a database" * 100)
    srv = server_factory(workdir=work)
    with srv.client() as client:
        assert client.jobs() == []
    aside = list(work.glob("journal.sqlite3.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not a database")
    assert "moved it to" in srv.log() and "Traceback" not in srv.log()


def test_requests_need_the_link_password_even_on_loopback(server_factory) -> None:
    """A plain TCP connection that speaks nothing gets nothing (and costs nothing)."""
    srv = server_factory()
    with socket.create_connection(("127.0.0.1", srv.info.shell_port), timeout=5) as raw:
        raw.sendall(b"\xff" * 100)
        closed = False
        try:
            closed = raw.recv(100) == b"" or raw.recv(100) == b""
        except OSError:
            closed = True
    assert closed and srv.alive()
