"""Freeing a big received message without stalling the other threads.

A 511 MiB ZeroMQ frame is one ``mmap``'d block, and freeing it is one ``munmap``: 40-55 ms here
in which the kernel frees 130,000 pages while holding the process's memory-map lock. pyzmq
releases the GIL for it, but a thread that maps or unmaps memory meanwhile (a new Python arena,
a numpy temporary, malloc trimming its heap) waits for that lock, and when that thread holds the
GIL every Python thread waits with it: the I/O thread answers nothing for those 40-55 ms, longer
when the freeing thread is descheduled in the middle on a busy machine.

:func:`release_frames` first hands a big frame's pages back in ``SLICE_BYTES`` slices
(``madvise(MADV_DONTNEED)``, a fraction of a millisecond each, through ctypes, which releases
the GIL), so the final ``munmap`` finds nothing left to free. Only a frame that nothing else
references is discarded this way (its reference count says so): a live view into it (a preview
job keeps its inputs in memory) keeps its bytes, and the frame is then simply dropped.
Linux only; elsewhere the frames are dropped as they are.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import sys
from typing import Any

import numpy as np
import zmq

log = logging.getLogger(__name__)

SLICE_BYTES = 8 << 20
"""Bytes handed back per ``madvise`` call (about 0.5 ms of kernel work here)."""
MIN_DISCARD_BYTES = 4 << 20
"""Frames smaller than this are dropped as they are (their ``munmap``, if any, is short)."""

_PAGE = mmap.PAGESIZE
_MADV_DONTNEED = 4  # Linux <sys/mman.h>

_madvise: Any = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(None, use_errno=True)  # CDLL (not PyDLL): calls release the GIL
        _madvise = _libc.madvise
        _madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        _madvise.restype = ctypes.c_int
    except (OSError, AttributeError):  # no libc symbol: drop frames as they are
        _madvise = None


def release_frames(frames: list[Any]) -> int:
    """Drop every frame in ``frames`` (the list ends empty), big unshared ones page by page first.

    Args:
        frames: received message frames (``recv_multipart(copy=False)``); the caller passes
            its only reference to them in this list and keeps no other. Only a ``zmq.Frame``
            nothing else references is handed back page by page: bytes, memoryviews and frames
            still referenced elsewhere may share memory with something alive, and are only
            dropped from the list.

    Returns:
        Bytes handed back to the kernel before the frames were dropped.
    """
    discarded = 0
    while frames:
        frame = frames.pop()
        # 2 references: ``frame`` and getrefcount's argument; any more is a view into the bytes
        if _madvise is not None and type(frame) is zmq.Frame and sys.getrefcount(frame) == 2:
            discarded += _discard(frame)
        del frame  # the munmap (or free) happens here
    return discarded


def _discard(frame: Any) -> int:
    """``MADV_DONTNEED`` the whole pages inside ``frame``'s bytes, ``SLICE_BYTES`` at a time."""
    try:
        view = np.frombuffer(frame, np.uint8)
    except (TypeError, ValueError):
        return 0
    address, size = int(view.ctypes.data), int(view.nbytes)
    del view
    if size < MIN_DISCARD_BYTES:
        return 0
    start = -(-address // _PAGE) * _PAGE  # whole pages only: the allocator's header stays intact
    end = (address + size) // _PAGE * _PAGE
    done = 0
    for lo in range(start, end, SLICE_BYTES):
        n = min(SLICE_BYTES, end - lo)
        if _madvise(lo, n, _MADV_DONTNEED) != 0:
            log.debug("madvise failed (errno %d); the rest is freed at once", ctypes.get_errno())
            break
        done += n
    return done


__all__ = ["MIN_DISCARD_BYTES", "SLICE_BYTES", "release_frames"]
