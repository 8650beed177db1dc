"""Atomic file and folder writes: a reader sees the old content or the new, never half of one.

Used for connection files, checkpoints, styles, subjects and rendered frames alike.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import shutil
import struct
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

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


NPY_MAX_HEADER_BYTES = 10_000
"""Most bytes of an ``.npy`` header dict :func:`read_npz` lets numpy parse (numpy's own default
bound: the dict is read with ``ast.literal_eval``, slow on huge input)."""


MAX_DEFLATE_RATIO = 1032
"""Most bytes DEFLATE can expand one compressed byte to (a run of one byte, 258 per 2 bits), so a
member claiming more cannot be real."""


def read_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read an ``.npz`` into memory: name -> array, as ``np.load(path)[name]`` gives them.

    Every member's ``.npy`` header is read by numpy's own reader (``read_magic``,
    ``read_array_header_1_0`` / ``_2_0``, at most ``NPY_MAX_HEADER_BYTES``). Before any array
    memory is allocated, the bytes the header asks for must be what the zip records for the
    member, and the member must fit in the file (stored: its bytes; deflated: at most
    ``MAX_DEFLATE_RATIO`` times its compressed bytes), so a lying size costs nothing. Object arrays
    are refused (they would need pickle; nothing is unpickled).

    For an uncompressed member (what :func:`atomic_write_npz` and ``np.savez`` write) the bytes
    are read straight into the array and checked against the zip's crc32, both with the GIL
    released: ``np.load`` on the member copies every chunk while holding it. That needs the
    member's offset in the file, taken from its local header (zipfile's own layout,
    ``zipfile.structFileHeader``). Compressed members are inflated by ``zipfile`` (which checks
    their crc32).

    Raises ``ValueError`` naming the file and member for anything malformed: not a zip, a
    damaged or truncated member, a header numpy refuses, an unknown ``.npy`` version, sizes that
    disagree, an object array, an encrypted member or another compression method.
    """
    out: dict[str, np.ndarray] = {}
    try:
        with open(path, "rb") as f, zipfile.ZipFile(f) as zf:
            file_bytes = os.fstat(f.fileno()).st_size
            for info in zf.infolist():
                where = f"{path}: member {info.filename!r}"
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                if info.flag_bits & 0x1:
                    raise ValueError(f"{where} is encrypted")
                if info.compress_type == zipfile.ZIP_STORED:
                    out[name] = _read_stored(f, info, file_bytes, where)
                    continue
                if info.compress_type != zipfile.ZIP_DEFLATED:
                    raise ValueError(f"{where} uses zip compression method {info.compress_type}; only "
                                     "stored (np.savez) and deflated (np.savez_compressed) are read")
                if (info.header_offset + info.compress_size > file_bytes
                        or info.file_size > MAX_DEFLATE_RATIO * info.compress_size + 1024):
                    raise ValueError(f"{where} claims {info.file_size} bytes from {info.compress_size} "
                                     f"compressed, more than the file ({file_bytes} bytes) can hold")
                with zf.open(info) as member:
                    out[name] = _read_compressed(member, info, where)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        # no zip, a broken directory or local header; a compressed member's bad crc, bad or cut stream
        raise ValueError(f"{path}: not a readable .npz ({type(exc).__name__}: {exc})") from None
    return out


def _npy_header(f: Any, info: zipfile.ZipInfo, where: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, Fortran order, dtype, array bytes) of the ``.npy`` header at ``f``'s position, read
    by numpy's reader; the header plus the array bytes must be the member's size in the zip."""
    start = f.tell()
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, NPY_MAX_HEADER_BYTES)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, NPY_MAX_HEADER_BYTES)
        else:
            raise ValueError(f"has .npy version {version[0]}.{version[1]}; 1.0 and 2.0 are read")
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if dtype.hasobject:
        raise ValueError(f"{where} is an object array (reading it would need pickle)")
    head = f.tell() - start
    nbytes = dtype.itemsize * math.prod(shape)  # Python ints: a huge shape cannot overflow
    if head + nbytes != info.file_size:
        raise ValueError(f"{where} holds {info.file_size - head} bytes of array data, its header "
                         f"says {nbytes}")
    return shape, fortran, dtype, nbytes


def _read_stored(f: Any, info: zipfile.ZipInfo, file_bytes: int, where: str) -> np.ndarray:
    """An uncompressed member read straight into its array, crc32-checked (GIL released)."""
    f.seek(info.header_offset)
    local = f.read(zipfile.sizeFileHeader)
    if len(local) != zipfile.sizeFileHeader or local[:4] != zipfile.stringFileHeader:
        raise ValueError(f"{where} has no local header")
    *_, name_len, extra_len = struct.unpack(zipfile.structFileHeader, local)
    if f.read(name_len) != info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437"):
        raise ValueError(f"{where}: its local header names another file")
    start = info.header_offset + zipfile.sizeFileHeader + name_len + extra_len
    if start + info.file_size > file_bytes or info.compress_size != info.file_size:
        raise ValueError(f"{where} claims {info.file_size} bytes, past the end of the file "
                         f"({file_bytes} bytes)")
    f.seek(start)
    shape, fortran, dtype, nbytes = _npy_header(f, info, where)
    head = f.tell() - start
    data = _read_bytes(f, nbytes, where)
    f.seek(start)
    if zlib.crc32(data, zlib.crc32(f.read(head))) != info.CRC:
        raise ValueError(f"{where} is damaged (crc32 mismatch)")
    return data.view(dtype).reshape(shape, order="F" if fortran else "C")


def _read_bytes(f: Any, nbytes: int, where: str) -> np.ndarray:
    """The next ``nbytes`` of ``f`` read into a new uint8 array (``readinto``: no copy of its own)."""
    data = np.empty(nbytes, np.uint8)
    view, got = memoryview(data), 0
    while got < nbytes:
        n = f.readinto(view[got:])
        if not n:
            raise ValueError(f"{where} is truncated")
        got += n
    return data


def _read_compressed(member: Any, info: zipfile.ZipInfo, where: str) -> np.ndarray:
    """A compressed member, inflated by zipfile into its array (zipfile checks the crc32 at the
    end and raises ``BadZipFile`` on a mismatch)."""
    shape, fortran, dtype, nbytes = _npy_header(member, info, where)
    return _read_bytes(member, nbytes, where).view(dtype).reshape(shape, order="F" if fortran else "C")


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
