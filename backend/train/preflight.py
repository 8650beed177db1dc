"""Checks stage 1 runs before it allocates or writes anything.

* :func:`subject_resample`: a subject tracked at another size than the preset is resampled
  (said in the log and recorded in the checkpoint meta), or refused when one side is more than
  ``MAX_RESAMPLE`` times the other.
* :func:`estimate_memory` / :func:`check_memory`: an estimate of the memory one training process
  needs (parameters, optimiser state, activations, the preloaded subject), logged before training
  starts and compared with what the device has free; a run that does not fit is refused.
* :func:`check_resume_preset`: resuming a checkpoint of another preset is refused, naming both.

Every refusal is a ``ValueError`` subclass (the CLI's ``error:`` line, the service's failed job)
raised before any file is written; a preset mismatch is also a ``CheckpointError``.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from backend.train.checkpoint import CheckpointError
from backend.train.presets import PRESETS, Preset

log = logging.getLogger(__name__)

MAX_RESAMPLE = 4.0
"""Largest accepted ratio between the subject's crop size and the preset's size (either way)."""

MiB = 2 ** 20
GiB = 2 ** 30

RUNTIME_OVERHEAD = 256 * MiB
"""Memory a training process takes beyond its tensors (allocator caches, kernels and libraries
loaded on first use). Measured on CPU (torch 2.14): peak RSS during the first steps minus RSS
before ``train_avatar`` exceeded the tensor estimate by 170-230 MiB for the tiny and cpu presets."""


class SubjectSizeError(ValueError):
    """The subject's frames are too far from the preset's size to resample."""


class MemoryBudgetError(ValueError):
    """The preset's estimated memory exceeds what the device has available."""


class PresetMismatchError(CheckpointError):
    """A resume asked for another preset than the checkpoint was trained with."""


# -- subject size ------------------------------------------------------------------------------
def _presets_near(px: int) -> str:
    near = [f"{p.name} ({p.size} px)" for p in PRESETS.values()
            if max(p.size / px, px / p.size) <= MAX_RESAMPLE]
    return ", ".join(near) if near else "none"


def subject_resample(subject_px: int, preset: Preset, subject_id: str = "subject") -> dict[str, Any] | None:
    """How the subject's frames reach the preset's size; None when no resampling is needed.

    Args:
        subject_px: crop side of the tracked subject in pixels.
        preset: the training preset (its ``size`` is the training resolution in pixels).
        subject_id: named in the messages.
    Returns:
        None, or the record stored in the checkpoint meta as ``subject_resample``:
        ``{"subject_px", "train_px", "factor" (train / subject), "frames": "area" | "cubic",
        "uv": "bilinear"}``. A warning is logged.
    Raises:
        SubjectSizeError: when ``max(subject/train, train/subject) > MAX_RESAMPLE``.
    """
    train_px = int(preset.size)
    subject_px = int(subject_px)
    if subject_px <= 0:
        raise SubjectSizeError(f"{subject_id}: subject size {subject_px} px is not a valid crop size")
    if subject_px == train_px:
        return None
    ratio = max(train_px / subject_px, subject_px / train_px)
    way = "upsampling" if train_px > subject_px else "downsampling"
    if ratio > MAX_RESAMPLE:
        raise SubjectSizeError(
            f"{subject_id} was tracked at {subject_px} px but preset {preset.name!r} trains at "
            f"{train_px} px: {ratio:g}x {way}, more than the {MAX_RESAMPLE:g}x this build resamples. "
            f"Track the video again at {train_px} px (emo-avatar track VIDEO -o SUBJECT --size {train_px}) "
            f"or pick a preset near {subject_px} px: {_presets_near(subject_px)}")
    record = {"subject_px": subject_px, "train_px": train_px, "factor": round(train_px / subject_px, 4),
              "frames": "cubic" if train_px > subject_px else "area", "uv": "bilinear"}
    log.warning("%s was tracked at %d px; preset %s trains at %d px: frames and UV maps are resampled in "
                "memory (%gx %s; frames %s, UV bilinear). Track at %d px to train on the original pixels.",
                subject_id, subject_px, preset.name, train_px, ratio, way, record["frames"], train_px)
    return record


# -- resume --------------------------------------------------------------------------------------
def check_resume_preset(meta: dict[str, Any], preset: Preset, path: Path) -> None:
    """Refuse to resume ``path`` (trained with ``meta["preset"]``) under another preset, naming both."""
    was = meta.get("preset")
    if was != preset.name:
        raise PresetMismatchError(
            f"cannot resume {path}: it was trained with preset {was!r} and this run asks for preset "
            f"{preset.name!r}. Resume with --preset {was}, or train {preset.name!r} from scratch into "
            f"another folder (--out DIR) so the {was!r} checkpoint is kept.")


