"""Load a standard StyleGAN2 checkpoint (the widely used PyTorch format) into our modules.

Format: ``torch.save`` of a dict with ``"g_ema"`` (and optionally ``"g"``, ``"d"``,
``"latent_avg"``) where each network is a state dict in the reference naming (``style.1.weight``,
``input.input``, ``conv1.conv.weight``, ``convs.N...``, ``to_rgbs.N...``, ``noises.noise_N``;
discriminator ``convs.0.0.weight``, ``final_linear.1.bias``, ...). Our modules use the same
names, so mapping is by name; FIR ``*.kernel`` buffers of the source are constants and ignored.

Loading is all or nothing: every key and shape is checked for the generator and (if given) the
discriminator before anything is copied; a mismatch raises ``CheckpointMismatchError`` naming
the keys and shapes and leaves the modules untouched.

NVIDIA StyleGAN2-ADA ``.pkl`` files are read by ``backend.model.nvidia_pkl`` (a restricted
unpickler that extracts tensors and never runs the code stored in the pickle) and renamed to
the same layout.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

MAX_LISTED = 12


class CheckpointMismatchError(ValueError):
    """The checkpoint does not fit the architecture; ``problems`` lists the mismatches."""

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems


def _is_constant_buffer(key: str) -> bool:
    return key.endswith(".kernel")


def describe_generator_state(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Best-effort architecture of a reference-format generator state dict (size, style_dim, n_mlp, ...)."""
    info: dict[str, Any] = {}
    n_rgbs = len({k.split(".")[1] for k in sd if k.startswith("to_rgbs.")})
    if "input.input" in sd:
        info["size"] = 2 ** (n_rgbs + 2)
        info["channels_4px"] = int(sd["input.input"].shape[1])
    mlp = [k for k in sd if k.startswith("style.") and k.endswith(".weight")]
    info["n_mlp"] = len(mlp)
    if mlp:
        info["style_dim"] = int(sd[mlp[0]].shape[1])
    rgbs = sorted((int(k.split(".")[1]), v) for k, v in sd.items() if k.startswith("to_rgbs.")
                  and k.endswith(".conv.weight"))
    if rgbs:
        info["channels"] = {2 ** (i + 3): int(v.shape[2]) for i, v in rgbs}
    return info


def _compare(
    name: str, src: dict[str, torch.Tensor], module: nn.Module
) -> tuple[list[str], list[str], list[str]]:
    """-> (problems, matched keys, ignored source keys)."""
    tgt = module.state_dict()
    problems: list[str] = []
    ignored = sorted(k for k in src if _is_constant_buffer(k) and k not in tgt)
    missing = sorted(k for k in tgt if k not in src)
    unexpected = sorted(k for k in src if k not in tgt and not _is_constant_buffer(k))
    shape = sorted(k for k in tgt if k in src and tuple(src[k].shape) != tuple(tgt[k].shape))
    for k in shape[:MAX_LISTED]:
        problems.append(f"{name}.{k}: checkpoint {tuple(src[k].shape)} vs model {tuple(tgt[k].shape)}")
    for k in missing[:MAX_LISTED]:
        problems.append(f"{name}.{k}: missing in checkpoint (model {tuple(tgt[k].shape)})")
    for k in unexpected[:MAX_LISTED]:
        problems.append(f"{name}.{k}: in checkpoint {tuple(src[k].shape)} but not in the model")
    for kind, keys in (("shape mismatches", shape), ("missing", missing), ("unexpected", unexpected)):
        if len(keys) > MAX_LISTED:
            problems.append(f"{name}: ... and {len(keys) - MAX_LISTED} more {kind}")
    matched = [k for k in tgt if k in src and k not in shape]
    return problems, matched, ignored


def _state_dict_of(ckpt: Any, key: str) -> dict[str, torch.Tensor] | None:
    sd = ckpt.get(key) if isinstance(ckpt, dict) else None
    if sd is None:
        return None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointMismatchError(f"checkpoint entry {key!r} is not a state dict of tensors", [key])
    return sd


def _copy_into(module: nn.Module, src: dict[str, torch.Tensor], keys: list[str]) -> None:
    tgt = module.state_dict()
    with torch.no_grad():
        for k in keys:
            tgt[k].copy_(src[k].to(dtype=tgt[k].dtype))


