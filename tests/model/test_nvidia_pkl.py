"""NVIDIA StyleGAN2-ADA ``.pkl``: tensors extracted by a restricted unpickler, names mapped, no code run.

The test writes a pickle with the structure of a StyleGAN2-ADA network pickle (networks saved via
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with source code in ``meta``, real
torch parameters inside) from a tiny generator/discriminator, and loads it back.
"""

from __future__ import annotations

import os
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from backend.model.checkpoint import CheckpointMismatchError, load_stylegan2_checkpoint
from backend.model.stylegan2 import Discriminator, Generator


def _install_fake_persistence() -> types.FunctionType:
    mod = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - only referenced by name when pickling
        raise AssertionError("must never be called by the loader")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    mod._reconstruct_persistent_obj = _reconstruct_persistent_obj
    sys.modules.setdefault("torch_utils", types.ModuleType("torch_utils"))
    sys.modules["torch_utils.persistence"] = mod
    return _reconstruct_persistent_obj


class FakePersistent:
    """Pickles like a persistent StyleGAN2-ADA network: the reconstruct call with source + state."""

    def __init__(self, fn, state: dict) -> None:
        self.fn, self.state = fn, state

    def __reduce__(self):
        meta = dict(type="class", version=6, class_name="Net", state=self.state,
                    module_src="import os\nos.system('touch PWNED_BY_SOURCE')\n")
        return (self.fn, (meta,))


class Evil:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def _tree(fn, flat: dict[str, torch.Tensor]) -> FakePersistent:
    root: dict = {}
    for key, value in flat.items():
        *path, name = key.split(".")
        node = root
        for p in path:
            node = node.setdefault(p, {})
        node[name] = value

    def build_plain(node: dict) -> torch.nn.Module:
        """A standard torch module (pickled with NEWOBJ + BUILD, like non-persistent modules)."""
        m = torch.nn.Module()
        for k, v in node.items():
            if isinstance(v, dict):
                m.add_module(k, build_plain(v))
            else:
                m.register_parameter(k, torch.nn.Parameter(v.clone()))
        return m

    def build(node: dict) -> FakePersistent:
        params, bufs, mods = OrderedDict(), OrderedDict(), OrderedDict()
        for k, v in node.items():
            if isinstance(v, dict):
                mods[k] = build_plain(v) if k.startswith("fc") else build(v)
            elif k in ("noise_const", "w_avg"):
                bufs[k] = v
            else:
                params[k] = torch.nn.Parameter(v.clone())
        state = {"_parameters": params, "_buffers": bufs, "_modules": mods, "training": False}
        return FakePersistent(fn, state)

    return build(root)


def nvidia_generator_names(g: Generator) -> dict[str, torch.Tensor]:
    """Our generator in StyleGAN2-ADA naming (written out from that layout)."""
    sd = {k: v.detach().clone() for k, v in g.state_dict().items()}
    nv = {}
    i = 0
    while f"style.{i + 1}.weight" in sd:
        nv[f"mapping.fc{i}.weight"] = sd[f"style.{i + 1}.weight"]
        nv[f"mapping.fc{i}.bias"] = sd[f"style.{i + 1}.bias"]
        i += 1
    nv["mapping.w_avg"] = torch.randn(g.style_dim)
    nv["synthesis.b4.const"] = sd["input.input"][0]
    layers = [("conv1", "synthesis.b4.conv1")]
    rgbs = [("to_rgb1", "synthesis.b4.torgb")]
    for j in range(len(g.to_rgbs)):
        res = 2 ** (j + 3)
        layers += [(f"convs.{2 * j}", f"synthesis.b{res}.conv0"),
                   (f"convs.{2 * j + 1}", f"synthesis.b{res}.conv1")]
        rgbs.append((f"to_rgbs.{j}", f"synthesis.b{res}.torgb"))
    for n, (ours, theirs) in enumerate(layers):
        nv[f"{theirs}.weight"] = sd[f"{ours}.conv.weight"][0]
        nv[f"{theirs}.affine.weight"] = sd[f"{ours}.conv.modulation.weight"]
        nv[f"{theirs}.affine.bias"] = sd[f"{ours}.conv.modulation.bias"]
        nv[f"{theirs}.noise_strength"] = sd[f"{ours}.noise.weight"].reshape(())
        nv[f"{theirs}.bias"] = sd[f"{ours}.activate.bias"]
        nv[f"{theirs}.noise_const"] = sd[f"noises.noise_{n}"][0, 0]
    for ours, theirs in rgbs:
        nv[f"{theirs}.weight"] = sd[f"{ours}.conv.weight"][0]
        nv[f"{theirs}.affine.weight"] = sd[f"{ours}.conv.modulation.weight"]
        nv[f"{theirs}.affine.bias"] = sd[f"{ours}.conv.modulation.bias"]
        nv[f"{theirs}.bias"] = sd[f"{ours}.bias"].reshape(3)
    return nv


