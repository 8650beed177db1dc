"""One server per workdir: an exclusive ``fcntl.flock`` on ``WORKDIR/serve.lock``.

The lock is taken before anything else in the workdir is touched and held for the life of the
process (the kernel drops it when the process dies, even on SIGKILL, so a stale file never
blocks a restart). The file records the holder's pid and ports (JSON), so a second ``serve``
can say who holds the workdir.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any

LOCK_NAME = "serve.lock"


class WorkdirBusyError(RuntimeError):
    """Another ``emo-avatar serve`` holds the workdir; the message names its pid and ports."""


class WorkdirLock:
    """Exclusive lock of a workdir (see the module docstring)."""

    def __init__(self, workdir: Path) -> None:
        self.path = Path(workdir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`WorkdirBusyError`."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            pid = holder.get("pid", "?")
            ports = holder.get("ports")
            where = (f" on {holder.get('ip', '?')} ports {', '.join(map(str, ports))} "
                     "(shell, control, events)" if isinstance(ports, list) and ports else " (still starting)")
            raise WorkdirBusyError(
                f"workdir {self.path.parent} is in use by emo-avatar serve pid {pid}{where}; "
                "stop that server first or start this one with another --workdir") from None
        self._fd = fd
        self.record(pid=os.getpid())

    def record(self, **info: Any) -> None:
        """Write who holds the lock (pid, ip, ports) into the lock file."""
        if self._fd is None:
            return
        data = json.dumps({"pid": os.getpid(), **info}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    @staticmethod
    def _holder(fd: int) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(os.pread(fd, 4096, 0) or b"{}")
            if isinstance(data, dict):
                return data
        return {}

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


__all__ = ["LOCK_NAME", "WorkdirBusyError", "WorkdirLock"]
