"""The outbox: how the worker thread (and the I/O thread itself) hand events and frames to the
one thread that owns the sockets.

ZeroMQ sockets are single-threaded, so nothing but the I/O loop touches them. Other threads
``put`` items on a thread-safe queue and poke an inproc PUSH socket (shared, used under a
lock) so the loop's poller wakes at once; the loop drains the queue every iteration.
Items are tuples ``("event", msg_type, content)`` or ``("frame", job_id, index, image, path)``.

``stamp(job_id, stage)`` records when a job passed a stage of its path (submitted, scheduled,
rendered, frame sent, ...) for latency breakdowns (``bench/addon.py``). It is off and costs one
attribute test unless ``EMO_STAGE_LOG`` names a file when the module is imported.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
import time
from typing import Any

import zmq

WAKE_ENDPOINT_PREFIX = "inproc://emo-outbox-"
STAGE_LOG_ENV = "EMO_STAGE_LOG"
"""Environment variable: a file that receives one JSON line per ``stamp`` (appended)."""


class StageLog:
    """Job stage timestamps as JSON lines ``{"job": id, "stage": name, "t": seconds}``.

    ``t`` is ``time.monotonic()``: on Linux the system-wide monotonic clock, so stamps of other
    processes on the same machine (the add-on's) compare with these. Thread-safe; line-buffered,
    so a reader sees each stamp at once.
    """

    def __init__(self, path: str | None) -> None:
        self._file = open(path, "a", buffering=1, encoding="utf-8") if path else None  # noqa: SIM115
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._file is not None

    def stamp(self, job_id: str, stage: str, t: float | None = None) -> None:
        if self._file is None:
            return
        line = json.dumps({"job": job_id, "stage": stage, "t": time.monotonic() if t is None else t})
        with self._lock:
            self._file.write(line + "\n")


STAGES = StageLog(os.environ.get(STAGE_LOG_ENV) or None)


def stamp(job_id: str, stage: str) -> None:
    """Record that ``job_id`` reached ``stage`` now (a no-op unless ``EMO_STAGE_LOG`` is set)."""
    if STAGES.enabled:
        STAGES.stamp(job_id, stage)


class Outbox:
    """Thread-safe queue + wake-up socket pair (the PULL end is polled by the I/O loop)."""

    def __init__(self, context: zmq.Context, name: str) -> None:
        self.context = context
        self.endpoint = WAKE_ENDPOINT_PREFIX + name
        self.pull = context.socket(zmq.PULL)
        self.pull.setsockopt(zmq.LINGER, 0)
        self.pull.bind(self.endpoint)
        self.owner = threading.get_ident()
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._push: zmq.Socket | None = None
        self._lock = threading.Lock()

    def put(self, item: tuple[Any, ...]) -> None:
        """Queue an item; wake the I/O loop when called from another thread."""
        self._queue.put(item)
        if threading.get_ident() == self.owner:
            return
        with self._lock:  # one PUSH socket shared by the other threads, used under the lock
            if self._push is None:
                self._push = self.context.socket(zmq.PUSH)
                self._push.setsockopt(zmq.LINGER, 0)
                self._push.setsockopt(zmq.SNDHWM, 1)
                self._push.connect(self.endpoint)
            with contextlib.suppress(zmq.Again):  # a wake-up is already pending
                self._push.send(b"", zmq.NOBLOCK)

    def event(self, msg_type: str, content: dict[str, Any]) -> None:
        self.put(("event", msg_type, content))

    def drain(self, limit: int = 10_000) -> list[tuple[Any, ...]]:
        """Everything queued so far (on the I/O thread), after clearing pending wake-ups."""
        while True:
            try:
                self.pull.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
        items = []
        for _ in range(limit):
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def close(self) -> None:
        with self._lock:
            if self._push is not None:
                self._push.close(0)
                self._push = None
        self.pull.close(0)
