"""Job queue and executor: one compute worker thread runs jobs one at a time.

The server calls ``JobManager.submit`` (from its intake thread) and ``cancel/get/page`` (from
its I/O thread) and never waits on compute. The worker thread takes the next job: the lowest
``priority - waited / ageing_seconds`` (render jobs are priority 0, track/train/edit 1, so renders
go first, but a compute job that waited ``ageing_seconds`` beats any new render: a stream of
renders cannot starve it), then submission order. It runs the job's ``JobKind`` with a
``JobContext`` (progress callback, ``should_stop`` predicate, log, frame sink) and records
every state change in the journal before announcing it with ``emit(msg_type, content)``.

Preview jobs (``params["preview"]``, for kinds with ``prepare_preview``: a render's live preview)
take a fast path: they live in memory only (no journal row, no stored inputs, no
``job_progress`` events), run ahead of other renders (``PRIORITY_PREVIEW``), and are not listed
(``list``/``page``); ``get`` and ``cancel`` know them, and the last ``MEMORY_KEEP`` finished ones
stay answerable. A preview is cheap to ask again, so it needs none of the crash safety a
journalled job has: a backend that dies while one runs simply loses it.

Bounds: at most ``max_active`` jobs queued or running (``QuotaExceeded`` beyond). Journal
failures (disk full, a locked database): a progress write that fails is skipped; a state write
that fails marks the job ``failed`` in memory (``get``/``page`` report that), emits the final
``job_state`` event, and a retry thread writes it to the journal as soon as it can.

Torch releases the GIL inside its kernels, so a thread keeps the sockets responsive without
paying a child process's torch import on every start.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from backend.progress import Cancelled, ProgressUpdate
from backend.service import journal as J
from backend.service.events import stamp
from backend.service.sandbox import ReadPolicy, check_id

log = logging.getLogger(__name__)

EmitFn = Callable[[str, dict[str, Any]], None]
"""Thread-safe event publisher: ``emit(msg_type, content)``."""
FrameSinkFn = Callable[[str, int, Any, Path], None]
"""Thread-safe frame hand-off: ``sink(job_id, index, frame (H,W,3) uint8, png_path)``."""

PRIORITY_PREVIEW = -1
PRIORITY_RENDER = 0
PRIORITY_COMPUTE = 1
MEMORY_KEEP = 64
"""Finished preview jobs kept in memory (so ``job_status`` still answers for them)."""
PROGRESS_EVENT_INTERVAL = 0.1
"""Seconds between job_progress events of one job (the last update of a stage always goes out)."""
PROGRESS_JOURNAL_INTERVAL = 0.5
"""Seconds between progress writes to the journal (job_status reads them)."""


class JobError(ValueError):
    """A job request that cannot be accepted (bad parameters, unknown subject, ...). Readable message."""


class QuotaExceeded(JobError):  # noqa: N818 (the ename clients see)
    """Too many jobs queued or running, or too many uploads open; the message names the limit."""


@dataclass
class ServiceEnv:
    """What every job kind may use: the workdir, the device string, the read policy, the render mode."""

    workdir: Path
    device: str | None = None
    read_policy: ReadPolicy = field(default_factory=ReadPolicy)
    compile: bool = False
    """Render through ``torch.compile`` (``emo-avatar serve --compile``)."""
    train_procs: int = 1
    """Processes a train job runs in: 1 in this process, more through torchrun (``serve --train-procs``)."""

    def job_dir(self, job_id: str) -> Path:
        """``WORKDIR/jobs/<job_id>/``: a job's stored inputs (curves, UV maps) for resume."""
        return self.workdir / "jobs" / check_id(job_id, "job id")


@dataclass
class JobContext:
    """Handed to ``JobKind.run``: the job, the environment and the callbacks to report back."""

    record: J.JobRecord
    env: ServiceEnv
    progress: Callable[[ProgressUpdate], None]
    should_stop: Callable[[], bool]
    log: Callable[..., None]
    """``log(message, level="info")``: the job's ``log`` event and the server log."""
    frame: Callable[[int, Any, Path], None]
    inputs: dict[str, Any] | None = None
    """A preview job's inputs as ``prepare_preview`` returned them (None for journalled jobs,
    which read theirs from ``env.job_dir``)."""

    @property
    def job_id(self) -> str:
        return self.record.id

    @property
    def params(self) -> dict[str, Any]:
        return self.record.params

    @property
    def resuming(self) -> bool:
        """True when this job ran before (killed, cancelled or failed) and is run again."""
        return self.record.attempts > 1


