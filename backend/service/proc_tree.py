"""Ending a supervised process tree for good: SIGKILL a child (torchrun), everything below it and
any process that lost its parent but still carries the job's marker in its command line, then wait
until all are gone and remove the temporary files they left (``kill_tree``).

Process discovery reads ``/proc`` (Linux); elsewhere the tree comes from ``ps`` and strays that
lost their parent are not found.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)


def _children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids of every process (``/proc``, or ``ps`` where there is none)."""
    kids: dict[int, list[int]] = {}
    if os.path.isdir("/proc/self"):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(entry.name))
        return kids
    out = subprocess.run(["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True, check=False).stdout
    for row in out.splitlines():
        pid, ppid = (int(x) for x in row.split())
        kids.setdefault(ppid, []).append(pid)
    return kids


def marked(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker`` (Linux ``/proc``; elsewhere none)."""
    found, me = [], os.getpid()
    if not os.path.isdir("/proc/self"):
        return found
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                if marker.encode() in f.read() and _alive(int(entry.name)):
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children first, then theirs)."""
    kids, found, todo = _children_map(), [], [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    if os.path.isdir("/proc/self"):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"  # a zombie is dead, unreaped
        except FileNotFoundError:
            return False
        except (OSError, IndexError):
            pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def kill_tree(proc: subprocess.Popen, out_dir: Path | None = None, marker: str | None = None,
              timeout: float = 10.0) -> None:
    """SIGKILL torchrun and every process below it (and any live process whose command line holds
    ``marker``, the job's stop-file path: ranks that lost their torchrun); return when all are gone.

    torchrun is frozen first (SIGSTOP) so it cannot start a rank while the tree is collected; each
    rank runs in its own session (torchrun starts them so), so its whole process group is killed.
    Temporary files the killed processes left in ``out_dir`` (``protocol.fileio.atomic_path``
    names them ``.NAME.PID.*.tmp``) are removed.
    """
    exited = proc.poll() is not None  # reaped: its pid may name another process now, leave it
    strays = marked(marker) if marker else []
    if exited and not strays:
        return
    if not exited:  # (unreaped, the pid stays ours even if torchrun ends meanwhile)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGSTOP)
        strays = [*descendants(proc.pid), *strays, *(marked(marker) if marker else [])]
    below = [pid for pid in dict.fromkeys(strays) if pid != proc.pid]
    for pid in below:
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
    if not exited:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("torchrun (pid %d) did not end after SIGKILL", proc.pid)
    elif below:
        log.warning("killed training processes %s left behind by their torchrun", below)
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in below) and time.monotonic() < deadline:
        time.sleep(0.02)
    left = [p for p in below if _alive(p)]
    if left:
        log.error("training processes %s did not end after SIGKILL", left)
    if out_dir is not None and out_dir.is_dir():
        for pid in [proc.pid, *below]:
            for tmp in out_dir.rglob(f".*.{pid}.*.tmp"):
                tmp.unlink(missing_ok=True)