def nvidia_discriminator_names(d: Discriminator) -> dict[str, torch.Tensor]:
    sd = {k: v.detach().clone() for k, v in d.state_dict().items()}
    n_blocks = len(d.convs) - 1
    res = [d.size // 2 ** i for i in range(n_blocks)]
    nv = {f"b{res[0]}.fromrgb.weight": sd["convs.0.0.weight"],
          f"b{res[0]}.fromrgb.bias": sd["convs.0.1.bias"]}
    for i, r in enumerate(res, start=1):
        nv[f"b{r}.conv0.weight"] = sd[f"convs.{i}.conv1.0.weight"]
        nv[f"b{r}.conv0.bias"] = sd[f"convs.{i}.conv1.1.bias"]
        nv[f"b{r}.conv1.weight"] = sd[f"convs.{i}.conv2.1.weight"]
        nv[f"b{r}.conv1.bias"] = sd[f"convs.{i}.conv2.2.bias"]
        nv[f"b{r}.skip.weight"] = sd[f"convs.{i}.skip.1.weight"]
    nv["b4.conv.weight"], nv["b4.conv.bias"] = sd["final_conv.0.weight"], sd["final_conv.1.bias"]
    nv["b4.fc.weight"], nv["b4.fc.bias"] = sd["final_linear.0.weight"], sd["final_linear.0.bias"]
    nv["b4.out.weight"], nv["b4.out.bias"] = sd["final_linear.1.weight"], sd["final_linear.1.bias"]
    return nv


def tiny():
    return (Generator(32, style_dim=16, n_mlp=2, channel_multiplier=0.25, channel_max=16),
            Discriminator(32, channel_multiplier=0.25, channel_max=16))


def write_pkl(path: Path, g: Generator, d: Discriminator, evil_target: Path | None = None) -> None:
    fn = _install_fake_persistence()
    data = {"G": _tree(fn, nvidia_generator_names(g)), "D": _tree(fn, nvidia_discriminator_names(d)),
            "G_ema": _tree(fn, nvidia_generator_names(g)), "training_set_kwargs": {"resolution": 32}}
    if evil_target is not None:
        data["augment_pipe"] = Evil(str(evil_target))
    with open(path, "wb") as f:
        pickle.dump(data, f)


def test_pkl_loads_generator_and_discriminator_without_running_code(tmp_path: Path, monkeypatch):
    torch.manual_seed(0)
    g_src, d_src = tiny()
    pwned = tmp_path / "pwned"
    write_pkl(tmp_path / "net.pkl", g_src, d_src, evil_target=pwned)
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("torch_utils.persistence", None)  # the loader must not need it
    torch.manual_seed(1)
    g, d = tiny()
    report = load_stylegan2_checkpoint(tmp_path / "net.pkl", g, d)
    assert not pwned.exists() and not (tmp_path / "PWNED_BY_SOURCE").exists()
    assert report["format"] == "stylegan2-ada-pkl"
    assert report["loaded"] == len(g.state_dict()) and report["discriminator_loaded"] == len(d.state_dict())
    assert report["latent_avg"].shape == (16,)
    for k, v in g.state_dict().items():
        assert torch.equal(v, g_src.state_dict()[k]), k
    with torch.no_grad():
        z = torch.randn(2, 16)
        torch.testing.assert_close(g(z, noise_mode="const"), g_src(z, noise_mode="const"))
        x = torch.randn(2, 3, 32, 32)
        torch.testing.assert_close(d(x), d_src(x))


def test_pkl_of_other_resolution_rejected_without_change(tmp_path: Path):
    g64 = Generator(64, style_dim=16, n_mlp=2, channel_multiplier=0.25, channel_max=16)
    write_pkl(tmp_path / "n64.pkl", g64, Discriminator(64, channel_multiplier=0.25, channel_max=16))
    g, _ = tiny()
    before = {k: v.clone() for k, v in g.state_dict().items()}
    with pytest.raises(CheckpointMismatchError, match=r"convs\.6"):
        load_stylegan2_checkpoint(tmp_path / "n64.pkl", g)
    assert all(torch.equal(v, before[k]) for k, v in g.state_dict().items())


def test_non_network_pickle_is_refused(tmp_path: Path):
    with open(tmp_path / "x.pkl", "wb") as f:
        pickle.dump({"weights": [1, 2, 3]}, f)
    g, _ = tiny()
    with pytest.raises(CheckpointMismatchError, match="G_ema"):
        load_stylegan2_checkpoint(tmp_path / "x.pkl", g)