# -- memory --------------------------------------------------------------------------------------
class _AllocCounter(TorchDispatchMode):
    """Sums the bytes of every tensor an op creates (views excluded)."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if not func.is_view:
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    self.bytes += t.numel() * t.element_size()
        return out


@dataclass(frozen=True)
class MemoryEstimate:
    """An estimate (not a measurement) of one training process's memory, in bytes.

    Attributes:
        params: avatar + discriminator parameter count.
        trainable: how many of them get gradients and Adam state.
        weights: weights, EMA copy of the avatar, gradients and Adam's two moments.
        activations: the tensors one step's forward creates (avatar, discriminator on real and
            fake, perceptual loss), counted on the meta device at the per-process batch (float32).
            Autograd keeps at most these for the backward pass.
        data: the subject's frames, UV maps and expression windows preloaded at the preset size.
        overhead: ``RUNTIME_OVERHEAD`` (allocator, kernels and libraries beyond the tensors).
        processes: training processes sharing this memory (CPU: the ranks on this host; CUDA: 1).
        total: ``processes * (weights + activations + data + overhead)``; ``data`` only when it
            lives in the device's memory (``data_on_device``: training on the CPU).
        activation_dtype: what the activations were counted in.
    """

    params: int
    trainable: int
    weights: int
    activations: int
    data: int
    overhead: int
    processes: int
    total: int
    data_on_device: bool = True
    activation_dtype: str = "float32"

    def describe(self) -> str:
        per = f" per process x {self.processes}" if self.processes > 1 else ""
        where = "" if self.data_on_device else " in host RAM, not counted"
        return (f"{self.total / GiB:.2f} GiB estimated (weights+EMA+grads+Adam "
                f"{self.weights / MiB:.0f} MiB for {self.params / 1e6:.2f} M parameters, "
                f"activations {self.activations / MiB:.0f} MiB ({self.activation_dtype}), "
                f"preloaded subject {self.data / MiB:.0f} MiB{where}, "
                f"runtime {self.overhead / MiB:.0f} MiB{per})")

    def to_meta(self) -> dict[str, Any]:
        return {"estimate": True, **asdict(self)}


_TRACED: dict[tuple, tuple[int, int, int]] = {}
"""``_activation_bytes`` by the preset's repr, n_expr, batch, the perceptual module's repr and
description, and frozen: the meta-device trace takes 1-2 s and gives the same counts every time."""


def _activation_bytes(preset: Preset, n_expr: int, batch: int, perceptual: torch.nn.Module | None,
                      frozen_generator: bool) -> tuple[int, int, int]:
    """(parameter count, trainable parameter count, forward bytes), traced on the meta device."""
    from backend.model.avatar import EmoAvatar
    from backend.train.stage1 import make_discriminator

    cfg = preset.avatar_config(n_expr)
    with torch.device("meta"):
        avatar = EmoAvatar(cfg)
        disc = make_discriminator(cfg)
    n_params = sum(p.numel() for p in avatar.parameters()) + sum(p.numel() for p in disc.parameters())
    n_train = n_params
    if frozen_generator:
        n_train -= sum(p.numel() for p in avatar.generator.parameters()) + avatar.w_pivot.numel()
    perc = None
    if perceptual is not None:
        try:
            perc = copy.deepcopy(perceptual).to("meta")
        except (RuntimeError, TypeError, NotImplementedError) as exc:
            log.debug("perceptual loss not traced for the memory estimate: %s", exc)
    s = preset.size
    uv = torch.zeros(batch, 3, s, s, device="meta")
    frames = torch.zeros(batch, 3, s, s, device="meta")
    win = torch.zeros(batch, cfg.window, n_expr, device="meta")
    counter = _AllocCounter()
    with counter:
        out = avatar(uv, win)
        img = out.image
        loss = (img - frames).abs().mean() + (out.tex_rgb - frames).abs().mean()
        if perc is not None:
            loss = loss + perc(img, frames).mean()
        if preset.w_adv > 0:
            loss = loss + disc(img, uv).mean() + disc(frames, uv).mean() + disc(img.detach(), uv).mean()
    return n_params, n_train, counter.bytes


def estimate_memory(preset: Preset, n_expr: int, n_frames: int, world: int = 1, sharing: int = 1,
                    perceptual: torch.nn.Module | None = None, frozen_generator: bool = False,
                    device_type: str = "cpu", half_activations: bool = False) -> MemoryEstimate:
    """Estimate one stage-1 run's memory before anything is allocated (see :class:`MemoryEstimate`).

    Args:
        preset: the training preset (size, batch, architecture).
        n_expr: expression curves K of the subject.
        n_frames: frames of the subject (all are preloaded at the preset size).
        world: training processes; each trains ``batch / world`` frames of every batch.
        sharing: processes that share this memory (CPU: the ranks on one host; CUDA: 1 per device).
        perceptual: the perceptual loss module, traced with the rest (None: not counted).
        frozen_generator: the generator and w pivot get no gradients or Adam state.
        device_type: where training runs; the subject is preloaded in host RAM, so it counts
            against the device only on "cpu".
        half_activations: autocast (mixed precision) runs: activations are counted at half the
            float32 bytes (an assumption; some ops stay float32).
    """
    processes = max(1, int(sharing))
    batch = max(1, preset.batch // max(1, int(world)))
    # the same trace again in one process (a second training, a resume) is read back; reprs,
    # since a preset holds dicts, and a module's repr is its layers
    key = (repr(preset), n_expr, batch, repr(perceptual), getattr(perceptual, "description", None),
           frozen_generator)
    if key not in _TRACED:
        _TRACED[key] = _activation_bytes(preset, n_expr, batch, perceptual, frozen_generator)
    n_params, n_train, act = _TRACED[key]
    # weights, EMA copy (avatar), gradient, Adam exp_avg + exp_avg_sq: 5 float32 copies at most
    weights = 4 * (n_params + n_params + 3 * n_train)
    if half_activations:
        act //= 2
    s = preset.size
    data = n_frames * (4 * 6 * s * s + 4 * 5 * n_expr)
    on_device = device_type == "cpu"
    per = weights + act + (data if on_device else 0) + RUNTIME_OVERHEAD
    return MemoryEstimate(params=n_params, trainable=n_train, weights=weights, activations=act, data=data,
                          overhead=RUNTIME_OVERHEAD, processes=processes, total=processes * per,
                          data_on_device=on_device,
                          activation_dtype="float16/bfloat16 (autocast)" if half_activations else "float32")


def _cgroup_available() -> int | None:
    """Bytes left under this process's cgroup v2/v1 memory limit, or None without a limit."""
    for limit_f, used_f in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                            ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                             "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_f).read_text().strip()
            used = int(Path(used_f).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 2 ** 60:
            return None
        return max(0, int(limit) - used)
    return None


def available_memory(device: torch.device) -> tuple[int | None, str]:
    """(bytes available to a new allocation on ``device`` or None when unknown, where it was read).

    CPU: ``MemAvailable`` of /proc/meminfo (else free physical pages), capped by a cgroup limit.
    CUDA: ``torch.cuda.mem_get_info`` (free device memory). Other devices: unknown.
    """
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free), f"free memory of {torch.cuda.get_device_name(device)}"
    if device.type != "cpu":
        return None, f"no memory query for device type {device.type!r}"
    avail, source = None, "available RAM"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
                source = "available RAM (MemAvailable)"
                break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            source = "free physical RAM"
        except (ValueError, OSError, AttributeError):
            return None, "RAM size unknown on this system"
    cg = _cgroup_available()
    if cg is not None and cg < avail:
        return cg, "memory left under this container's cgroup limit"
    return avail, source


def check_memory(estimate: MemoryEstimate, device: torch.device, preset: Preset) -> dict[str, Any]:
    """Log the estimate; refuse when it exceeds the memory ``device`` has available.

    Returns:
        the meta record: the estimate's fields, ``available`` (bytes or None), ``source``.
    Raises:
        MemoryBudgetError: estimate > available (nothing has been allocated or written yet).
    """
    avail, source = available_memory(device)
    record = {**estimate.to_meta(), "available": avail, "available_source": source, "device": str(device)}
    if avail is None:
        log.warning("memory: %s; not checked against the device (%s)", estimate.describe(), source)
        return record
    log.info("memory: %s; %s on %s: %.2f GiB", estimate.describe(), source, device, avail / GiB)
    if estimate.total > avail:
        hint = ("a smaller preset (tiny 32 px, cpu 128 px), fewer training processes, or a device with "
                "more memory" if device.type == "cpu" else
                "a smaller preset, a GPU with more memory, or more GPUs (--nproc N splits the batch)")
        raise MemoryBudgetError(
            f"preset {preset.name!r} ({preset.size} px, batch {preset.batch}) does not fit on {device}: "
            f"{estimate.describe()}, but {source} is {avail / GiB:.2f} GiB. Use {hint}.")
    return record