def load_stylegan2_checkpoint(
    path: str | Path, generator: nn.Module, discriminator: nn.Module | None = None,
    strict_shapes: bool = True,
) -> dict[str, Any]:
    """Load a reference-format StyleGAN2 checkpoint into ``generator`` (and ``discriminator``).

    Args:
        path: a ``.pt``/``.pth`` file written by ``torch.save`` (read with ``weights_only=True``), or an
            NVIDIA StyleGAN2-ADA ``.pkl`` (read with a restricted unpickler, no code runs).
        generator: a ``stylegan2.Generator`` of the checkpoint's architecture.
        discriminator: optional ``stylegan2.Discriminator``; loaded from ``"d"`` when present
            (a checkpoint without ``"d"`` leaves it untouched and the report says so).
        strict_shapes: True (default): any missing / unexpected / mis-shaped key raises and nothing
            is changed. False: copy the keys that fit, report the rest.
    Returns:
        report dict: ``source`` ("g_ema" or "g"), ``loaded`` (number of generator tensors),
        ``discriminator_loaded`` (int, 0 when not loaded), ``skipped`` (problems when not strict),
        ``ignored`` (constant FIR buffers), ``latent_avg`` ((style_dim,) tensor or None),
        ``checkpoint_arch`` (what the file's generator looks like), ``path``.
    Raises:
        FileNotFoundError, CheckpointMismatchError (a ValueError) with the mismatched keys/shapes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"StyleGAN2 checkpoint not found: {path}")
    fmt = "stylegan2-pytorch"
    if path.suffix == ".pkl":
        from backend.model.nvidia_pkl import read_nvidia_pkl

        fmt = "stylegan2-ada-pkl"
        try:
            ckpt = read_nvidia_pkl(path)
        except (KeyError, pickle.UnpicklingError, EOFError, ValueError, RuntimeError, TypeError) as exc:
            raise CheckpointMismatchError(
                f"{path.name}: not a readable StyleGAN2-ADA pickle ({exc})", [str(path)]) from exc
    else:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # unpickling errors come in many types
            raise CheckpointMismatchError(
                f"{path.name}: not a readable torch checkpoint ({exc})", [str(path)]) from exc
    if not isinstance(ckpt, dict):
        raise CheckpointMismatchError(f"{path.name}: expected a dict with 'g_ema', got {type(ckpt).__name__}",
                                      [str(path)])
    source = "g_ema" if "g_ema" in ckpt else "g"
    g_sd = _state_dict_of(ckpt, source)
    if g_sd is None:
        raise CheckpointMismatchError(
            f"{path.name}: no 'g_ema' or 'g' generator state dict (keys: {sorted(ckpt)[:10]})", ["g_ema"])
    problems, g_keys, ignored = _compare("g_ema" if source == "g_ema" else "g", g_sd, generator)
    d_sd = _state_dict_of(ckpt, "d") if discriminator is not None else None
    d_keys: list[str] = []
    if d_sd is not None and discriminator is not None:
        d_problems, d_keys, d_ignored = _compare("d", d_sd, discriminator)
        problems += d_problems
        ignored += [f"d.{k}" for k in d_ignored]
    arch = describe_generator_state(g_sd)
    if problems and strict_shapes:
        model_size = getattr(generator, "size", None)
        raise CheckpointMismatchError(
            f"{path.name} does not fit this architecture (checkpoint generator: {arch}; model size "
            f"{model_size}, channels {getattr(generator, 'channels', '?')}). Nothing was loaded. "
            "Mismatches:\n  "
            + "\n  ".join(problems), problems)
    _copy_into(generator, g_sd, g_keys)
    if d_sd is not None and discriminator is not None:
        _copy_into(discriminator, d_sd, d_keys)
    latent_avg = ckpt.get("latent_avg")
    if isinstance(latent_avg, torch.Tensor):
        latent_avg = latent_avg.detach().reshape(-1).float()
        if latent_avg.numel() != getattr(generator, "style_dim", latent_avg.numel()):
            latent_avg = None
    else:
        latent_avg = None
    return {
        "path": str(path), "format": fmt, "source": source, "loaded": len(g_keys),
        "discriminator_loaded": len(d_keys), "skipped": [] if strict_shapes else problems, "ignored": ignored,
        "latent_avg": latent_avg, "checkpoint_arch": arch,
    }


def reference_state_dict(generator: nn.Module) -> dict[str, torch.Tensor]:
    """Our generator's state dict plus the constant FIR ``kernel`` buffers the reference format also stores.

    Useful to write a checkpoint in the reference format (tests, export). Kernel values: the 2-D
    normalised [1,3,3,1] kernel (times 4 for upsampling ones), as in the reference implementation.
    """
    from backend.model.ops import make_kernel_2d

    sd = {k: v.detach().clone() for k, v in generator.state_dict().items()}
    k2 = make_kernel_2d((1, 3, 3, 1))
    for name, m in generator.named_modules():
        if name.endswith(".blur") or name.endswith(".upsample"):
            gain = 4.0 if name.endswith(".upsample") or getattr(m, "gain", 1.0) != 1.0 else 1.0
            sd[f"{name}.kernel"] = k2 * gain
    return sd

