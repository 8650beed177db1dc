"""Job machinery in-process: journal, queue order, cancel, recovery, sandbox rules.

Uses small job kinds defined here (the real track/train/render kinds are exercised through
the server in test_server.py)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from backend.progress import ProgressUpdate, check_cancel
from backend.service import journal as J
from backend.service.jobs import PRIORITY_COMPUTE, PRIORITY_RENDER, JobError, JobManager, ServiceEnv
from backend.service.sandbox import ReadPolicy, SandboxError, check_id, inside


class Steps:
    """Counts to ``params['n']``, one step per ``params['dt']`` seconds, checking cancel each step."""

    def __init__(self, name: str, priority: int) -> None:
        self.name, self.priority = name, priority
        self.ran: list[str] = []
        self.gate = threading.Event()
        self.gate.set()

    def prepare(self, job_id, params, buffers, env):
        if not isinstance(params.get("n"), int):
            raise JobError("n must be an int")
        return params

    def run(self, ctx):
        self.gate.wait(10)
        self.ran.append(ctx.job_id)
        start = ctx.record.progress.get("step", 0) if ctx.resuming else 0
        for i in range(start, ctx.params["n"]):
            check_cancel(ctx.should_stop)
            time.sleep(ctx.params.get("dt", 0.0))
            ctx.progress(ProgressUpdate("steps", i + 1, ctx.params["n"]))
        if ctx.params.get("fail"):
            raise RuntimeError("asked to fail")
        return {"count": ctx.params["n"], "started_at": start}


class Events:
    def __init__(self) -> None:
        self.items: list[tuple[str, dict]] = []
        self.lock = threading.Lock()

    def __call__(self, msg_type: str, content: dict) -> None:
        with self.lock:
            self.items.append((msg_type, content))

    def states(self, job_id: str) -> list[str]:
        with self.lock:
            return [c["state"] for t, c in self.items if t == "job_state" and c["job_id"] == job_id]


def wait_state(mgr: JobManager, job_id: str, states: tuple[str, ...], timeout: float = 10.0) -> J.JobRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = mgr.get(job_id)
        if rec is not None and rec.state in states:
            return rec
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} never reached {states}: {mgr.get(job_id)}")


@pytest.fixture
def manager(tmp_path: Path):
    kinds = {"steps": Steps("steps", PRIORITY_COMPUTE), "quick": Steps("quick", PRIORITY_RENDER)}
    events = Events()
    journal = J.Journal(tmp_path / "journal.sqlite3")
    mgr = JobManager(journal, kinds, ServiceEnv(tmp_path), events)
    mgr.start()
    yield mgr, kinds, events
    mgr.close()
    journal.close()


def test_job_runs_and_reports_states(manager) -> None:
    mgr, _, events = manager
    rec, created = mgr.submit("steps", {"n": 3})
    assert created and rec.state == J.QUEUED
    done = wait_state(mgr, rec.id, (J.DONE,))
    assert done.outputs == {"count": 3, "started_at": 0}
    assert done.progress["step"] == 3
    assert events.states(rec.id) == [J.QUEUED, J.RUNNING, J.DONE]


def test_idempotent_ids_and_unknown_kind(manager) -> None:
    mgr, _, _ = manager
    a, created_a = mgr.submit("steps", {"n": 1}, job_id="same-id")
    b, created_b = mgr.submit("steps", {"n": 99}, job_id="same-id")
    assert created_a and not created_b and b.id == a.id and b.params == {"n": 1}
    with pytest.raises(JobError, match="unknown job kind 'bake'"):
        mgr.submit("bake", {})
    with pytest.raises(JobError, match="already names a steps job"):
        mgr.submit("quick", {"n": 1}, job_id="same-id")
    with pytest.raises(SandboxError):
        mgr.submit("steps", {"n": 1}, job_id="../evil")


def test_render_kind_jumps_the_queue(manager) -> None:
    mgr, kinds, _ = manager
    kinds["steps"].gate.clear()  # hold the worker inside the first job
    first, _ = mgr.submit("steps", {"n": 1})
    wait_state(mgr, first.id, (J.RUNNING,))
    second, _ = mgr.submit("steps", {"n": 1})
    urgent, _ = mgr.submit("quick", {"n": 1})
    assert mgr.queue_length() == 2
    kinds["steps"].gate.set()
    wait_state(mgr, second.id, (J.DONE,))
    order = kinds["steps"].ran + kinds["quick"].ran
    assert kinds["quick"].ran == [urgent.id]
    assert mgr.get(urgent.id).updated <= mgr.get(second.id).updated
    assert order.index(first.id) == 0


def test_cancel_running_and_queued(manager) -> None:
    mgr, _, events = manager
    running, _ = mgr.submit("steps", {"n": 1000, "dt": 0.01})
    queued, _ = mgr.submit("steps", {"n": 1})
    wait_state(mgr, running.id, (J.RUNNING,))
    assert mgr.cancel(queued.id).state == J.CANCELLED
    t0 = time.monotonic()
    assert mgr.cancel(running.id).state == J.CANCELLING
    rec = wait_state(mgr, running.id, (J.CANCELLED,), timeout=2)
    assert time.monotonic() - t0 < 1.0
    assert rec.error == "cancelled on request"
    assert events.states(running.id)[-2:] == [J.CANCELLING, J.CANCELLED]
    assert mgr.cancel(running.id).state == J.CANCELLED  # idempotent
    with pytest.raises(JobError, match="no job"):
        mgr.cancel("nope")


def test_failure_is_recorded_and_worker_survives(manager) -> None:
    mgr, _, _ = manager
    bad, _ = mgr.submit("steps", {"n": 1, "fail": True})
    rec = wait_state(mgr, bad.id, (J.FAILED,))
    assert rec.error == "RuntimeError: asked to fail"
    good, _ = mgr.submit("steps", {"n": 1})
    wait_state(mgr, good.id, (J.DONE,))
    resumed, created = mgr.submit("steps", {}, job_id=bad.id, resume=True)
    assert created and resumed.state == J.QUEUED


def test_recovery_after_a_crash(tmp_path: Path) -> None:
    """A journal left by a killed process: running -> interrupted, resumable on resubmit."""
    journal = J.Journal(tmp_path / "journal.sqlite3")
    journal.add("was-running", "steps", {"n": 5})
    journal.set_state("was-running", J.RUNNING, count_attempt=True)
    journal.set_progress("was-running", {"step": 3})
    journal.add("was-queued", "steps", {"n": 2})
    journal.add("was-done", "steps", {"n": 2})
    journal.set_state("was-done", J.DONE)
    journal.close()  # the "killed" process leaves the file as is

    journal = J.Journal(tmp_path / "journal.sqlite3")
    kinds = {"steps": Steps("steps", PRIORITY_COMPUTE)}
    mgr = JobManager(journal, kinds, ServiceEnv(tmp_path), Events())
    assert mgr.start(requeue_interrupted=False) == []
    try:
        states = {r.id: (r.state, r.error) for r in mgr.list()}
        assert states["was-running"][0] == J.INTERRUPTED and "running" in states["was-running"][1]
        assert states["was-queued"][0] == J.INTERRUPTED
        assert "before the job started" in states["was-queued"][1]
        assert states["was-done"] == (J.DONE, None)
        _, created = mgr.submit("steps", {"n": 5}, job_id="was-running")
        assert created
        done = wait_state(mgr, "was-running", (J.DONE,))
        assert done.outputs["started_at"] == 3 and done.attempts == 2
    finally:
        mgr.close()
        journal.close()


def test_recovery_requeues_with_resume_jobs(tmp_path: Path) -> None:
    journal = J.Journal(tmp_path / "journal.sqlite3")
    journal.add("a", "steps", {"n": 2})
    journal.set_state("a", J.RUNNING, count_attempt=True)
    mgr = JobManager(journal, {"steps": Steps("steps", PRIORITY_COMPUTE)}, ServiceEnv(tmp_path), Events())
    try:
        assert mgr.start(requeue_interrupted=True) == ["a"]
        assert wait_state(mgr, "a", (J.DONE,)).attempts == 2
    finally:
        mgr.close()
        journal.close()


def test_sandbox_rules(tmp_path: Path) -> None:
    root = tmp_path / "work"
    (root / "subjects").mkdir(parents=True)
    assert check_id("subject_01.v2") == "subject_01.v2"
    for bad in ("", "..", "../x", "a/b", "/etc", "a\\b", ".hidden", "x" * 200, 5, None, "a..b"):
        with pytest.raises(SandboxError):
            check_id(bad)
    assert inside(root / "subjects", "s1") == (root / "subjects" / "s1").resolve()
    os.symlink("/etc", root / "subjects" / "link")
    with pytest.raises(SandboxError, match="outside"):
        inside(root / "subjects", "link")

    allowed = tmp_path / "in"
    allowed.mkdir()
    video = allowed / "clip.mp4"
    video.write_bytes(b"x")
    (tmp_path / "secret.txt").write_text("no")
    policy = ReadPolicy([allowed])
    assert policy.resolve(str(video)) == video.resolve()
    for bad in (str(allowed / ".." / "secret.txt"), "clip.mp4", str(tmp_path / "secret.txt"),
                str(allowed / "missing.mp4"), 3):
        with pytest.raises(SandboxError):
            policy.resolve(bad)
    with pytest.raises(SandboxError, match="without --allow-read"):
        ReadPolicy().resolve(str(video))


def test_journal_write_failure_marks_the_job_failed_retries_and_announces(tmp_path: Path) -> None:
    """Another connection holds the journal locked while the job ends: the job is failed in
    memory, its final event goes out, and the write lands once the lock is gone."""
    import sqlite3

    journal = J.Journal(tmp_path / "journal.sqlite3")
    kinds = {"steps": Steps("steps", PRIORITY_COMPUTE)}
    kinds["steps"].gate.clear()
    events = Events()
    mgr = JobManager(journal, kinds, ServiceEnv(tmp_path), events)
    mgr.start()
    blocker = sqlite3.connect(str(tmp_path / "journal.sqlite3"), isolation_level=None)
    try:
        rec, _ = mgr.submit("steps", {"n": 1})
        wait_state(mgr, rec.id, (J.RUNNING,))
        blocker.execute("BEGIN EXCLUSIVE")  # every write of the server now fails after its busy timeout
        kinds["steps"].gate.set()
        failed = wait_state(mgr, rec.id, (J.FAILED,), timeout=15)
        assert "journal could not be written" in failed.error
        assert events.states(rec.id)[-1] == J.FAILED  # the final event went out
        assert mgr.journal_failures >= 1
        blocker.execute("ROLLBACK")
        assert mgr.flush_unsaved(timeout=15)
        assert journal.get(rec.id).state == J.FAILED  # the retry wrote it
    finally:
        blocker.close()
        mgr.close()
        journal.close()


def test_quota_pages_and_ageing(tmp_path: Path) -> None:
    journal = J.Journal(tmp_path / "journal.sqlite3")
    kinds = {"steps": Steps("steps", PRIORITY_COMPUTE), "quick": Steps("quick", PRIORITY_RENDER)}
    kinds["steps"].gate.clear()
    kinds["quick"].gate.clear()
    mgr = JobManager(journal, kinds, ServiceEnv(tmp_path), Events(), max_active=4, ageing_seconds=0.3)
    mgr.start()
    try:
        first, _ = mgr.submit("quick", {"n": 1})
        wait_state(mgr, first.id, (J.RUNNING,))
        compute, _ = mgr.submit("steps", {"n": 1})
        time.sleep(0.5)  # the compute job ages past the priority of any render submitted now
        renders = [mgr.submit("quick", {"n": 1})[0] for _ in range(2)]
        with pytest.raises(JobError, match="4 jobs are queued or running") as exc:
            mgr.submit("quick", {"n": 1})
        assert type(exc.value).__name__ == "QuotaExceeded"
        kinds["steps"].gate.set()
        kinds["quick"].gate.set()
        for r in (compute, *renders):
            wait_state(mgr, r.id, (J.DONE,))
        assert mgr.get(compute.id).updated <= min(mgr.get(r.id).updated for r in renders)
        page, total = mgr.page(1, 2)
        assert total == 4 and [r.id for r in page] == [compute.id, renders[0].id]
        assert mgr.page(4, 2) == ([], 4)
        # retention: inputs of finished jobs go after the configured age
        for r in (first, compute):
            mgr.env.job_dir(r.id).mkdir(parents=True)
        assert mgr.sweep_inputs(3600) == 0
        assert mgr.sweep_inputs(0) == 2 and not mgr.env.job_dir(first.id).exists()
    finally:
        mgr.close()
        journal.close()


class PreviewSteps(Steps):
    """``Steps`` with a preview mode: its inputs stay in memory and reach ``run`` as ``ctx.inputs``."""

    def __init__(self, name: str, priority: int) -> None:
        super().__init__(name, priority)
        self.inputs: dict[str, object] = {}

    def prepare_preview(self, job_id, params, buffers, env):
        if not isinstance(params.get("n"), int):
            raise JobError("n must be an int")
        return {"n": params["n"]}, {"tag": params.get("tag")}

    def run(self, ctx):
        self.inputs[ctx.job_id] = ctx.inputs
        return super().run(ctx)


def test_preview_jobs_live_in_memory_and_go_first(tmp_path: Path, monkeypatch) -> None:
    """A preview job (params.preview) is never journalled nor listed, reports no progress, runs
    ahead of queued renders and compute jobs, can be cancelled, and only the last MEMORY_KEEP
    finished ones are remembered."""
    from backend.service import jobs as jobs_mod

    journal = J.Journal(tmp_path / "journal.sqlite3")
    kinds = {"steps": Steps("steps", PRIORITY_COMPUTE), "quick": PreviewSteps("quick", PRIORITY_RENDER)}
    events = Events()
    mgr = JobManager(journal, kinds, ServiceEnv(tmp_path), events)
    mgr.start()
    try:
        kinds["steps"].gate.clear()  # hold the worker inside a compute job
        blocker, _ = mgr.submit("steps", {"n": 1})
        wait_state(mgr, blocker.id, (J.RUNNING,))
        render, _ = mgr.submit("quick", {"n": 1})
        compute, _ = mgr.submit("steps", {"n": 1})
        preview, created = mgr.submit("quick", {"n": 2, "preview": True, "tag": "p1"}, job_id="prev-1")
        assert created and preview.state == J.QUEUED and preview.params == {"n": 2, "preview": True}
        again, created = mgr.submit("quick", {"n": 9, "preview": True}, job_id="prev-1")
        assert not created and again.params["n"] == 2  # the id is an idempotency key here too
        mgr.submit("quick", {"n": 1, "preview": True}, job_id="prev-2")
        assert mgr.cancel("prev-2").state == J.CANCELLED
        kinds["steps"].gate.set()
        for r in (render, compute, preview):
            wait_state(mgr, r.id, (J.DONE,))
        assert mgr.get(preview.id).updated <= mgr.get(render.id).updated  # ahead of the render
        assert kinds["quick"].ran == ["prev-1", render.id]  # the cancelled one never ran
        assert kinds["quick"].inputs == {"prev-1": {"tag": "p1"}, render.id: None}
        assert mgr.get("prev-1").outputs == {"count": 2, "started_at": 0}
        assert journal.get("prev-1") is None and journal.get("prev-2") is None
        assert {r.id for r in mgr.list()} == {blocker.id, render.id, compute.id} and mgr.page(0, 10)[1] == 3
        assert events.states("prev-1") == [J.QUEUED, J.RUNNING, J.DONE]
        assert events.states("prev-2") == [J.QUEUED, J.CANCELLED]
        assert not [c for t, c in events.items if t == "job_progress" and c["job_id"] == "prev-1"]
        assert [c for t, c in events.items if t == "job_progress" and c["job_id"] == render.id]

        with pytest.raises(JobError, match="steps jobs have no preview mode"):
            mgr.submit("steps", {"n": 1, "preview": True})
        with pytest.raises(JobError, match="already names a journalled job"):
            mgr.submit("quick", {"n": 1, "preview": True}, job_id=render.id)
        with pytest.raises(JobError, match="already names a quick job"):
            mgr.submit("steps", {"n": 1}, job_id="prev-1")

        monkeypatch.setattr(jobs_mod, "MEMORY_KEEP", 2)
        later = [mgr.submit("quick", {"n": 1, "preview": True})[0].id for _ in range(3)]
        wait_state(mgr, later[-1], (J.DONE,))  # previews run in submission order
        assert mgr.get("prev-1") is None and mgr.get(later[0]) is None
        assert [mgr.get(j).state for j in later[1:]] == [J.DONE, J.DONE]
    finally:
        mgr.close()
        journal.close()
