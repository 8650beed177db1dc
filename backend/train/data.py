"""Training data over a Subject: frames, UV maps and expression windows as in-memory tensors.

A subject of a few hundred frames at 128 px fits in memory many times over, and indexing
preloaded tensors is far faster on CPU than a DataLoader with workers, so we preload once and
draw random batches of *training* frame ids (held-out ids from ``Subject.split()`` are never
drawn). Frames whose size differs from the preset's are resampled (logged once).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from backend.data.windows import expression_windows
from backend.imaging.convert import frame_to_tensor

log = logging.getLogger(__name__)


@dataclass
class SubjectTensors:
    """Everything stage 1 reads from a subject, at the training resolution.

    Attributes:
        frames: (T, 3, S, S) float32 RGB in [-1, 1].
        uv: (T, 3, S, S) float32 (u, v, coverage); u, v in [0, 1], coverage in [0, 1].
        windows: (T, 5, K) float32 expression windows t-2..t+2.
        train_ids: (N_train,) int64 frame ids used for training.
        heldout_ids: (N_heldout,) int64 frame ids never trained on.
        extreme_ids: the 4 extreme-pose frame ids (min/max yaw, min/max pitch) for PTI, in that order.
        rotation: (T, 3) float32 head yaw, pitch, roll in radians.
        expression_names: the K curve names.
        subject_id: folder name of the subject.
        fps: frames per second of the source video.
        cuts: the frames whose picture does not continue the frame before (``Subject.cuts``).
    """

    frames: torch.Tensor
    uv: torch.Tensor
    windows: torch.Tensor
    train_ids: np.ndarray
    heldout_ids: np.ndarray
    extreme_ids: list[int]
    rotation: np.ndarray
    expression_names: list[str]
    subject_id: str
    fps: float
    cuts: tuple[int, ...] = ()

    @property
    def size(self) -> int:
        return int(self.frames.shape[-1])

    def batch(self, ids: np.ndarray | list[int], device: torch.device | str = "cpu"
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(frames, uv, windows) of the given ids on ``device``."""
        idx = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        return (self.frames[idx].to(device), self.uv[idx].to(device), self.windows[idx].to(device))


def uv_to_tensor(uv: np.ndarray, size: int) -> torch.Tensor:
    """(H, W, 3) float (u, v, coverage) -> (3, size, size) float32, bilinear when resampled."""
    if uv.ndim != 3 or uv.shape[2] != 3:
        raise ValueError(f"UV maps must be (H, W, 3) [u, v, coverage], got shape {uv.shape}")
    uv = uv.astype(np.float32, copy=False)
    if uv.shape[0] != size or uv.shape[1] != size:
        uv = cv2.resize(uv, (size, size), interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(np.ascontiguousarray(uv)).permute(2, 0, 1)


def load_subject_tensors(subject_dir: Path, size: int) -> SubjectTensors:
    """Read a subject folder (``backend.data.subject.Subject``) into memory at ``size`` px."""
    from backend.data.subject import Subject

    subject = Subject.open(Path(subject_dir))
    if subject.size != size:
        log.info("subject frames are %d px; training at %d px (resampled in memory)", subject.size, size)
    n = subject.n_frames
    frames = torch.empty(n, 3, size, size)
    uv = torch.empty(n, 3, size, size)
    for i in range(n):
        frames[i] = frame_to_tensor(subject.frame(i), size)
        uv[i] = uv_to_tensor(subject.uv(i), size)
    expr = np.asarray(subject.expressions, dtype=np.float32)
    if not np.all(np.isfinite(expr)):
        raise ValueError(f"{subject_dir}: expression curves contain NaN/inf; re-run tracking")
    train_ids, heldout_ids = subject.split()
    ex = subject.extreme_frames_among(train_ids)  # PTI must not see held-out frames either
    extreme = [int(ex[k]) for k in ("min_yaw", "max_yaw", "min_pitch", "max_pitch")]
    train_ids = np.asarray(train_ids, dtype=np.int64)
    heldout_ids = np.asarray(heldout_ids, dtype=np.int64)
    if len(train_ids) == 0:
        raise ValueError(f"{subject_dir}: no training frames after the held-out split")
    if set(train_ids.tolist()) & set(heldout_ids.tolist()):
        raise ValueError(f"{subject_dir}: Subject.split() returned overlapping train/held-out ids")
    return SubjectTensors(
        frames=frames, uv=uv, windows=torch.from_numpy(expression_windows(expr, cuts=subject.cuts)),
        train_ids=train_ids, heldout_ids=heldout_ids, extreme_ids=extreme,
        rotation=np.asarray(subject.pose, np.float32)[:, :3],
        expression_names=list(subject.expression_names), subject_id=str(subject.subject_id),
        fps=float(subject.fps), cuts=tuple(subject.cuts),
    )


class TrainSampler:
    """Random batches of training ids from a seeded torch Generator (state saved in checkpoints).

    Every step draws a global batch of ``batch`` ids. With ``world`` > 1 training processes every
    rank draws the same global batch (same seed, same generator state) and returns its own slice
    ``[rank * batch/world, (rank + 1) * batch/world)``: the ranks share each batch without overlap,
    the run sees the batches of a single process, and the state stays valid for any ``world``.
    """

    def __init__(self, train_ids: np.ndarray, batch: int, seed: int, rank: int = 0, world: int = 1,
                 weights: np.ndarray | None = None) -> None:
        """``weights``: (N_train,) relative sampling weights (``backend.train.balanced_sampling``);
        None draws uniformly."""
        if world < 1 or not 0 <= rank < world or batch % world:
            raise ValueError(f"rank {rank} of {world} cannot take an equal share of a batch of {batch}")
        self.train_ids = np.asarray(train_ids, dtype=np.int64)
        if weights is not None and (len(weights) != len(self.train_ids) or np.any(np.asarray(weights) <= 0)):
            raise ValueError(f"sampling weights must be {len(self.train_ids)} positive numbers")
        self.weights = None if weights is None else torch.as_tensor(np.asarray(weights, np.float64))
        self.batch = batch
        self.per_rank = batch // world
        self.rank = rank
        self.gen = torch.Generator().manual_seed(seed)

    def next(self) -> np.ndarray:
        """(batch // world,) int64 training ids of this rank for the next step."""
        if self.weights is None:
            pick = torch.randint(len(self.train_ids), (self.batch,), generator=self.gen).numpy()
        else:
            pick = torch.multinomial(self.weights, self.batch, replacement=True, generator=self.gen).numpy()
        lo = self.rank * self.per_rank
        return self.train_ids[pick[lo:lo + self.per_rank]]

    def state(self) -> torch.Tensor:
        return self.gen.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.gen.set_state(state)
