"""Stage 1 in 2 processes (torchrun, gloo on CPU, the tiny preset): the loss at global batch B
follows a single process at batch B, rank 0 alone writes one checkpoint, a checkpoint resumes with
another process count, and bad launches fail with a clear error before any work (or, for a dying
rank, without hanging)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.train.checkpoint import read_checkpoint
from backend.train.data import TrainSampler
from backend.train.ddp import DistributedError, Ranks, check_world, describe_failure
from backend.train.stage1 import train_avatar
from tests.conftest import wait_for

EMO = str(Path(sys.executable).with_name("emo-avatar"))
K = 6  # steps compared
# relative, on the total loss of every step. Measured on the sample in the face framing: <= 1.2e-4 over
# the 6 two-process steps and 6.2e-4 at the first resumed step. The processes sum in another order, and
# from step 4 on the difference grows about 5x a step (2.9e-3 by step 8), so the resumed run is compared
# for one step: enough to show it continues on the single run's track.
TOLERANCE = 2e-3


def _worker_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def _train_2(subject: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([EMO, "train", str(subject), "--preset", "tiny", "--device", "cpu", "--nproc", "2",
                           "--out", str(out), *args], capture_output=True, text=True, timeout=600,
                          env=_worker_env())


def _totals(ckpt: Path) -> np.ndarray:
    return np.array([h["total"] for h in read_checkpoint(ckpt)["meta"]["history"]])


def test_sampler_ranks_share_each_global_batch() -> None:
    ids = np.arange(100, 140)
    one = TrainSampler(ids, 4, seed=3)
    two = [TrainSampler(ids, 4, seed=3, rank=r, world=2) for r in range(2)]
    for _ in range(5):
        assert np.array_equal(one.next(), np.concatenate([s.next() for s in two]))
    with pytest.raises(ValueError, match="equal share"):
        TrainSampler(ids, 4, seed=3, rank=0, world=3)


def test_world_checks() -> None:
    assert check_world(Ranks(0, 2, 0), 4, 10) == 2
    with pytest.raises(DistributedError, match="only 1 training frames; use at most 1"):
        check_world(Ranks(0, 2, 0), 4, 1)
    with pytest.raises(DistributedError, match="does not split over 3 processes; use 1, 2, 4"):
        check_world(Ranks(0, 3, 0), 4, 10)


def test_two_processes_follow_one_and_resume_with_one(untrained_subject: Path, tmp_path: Path) -> None:
    single = train_avatar(untrained_subject, preset="tiny", steps=K + 1, device="cpu", preview_every=3,
                          out_dir=tmp_path / "single")
    out = tmp_path / "two"
    proc = _train_2(untrained_subject, out, "--steps", str(K), "--preview-every", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = out / "checkpoint.pt"
    meta = read_checkpoint(ckpt)["meta"]
    assert meta["processes"] == 2 and meta["step"] == K
    a, b = _totals(single)[:K], _totals(ckpt)
    assert len(b) == K and np.all(np.abs(a - b) <= TOLERANCE * np.abs(a)), (a, b)
    # rank 0 alone wrote: one checkpoint (saved once), its previews and metrics, no stray files
    assert sorted(p.name for p in out.glob("*.pt")) == ["checkpoint.pt"]
    assert proc.stderr.count("INFO backend.train.stage1: checkpoint step") == 1
    assert sorted(p.name for p in (out / "previews").iterdir()) == ["step_000003.png", "step_000006.png"]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert (out / "metrics.json").is_file()
    assert "rank 1 done at step 6" in proc.stderr

    # the 2-process checkpoint continues in one process, on the single run's track
    resumed = train_avatar(untrained_subject, preset="tiny", steps=K + 1, device="cpu", preview_every=0,
                           resume=True, out_dir=out)
    c, d = _totals(single), _totals(resumed)
    assert len(d) == K + 1 and read_checkpoint(resumed)["meta"]["processes"] == 1
    assert np.all(np.abs(c - d) <= TOLERANCE * np.abs(c)), (c, d)


def _start_ranks(subject: Path, out: Path, presets: tuple[str, ...]) -> list[subprocess.Popen]:
    """``emo-avatar train`` as the ranks of a world of ``len(presets)`` that torchrun would start
    (``torchrun -m backend.cli train``), rank r with ``presets[r]``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [subprocess.Popen([sys.executable, "-m", "backend.cli", "train", str(subject), "--preset", preset,
                              "--device", "cpu", "--out", str(out)],
                             env=_worker_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(len(presets)),
                                             MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)),
                             stderr=subprocess.PIPE, text=True)
            for r, preset in enumerate(presets)]


