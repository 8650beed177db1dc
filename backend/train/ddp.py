"""Multi-process stage-1 training with ``torchrun`` and DistributedDataParallel.

``torchrun --nproc_per_node N -m backend.cli train SUBJECT ...`` (or ``emo-avatar train --nproc N``,
which launches exactly that) starts N processes; each one finds its rank in the environment
torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) and joins
one process group: NCCL with one CUDA device per process (``cuda:LOCAL_RANK``), gloo on CPU.

What the ranks share, and who writes:
- every rank draws the same global batch of B training ids from the same seeded generator and
  trains its own B/N slice, so a step sees exactly the frames a single process at batch B sees;
- the avatar's gradients are averaged by DDP, the discriminator's by one all-reduce per update
  (its R1 step differentiates twice and reaches only part of the network, which DDP's reducer
  does not follow), so every rank keeps identical weights, optimiser states and EMA;
- only rank 0 writes checkpoints, previews, the loss curve and metrics, and logs progress.

Before any work the ranks compare what they were asked to do (preset, steps, seed, subject,
resume) and refuse to start when they differ; N must divide the batch and may not exceed the
training ids. A rank that dies makes the others fail at their next collective, and torchrun then
stops the job; ``launch`` turns torchrun's report into one line naming the rank.

torch is imported inside the functions that need it, so the checks before a launch
(``check_launch``, ``check_world``, ``check_subject``) cost no torch import (``emo-avatar serve
--train-procs``, and ``emo-avatar train --nproc``, which refuses a subject with fewer training
frames than processes before torchrun starts).
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

COLLECTIVE_TIMEOUT_S = 600
"""How long a rank waits for the others at one collective before giving up (a hung peer)."""


class DistributedError(RuntimeError):
    """Ranks that cannot train together (they disagree, or there are too many of them)."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in a run. ``world == 1``: a plain single-process run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files and reports progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


SINGLE = Ranks()


