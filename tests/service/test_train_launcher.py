"""``emo-avatar serve --train-procs 2``: a train job runs in 2 processes through torchrun (gloo on
CPU, the tiny preset), through a real server subprocess and real ZeroMQ. The job reaches ``done``
with progress events and exactly one checkpoint where the in-process path writes it; a cancel
ends it ``cancelled`` with no process left; a rank that dies fails it with a clear error; a process
count the machine or the subject cannot take is refused before any work."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from backend.train.checkpoint import read_checkpoint
from backend.train.ddp import usable_cpus
from protocol.errors import RemoteError
from tests.conftest import wait_for

from .conftest import ROOT, install_subject

SUBJECT = "s1"
FINAL = ("done", "failed", "cancelled")
pytestmark = pytest.mark.skipif(usable_cpus() < 2, reason="2 training processes need 2 CPU cores")


def _job_processes(workdir: Path, job: str) -> dict[int, int | None]:
    """pid -> RANK of every live process started for ``job`` (torchrun: None): those whose
    command line names the job's stop file."""
    mark = str(workdir / "jobs" / job / "stop").encode()
    found: dict[int, int | None] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
            env = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        if mark in cmdline and state != b"Z":
            rank = [int(e[5:]) for e in env if e.startswith(b"RANK=")]
            found[int(proc.name)] = rank[0] if rank else None
    return found


def _serve(server_factory, subject: Path, tmp_path: Path, *extra: str):
    workdir = tmp_path / "work"
    workdir.mkdir()
    install_subject(subject, workdir, SUBJECT)
    return server_factory("--train-procs", "2", *extra, workdir=workdir)


def _events_until_final(client, job: str, timeout: float) -> list:
    """The job's events until its final ``job_state`` (the events socket may be quiet for a while
    on a loaded machine: ``Client.events`` returns then, and is asked again)."""
    events, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in client.events(timeout=5.0):
            if e.content.get("job_id") == job:
                events.append(e)
                if e.msg_type == "job_state" and e.content["state"] in FINAL:
                    return events
    raise AssertionError(f"no final state of {job} within {timeout} s")


def _start_long_training(client) -> str:
    """Submit a train job too long to finish in a test; return its id once it is in stage-1's loop
    (rank 0 reported a train step)."""
    job = client.submit("train", {"subject_id": SUBJECT, "preset": "tiny", "steps": 100_000})
    wait_for(lambda: (j := client.status(job)["job"])["stage"] == "train" and j["step"] >= 1 and j,
             timeout=900, interval=0.05, what=f"{job} training")
    return job


def test_train_job_in_two_processes_reaches_done(server_factory, untrained_subject: Path,
                                                 tmp_path: Path) -> None:
    srv = _serve(server_factory, untrained_subject, tmp_path)
    steps = 4
    with srv.client(timeout=30) as client:
        client.hello()
        job = client.submit("train", {"subject_id": SUBJECT, "preset": "tiny", "steps": steps})
        events = _events_until_final(client, job, timeout=900)
        rec = client.status(job)["job"]
    log = (srv.workdir / "jobs" / job / "train.log").read_text()
    assert rec["state"] == "done", (rec, log[-3000:])
    states = [e.content["state"] for e in events if e.msg_type == "job_state"]
    assert states[-2:] == ["running", "done"], states
    progress = [e.content for e in events if e.msg_type == "job_progress"]
    assert {p["stage"] for p in progress} == {"pti", "train"}, progress
    train = [p for p in progress if p["stage"] == "train"]
    assert train[-1]["step"] == train[-1]["total"] == steps and set(train[-1]["losses"]) >= {"total"}
    assert rec["outputs"]["stages"] == ["pti", "train"] and rec["outputs"]["started_at_step"] == 0
    # the checkpoint is where the in-process path writes it, written by rank 0 alone, once
    avatar = srv.workdir / "subjects" / SUBJECT / "avatar"
    assert rec["outputs"]["checkpoint"] == f"subjects/{SUBJECT}/avatar/checkpoint.pt"
    assert sorted(p.name for p in avatar.rglob("*.pt")) == ["checkpoint.pt"]
    meta = read_checkpoint(avatar / "checkpoint.pt")["meta"]
    assert meta["processes"] == 2 and meta["step"] == steps
    assert log.count("INFO backend.train.stage1: checkpoint step") == 1, log[-3000:]
    assert "rank 1 of 2 trains 2 of every 4 frames" in log and "gloo" in log
    assert not [p for p in avatar.rglob("*") if p.name.endswith(".tmp")]
    logs = [e.content["text"] for e in events if e.msg_type == "log"]
    assert any("training in 2 processes (torchrun" in t for t in logs), logs
    assert any(t.startswith("rank 1 done at step 4") for t in logs), logs  # the ranks' log lines
    assert not _job_processes(srv.workdir, job)


