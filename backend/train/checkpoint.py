"""Stage-1 checkpoints: one ``torch.save`` file, written atomically, read with ``weights_only=True``.

Layout (only tensors, dicts, lists, str, int, float, bool, None - loadable without pickle code)::

    {
      "format": "emo-avatar-checkpoint", "format_version": 1,
      "meta":   {config, preset, preset_params, subject_id, expression_names, size, step,
                 total_steps, seed, stylegan_init, perceptual, pti, heldout_psnr, history,
                 versions, saved_at},
      "avatar": state dict of the EMA avatar (what rendering uses),
      "train":  {"avatar", "disc", "opt_g", "opt_d", "scaler", "sampler_rng", "torch_rng"}  (resume only)
    }

``load_avatar`` rebuilds ``EmoAvatar(AvatarConfig.from_dict(meta["config"]))`` and checks every
key and shape *before* loading, so a checkpoint of another architecture is rejected with the
list of mismatches and nothing is half-loaded.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import time
from pathlib import Path
from typing import Any

import torch

from protocol.fileio import atomic_path

log = logging.getLogger(__name__)

FORMAT = "emo-avatar-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """The file is not a usable Emo-Avatar checkpoint (wrong format, version, architecture or preset)."""


def versions() -> dict[str, str]:
    """Software versions recorded in every checkpoint."""
    from importlib import metadata

    try:
        app = metadata.version("emo-avatar-studio")
    except metadata.PackageNotFoundError:
        app = "unknown"
    return {"emo_avatar": app, "torch": str(torch.__version__), "python": platform.python_version(),
            "checkpoint_format": str(FORMAT_VERSION)}


def save_checkpoint(path: Path, avatar_state: dict[str, torch.Tensor], meta: dict[str, Any],
                    train_state: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically (a reader sees the old file or the new one, never half).

    Args:
        path: target file (``SUBJECT/avatar/checkpoint.pt`` by default).
        avatar_state: state dict of the avatar used for rendering (the EMA copy).
        meta: JSON-like metadata (see module docstring); ``versions`` and ``saved_at`` are added.
        train_state: optimiser/discriminator/RNG state for ``--resume`` (None for render-only files).
    """
    saved_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    payload = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "meta": {**meta, "versions": versions(), "saved_at": saved_at},
        "avatar": {k: v.detach().cpu() for k, v in avatar_state.items()},
        "train": train_state,
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def torch_load_reason(exc: BaseException) -> str:
    """One line saying why ``torch.load`` refused a file (its messages run to several paragraphs)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    first = lines[0] if len(lines[0]) <= 120 else lines[0].split(". ")[0][:120]
    return f"{type(exc).__name__}: {first}"


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load and validate the raw checkpoint dict (CPU tensors)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path} (train first: emo-avatar train SUBJECT)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = torch_load_reason(exc)
        raise CheckpointError(f"{path} is not a readable Emo-Avatar checkpoint: {reason}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an Emo-Avatar checkpoint (format field missing or different)")
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {data.get('format_version')}, this "
                              f"build reads version {FORMAT_VERSION}; retrain or use the matching release")
    return data


def state_mismatches(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Human-readable differences between ``model``'s state dict and ``state`` (empty when they match)."""
    own = model.state_dict()
    out = [f"missing {k} {tuple(v.shape)}" for k, v in own.items() if k not in state]
    out += [f"unexpected {k} {tuple(v.shape)}" for k, v in state.items() if k not in own]
    out += [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
            for k, v in own.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    return out


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``model`` only if every key and shape matches; else raise naming the mismatch."""
    bad = state_mismatches(model, state)
    if bad:
        shown = "; ".join(bad[:8]) + (f"; ... ({len(bad)} in all)" if len(bad) > 8 else "")
        raise CheckpointError(f"{what} does not match this architecture: {shown}")
    model.load_state_dict(state, strict=True)


def config_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Fields whose values differ between two config dicts, as 'name: a vs b'."""
    keys = sorted(set(a) | set(b))
    return [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]


def build_avatar(config: dict[str, Any]) -> torch.nn.Module:
    """``EmoAvatar`` from a recorded config dict (clear error when the config is from another version)."""
    from backend.model.avatar import AvatarConfig, EmoAvatar

    try:
        cfg = AvatarConfig.from_dict(config)
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"checkpoint config is not understood by this version: {exc}") from exc
    return EmoAvatar(cfg)


def load_avatar(path: Path, device: str | torch.device | None = None, expect_preset: str | None = None,
                expect_config: dict[str, Any] | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load the rendering (EMA) avatar of a checkpoint.

    Args:
        path: checkpoint file.
        device: target device (default: CPU; pass ``backend.device.pick_device(...)`` for CUDA).
        expect_preset: raise ``CheckpointError`` when the checkpoint was trained with another preset.
        expect_config: raise ``CheckpointError`` listing the fields when the architecture config differs.
    Returns:
        (avatar in eval mode with ``requires_grad`` off, meta dict).
    """
    data = read_checkpoint(path)
    meta = data["meta"]
    if expect_preset is not None and meta.get("preset") != expect_preset:
        raise CheckpointError(f"{path} was trained with preset {meta.get('preset')!r}, "
                              f"expected {expect_preset!r}")
    if expect_config is not None:
        diff = config_differences(meta.get("config", {}), expect_config)
        if diff:
            raise CheckpointError(f"{path} has a different architecture ({'; '.join(diff)})")
    avatar = build_avatar(meta["config"])
    load_state_strict(avatar, data["avatar"], f"checkpoint {path}")
    avatar.eval().requires_grad_(False)
    if device is not None:
        avatar.to(device)
    return avatar, meta


def checkpoint_sha256(path: Path) -> str:
    """Hex SHA-256 of the checkpoint file (style files record it to name their base)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()
