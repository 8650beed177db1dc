"""The intake thread: request work too slow for the I/O thread, done in arrival order.

The I/O thread decodes and validates every request itself (linear-time checks only), then hands
the slow part here: a job submission's value scans, preparation (``JobKind.prepare`` writes a
render's ``inputs.npz``) and journal insert, an upload chunk's disk write, the retention sweep.
When the work is done, ``post(("call", done, result, error))`` puts the continuation on the
outbox, and the I/O thread runs ``done(result, error)`` (it sends the reply: only that thread
touches sockets). One thread, FIFO: the chunks of an upload are written in the order they came,
and a resubmitted job id sees the first submission's journal row.

Memory: a queued request holds its received buffers. ``max_pending_bytes`` bounds their sum;
beyond it :meth:`Intake.submit` refuses, and the server answers ``ServerBusy`` at once. The
buffers are freed here, when the work is done and before its continuation is posted: the
continuation gets the result (or the error, whose traceback keeps no local variables), never the
request's buffers, so the I/O thread never pays for returning hundreds of MiB to the kernel. The
request's frames, handed over with the work, are freed by ``release.release_frames`` (page by
page, so that no thread holding the GIL waits for one long ``munmap``).
"""

from __future__ import annotations

import logging
import queue
import threading
import traceback
from collections.abc import Callable
from typing import Any

from backend.service.release import release_frames

log = logging.getLogger(__name__)

PostFn = Callable[[tuple[Any, ...]], None]


class Intake:
    """One worker thread with a byte-bounded FIFO (see the module docstring)."""

    def __init__(self, post: PostFn, max_pending_bytes: int) -> None:
        self.post = post
        self.max_pending_bytes = int(max_pending_bytes)
        self.pending_bytes = 0
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="emo-intake", daemon=True)
        self._thread.start()

    def submit(self, nbytes: int, work: Callable[[], Any],
               done: Callable[[Any, BaseException | None], None] | None,
               frames: list[Any] | None = None) -> bool:
        """Queue ``work`` (holding ``nbytes`` of request buffers); False when over the budget.

        ``frames``: the request's received frames; when the work is accepted, their only
        reference passes to the intake (the list is emptied), and they are released after
        ``work`` and before ``done`` is posted. A request is always accepted when nothing else
        is pending, so one maximal message can never be refused for its size alone.
        """
        with self._lock:
            if self.pending_bytes and self.pending_bytes + nbytes > self.max_pending_bytes:
                return False
            self.pending_bytes += nbytes
        held = frames[:] if frames else []
        if frames:
            frames.clear()
        self._queue.put((nbytes, work, done, held))
        return True

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            nbytes, work, done, frames = item
            result: Any = None
            error: BaseException | None = None
            try:
                result = work()
            except Exception as exc:  # handed to `done`, which answers the client
                error = exc
                _drop_locals(exc)
            del work, item  # drop the request's buffers now, not when the next item arrives
            try:
                release_frames(frames)
            except Exception:  # never lose the reply over freeing memory
                log.exception("releasing a request's frames failed")
                frames.clear()
            with self._lock:
                self.pending_bytes -= nbytes
            if done is not None:
                self.post(("call", done, result, error))
            elif error is not None:
                log.error("background work failed: %s: %s", type(error).__name__, error)

    def close(self, timeout: float = 5.0) -> None:
        """Finish what is queued (bounded by ``timeout``) and stop."""
        self._queue.put(None)
        self._thread.join(timeout)


def _drop_locals(exc: BaseException) -> None:
    """Clear the local variables of the finished frames in ``exc``'s tracebacks (and those of
    its cause and context), so the error does not keep the request's buffers alive; file and line
    numbers stay for the log."""
    todo, seen = [exc], set()
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        traceback.clear_frames(e.__traceback__)
        todo.extend((e.__cause__, e.__context__))


__all__ = ["Intake"]
