"""Frame streams: rendered frames to the client that asked, under credit flow control.

Lives on the I/O thread. The worker hands every frame over (``offer``) *after* it is on disk
(``renders/<job_id>/000000.png``); a stream sends a frame only while its client has credit
(``frames_credit``). Frames the client is not ready for are kept in memory only up to
``cache_frames`` per stream; beyond that the stream forgets the pixels and reads the frame
back from disk when credit arrives. So a slow or vanished client costs at most
``cache_frames`` frames of memory (plus ZeroMQ's send high-water mark), and the render itself
never waits for the client.

A preview render's frames are never on disk (``kinds.RenderKind``): its cache is the only
copy, kept after the job ends until the client takes the frames; at most ``cache_frames``
finished streams keep such frames (older ones drop them: that preview is lost, never stale).

A stream belongs to the shell identity that submitted the job, or to whoever last sent
``frames_credit`` for it (a client that reconnects, or a second viewer, can take it over and
restart at any index).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backend.paths import frame_file_name
from backend.service.events import stamp
from protocol.limits import MAX_CREDIT_BYTES

log = logging.getLogger(__name__)

SendFrameFn = Callable[["FrameStream", int, str, Any, str], bool]
"""``send(stream, index, encoding, payload, png_path) -> sent``; False when the socket is full
(retry later). Raises ``LookupError`` when the client is gone (detaches the stream)."""

MAX_CREDIT = 256
"""Outstanding credit a client may hold per stream, in frames (more is clamped)."""
# Outstanding credit per stream in bytes (protocol.limits.MAX_CREDIT_BYTES): once a stream knows
# its frame size, its frame credit is clamped to MAX_CREDIT_BYTES // frame bytes (at least 1), so
# frames in flight to one client never hold more than that (plus one frame).


@dataclass
class FrameStream:
    """Delivery state of one render job's frames to one client."""

    job_id: str
    out_dir: Path
    identities: list[bytes] | None
    parent: dict[str, Any]
    encoding: str = "raw"
    first: int = 0
    frame_start: int = 0
    credit: int = 0
    next_index: int = 0
    available: int = 0
    total: int | None = None
    finished: bool = False
    sent: int = 0
    frame_bytes: int = 0
    """Bytes of the last frame sent (0 until one is sent); sets the byte clamp of the credit."""
    cache: OrderedDict[int, np.ndarray] = field(default_factory=OrderedDict)

    @property
    def credit_cap(self) -> int:
        """Most frames of credit: MAX_CREDIT, and MAX_CREDIT_BYTES worth of this stream's frames."""
        if self.frame_bytes <= 0:
            return MAX_CREDIT
        return max(1, min(MAX_CREDIT, MAX_CREDIT_BYTES // self.frame_bytes))

    @property
    def complete(self) -> bool:
        """The job is over and the owner has every frame it made."""
        return self.finished and self.next_index >= self.available

    @property
    def done(self) -> bool:
        """Nothing more to do: complete, or the job is over and nobody is listening."""
        return self.complete or (self.finished and self.identities is None)


def frame_file(out_dir: Path, index: int) -> Path:
    """``renders/<job_id>/000123.png``."""
    return Path(out_dir) / frame_file_name(index)


def read_frame_png(path: Path) -> bytes:
    return Path(path).read_bytes()


def read_frame_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a frame PNG on disk."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"cannot read frame {path}")
    return np.ascontiguousarray(bgr[:, :, ::-1])


class StreamTable:
    """All frame streams of the server, keyed by job id."""

    def __init__(self, send: SendFrameFn, cache_frames: int = 8) -> None:
        self.send = send
        self.cache_frames = cache_frames
        self.streams: dict[str, FrameStream] = {}

    def open(self, job_id: str, out_dir: Path, identities: list[bytes] | None, parent: dict[str, Any],
             encoding: str = "raw", credit: int = 0) -> FrameStream:
        """Create (or re-own) the stream of a render job."""
        st = self.streams.get(job_id)
        if st is None:
            st = FrameStream(job_id=job_id, out_dir=Path(out_dir), identities=identities, parent=parent,
                             encoding=encoding)
            self.streams[job_id] = st
        else:
            st.identities, st.parent, st.encoding = identities, parent, encoding
        st.credit = min(st.credit_cap, st.credit + max(0, credit))
        return st

    def credit(self, job_id: str, identities: list[bytes], parent: dict[str, Any], credit: int,
               start: int | None = None, encoding: str | None = None) -> FrameStream | None:
        """Grant ``credit`` more frames; the sender becomes the stream's owner.

        A new owner (another identity) starts from ``start`` (default: the first frame) with
        fresh credit; the same owner continues where it is (``start`` may only skip ahead).
        """
        st = self.streams.get(job_id)
        if st is None:
            return None
        if st.identities != identities:
            st.identities, st.credit = identities, 0
            st.next_index = st.first if start is None else max(start, st.first)
        elif start is not None and start > st.next_index:
            # the same connection loses nothing, so `start` only skips ahead (frames in flight
            # are not sent twice); a new connection (another identity) restarts where it asks
            st.next_index = start
        st.parent = parent
        if encoding:
            st.encoding = encoding
        st.credit = min(st.credit_cap, st.credit + max(0, credit))
        return st

    def offer(self, job_id: str, index: int, image: np.ndarray | None) -> None:
        """A frame is on disk (``image`` is its pixels or None). Frames arrive in index order."""
        st = self.streams.get(job_id)
        if st is None:
            return
        st.available = max(st.available, index + 1)
        if image is not None and index >= st.next_index and len(st.cache) < self.cache_frames:
            st.cache[index] = image
        self.pump(st)

    def finish(self, job_id: str, total: int | None) -> None:
        """The job reached a final state; ``total`` frames are on disk (None if unknown)."""
        st = self.streams.get(job_id)
        if st is None:
            return
        st.finished = True
        if total is not None:
            st.total = total
            st.available = max(st.available, total)
        self.pump(st)
        if st.credit == 0:
            # nobody is asking now: drop the pixels of frames on disk (a preview's are not)
            for k in [k for k in st.cache if frame_file(st.out_dir, k).is_file()]:
                del st.cache[k]
            if st.cache:
                self._bound_memory_only(st)

    def _bound_memory_only(self, keep: FrameStream) -> None:
        """At most ``cache_frames`` finished streams keep frames nobody asked for yet."""
        held = [s for s in self.streams.values() if s.finished and s.cache and s is not keep]
        for old in held[: max(0, len(held) + 1 - self.cache_frames)]:
            log.info("job %s: its preview frames were never asked for; dropped", old.job_id)
            old.cache.clear()

    def pump_all(self) -> None:
        """Pump every stream; forget the ones that are done (they can be reopened from disk)."""
        for st in list(self.streams.values()):
            self.pump(st)
            if st.done:
                del self.streams[st.job_id]

    def pump(self, st: FrameStream) -> None:
        """Send frames while the owner has credit and frames are available."""
        while st.identities is not None and st.credit > 0 and st.next_index < st.available:
            i = st.next_index
            png = frame_file(st.out_dir, i)
            try:
                if st.encoding == "png":
                    payload: Any = read_frame_png(png)
                else:
                    payload = st.cache.get(i)
                    if payload is None:
                        payload = read_frame_rgb(png)
                ok = self.send(st, i, st.encoding, payload, str(png))
            except LookupError:
                log.info("client of job %s is gone; frames stay on disk in %s", st.job_id, st.out_dir)
                st.identities, st.credit = None, 0
                return
            except OSError as exc:
                log.error("job %s: frame %d unreadable: %s", st.job_id, i, exc)
                ok = True  # skip it rather than stall the stream forever
            if not ok:
                return
            stamp(st.job_id, "frame_sent")
            st.cache.pop(i, None)
            st.next_index += 1
            st.frame_bytes = int(getattr(payload, "nbytes", None) or len(payload))
            st.credit = min(st.credit - 1, st.credit_cap)
            st.sent += 1
        # drop cached pixels the client already skipped past
        for k in [k for k in st.cache if k < st.next_index]:
            del st.cache[k]
