"""Atomic file and folder writes: a reader sees the old content or the new, never half of one.

Used for connection files, checkpoints, styles, subjects and rendered frames alike.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import struct
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

NPZ_CHUNK_BYTES = 64 << 20
"""Bytes of an array handed to the zip writer at a time by :func:`atomic_write_npz`."""


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


def atomic_write_npz(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray],
                     mode: int | None = None) -> None:
    """Write ``arrays`` atomically as an uncompressed ``.npz`` (what ``np.savez`` writes and
    ``np.load`` reads), copying no array bytes.

    ``np.savez`` copies every 16 MiB of an array twice (a buffered iterator, then ``tobytes``)
    while holding the GIL, so a thread saving 500 MiB stalls every other Python thread for
    stretches of milliseconds (much longer when the copying thread is descheduled on a busy
    machine). Here each array's own memory goes to the zip in ``NPZ_CHUNK_BYTES`` slices;
    the zip's crc32 and the file write both release the GIL for them, so it is held only between
    slices (few slices: on a busy machine every re-acquisition is a chance to be descheduled
    while holding it).

    Args:
        path: the ``.npz`` file to write (replaced atomically).
        arrays: name -> array of any numeric or bool dtype and shape; a non-contiguous array
            is made C-contiguous first (one copy). Object arrays are refused (``ValueError``).
        mode: permission bits, as for :func:`atomic_path`.
    """
    with atomic_path(path, mode=mode) as tmp, open(tmp, "wb") as f, \
            zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, array in arrays.items():
            arr = np.asarray(array)
            if not arr.flags.c_contiguous:
                arr = np.ascontiguousarray(arr)  # (keeps 0-d arrays 0-d only when already contiguous)
            if arr.dtype.hasobject:
                raise ValueError(f"array {name!r} has dtype {arr.dtype}; object arrays cannot be stored")
            with zf.open(f"{name}.npy", "w", force_zip64=True) as out:
                header = np.lib.format.header_data_from_array_1_0(arr)
                try:
                    np.lib.format.write_array_header_1_0(out, header)
                except ValueError:  # a header over 64 KiB (huge structured dtypes)
                    np.lib.format.write_array_header_2_0(out, header)
                flat = arr.reshape(-1).view(np.uint8)
                for start in range(0, flat.size, NPZ_CHUNK_BYTES):
                    out.write(flat[start:start + NPZ_CHUNK_BYTES])


def read_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read an ``.npz`` into memory: name -> array, as ``np.load(path)[name]`` gives them.

    For an uncompressed member (what :func:`atomic_write_npz` and ``np.savez`` write) the bytes
    are read straight into the array and checked against the zip's crc32, both with the GIL
    released (``np.load`` copies every chunk while holding it). Compressed members go through
    numpy's reader. Raises ``ValueError`` for a damaged file (crc or size mismatch, an unknown
    ``.npy`` version) or an object array, ``zipfile.BadZipFile`` for a file that is no zip.
    """
    out: dict[str, np.ndarray] = {}
    with open(path, "rb") as f, zipfile.ZipFile(f) as zf:
        for info in zf.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if info.compress_type != zipfile.ZIP_STORED:
                with zf.open(info) as member:
                    out[name] = np.lib.format.read_array(member, allow_pickle=False)
                continue
            f.seek(info.header_offset)
            local = f.read(30)
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                raise ValueError(f"{path}: member {info.filename!r} has no local header")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            start = info.header_offset + 30 + name_len + extra_len
            f.seek(start)
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"{path}: member {info.filename!r} has .npy version {version}")
            if dtype.hasobject:
                raise ValueError(f"{path}: member {info.filename!r} is an object array")
            head = f.tell() - start
            nbytes = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
            if head + nbytes != info.file_size:
                raise ValueError(f"{path}: member {info.filename!r} holds {info.file_size - head} bytes "
                                 f"of array data, its header says {nbytes}")
            data = np.empty(nbytes, np.uint8)
            view, got = memoryview(data), 0
            while got < nbytes:
                n = f.readinto(view[got:])
                if not n:
                    raise ValueError(f"{path}: member {info.filename!r} is truncated")
                got += n
            f.seek(start)
            crc = zlib.crc32(data, zlib.crc32(f.read(head)))
            if crc != info.CRC:
                raise ValueError(f"{path}: member {info.filename!r} is damaged (crc32 mismatch)")
            out[name] = data.view(dtype).reshape(shape, order="F" if fortran else "C")
    return out


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