def test_cancel_ends_the_job_cancelled_with_no_process_left(server_factory, untrained_subject: Path,
                                                           tmp_path: Path) -> None:
    srv = _serve(server_factory, untrained_subject, tmp_path)
    with srv.client(timeout=30) as client:
        job = _start_long_training(client)
        procs = _job_processes(srv.workdir, job)
        assert sorted(r for r in procs.values() if r is not None) == [0, 1], procs
        t0 = time.monotonic()
        assert client.cancel(job) == "cancelling"
        rec = wait_for(lambda: (j := client.status(job)["job"])["state"] in FINAL and j,
                       timeout=30, interval=0.02, what=f"{job} final")
        latency = time.monotonic() - t0
        print(f"cancel latency (2 processes): {latency * 1000:.0f} ms")
        assert rec["state"] == "cancelled", rec
        assert rec["step"] < rec["total"]
        assert not _job_processes(srv.workdir, job)  # torchrun and both ranks are gone
        # the ranks get 1 s to stop and save, then they are killed: no hang (10 s leaves room for a
        # loaded machine, where killed processes also take a while to exit)
        assert latency < 10.0, latency
        avatar = srv.workdir / "subjects" / SUBJECT / "avatar"
        assert not [p for p in avatar.rglob("*") if p.name.endswith(".tmp")]
    # the ranks stop together at their next step and rank 0 saves that step first; what still runs
    # 1 s after the request (rank 0's loss-curve report, interpreter exits) is killed
    log = (srv.workdir / "jobs" / job / "train.log").read_text()
    stopped = set(re.findall(r"training stopped at step (\d+) \(stop request\)", log))
    saved = re.findall(r"checkpoint step (\d+) ->", log)
    assert len(stopped) <= 1, log[-3000:]  # never two different steps
    if saved:  # the last save is whole on disk, even when its writer was killed afterwards
        assert read_checkpoint(avatar / "checkpoint.pt")["meta"]["step"] == int(saved[-1])
    forced = "did not stop within 1 s; killing them" in srv.log()
    assert forced or len(re.findall(r"training stopped at step", log)) == 2, srv.log()
    assert srv.alive()


def test_a_stop_file_stops_every_rank_at_one_step_with_a_checkpoint(untrained_subject: Path,
                                                                    tmp_path: Path) -> None:
    """The cooperative stop the service asks for first (``emo-avatar train --stop-file``)."""
    out, stop, progress = tmp_path / "out", tmp_path / "stop", tmp_path / "progress.jsonl"
    cmd = [sys.executable, "-m", "backend.cli", "train", str(untrained_subject), "--preset", "tiny",
           "--device", "cpu", "--nproc", "2", "--steps", "100000", "--out", str(out),
           "--stop-file", str(stop), "--progress-file", str(progress)]
    with open(tmp_path / "stderr.txt", "w") as stderr:
        proc = subprocess.Popen(cmd, cwd=ROOT, stderr=stderr, env={**os.environ, "OMP_NUM_THREADS": "1"})
        wait_for(lambda: progress.is_file() and '"stage": "train"' in progress.read_text(), timeout=900,
                 interval=0.1, what="a training step")
        stop.touch()
        proc.wait(600)
    err = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 130, err[-3000:]
    stopped = re.findall(r"training stopped at step (\d+) \(stop request\)", err)
    assert len(stopped) == 2 and stopped[0] == stopped[1], err[-3000:]  # both ranks, the same step
    assert "training stopped on request; the checkpoint is saved: continue with --resume" in err
    assert "error:" not in err
    assert "rank      : 0 (local_rank: 0)\n  exitcode  : 130" in err  # rank 0 left by itself, after saving
    assert read_checkpoint(out / "checkpoint.pt")["meta"]["step"] == int(stopped[0])
    lines = [json.loads(line) for line in progress.read_text().splitlines()]
    assert lines[-1]["stage"] == "train" and lines[-1]["step"] == int(stopped[0])


