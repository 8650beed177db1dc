"""Atomic file and folder writes: a reader sees the old content or the new, never half of one.

Used for connection files, checkpoints, styles, subjects and rendered frames alike.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path


def _umask_mode(base: int) -> int:
    """``base`` permission bits filtered by the process umask (what ``open()`` would give)."""
    current = os.umask(0)
    os.umask(current)
    return base & ~current


_temp_serial = itertools.count()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    Write the file at the yielded path (e.g. ``torch.save(obj, tmp)``). If the block raises,
    the temporary file is removed and ``path`` is untouched. ``mode`` sets permission bits
    before the rename (e.g. ``0o600`` for secrets); by default the file gets the usual
    ``0o666 & ~umask``, like a file made with ``open()``.
    """
    target = Path(path)
    if not target.parent.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
    # unique per process, thread and call; O_EXCL makes sure it is ours. Created like open() does
    # (0o666 & ~umask), or private until the rename when ``mode`` is given. (Cheaper than mkstemp +
    # chmod, which matters for the one file per rendered frame.)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.{next(_temp_serial)}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else 0o600))
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    with atomic_path(path, mode=mode) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str, mode: int | None = None) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it becomes ``path``.

    Raises ``FileExistsError`` up front when ``path`` exists and ``overwrite`` is false. On
    failure the temporary folder is deleted and an existing ``path`` is left as it was.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists (use --overwrite to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, _umask_mode(0o777))
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