class JobKind(Protocol):
    """One kind of job (track, train, edit, render, or a test's own)."""

    name: str
    priority: int

    def prepare(self, job_id: str, params: dict[str, Any], buffers: dict[str, Any], env: ServiceEnv
                ) -> dict[str, Any]:
        """Validate a request at submit time; store big inputs under ``env.job_dir(job_id)``.

        Returns the JSON-able parameters the journal keeps. Raises ``JobError`` or
        ``SandboxError`` with a message for the client; runs on the I/O thread, so keep it fast.
        """
        ...

    def run(self, ctx: JobContext) -> dict[str, Any]:
        """Do the work; return the outputs (JSON-able, ids/paths inside the workdir)."""
        ...

    # Optional: ``prepare_preview(job_id, params, buffers, env) -> (stored params, inputs)``
    # validates a preview request like ``prepare`` but keeps its inputs in memory (``ctx.inputs``)
    # instead of storing them; kinds without it refuse ``params["preview"]``.


class _Running:
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.stop = threading.Event()


class JobManager:
    """Queue + single worker thread + journal bookkeeping."""

    def __init__(self, journal: J.Journal, kinds: dict[str, JobKind], env: ServiceEnv,
                 emit: EmitFn, frame_sink: FrameSinkFn | None = None, *, max_active: int = 64,
                 ageing_seconds: float = 60.0) -> None:
        self.journal = journal
        self.kinds = kinds
        self.env = env
        self.emit = emit
        self.frame_sink = frame_sink
        self.max_active = int(max_active)
        self.ageing_seconds = float(ageing_seconds)
        self._queue: list[tuple[int, int, str, float]] = []  # (priority, seq, job id, queued at)
        self._cond = threading.Condition()
        self._running: _Running | None = None
        self._closing = False
        self._thread: threading.Thread | None = None
        self._unsaved: dict[str, J.JobRecord] = {}
        """Final states the journal could not take yet (retried by ``_retry_thread``)."""
        self._retry_thread: threading.Thread | None = None
        self.journal_failures = 0
        self._memory: dict[str, J.JobRecord] = {}
        """Preview jobs (never journalled), in submission order."""
        self._memory_inputs: dict[str, dict[str, Any]] = {}
        self._memory_seq = itertools.count(1)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, requeue_interrupted: bool = False) -> list[str]:
        """Recover the journal (see ``Journal.recover``), queue what should run, start the worker."""
        runnable = self.journal.recover(requeue=requeue_interrupted)
        with self._cond:
            for rec in runnable:
                self._push(rec)
        self._thread = threading.Thread(target=self._worker, name="emo-worker", daemon=True)
        self._thread.start()
        return [r.id for r in runnable]

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker: cancel the running job (it keeps what it saved) and join."""
        with self._cond:
            self._closing = True
            if self._running is not None:
                self._running.stop.set()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- I/O-thread API -----------------------------------------------------------------------
    def submit(self, kind: str, params: dict[str, Any], buffers: dict[str, Any] | None = None,
               job_id: str | None = None, resume: bool = False) -> tuple[J.JobRecord, bool]:
        """Accept a job; return ``(record, created)`` at once.

        ``job_id`` is an idempotency key: resubmitting an existing id returns that job. If it
        is ``interrupted`` (or ``cancelled``/``failed`` and ``resume`` is true) it is queued
        again and continues from what it saved (checkpoint, frames on disk).
        """
        if job_id is not None:
            stamp(job_id, "submit")
        if params.get("preview"):
            return self._submit_preview(kind, params, buffers, job_id)
        if job_id is not None:
            check_id(job_id, "job id")
            if job_id in self._memory:
                return self._existing_preview(job_id, kind), False
            existing = self.journal.get(job_id)
            if existing is not None:
                if existing.kind != kind:
                    raise JobError(f"job id {job_id!r} already names a {existing.kind} job, not {kind}")
                if existing.state == J.INTERRUPTED or (
                        resume and existing.state in (J.CANCELLED, J.FAILED)):
                    return self._requeue(existing), True
                return existing, False
        else:
            job_id = f"{kind}-{uuid.uuid4().hex[:12]}"
        if kind not in self.kinds:
            known = ", ".join(sorted(self.kinds))
            raise JobError(f"unknown job kind {kind!r} (known: {known})")
        self._check_quota()
        stored = self.kinds[kind].prepare(job_id, dict(params), dict(buffers or {}), self.env)
        record, created = self.journal.add(job_id, kind, stored)
        if created:
            self._announce(record)  # before the worker can see it: events stay in order
            with self._cond:
                self._push(record)
                self._cond.notify_all()
            stamp(record.id, "accepted")
        return record, created

    def _check_quota(self) -> None:
        active = self.queue_length() + (1 if self._running is not None else 0)
        if active >= self.max_active:
            raise QuotaExceeded(f"{active} jobs are queued or running, the backend's limit "
                                f"(serve --max-active-jobs {self.max_active}); wait for some to finish or "
                                "cancel some")

    def _existing_preview(self, job_id: str, kind: str) -> J.JobRecord:
        rec = self._memory[job_id]
        if rec.kind != kind:
            raise JobError(f"job id {job_id!r} already names a {rec.kind} job, not {kind}")
        return rec

    def _submit_preview(self, kind: str, params: dict[str, Any], buffers: dict[str, Any] | None,
                        job_id: str | None) -> tuple[J.JobRecord, bool]:
        """The fast path of a preview job (see the module docstring): validated, kept in memory."""
        if job_id is not None:
            check_id(job_id, "job id")
            if job_id in self._memory:
                return self._existing_preview(job_id, kind), False
            if self.journal.get(job_id) is not None:
                raise JobError(f"job id {job_id!r} already names a journalled job; a preview needs a new id")
        else:
            job_id = f"{kind}-{uuid.uuid4().hex[:12]}"
        job_kind = self.kinds.get(kind)
        prepare = getattr(job_kind, "prepare_preview", None)
        if prepare is None:
            raise JobError(f"{kind} jobs have no preview mode (params.preview)")
        self._check_quota()
        stored, inputs = prepare(job_id, dict(params), dict(buffers or {}), self.env)
        now = time.time()
        record = J.JobRecord(id=job_id, kind=kind, params={**stored, "preview": True}, state=J.QUEUED,
                             created=now, updated=now, seq=next(self._memory_seq))
        self._announce(record)
        with self._cond:
            self._memory[job_id] = record
            self._memory_inputs[job_id] = inputs
            self._push(record)
            self._cond.notify_all()
        stamp(job_id, "accepted")
        return record, True

    def resume(self, job_id: str) -> J.JobRecord:
        """Queue an interrupted, cancelled or failed job again (it continues from what it saved)."""
        rec = self.journal.get(check_id(job_id, "job id"))
        if rec is None:
            raise JobError(f"no job {job_id!r}")
        if rec.state not in (J.INTERRUPTED, J.CANCELLED, J.FAILED):
            raise JobError(f"job {job_id!r} is {rec.state}; only interrupted, cancelled or failed jobs resume"
                           )
        return self._requeue(rec)

    def cancel(self, job_id: str) -> J.JobRecord:
        """Cancel a job: a queued one at once, a running one at its next step (``cancelling``)."""
        with self._cond:
            rec = self._memory.get(job_id) or self.journal.get(job_id)
            if rec is None:
                raise JobError(f"no job {job_id!r}")
            if rec.state == J.QUEUED:
                rec = self._set_state(job_id, J.CANCELLED, "cancelled before it started")
                self._queue = [e for e in self._queue if e[2] != job_id]
                self._memory_inputs.pop(job_id, None)
            elif rec.state == J.RUNNING and self._running and self._running.job_id == job_id:
                rec = self._set_state(job_id, J.CANCELLING)
                self._announce(rec)  # before the worker can announce "cancelled"
                self._running.stop.set()
                return rec
            else:
                return rec  # already final or cancelling: cancel is idempotent
        self._announce(rec)
        return rec

    def get(self, job_id: str) -> J.JobRecord | None:
        memory = self._memory.get(job_id)
        if memory is not None:
            return memory
        unsaved = self._unsaved.get(job_id)
        return unsaved if unsaved is not None else self.journal.get(job_id)

    def list(self) -> list[J.JobRecord]:
        return [self._unsaved.get(r.id, r) for r in self.journal.list()]

    def page(self, offset: int, limit: int) -> tuple[list[J.JobRecord], int]:
        """Jobs ``offset .. offset + limit - 1`` in submission order, and how many there are."""
        return [self._unsaved.get(r.id, r) for r in self.journal.list(offset=offset, limit=limit)], \
            self.journal.count()

    def sweep_inputs(self, older_than: float) -> int:
        """Delete the stored inputs (``jobs/<id>/``) of final jobs last updated more than
        ``older_than`` seconds ago; returns how many folders went (retention)."""
        cutoff = time.time() - older_than
        removed = 0
        for rec in self.journal.list(states=J.FINAL_STATES, updated_before=cutoff):
            folder = self.env.job_dir(rec.id)
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        if removed:
            log.info("retention: removed the stored inputs of %d finished job(s)", removed)
        return removed

    def queue_length(self) -> int:
        with self._cond:
            return len(self._queue)

    @property
    def running_job(self) -> str | None:
        r = self._running
        return r.job_id if r else None

    # -- internals -----------------------------------------------------------------------------
    def _set_state(self, job_id: str, state: str, error: str | None = None,
                   count_attempt: bool = False) -> J.JobRecord:
        """Record a state change: in memory for a preview job, else in the journal."""
        rec = self._memory.get(job_id)
        if rec is None:
            return self.journal.set_state(job_id, state, error, count_attempt=count_attempt)
        rec = J.JobRecord(id=rec.id, kind=rec.kind, params=rec.params, state=state, error=error,
                          outputs=rec.outputs, progress=rec.progress,
                          attempts=rec.attempts + int(count_attempt), created=rec.created,
                          updated=time.time(), seq=rec.seq)
        self._memory[job_id] = rec
        if state in J.FINAL_STATES:
            self._memory_inputs.pop(job_id, None)
            finished = [k for k, r in self._memory.items() if r.state in J.FINAL_STATES]
            for old in finished[:-MEMORY_KEEP]:
                del self._memory[old]
        return rec

    def _requeue(self, rec: J.JobRecord) -> J.JobRecord:
        with self._cond:
            rec = self.journal.set_state(rec.id, J.QUEUED, None)
            self._announce(rec)
            self._push(rec)
            self._cond.notify_all()
        return rec

    def _push(self, rec: J.JobRecord) -> None:
        kind = self.kinds.get(rec.kind)
        prio = kind.priority if kind is not None else PRIORITY_COMPUTE
        if rec.id in self._memory:
            prio = PRIORITY_PREVIEW
        self._queue.append((prio, rec.seq, rec.id, time.monotonic()))

    def _pop(self) -> str:
        """The queued job to run next (lowest aged priority, then submission order)."""
        now = time.monotonic()
        ageing = max(self.ageing_seconds, 1e-9)
        best = min(range(len(self._queue)),
                   key=lambda i: (self._queue[i][0] - (now - self._queue[i][3]) / ageing, self._queue[i][1]))
        return self._queue.pop(best)[2]

    def _announce(self, rec: J.JobRecord) -> None:
        self.emit("job_state", {"job_id": rec.id, "kind": rec.kind, "state": rec.state,
                                "error": rec.error, "outputs": rec.outputs})

    def _next(self) -> tuple[J.JobRecord, _Running] | None:
        with self._cond:
            while True:
                if self._closing:
                    return None
                while self._queue:
                    job_id = self._pop()
                    rec = self._memory.get(job_id) or self.journal.get(job_id)
                    if rec is not None and rec.state == J.QUEUED:
                        try:
                            rec = self._set_state(job_id, J.RUNNING, count_attempt=True)
                        except Exception as exc:  # the journal cannot record the start: do not run it
                            self._fail_unsaved(rec, exc)
                            continue
                        running = _Running(job_id)
                        self._running = running
                        self._announce(rec)
                        stamp(job_id, "scheduled")
                        return rec, running
                self._cond.wait(0.5)

    def _worker(self) -> None:
        while True:
            try:
                item = self._next()
            except Exception:  # the journal failed while picking a job: log, wait, go on
                log.exception("worker: choosing the next job failed")
                time.sleep(0.5)
                continue
            if item is None:
                return
            rec, running = item
            try:
                self._run_one(rec, running)
            except Exception:  # bookkeeping failed (disk full?): log it, keep the worker alive
                log.exception("worker: job %s could not be recorded", rec.id)
            finally:
                with self._cond:
                    self._running = None

    def _run_one(self, rec: J.JobRecord, running: _Running) -> None:
        kind = self.kinds.get(rec.kind)
        last_sent = [0.0]
        last_saved = [0.0]
        in_memory = rec.id in self._memory

        def progress(update: ProgressUpdate) -> None:
            if in_memory:
                return  # a preview reports nothing but its frames and its final state
            data = update.to_dict()
            now = time.monotonic()
            final = update.step >= update.total
            if final or now - last_sent[0] >= PROGRESS_EVENT_INTERVAL:
                last_sent[0] = now
                self.emit("job_progress", {"job_id": rec.id, **data})
                if final or now - last_saved[0] >= PROGRESS_JOURNAL_INTERVAL:
                    last_saved[0] = now
                    try:
                        self.journal.set_progress(rec.id, data)
                    except Exception as exc:  # progress is a notice: the job goes on without it
                        self.journal_failures += 1
                        log.warning("job %s: progress not journalled: %s", rec.id, exc)

        def job_log(message: str, level: str = "info") -> None:
            log.log(logging.getLevelName(level.upper()), "job %s: %s", rec.id, message)
            self.emit("log", {"job_id": rec.id, "level": level, "text": message, "logger": f"job.{rec.kind}"})

        def frame(index: int, image: Any, png_path: Path) -> None:
            stamp(rec.id, "frame_ready")
            if self.frame_sink is not None:
                self.frame_sink(rec.id, index, image, png_path)

        ctx = JobContext(record=rec, env=self.env, progress=progress,
                         should_stop=running.stop.is_set, log=job_log, frame=frame,
                         inputs=self._memory_inputs.pop(rec.id, None) if in_memory else None)
        error: str | None = None
        outputs: dict[str, Any] = {}
        try:
            if kind is None:
                raise JobError(f"job kind {rec.kind!r} is not available in this backend")
            outputs = kind.run(ctx) or {}
            state = J.DONE
        except Cancelled:
            state, error = ((J.INTERRUPTED, "backend shut down while the job ran") if self._closing
                            else (J.CANCELLED, "cancelled on request"))
        except Exception as exc:  # every job failure is reported, never fatal
            log.error("job %s failed:\n%s", rec.id, traceback.format_exc())
            state, error = J.FAILED, f"{type(exc).__name__}: {exc}"
        with self._cond:  # so a concurrent cancel() never overwrites the final state
            try:
                if in_memory:
                    self._memory[rec.id].outputs = dict(outputs) if state == J.DONE else {}
                elif state == J.DONE:
                    self.journal.set_outputs(rec.id, outputs)
                final = self._set_state(rec.id, state, error)
            except Exception as exc:  # disk full, database locked, ...: failed in memory, retried
                self._fail_unsaved(rec, exc, outputs)
            else:
                self._announce(final)
                stamp(rec.id, "final")
            self._running = None

    # -- journal failures ----------------------------------------------------------------------
    def _fail_unsaved(self, rec: J.JobRecord, exc: BaseException, outputs: dict[str, Any] | None = None
                      ) -> None:
        """The journal refused a state write: the job is failed in memory, announced, and the
        write is retried in the background until the journal takes it."""
        self.journal_failures += 1
        log.error("journal write for job %s failed (%s: %s); the job is marked failed and the write "
                  "will be retried", rec.id, type(exc).__name__, exc)
        failed = J.JobRecord(id=rec.id, kind=rec.kind, params=rec.params, state=J.FAILED,
                             error=f"the job journal could not be written ({type(exc).__name__}: {exc})",
                             outputs=dict(outputs or {}), progress=rec.progress, attempts=rec.attempts,
                             created=rec.created, updated=time.time(), seq=rec.seq)
        self._unsaved[rec.id] = failed
        self._announce(failed)
        if self._retry_thread is None or not self._retry_thread.is_alive():
            self._retry_thread = threading.Thread(target=self._retry_unsaved, name="emo-journal-retry",
                                                  daemon=True)
            self._retry_thread.start()

    def _retry_unsaved(self, first_delay: float = 0.2, max_delay: float = 5.0) -> None:
        delay = first_delay
        while self._unsaved:
            time.sleep(delay)
            for job_id, rec in list(self._unsaved.items()):
                try:
                    if rec.outputs:
                        self.journal.set_outputs(job_id, rec.outputs)
                    self.journal.set_state(job_id, rec.state, rec.error)
                except Exception as exc:
                    log.warning("journal still refuses job %s: %s", job_id, exc)
                    if self._closing:
                        return
                else:
                    self._unsaved.pop(job_id, None)
                    log.info("job %s: its final state (%s) is in the journal now", job_id, rec.state)
            delay = min(delay * 2, max_delay)

    def flush_unsaved(self, timeout: float = 5.0) -> bool:
        """Wait until every failed journal write has been retried successfully."""
        deadline = time.monotonic() + timeout
        while self._unsaved and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self._unsaved
