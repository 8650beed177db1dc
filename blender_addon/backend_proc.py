"""Start and stop a local backend (``emo-avatar serve``) as a child process of Blender.

Only the process this module started is ever stopped (by its handle, never by name). No bpy.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import time
from pathlib import Path

_PROCS: list[subprocess.Popen] = []


def serve_command(backend: str, workdir: str | Path, connection_file: str | Path) -> list[str]:
    """The argv for ``serve``: ``backend`` is a Python (runs ``-m backend.cli``) or ``emo-avatar``."""
    if not backend:
        raise ValueError(
            "set 'Backend command' in the add-on preferences (the backend's python or "
            "the emo-avatar executable)"
        )
    name = Path(backend).name.lower()
    head = [backend, "-m", "backend.cli"] if name.startswith("python") else [backend]
    return [*head, "serve", "--workdir", str(workdir), "--connection-file", str(connection_file)]


def start(
    backend: str,
    workdir: str | Path,
    connection_file: str | Path,
    log_path: str | Path | None = None,
    wait: float = 60.0,
    env: dict | None = None,
) -> subprocess.Popen:
    """Start the backend and wait up to ``wait`` s until it wrote a fresh connection file (or it
    died); ``wait`` 0 returns at once (the caller's I/O thread connects once the file is there)."""
    connection_file = Path(connection_file)
    Path(workdir).mkdir(parents=True, exist_ok=True)
    before = connection_file.stat().st_mtime_ns if connection_file.exists() else None
    log_file = open(log_path or Path(workdir) / "backend.log", "ab")  # noqa: SIM115 (child keeps it)
    proc = subprocess.Popen(
        serve_command(backend, workdir, connection_file),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    log_file.close()
    _PROCS.append(proc)
    if wait <= 0:
        return proc
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"the backend exited with code {proc.returncode}; see "
                f"{log_path or Path(workdir) / 'backend.log'}"
            )
        if connection_file.exists() and connection_file.stat().st_mtime_ns != before:
            return proc
        time.sleep(0.1)
    stop(proc)
    raise TimeoutError(f"the backend did not write {connection_file} within {wait:.0f} s")


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate a backend this module started (SIGTERM, then SIGKILL after ``timeout``)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    if proc in _PROCS:
        _PROCS.remove(proc)


@atexit.register
def _stop_all() -> None:
    for proc in list(_PROCS):
        stop(proc, timeout=5.0)
