"""Read the tensors of an NVIDIA StyleGAN2-ADA (PyTorch) ``.pkl`` without executing any of its code.

Such a file is a plain pickle of ``dict(G=..., D=..., G_ema=..., ...)`` whose networks were saved
by ``torch_utils.persistence``: each network is ``_reconstruct_persistent_obj(meta)`` with the class
*source code* in ``meta["module_src"]`` and the module ``__dict__`` in ``meta["state"]``. Normal
unpickling would import and run that source. ``SafeUnpickler`` instead resolves only:

- ``_reconstruct_persistent_obj`` -> an inert ``Opaque`` holding ``meta["state"]`` (source ignored);
- the torch tensor / parameter / storage rebuild functions (storages are read with
  ``torch.load(weights_only=True)``) and ``collections.OrderedDict``;
- everything else -> an inert ``Opaque`` that records nothing runnable (never the named callable).

``read_nvidia_pkl`` then flattens ``G_ema`` / ``D`` into state dicts and renames them to the
reference PyTorch layout (``style.N``, ``convs.N``, ...) used by ``backend.model.checkpoint``.
"""

from __future__ import annotations

import io
import pickle
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch


class Opaque:
    """Inert stand-in for any pickled object we do not trust: keeps its state, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


_OPAQUE_CLASSES: dict[str, type] = {}


def _opaque_class(qualname: str) -> type:
    """An ``Opaque`` subclass standing in for the global ``qualname`` (constructed via REDUCE or NEWOBJ,
    filled via BUILD/``__setstate__``; none of the named code is imported or run)."""
    cls = _OPAQUE_CLASSES.get(qualname)
    if cls is None:
        cls = type(f"Opaque[{qualname}]", (Opaque,), {"qualname": qualname})
        _OPAQUE_CLASSES[qualname] = cls
    return cls


def _persistent_obj(meta: Any) -> Opaque:
    obj = Opaque()
    obj.state = meta.get("state") if isinstance(meta, dict) else None
    return obj


def _load_storage_bytes(b: bytes) -> Any:
    return torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)


def _rebuild_parameter(data: torch.Tensor, requires_grad: bool, backward_hooks: Any, *rest: Any
                       ) -> torch.Tensor:
    return data


def _rebuild_from_type_v2(func: Any, new_type: Any, args: tuple, state: Any) -> Any:
    return func(*args) if func is torch._utils._rebuild_tensor_v2 else Opaque(func, args)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_obj,
    ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Size"): torch.Size,
    ("collections", "OrderedDict"): OrderedDict,
    ("dnnlib.util", "EasyDict"): dict,
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that maps every global to an allow-listed rebuild function or an inert ``Opaque``."""

    def find_class(self, module: str, name: str) -> Any:
        fn = _ALLOWED.get((module, name))
        return fn if fn is not None else _opaque_class(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not expected in a StyleGAN2-ADA pickle")


def _flatten(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """State dict of a pickled torch module held by an ``Opaque`` (parameters and persistent buffers)."""
    out: dict[str, torch.Tensor] = {}
    state = obj.state if isinstance(obj, Opaque) else None
    if not isinstance(state, dict):
        return out
    for group in ("_parameters", "_buffers"):
        for k, v in (state.get(group) or {}).items():
            if isinstance(v, torch.Tensor):
                out[prefix + k] = v.detach().clone()
    for k, child in (state.get("_modules") or {}).items():
        out.update(_flatten(child, f"{prefix}{k}."))
    return out


def _res_blocks(sd: dict[str, torch.Tensor], prefix: str) -> list[int]:
    return sorted({int(m.group(1)) for k in sd if (m := re.match(rf"{prefix}b(\d+)\.", k))})


def convert_generator(nv: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """StyleGAN2-ADA ``G_ema`` names -> reference names. Returns (state dict, w_avg or None)."""
    out: dict[str, torch.Tensor] = {}
    n_fc = len({k.split(".")[1] for k in nv if re.match(r"mapping\.fc\d+\.weight$", k)})
    for i in range(n_fc):
        out[f"style.{i + 1}.weight"] = nv[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = nv[f"mapping.fc{i}.bias"]
    out["input.input"] = nv["synthesis.b4.const"][None]
    noise_idx = 0

    def styled(dst: str, src: str) -> None:
        nonlocal noise_idx
        out[f"{dst}.conv.weight"] = nv[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = nv[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = nv[f"{src}.affine.bias"]
        out[f"{dst}.noise.weight"] = nv[f"{src}.noise_strength"].reshape(1)
        out[f"{dst}.activate.bias"] = nv[f"{src}.bias"]
        if f"{src}.noise_const" in nv:
            c = nv[f"{src}.noise_const"]
            out[f"noises.noise_{noise_idx}"] = c.reshape(1, 1, *c.shape[-2:])
        noise_idx += 1

    def torgb(dst: str, src: str) -> None:
        out[f"{dst}.conv.weight"] = nv[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = nv[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = nv[f"{src}.affine.bias"]
        out[f"{dst}.bias"] = nv[f"{src}.bias"].reshape(1, -1, 1, 1)

    styled("conv1", "synthesis.b4.conv1")
    torgb("to_rgb1", "synthesis.b4.torgb")
    for j, res in enumerate(r for r in _res_blocks(nv, "synthesis.") if r > 4):
        styled(f"convs.{2 * j}", f"synthesis.b{res}.conv0")
        styled(f"convs.{2 * j + 1}", f"synthesis.b{res}.conv1")
        torgb(f"to_rgbs.{j}", f"synthesis.b{res}.torgb")
    return out, nv.get("mapping.w_avg")


def convert_discriminator(nv: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """StyleGAN2-ADA resnet ``D`` names -> reference names."""
    out: dict[str, torch.Tensor] = {}
    blocks = [r for r in _res_blocks(nv, "") if r > 4][::-1]
    top = blocks[0]
    out["convs.0.0.weight"] = nv[f"b{top}.fromrgb.weight"]
    out["convs.0.1.bias"] = nv[f"b{top}.fromrgb.bias"]
    for i, res in enumerate(blocks, start=1):
        out[f"convs.{i}.conv1.0.weight"] = nv[f"b{res}.conv0.weight"]
        out[f"convs.{i}.conv1.1.bias"] = nv[f"b{res}.conv0.bias"]
        out[f"convs.{i}.conv2.1.weight"] = nv[f"b{res}.conv1.weight"]
        out[f"convs.{i}.conv2.2.bias"] = nv[f"b{res}.conv1.bias"]
        out[f"convs.{i}.skip.1.weight"] = nv[f"b{res}.skip.weight"]
    out["final_conv.0.weight"] = nv["b4.conv.weight"]
    out["final_conv.1.bias"] = nv["b4.conv.bias"]
    out["final_linear.0.weight"] = nv["b4.fc.weight"]
    out["final_linear.0.bias"] = nv["b4.fc.bias"]
    out["final_linear.1.weight"] = nv["b4.out.weight"]
    out["final_linear.1.bias"] = nv["b4.out.bias"]
    return out


def read_nvidia_pkl(path: str | Path) -> dict[str, Any]:
    """Read a StyleGAN2-ADA pickle safely -> {"g_ema": sd, "d": sd | None, "latent_avg": tensor | None}.

    Raises ``KeyError`` naming the missing entry when the file is not a StyleGAN2-ADA network pickle.
    """
    with open(path, "rb") as f:
        data = SafeUnpickler(f).load()
    if not isinstance(data, dict) or "G_ema" not in data:
        keys = sorted(data)[:10] if isinstance(data, dict) else type(data).__name__
        raise KeyError(f"no 'G_ema' network in {Path(path).name} (found {keys})")
    g_nv = _flatten(data["G_ema"])
    if not g_nv:
        raise KeyError(f"'G_ema' in {Path(path).name} holds no tensors")
    try:
        g_sd, w_avg = convert_generator(g_nv)
    except KeyError as exc:
        raise KeyError(f"{Path(path).name}: G_ema lacks {exc} (not a StyleGAN2 'skip' generator?)") from exc
    d_sd = None
    if "D" in data:
        d_nv = _flatten(data["D"])
        try:
            d_sd = convert_discriminator(d_nv) if d_nv else None
        except (KeyError, IndexError):
            d_sd = None  # e.g. a non-resnet D: the generator still loads
    return {"g_ema": g_sd, "d": d_sd, "latent_avg": w_avg}
