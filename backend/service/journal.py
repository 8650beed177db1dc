"""The job journal: every job, its parameters, state and outputs, in SQLite under the workdir.

Every state change is committed before it is announced, so a backend killed at any moment
(SIGKILL included) restarts knowing each job's last true state. On open, jobs that were
``running`` or ``cancelling`` when the process died become ``interrupted`` (they can be
resumed), and ``queued`` jobs stay queued only when the server resumes jobs; otherwise they
become ``interrupted`` too, so nothing starts behind the operator's back.

Thread-safe: one connection guarded by a lock (the I/O loop and the worker both write).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

QUEUED, RUNNING, CANCELLING = "queued", "running", "cancelling"
CANCELLED, FAILED, DONE, INTERRUPTED = "cancelled", "failed", "done", "interrupted"
STATES = (QUEUED, RUNNING, CANCELLING, CANCELLED, FAILED, DONE, INTERRUPTED)
ACTIVE_STATES = (QUEUED, RUNNING, CANCELLING)
FINAL_STATES = (CANCELLED, FAILED, DONE, INTERRUPTED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    id        TEXT UNIQUE NOT NULL,
    kind      TEXT NOT NULL,
    params    TEXT NOT NULL,
    state     TEXT NOT NULL,
    error     TEXT,
    outputs   TEXT NOT NULL DEFAULT '{}',
    progress  TEXT NOT NULL DEFAULT '{}',
    attempts  INTEGER NOT NULL DEFAULT 0,
    created   REAL NOT NULL,
    updated   REAL NOT NULL
);
"""


@dataclass
class JobRecord:
    """One journal row. ``params``/``outputs``/``progress`` are JSON-able dicts; times are Unix seconds."""

    id: str
    kind: str
    params: dict[str, Any]
    state: str = QUEUED
    error: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    created: float = 0.0
    updated: float = 0.0
    seq: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The job as reported on the wire (``protocol.messages.JOB_RECORD``)."""
        p = self.progress
        return {
            "job_id": self.id, "kind": self.kind, "state": self.state, "error": self.error,
            "stage": p.get("stage"), "step": int(p.get("step") or 0), "total": int(p.get("total") or 0),
            "created": _iso(self.created), "updated": _iso(self.updated),
            "params": self.params, "outputs": self.outputs, "attempts": self.attempts,
        }


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Journal:
    """SQLite-backed store of ``JobRecord`` rows (``WORKDIR/journal.sqlite3``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: every commit survives the process being killed (SIGKILL); only an OS
        # crash or power loss may lose the last commits. FULL would fsync each progress update.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- reads ---------------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else self._record(row)

    def list(self, states: tuple[str, ...] | None = None) -> list[JobRecord]:
        """All jobs (or those in ``states``) in submission order."""
        with self._lock:
            if states:
                marks = ",".join("?" * len(states))
                rows = self._db.execute(f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY seq", states)
            else:
                rows = self._db.execute("SELECT * FROM jobs ORDER BY seq")
            rows = rows.fetchall()
        return [self._record(r) for r in rows]

    # -- writes --------------------------------------------------------------------------------
    def add(self, job_id: str, kind: str, params: dict[str, Any]) -> tuple[JobRecord, bool]:
        """Insert a queued job; return ``(record, created)``. An existing id returns that job unchanged."""
        now = time.time()
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO jobs (id, kind, params, state, created, updated) VALUES (?,?,?,?,?,?)",
                    (job_id, kind, json.dumps(params), QUEUED, now, now),
                )
                created = True
            except sqlite3.IntegrityError:
                created = False
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._record(row), created

    def set_state(self, job_id: str, state: str, error: str | None = None,
                  count_attempt: bool = False) -> JobRecord:
        """Record a state change (and the error for ``failed``/``interrupted``)."""
        if state not in STATES:
            raise ValueError(f"unknown job state {state!r}")
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET state = ?, error = ?, updated = ?, attempts = attempts + ? WHERE id = ?",
                (state, error, time.time(), int(count_attempt), job_id),
            )
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(job_id)
        return self._record(row)

    def set_outputs(self, job_id: str, outputs: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET outputs = ?, updated = ? WHERE id = ?",
                             (json.dumps(outputs), time.time(), job_id))

    def set_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET progress = ? WHERE id = ?", (json.dumps(progress), job_id))

    def recover(self, requeue: bool) -> list[JobRecord]:
        """After a restart: make every job's state true again; return the jobs to run now.

        ``running``/``cancelling`` jobs died with the old process: ``interrupted`` (or queued
        again when ``requeue``). ``queued`` jobs stay queued when ``requeue``, else they are
        ``interrupted`` too (resumable on request).
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE state IN (?,?,?) ORDER BY seq", ACTIVE_STATES).fetchall()
        runnable: list[JobRecord] = []
        for rec in (self._record(r) for r in rows):
            if rec.state == CANCELLING:
                self.set_state(rec.id, CANCELLED, "cancelled (backend restarted while cancelling)")
                continue
            if requeue:
                runnable.append(self.set_state(rec.id, QUEUED, None))
            else:
                why = ("backend stopped while the job was running" if rec.state == RUNNING
                       else "backend stopped before the job started")
                self.set_state(rec.id, INTERRUPTED, why + "; resubmit the same job id to resume")
        return runnable

    @staticmethod
    def _record(row: tuple) -> JobRecord:
        seq, job_id, kind, params, state, error, outputs, progress, attempts, created, updated = row
        return JobRecord(id=job_id, kind=kind, params=json.loads(params), state=state, error=error,
                         outputs=json.loads(outputs), progress=json.loads(progress), attempts=attempts,
                         created=created, updated=updated, seq=seq)