def ranks_from_env() -> Ranks:
    """The ranks torchrun set in the environment (``SINGLE`` when not launched by torchrun)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise DistributedError(f"torchrun's RANK/WORLD_SIZE/LOCAL_RANK are not integers: {exc}") from None
    return Ranks(rank, world, local) if world > 1 else SINGLE


def init(ranks: Ranks, device: str | None) -> torch.device:
    """Join the process group of a torchrun launch; return this rank's device.

    NCCL and ``cuda:LOCAL_RANK`` when CUDA is there and ``device`` allows it, else gloo on CPU.
    """
    import torch
    import torch.distributed as dist

    want_cuda = device not in ("cpu",) and torch.cuda.is_available()
    if device not in (None, "", "auto", "cpu", "cuda"):
        raise DistributedError(f"--device {device}: with several processes use auto, cuda or cpu "
                               "(each process takes cuda:LOCAL_RANK)")
    if want_cuda:
        if ranks.local_rank >= torch.cuda.device_count():
            raise DistributedError(f"rank {ranks.rank} has local rank {ranks.local_rank}, but this node has "
                                   f"{torch.cuda.device_count()} CUDA devices (one process per GPU)")
        torch.cuda.set_device(ranks.local_rank)
        dev, backend = torch.device("cuda", ranks.local_rank), "nccl"
    else:
        dev, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S))
    log.info("rank %d of %d (local %d): %s, %s", ranks.rank, ranks.world, ranks.local_rank, backend, dev)
    return dev


def barrier() -> None:
    """Wait until every rank gets here (no-op without a process group). Called once training has
    ended well, so no rank leaves the group (and closes its connections) while another still
    works: the other ranks finish before rank 0's closing evaluation and checkpoint, and a gloo
    rank that tears its group down that early can abort at exit ("terminate called without an
    active exception": seen under load in tests/train/test_ddp.py, and on an agreed stop request
    while rank 0 saved, so a stop waits here too)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group (no-op without one).

    Unreachable objects are collected first: stage 1's trainer, which holds the
    ``DistributedDataParallel`` wrapper, can outlive ``train_avatar`` in reference cycles (a caught
    exception's traceback keeps its frame), and a wrapper freed after the group is gone, or at
    interpreter exit, can abort a gloo rank ("terminate called without an active exception")."""
    import gc

    import torch.distributed as dist

    if dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def agree(ranks: Ranks, what: dict[str, Any]) -> None:
    """Raise on every rank unless all ranks hold the same ``what`` (e.g. preset, seed, subject).

    Raises:
        DistributedError: naming each field that differs and every rank's value of it.
    """
    import torch.distributed as dist

    if not ranks.distributed:
        return
    gathered: list[Any] = [None] * ranks.world
    dist.all_gather_object(gathered, what)
    bad = [k for k in what if any(g.get(k) != gathered[0].get(k) for g in gathered)]
    if bad:
        detail = "; ".join(f"{k}: " + ", ".join(f"rank {r} {g.get(k)!r}" for r, g in enumerate(gathered))
                           for k in bad[:3]) + (f"; and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise DistributedError(f"the {ranks.world} training processes were started with different settings "
                               f"({detail}); start every rank with the same command")


def check_world(ranks: Ranks, batch: int, n_train_ids: int) -> int:
    """Frames per rank for a global ``batch``; refuse worlds that cannot share it.

    Raises:
        DistributedError: more processes than training ids, or a batch N does not divide.
    """
    if ranks.world > n_train_ids:
        raise DistributedError(f"{ranks.world} training processes but the subject has only {n_train_ids} "
                               f"training frames; use at most {n_train_ids} processes")
    if batch % ranks.world:
        fits = [n for n in range(1, batch + 1) if batch % n == 0]
        raise DistributedError(f"the global batch of {batch} frames does not split over {ranks.world} "
                               f"processes; use {', '.join(map(str, fits))} processes")
    return batch // ranks.world


def check_subject(subject: Path, batch: int, nproc: int) -> None:
    """``check_world`` for ``nproc`` processes on a subject folder's training frames, before any of
    them starts (reads the subject's metadata; no torch import).

    Raises:
        DistributedError: as ``check_world``.
        OSError, ValueError, KeyError: the subject cannot be read.
    """
    from backend.data.subject import Subject

    check_world(Ranks(0, nproc, 0), batch, len(Subject.open(subject).split()[0]))


def broadcast_module(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers into every rank's ``module``."""
    import torch.distributed as dist

    if dist.is_initialized():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def average_gradients(module: torch.nn.Module, world: int) -> None:
    """Average ``module``'s gradients over the ranks in one all-reduce (missing grads count as 0)."""
    import torch
    import torch.distributed as dist

    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= world
    i = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[i:i + n].view_as(p.grad))
        i += n


def global_share(local: torch.Tensor, world: int) -> torch.Tensor:
    """``world * local / sum over ranks of local`` for a scalar (e.g. a rank's mask area).

    A loss normalised by a rank-local amount (``sum / local``) times this factor, averaged over the
    ranks as DDP averages gradients, equals the loss normalised over the whole batch.
    """
    import torch.distributed as dist

    total = local.detach().clone()
    dist.all_reduce(total)
    return world * local.detach() / total.clamp_min(1e-12)


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on at least one (one all-reduce; no-op alone).

    For a stop request seen by one rank first: all ranks then stop at the same step, so none is
    left waiting at a collective. Every rank must call it at the same points.
    """
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        return bool(flag)
    dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def mean_logs(logs: dict[str, float], world: int, device: torch.device) -> dict[str, float]:
    """Loss values averaged over the ranks (the global batch's losses; same keys on every rank)."""
    import torch
    import torch.distributed as dist

    keys = sorted(logs)
    t = torch.tensor([logs[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / world for k, v in zip(keys, t.tolist(), strict=True)}


# -- the launcher -------------------------------------------------------------------------------
STOPPED_EXIT_CODE = 130
"""Exit code of ``emo-avatar train`` stopped on request (Ctrl-C, ``--stop-file``) after saving."""
FAILED_RANK = re.compile(r"rank\s*:\s*(\d+)\s*\(local_rank:\s*(\d+)\)\s*\n\s*exitcode\s*:\s*(-?\d+)")
LOST_PEER = re.compile(r"^error: rank (\d+): .*(?:Connection reset by peer|Connection closed by peer|"
                       r"Broken pipe)", re.MULTILINE)
"""A rank's error line saying a collective lost its peer: an echo of another rank's failure."""


def launch_command(nproc: int, argv: list[str]) -> list[str]:
    """The torchrun command line that trains with ``nproc`` processes on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "backend.cli", *argv]


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def check_launch(nproc: int, device: str | None) -> str:
    """Refuse a process count this machine cannot run; return what the ranks will use.

    CUDA (``device`` auto or cuda, and a GPU present): one process per GPU, NCCL. Otherwise gloo
    on CPU, at most one process per usable core. Imports torch only when ``device`` is not cpu.

    Returns:
        e.g. ``"2 processes, gloo on CPU (2 cores)"``.
    Raises:
        DistributedError: ``nproc`` < 1, a device other than auto/cpu/cuda with ``nproc`` > 1,
            more processes than GPUs or than CPU cores.
    """
    if nproc < 1:
        raise DistributedError(f"the training process count must be at least 1, got {nproc}")
    if nproc == 1:
        return "1 process"
    if device not in (None, "", "auto", "cpu", "cuda"):
        raise DistributedError(f"device {device}: with {nproc} training processes use auto, cuda or cpu "
                               "(each process takes cuda:LOCAL_RANK)")
    gpus = 0
    if device != "cpu":
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus:
        if nproc > gpus:
            raise DistributedError(f"{nproc} training processes but this machine has {gpus} CUDA devices "
                                   f"(one process per GPU); use at most {gpus}")
        return f"{nproc} processes, nccl on {nproc} of {gpus} GPUs"
    if device == "cuda":
        raise DistributedError("device cuda: CUDA is not available on this machine")
    cpus = usable_cpus()
    if nproc > cpus:
        raise DistributedError(f"{nproc} training processes on CPU but this machine has {cpus} usable CPU "
                               f"cores; use at most {cpus}")
    return f"{nproc} processes, gloo on CPU ({cpus} cores)"


def failed_ranks(output: str) -> list[tuple[int, int]]:
    """(rank, exit code) of every failure in torchrun's report in ``output``, the one torchrun
    calls the root cause first (a negative exit code is a signal); empty when there is no report."""
    root = output.rfind("Root Cause")  # torchrun lists the first failure there, the others above
    found = FAILED_RANK.findall(output[root:]) if root >= 0 else []
    found += FAILED_RANK.findall(output[:root] if root >= 0 else output)
    ranks: dict[int, int] = {}
    for rank, _local, exitcode in found:
        ranks.setdefault(int(rank), int(exitcode))
    return list(ranks.items())


def failed_rank(output: str) -> tuple[int, int] | None:
    """(rank, exit code) of the failure that brought the job down, or None when ``output`` holds no
    torchrun report.

    torchrun's "root cause" is the failure it saw first, and two ranks can fail within its polling
    interval: a rank killed outright leaves its peers' collectives with a reset connection, and they
    abort too. A rank whose own ``error: rank R:`` line is such a lost peer is an echo, so the
    first failure that is not one is the cause; if every failed rank is an echo, the root cause.
    """
    found = failed_ranks(output)
    echoes = {int(r) for r in LOST_PEER.findall(output)}
    causes = [f for f in found if f[0] not in echoes]
    return (causes or found or [None])[0]


def describe_failure(output: str, nproc: int, code: int) -> str:
    """One line saying why a torchrun launch of ``nproc`` processes ended with ``code``.

    ``output`` is (the tail of) what torchrun and the ranks wrote to stderr: the first failed
    rank of torchrun's "Root Cause" report and its exit code or signal, or else the exit code.
    """
    found = failed_rank(output)
    if found is None:
        return f"distributed training failed (torchrun exit code {code})"
    rank, exitcode = found
    how = f"was killed by signal {-exitcode}" if exitcode < 0 else f"exited with {exitcode}"
    return f"training process rank {rank} {how}; torchrun stopped the other {nproc - 1}"


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``emo-avatar ARGV`` in ``nproc`` processes through torchrun; return its exit code.

    torchrun's output passes through; when a rank fails, one ``error:`` line names it and its
    exit code (or signal) after torchrun has stopped the others.
    """
    proc = subprocess.Popen(launch_command(nproc, argv), stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    tail: list[str] = []
    for line in proc.stderr:
        sys.stderr.write(line)
        tail = [*tail[-200:], line]
    code = proc.wait()
    if code != 0:
        text = "".join(tail)
        found = failed_rank(text)
        if found is not None and found[1] == STOPPED_EXIT_CODE:
            print("training stopped on request; the checkpoint is saved: continue with --resume",
                  file=sys.stderr)  # Ctrl-C or --stop-file: the ranks saved and left together
            return STOPPED_EXIT_CODE
        why = describe_failure(text, nproc, code)
        if found is not None:
            why += ". The last checkpoint is kept: continue with --resume"
        print(f"error: {why}", file=sys.stderr)
    return code
