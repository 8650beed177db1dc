"""A ``train`` job in several processes (``emo-avatar serve --train-procs N``, N > 1).

The worker thread starts ``torchrun --standalone --nproc_per_node N -m backend.cli train SUBJECT
...`` (``backend.train.ddp.launch_command``: DDP, NCCL with one GPU per process, gloo on CPU) as a
child process and supervises it until it ends; the job keeps the in-process path's contract:

- **progress**: rank 0 appends every update to ``jobs/<id>/progress.jsonl`` (``--progress-file``);
  the thread reads new whole lines every ``POLL_S`` and reports them like the in-process path;
- **log**: torchrun's and the ranks' output goes to ``jobs/<id>/train.log`` (appended per attempt);
  the ranks' ``backend.*`` log lines and ``error:`` lines become the job's ``log`` events;
- **cancel and shutdown**: the thread creates ``jobs/<id>/stop`` (``--stop-file``); the ranks stop
  together at their next step and rank 0 saves a checkpoint, as in-process. Whatever still runs
  ``CANCEL_GRACE_S`` after the request is killed (torchrun frozen first, then every rank's process
  group and torchrun), and the job ends ``cancelled`` once no process of it is left. (The save
  itself takes well under the grace on a quiet machine; the loss-curve report and the exits of
  torchrun and the ranks after it take seconds, so they are usually cut short);
- **failure**: a non-zero exit fails the job with the ranks' own ``error:`` line, or else the
  failed rank from torchrun's report (``ddp.describe_failure``); a rank that dies makes torchrun
  stop the others, so a failure never hangs;
- **checkpoint**: ``SUBJECT/avatar/checkpoint.pt``, as in-process (rank 0 alone writes).

On Linux torchrun gets SIGTERM if the service dies (``PR_SET_PDEATHSIG``), and stops its ranks.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend import paths
from backend.progress import Cancelled, ProgressUpdate
from backend.service.jobs import JobContext, JobError
from backend.service.proc_tree import kill_tree

log = logging.getLogger(__name__)

CANCEL_GRACE_S = 1.0
"""Seconds the ranks get to stop by themselves (and save) after a cancel before they are killed."""
POLL_S = 0.05
"""Seconds between looks at the child's exit, its progress and log files, and the cancel flag."""
LOG_LINE = re.compile(r"^(?:[\d:,.-]+ )*(DEBUG|INFO|WARNING|ERROR|CRITICAL) (backend\.[\w.]+): (.*)$")
"""A rank's log line (``backend.cli``'s logging format: time, level, logger, message)."""
_DEATH_SIG_TRAMPOLINE = ("import ctypes, os, sys\n"
                         "ctypes.CDLL(None).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM; kept across exec\n"
                         "if os.getppid() != int(sys.argv[1]): sys.exit(1)  # the service already died\n"
                         "os.execv(sys.argv[2], sys.argv[2:])\n")


class TrainLaunchError(RuntimeError):
    """The multi-process training run failed; the message says why (and where its output is)."""


def check_job(subject: Path, preset: str, nproc: int) -> None:
    """Refuse (at submit time) a job that ``nproc`` processes cannot train: the preset's batch must
    split over them and the subject needs at least ``nproc`` training frames (``ddp.check_world``).

    Raises:
        JobError: with the trainer's own message and the serve setting that chose ``nproc``.
    """
    from backend.train import ddp
    from backend.train.presets import PRESETS

    try:
        ddp.check_subject(subject, PRESETS[preset].batch, nproc)
    except ddp.DistributedError as exc:
        raise JobError(f"{exc} (this backend trains with serve --train-procs {nproc}, preset "
                       f"{preset!r})") from None
    except (OSError, ValueError, KeyError) as exc:
        raise JobError(f"subject {subject.name!r} cannot be read: {exc}") from None


def rank_device(device: str | None) -> str | None:
    """The ``--device`` every rank gets: ``cuda`` for any CUDA device (each rank takes
    ``cuda:LOCAL_RANK``), else the service's device as it is (None: the trainer's default)."""
    return "cuda" if device is not None and device.startswith("cuda") else device


def train_command(nproc: int, subject: Path, params: dict[str, Any], device: str | None, resume: bool,
                  progress_file: Path, stop_file: Path) -> list[str]:
    """The torchrun command line of a train job's ``params`` (preset, steps, seed)."""
    from backend.train.ddp import launch_command

    argv = ["train", str(subject), "--preset", params["preset"], "--seed", str(params["seed"]),
            "--progress-file", str(progress_file), "--stop-file", str(stop_file)]
    if params.get("steps"):
        argv += ["--steps", str(params["steps"])]
    dev = rank_device(device)
    if dev:
        argv += ["--device", dev]
    if resume:
        argv.append("--resume")
    return launch_command(nproc, argv)


def _dies_with_service(cmd: list[str]) -> list[str]:
    """``cmd`` run so that it gets SIGTERM when this process dies (Linux; elsewhere ``cmd``).

    The signal is set in a small Python that then execs ``cmd`` (same pid), not in a
    ``preexec_fn``, which is unsafe in a process with threads.
    """
    if not sys.platform.startswith("linux"):
        return cmd
    return [sys.executable, "-c", _DEATH_SIG_TRAMPOLINE, str(os.getpid()), *cmd]


