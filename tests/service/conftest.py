"""Fixtures for the service tests: the backend as a real subprocess on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.client import Client
from protocol.connection import ConnectionInfo

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0


class ServerProcess:
    """``python -m backend.cli serve`` in a subprocess, with its workdir and connection file."""

    def __init__(self, workdir: Path, *extra: str) -> None:
        self.workdir = workdir
        self.extra = list(extra)
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir.parent / f"{workdir.name}-server.log"
        self.info: ConnectionInfo | None = None

    @property
    def connection_file(self) -> Path:
        return self.workdir / "connection.json"

    def start(self) -> ServerProcess:
        cmd = [sys.executable, "-m", "backend.cli", "serve", "--workdir", str(self.workdir),
               "--device", "cpu", *self.extra]
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed when the process ends
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, env=env)
        line = _readline_with_timeout(self.proc, START_TIMEOUT)
        if not line.startswith("connection file:"):
            self.kill()
            raise RuntimeError(f"server did not start: {line!r}\n{self.log()}")
        path = Path(line.split(":", 1)[1].strip())
        assert path == self.connection_file
        self.info = ConnectionInfo.load(path)
        return self

    def client(self, timeout: float = 10.0, **kw) -> Client:
        return Client.from_connection_file(self.connection_file, timeout=timeout, **kw)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self) -> int:
        """Resident set size of the server process from /proc (KiB)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def stop(self) -> None:
        """Graceful stop (SIGTERM), SIGKILL if it hangs."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


def _readline_with_timeout(proc: subprocess.Popen, timeout: float) -> str:
    out: list[str] = []

    def read() -> None:
        out.append(proc.stdout.readline().decode(errors="replace").strip())

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout)
    return out[0] if out else ""


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator:
    """``make(workdir_name="w", *args)`` starts a server; all are stopped at teardown."""
    started: list[ServerProcess] = []

    def make(*extra: str, workdir: Path | None = None) -> ServerProcess:
        srv = ServerProcess(workdir or tmp_path / "work", *extra)
        srv.workdir.mkdir(parents=True, exist_ok=True)
        started.append(srv)
        return srv.start()

    yield make
    for srv in started:
        srv.stop()


def install_subject(src: Path, workdir: Path, subject_id: str) -> Path:
    """Copy a subject folder into ``WORKDIR/subjects/<id>`` (what a track job would have made)."""
    dst = workdir / "subjects" / subject_id
    shutil.copytree(src, dst)
    return dst
