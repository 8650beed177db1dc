"""The job journal: every job, its parameters, state and outputs, in SQLite under the workdir.

Every state change is committed before it is announced, so a backend killed at any moment
(SIGKILL included) restarts knowing each job's last true state. On open, jobs that were
``running`` or ``cancelling`` when the process died become ``interrupted`` (they can be
resumed), and ``queued`` jobs stay queued only when the server resumes jobs; otherwise they
become ``interrupted`` too, so nothing starts behind the operator's back.

A journal SQLite cannot open (not a database, failed integrity check) is moved aside to
``journal.sqlite3.corrupt-<UTC time>`` with an error line in the log, and a fresh one is
started: the server comes up, and the old file stays for inspection. The file is 0600.

Thread-safe: one connection guarded by a lock (the I/O loop and the worker both write).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

BUSY_TIMEOUT_SECONDS = 2.0
"""How long a write waits for a lock held elsewhere before it fails (and is retried)."""

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
        self.moved_aside: Path | None = None
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            self.moved_aside = self._move_aside(exc)
            self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None,
                             timeout=BUSY_TIMEOUT_SECONDS)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: every commit survives the process being killed (SIGKILL); only an OS
            # crash or power loss may lose the last commits. FULL would fsync each progress update.
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            check = db.execute("PRAGMA quick_check").fetchone()
            if not check or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {check[0] if check else 'no answer'}")
            columns = [r[1] for r in db.execute("PRAGMA table_info(jobs)")]
            if columns[:11] != ["seq", "id", "kind", "params", "state", "error", "outputs", "progress",
                                "attempts", "created", "updated"]:
                raise sqlite3.DatabaseError(f"jobs table has columns {columns}")
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _move_aside(self, exc: BaseException) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                os.replace(src, Path(str(aside) + suffix))
        log.error("the job journal %s is unreadable (%s); moved it to %s and started a new, empty one "
                  "(earlier jobs are not listed; their files in the workdir are untouched)",
                  self.path, exc, aside)
        return aside

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- reads ---------------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else self._record(row)

    def list(self, states: tuple[str, ...] | None = None, *, offset: int = 0, limit: int | None = None,
             updated_before: float | None = None) -> list[JobRecord]:
        """Jobs (all, or those in ``states`` / last updated before a time) in submission order,
        ``limit`` of them from ``offset``."""
        where, args = [], []
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args.extend(states)
        if updated_before is not None:
            where.append("updated < ?")
            args.append(updated_before)
        sql = "SELECT * FROM jobs" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY seq"
        sql += " LIMIT ? OFFSET ?"
        args.extend([-1 if limit is None else int(limit), int(offset)])
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [self._record(r) for r in rows]

    def count(self) -> int:
        """How many jobs the journal holds."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])

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
