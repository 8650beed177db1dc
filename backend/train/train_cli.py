"""`emo-avatar train SUBJECT --preset NAME [--steps N] [--resume] [--seed S] [--device D]
[--stylegan CKPT] [--nproc N] [--no-memory-check] [--progress-file F] [--stop-file F]`: stage-1
training with a progress bar (losses, ETA); Ctrl-C saves and exits. Before training starts the
memory estimate is logged; a run that does not fit, a subject more than 4x off the preset's size,
or a resume under another preset is refused with an ``error:`` line (exit code 2) before anything
is written.

``--nproc N`` (N > 1) trains in N processes on this machine: it runs ``torchrun --standalone
--nproc_per_node N -m backend.cli train ...`` (``backend.train.ddp``), one process per GPU with
CUDA, gloo on CPU otherwise; N that the preset's batch does not split over, or more processes than
the subject has training frames, is refused before torchrun starts. Started by torchrun directly
(several nodes, ``--nnodes``), the command trains as the rank torchrun gave it (and the ranks refuse
such a launch themselves).

For a supervising program (``emo-avatar serve --train-procs N``): ``--progress-file F`` makes rank 0
append each progress update to F as one JSON line (``ProgressUpdate.to_dict()``) instead of drawing
the bar; ``--stop-file F`` stops the run as soon as F exists, the way Ctrl-C does (checkpoint saved,
exit code 130), every rank at the same step (ranks other than 0 exit with 0, so that torchrun lets
rank 0 finish its save).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from backend.progress import Cancelled, ProgressUpdate, StopFn
from backend.train.presets import PRESETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("subject", type=Path, help="subject folder (from emo-avatar track)")
    parser.add_argument("--preset", choices=list(PRESETS), default="cpu",
                        help="training preset (backend/train/presets.py): "
                             + ", ".join(f"{p.name} {p.size} px" for p in PRESETS.values()))
    parser.add_argument("--steps", type=int, default=None,
                        help="total stage-1 steps (default, or 0: the preset's)")
    parser.add_argument("--resume", action="store_true", help="continue from SUBJECT/avatar/checkpoint.pt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None,
                        help="auto | cpu | cuda | cuda:N (default: CUDA when present)")
    parser.add_argument("--stylegan", type=Path, default=None,
                        help="pretrained StyleGAN2 checkpoint (g_ema format) for PTI; default: random init")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: SUBJECT/avatar)")
    parser.add_argument("--preview-every", type=int, default=None, help="steps between previews (0: off)")
    parser.add_argument("--no-memory-check", action="store_true",
                        help="train even when the memory estimate exceeds what the device has available "
                             "(the estimate is still logged)")
    parser.add_argument("--nproc", type=int, default=1, metavar="N",
                        help="training processes on this machine (one per GPU); N > 1 launches torchrun")
    parser.add_argument("--progress-file", type=Path, default=None, metavar="FILE",
                        help="append every progress update to FILE as one JSON line (rank 0), instead "
                             "of the progress bar")
    parser.add_argument("--stop-file", type=Path, default=None, metavar="FILE",
                        help="stop as Ctrl-C does (checkpoint saved, exit code 130) once FILE exists; "
                             "checked every step, all processes stop at the same step")


class ProgressBar:
    """tqdm bars, one per stage (PTI, train), with the latest losses as postfix."""

    def __init__(self) -> None:
        self.bar = None
        self.stage = None

    def __call__(self, u: ProgressUpdate) -> None:
        from tqdm import tqdm

        if u.stage != self.stage:
            self.close()
            self.stage = u.stage
            self.bar = tqdm(total=u.total, initial=max(u.step - 1, 0), desc=u.stage, unit="step",
                            dynamic_ncols=True, file=sys.stderr)
        assert self.bar is not None
        self.bar.n = u.step
        self.bar.set_postfix_str(" ".join(f"{k}={v:.3f}" for k, v in u.losses.items()), refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class ProgressFile:
    """Appends each ``ProgressUpdate`` to a file as one JSON line, flushed at once (a reader in
    another process sees whole lines as they are written)."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def __call__(self, u: ProgressUpdate) -> None:
        self.file.write(json.dumps(u.to_dict()) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def stop_when_exists(path: Path) -> StopFn:
    """``should_stop``: true once ``path`` exists on any rank (``ddp.any_rank``), so all stop together."""
    from backend.train.ddp import any_rank

    return lambda: any_rank(path.exists())


def worker_argv(args: argparse.Namespace) -> list[str]:
    """The ``emo-avatar train`` arguments of ``args`` without ``--nproc`` (what each rank runs)."""
    argv = ["train", str(args.subject), "--preset", args.preset, "--seed", str(args.seed)]
    for flag, value in (("--steps", args.steps), ("--device", args.device), ("--stylegan", args.stylegan),
                        ("--out", args.out), ("--preview-every", args.preview_every),
                        ("--progress-file", getattr(args, "progress_file", None)),
                        ("--stop-file", getattr(args, "stop_file", None))):
        if value is not None:
            argv += [flag, str(value)]
    if getattr(args, "no_memory_check", False):
        argv.append("--no-memory-check")
    return [*argv, "--resume"] if args.resume else argv


def run(args: argparse.Namespace) -> int:
    from backend.train.ddp import STOPPED_EXIT_CODE, DistributedError, check_subject, launch

    if args.steps == 0:
        args.steps = None
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if args.nproc < 1:
        print(f"error: --nproc must be at least 1, got {args.nproc}", file=sys.stderr)
        return 2
    if args.nproc > 1 and world == 1:
        try:  # what the ranks would refuse after starting up, refused before torchrun starts
            check_subject(Path(args.subject), PRESETS[args.preset].batch, args.nproc)
        except DistributedError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except (OSError, ValueError, KeyError):
            pass  # a subject that cannot be read: each rank says why, as in one process
        return launch(args.nproc, worker_argv(args))
    if args.nproc > 1 and args.nproc != world:
        print(f"error: --nproc {args.nproc} but torchrun started {world} processes", file=sys.stderr)
        return 2
    # only a process that trains imports the trainer (and torch): the launcher above starts
    # torchrun without waiting for that import
    from backend.train.stage1 import train_avatar

    bar: ProgressBar | ProgressFile | None = None
    if int(os.environ.get("RANK", "0")) == 0:
        bar = ProgressFile(args.progress_file) if args.progress_file else ProgressBar()
    should_stop = stop_when_exists(args.stop_file) if args.stop_file else None
    try:
        path = train_avatar(args.subject, preset=args.preset, steps=args.steps, seed=args.seed,
                            device=args.device, resume=args.resume, out_dir=args.out, progress=bar,
                            should_stop=should_stop, stylegan=args.stylegan,
                            preview_every=args.preview_every, check_memory=not args.no_memory_check)
    except Cancelled as exc:
        if bar is not None:
            bar.close()
        print(f"{exc}", file=sys.stderr)
        # torchrun stops every rank as soon as one exits non-zero: the others leave with 0, so
        # torchrun waits for rank 0 (which saves the checkpoint) and reports its 130
        return STOPPED_EXIT_CODE if int(os.environ.get("RANK", "0")) == 0 else 0
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        if bar is not None:
            bar.close()
        who = f"rank {os.environ['RANK']}: " if world > 1 and "RANK" in os.environ else ""
        print(f"error: {who}{exc}", file=sys.stderr)  # a supervisor finds the failed rank's reason
        return 2
    if bar is not None:
        bar.close()
        print(path)
    return 0