def test_a_dying_rank_fails_the_job_with_a_clear_error(server_factory, untrained_subject: Path,
                                                       tmp_path: Path) -> None:
    srv = _serve(server_factory, untrained_subject, tmp_path)
    with srv.client(timeout=30) as client:
        job = _start_long_training(client)
        victim = [pid for pid, rank in _job_processes(srv.workdir, job).items() if rank == 1]
        assert len(victim) == 1
        os.kill(victim[0], signal.SIGKILL)
        t0 = time.monotonic()
        rec = wait_for(lambda: (j := client.status(job)["job"])["state"] in FINAL and j,
                       timeout=300, interval=0.1, what=f"{job} final")
        print(f"failure noticed after {time.monotonic() - t0:.1f} s")
        assert rec["state"] == "failed", rec
        assert "training process rank 1 was killed by signal 9" in rec["error"], rec["error"]
        assert f"jobs/{job}/train.log" in rec["error"]
        assert not _job_processes(srv.workdir, job)
    assert srv.alive()


def test_a_killed_torchrun_leaves_no_rank_behind(server_factory, untrained_subject: Path,
                                                 tmp_path: Path) -> None:
    """torchrun killed from outside: its ranks (in their own sessions, nobody's children now) are
    found by the job's stop-file path in their command line and killed; the job fails."""
    srv = _serve(server_factory, untrained_subject, tmp_path)
    with srv.client(timeout=30) as client:
        job = _start_long_training(client)
        procs = _job_processes(srv.workdir, job)
        torchrun = [pid for pid, rank in procs.items() if rank is None]
        assert len(torchrun) == 1 and len(procs) == 3, procs
        os.kill(torchrun[0], signal.SIGKILL)
        rec = wait_for(lambda: (j := client.status(job)["job"])["state"] in FINAL and j,
                       timeout=300, interval=0.1, what=f"{job} final")
        assert rec["state"] == "failed", rec
        assert rec["error"].startswith("TrainLaunchError: torchrun was killed by signal 9 (its training "
                                       "processes were stopped)"), rec["error"]
        assert not _job_processes(srv.workdir, job)
    assert "left behind by their torchrun" in srv.log()


def _serve_fails(tmp_path: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "backend.cli", "serve", "--workdir", str(tmp_path / "w"),
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert not (tmp_path / "w" / "connection.json").exists()
    return proc.stderr


def test_process_counts_the_machine_cannot_run_are_refused_at_start(tmp_path: Path) -> None:
    n = usable_cpus() + 1
    err = _serve_fails(tmp_path, "--device", "cpu", "--train-procs", str(n))
    assert f"error: --train-procs {n}: {n} training processes on CPU but this machine has {n - 1} usable " \
           f"CPU cores; use at most {n - 1}" in err, err
    err = _serve_fails(tmp_path, "--device", "cpu", "--train-procs", "0")
    assert "error: --train-procs 0: the training process count must be at least 1" in err, err
    err = _serve_fails(tmp_path, "--device", "cuda:1", "--train-procs", "2")
    assert "device cuda:1: with 2 training processes use auto, cuda or cpu" in err, err


def test_more_processes_than_training_frames_is_refused_at_submit(server_factory, untrained_subject: Path,
                                                                  tmp_path: Path) -> None:
    valid = np.zeros(len(np.load(untrained_subject / "valid.npy")), dtype=bool)
    valid[1] = True  # tracking kept one frame: one training id
    np.save(untrained_subject / "valid.npy", valid)
    srv = _serve(server_factory, untrained_subject, tmp_path)
    with srv.client(timeout=30) as client:
        with pytest.raises(RemoteError, match="2 training processes but the subject has only 1 training "
                                              r"frames; use at most 1 processes \(this backend trains with "
                                              "serve --train-procs 2"):
            client.submit("train", {"subject_id": SUBJECT, "preset": "tiny", "steps": 4})
        assert client.jobs() == []
    assert not (srv.workdir / "subjects" / SUBJECT / "avatar").exists()