class _Tail:
    """New whole lines of a file another process appends to (read from ``offset`` on)."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path, self.offset, self.partial = path, offset, b""

    def lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        *whole, self.partial = (self.partial + data).split(b"\n")
        return [line.decode("utf-8", errors="replace").rstrip("\r") for line in whole]


def train_in_processes(ctx: JobContext, subject: Path, resume: bool,
                       progress: Callable[[ProgressUpdate], None]) -> Path:
    """Run the train job ``ctx`` in ``ctx.env.train_procs`` processes; return the checkpoint.

    Raises:
        Cancelled: ``ctx.should_stop()`` turned true (the processes are gone when it is raised).
        TrainLaunchError: the run failed (the message names the cause).
    """
    nproc = ctx.env.train_procs
    folder = ctx.env.job_dir(ctx.job_id)
    folder.mkdir(parents=True, exist_ok=True)
    progress_file, stop_file, log_file = folder / "progress.jsonl", folder / "stop", folder / "train.log"
    progress_file.unlink(missing_ok=True)
    stop_file.unlink(missing_ok=True)
    cmd = train_command(nproc, subject, ctx.params, ctx.env.device, resume, progress_file, stop_file)
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env["PYTHONUNBUFFERED"] = "1"
    if ctx.should_stop():
        raise Cancelled("stopped before the training processes started")
    with open(log_file, "ab") as out:
        start = out.seek(0, os.SEEK_END)
        out.write(f"---- attempt {ctx.record.attempts}: {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(_dies_with_service(cmd), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    ctx.log(f"training in {nproc} processes (torchrun, pid {proc.pid}); output in "
            f"{log_file.relative_to(ctx.env.workdir)}")
    progress_tail, log_tail = _Tail(progress_file), _Tail(log_file, start)
    recent: collections.deque[str] = collections.deque(maxlen=2 * nproc)

    def forward(text: str, level: str) -> None:
        if text not in recent:  # every rank logs the same setup lines: pass each on once
            recent.append(text)
            ctx.log(text, level)

    def pump() -> None:
        for line in progress_tail.lines():
            try:
                progress(ProgressUpdate(**json.loads(line)))
            except (ValueError, TypeError) as exc:
                log.warning("job %s: unreadable progress line %r: %s", ctx.job_id, line[:200], exc)
        for line in log_tail.lines():
            m = LOG_LINE.match(line)
            if m and m.group(1) != "DEBUG":
                forward(m.group(3), m.group(1).lower())
            elif line.startswith("error: "):
                forward(line[len("error: "):], "error")

    stop_at: float | None = None
    forced = False
    try:
        while True:
            code = proc.poll()
            pump()
            if code is not None:
                break
            if stop_at is None and ctx.should_stop():
                stop_file.touch()
                stop_at = time.monotonic()
            elif stop_at is not None and time.monotonic() - stop_at > CANCEL_GRACE_S:
                ctx.log(f"the training processes did not stop within {CANCEL_GRACE_S:g} s; killing them "
                        "(the checkpoint saved last is kept)", "warning")
                kill_tree(proc, paths.avatar_dir(subject), str(stop_file))
                forced = True
            time.sleep(POLL_S)
    except BaseException:
        kill_tree(proc, paths.avatar_dir(subject), str(stop_file))  # never leave a training run behind
        raise
    pump()
    # ranks whose torchrun died (killed from outside) are nobody's children: find them by name
    kill_tree(proc, paths.avatar_dir(subject), str(stop_file))
    if stop_at is not None and code != 0:
        raise Cancelled("training processes killed after the stop request" if forced
                        else "training stopped on request; checkpoint saved")
    if code != 0:
        raise TrainLaunchError(f"{_failure(log_file, start, nproc, code)} (full output: "
                               f"{log_file.relative_to(ctx.env.workdir)} in the workdir)")
    ckpt = paths.checkpoint_path(subject)
    if not ckpt.is_file():
        raise TrainLaunchError(f"the training processes ended without writing {ckpt.name}")
    return ckpt


def _failure(log_file: Path, start: int, nproc: int, code: int) -> str:
    """Why the attempt whose output starts at ``start`` of ``log_file`` failed: the ``error:`` line
    of the rank torchrun names as the first failure (``rank R: ...``), else that rank and its exit
    code or signal (``ddp.describe_failure``); the other ranks' errors are mostly echoes of it
    (a collective whose peer is gone)."""
    from backend.train.ddp import describe_failure, failed_rank

    with open(log_file, "rb") as f:
        f.seek(max(start, f.seek(0, os.SEEK_END) - 256 * 1024))
        text = f.read().decode("utf-8", errors="replace")
    errors = [line[len("error: "):] for line in text.splitlines() if line.startswith("error: ")]
    root = failed_rank(text)
    if root is None and code < 0:
        return (f"torchrun was killed by signal {-code} (its training processes were stopped); the last "
                "checkpoint is kept (resume the job to continue from it)")
    if root is None and errors:
        return errors[0]
    if root is not None and root[1] >= 0:
        own = [e for e in errors if e.startswith(f"rank {root[0]}: ")]
        if own:
            return own[0]
    why = describe_failure(text, nproc, code)
    if root is not None:
        why += "; the last checkpoint is kept (resume the job to continue from it)"
    return why