def test_more_processes_than_training_frames_is_refused(untrained_subject: Path, tmp_path: Path) -> None:
    valid = np.zeros(len(np.load(untrained_subject / "valid.npy")), dtype=bool)
    valid[1] = True  # tracking kept one frame: one training id
    np.save(untrained_subject / "valid.npy", valid)
    message = "2 training processes but the subject has only 1 training frames; use at most 1 processes"
    # emo-avatar train --nproc 2: before torchrun starts any rank
    proc = _train_2(untrained_subject, tmp_path / "out", "--steps", "3")
    err = proc.stderr
    assert proc.returncode == 2 and f"error: {message}" in err, err[-3000:]
    assert "gloo" not in err and not (tmp_path / "out").exists()  # no rank joined a process group
    # ranks torchrun started directly refuse the same, each one, before PTI
    procs = _start_ranks(untrained_subject, tmp_path / "out", ("tiny", "tiny"))
    errs = [p.communicate(timeout=300)[1] for p in procs]
    for p, err in zip(procs, errs, strict=True):
        assert p.returncode == 2 and message in err, err[-2000:]
        assert "pti" not in err
    assert not (tmp_path / "out").exists()


def test_ranks_with_different_presets_refuse_to_start(tiny_subject: Path, tmp_path: Path) -> None:
    procs = _start_ranks(tiny_subject, tmp_path / "out", ("tiny", "cpu"))
    errs = [p.communicate(timeout=300)[1] for p in procs]
    for p, err in zip(procs, errs, strict=True):
        assert p.returncode == 2, err[-2000:]
        assert "started with different settings" in err and "rank 0 'tiny', rank 1 'cpu'" in err, err[-2000:]
    assert not (tmp_path / "out").exists()


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _rank_of(pid: int) -> int | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    found = [e[5:] for e in env if e.startswith(b"RANK=")]
    return int(found[0]) if found else None


# torchrun's report when a killed rank's peer aborts on its reset connection within the same poll
# (as printed by a CI run): the peer is torchrun's "root cause", the killed rank the real one
_RACED_REPORT = """error: rank 0: [tcp/pair.cc:545] Read error [127.0.0.1]:33183: Connection reset by peer.
terminate called without an active exception
Failures:
[1]:
  time      : 2026-12-05_10:21:52
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 32685)  (SIGKILL)
------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-05_10:21:52
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : -6 (pid: 32684)  (SIGABRT)
"""


def test_a_peer_aborting_on_the_lost_connection_is_not_named_the_cause() -> None:
    assert describe_failure(_RACED_REPORT, 2, 1) == ("training process rank 1 was killed by signal 9; "
                                              "torchrun stopped the other 1")
    alone = _RACED_REPORT.replace("Connection reset by peer", "out of memory")  # rank 0 failed on its own
    assert describe_failure(alone, 2, 1).startswith("training process rank 0 was killed by signal 6")


def test_a_dying_rank_fails_the_job_with_a_clear_error(tiny_subject: Path, tmp_path: Path) -> None:
    progress = tmp_path / "progress.jsonl"
    with open(tmp_path / "stderr.txt", "w") as stderr:
        launcher = subprocess.Popen([EMO, "train", str(tiny_subject), "--preset", "tiny", "--device", "cpu",
                                     "--nproc", "2", "--steps", "2000", "--preview-every", "0",
                                     "--progress-file", str(progress), "--out", str(tmp_path / "out")],
                                    stderr=stderr, env=_worker_env())
        # both ranks train: rank 0 reported a stage-1 step, whose gradients it averaged with rank 1's
        wait_for(lambda: progress.is_file() and '"stage": "train"' in progress.read_text(), timeout=600,
                 interval=0.05, what="a training step")
        torchrun = _children(launcher.pid)
        workers = [c for t in torchrun for c in _children(t)]
        victim = [w for w in workers if _rank_of(w) == 1]
        assert victim, (torchrun, workers, (tmp_path / "stderr.txt").read_text()[-2000:])
        os.kill(victim[0], signal.SIGKILL)
        t0 = time.monotonic()
        launcher.wait(timeout=120)
    rest = (tmp_path / "stderr.txt").read_text()
    assert launcher.returncode != 0 and time.monotonic() - t0 < 90  # no hang
    assert "error: training process rank 1 was killed by signal 9" in rest, rest[-3000:]
    assert not any(_rank_of(w) is not None and Path(f"/proc/{w}").exists() for w in workers)


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_two_gpus_use_nccl(tiny_avatar_subject: Path, tmp_path: Path) -> None:
    subject = tmp_path / "subject"
    shutil.copytree(tiny_avatar_subject, subject)
    proc = subprocess.run([EMO, "train", str(subject), "--preset", "tiny", "--steps", "4", "--nproc", "2",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "nccl, cuda:1" in proc.stderr, proc.stderr[-3000:]
