"""Loading a checkpoint in the widely used PyTorch StyleGAN2 format (test-written, reference key names)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from backend.model.checkpoint import CheckpointMismatchError, load_stylegan2_checkpoint, reference_state_dict
from backend.model.stylegan2 import Discriminator, Generator


def reference_generator_state(size: int, style_dim: int, n_mlp: int, ch: dict[int, int], seed: int = 0):
    """A generator state dict spelled out key by key in the reference layout (independent of our modules)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g)

    k2 = torch.tensor([1.0, 3, 3, 1])
    k2 = torch.outer(k2, k2) / 64
    sd = {}
    for i in range(1, n_mlp + 1):
        sd[f"style.{i}.weight"], sd[f"style.{i}.bias"] = r(style_dim, style_dim), r(style_dim)
    sd["input.input"] = r(1, ch[4], 4, 4)

    def styled(prefix, cin, cout, k, up=False, rgb=False):
        sd[f"{prefix}.conv.weight"] = r(1, cout, cin, k, k)
        sd[f"{prefix}.conv.modulation.weight"] = r(cin, style_dim)
        sd[f"{prefix}.conv.modulation.bias"] = r(cin)
        if rgb:
            sd[f"{prefix}.bias"] = r(1, 3, 1, 1)
        else:
            sd[f"{prefix}.noise.weight"] = r(1)
            sd[f"{prefix}.activate.bias"] = r(cout)
        if up:
            sd[f"{prefix}.conv.blur.kernel"] = k2 * 4

    styled("conv1", ch[4], ch[4], 3)
    styled("to_rgb1", ch[4], 3, 1, rgb=True)
    log_size = int(math.log2(size))
    cin = ch[4]
    for j, i in enumerate(range(3, log_size + 1)):
        cout = ch[2 ** i]
        styled(f"convs.{2 * j}", cin, cout, 3, up=True)
        styled(f"convs.{2 * j + 1}", cout, cout, 3)
        styled(f"to_rgbs.{j}", cout, 3, 1, rgb=True)
        sd[f"to_rgbs.{j}.upsample.kernel"] = k2 * 4
        cin = cout
    for layer in range((log_size - 2) * 2 + 1):
        res = 2 ** ((layer + 5) // 2)
        sd[f"noises.noise_{layer}"] = r(1, 1, res, res)
    return sd


CH = {4: 16, 8: 16, 16: 16, 32: 16}


def tiny_generator(size=32):
    return Generator(size, style_dim=16, n_mlp=2, channel_multiplier=0.25, channel_max=16)


def test_channels_of_tiny_match():
    assert tiny_generator().channels == CH


def test_loads_reference_format_values_land_in_the_right_parameters(tmp_path: Path):
    sd = reference_generator_state(32, 16, 2, CH, seed=1)
    torch.save({"g_ema": sd, "latent_avg": torch.randn(16)}, tmp_path / "sg2.pt")
    g = tiny_generator()
    report = load_stylegan2_checkpoint(tmp_path / "sg2.pt", g)
    assert report["source"] == "g_ema" and report["loaded"] == len(g.state_dict())
    assert report["latent_avg"].shape == (16,)
    assert report["checkpoint_arch"]["size"] == 32
    assert torch.equal(g.style[1].weight, sd["style.1.weight"])
    assert torch.equal(g.input.input, sd["input.input"])
    assert torch.equal(g.conv1.conv.modulation.bias, sd["conv1.conv.modulation.bias"])
    assert torch.equal(g.convs[3].conv.weight, sd["convs.3.conv.weight"])
    assert torch.equal(g.convs[4].activate.bias, sd["convs.4.activate.bias"])
    assert torch.equal(g.to_rgbs[2].bias, sd["to_rgbs.2.bias"])
    assert torch.equal(g.noises.noise_6, sd["noises.noise_6"])
    for k, v in g.state_dict().items():
        assert torch.equal(v, sd[k]), k
    # the ignored FIR kernels are the same constants our blur uses
    assert all(k.endswith(".kernel") for k in report["ignored"]) and report["ignored"]


def test_rejects_wrong_resolution_with_named_keys_and_no_partial_change(tmp_path: Path):
    sd = reference_generator_state(64, 16, 2, {**CH, 64: 8})
    torch.save({"g_ema": sd}, tmp_path / "sg2_64.pt")
    g = tiny_generator()
    before = {k: v.clone() for k, v in g.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as err:
        load_stylegan2_checkpoint(tmp_path / "sg2_64.pt", g)
    msg = str(err.value)
    assert "convs.6.conv.weight" in msg and "not in the model" in msg and "Nothing was loaded" in msg
    assert "'size': 64" in msg
    for k, v in g.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_rejects_wrong_width_naming_shapes_and_discriminator_untouched(tmp_path: Path):
    sd = reference_generator_state(32, 16, 2, {**CH, 32: 12})
    d = Discriminator(32, channel_multiplier=0.25, channel_max=16)
    torch.save({"g_ema": sd, "d": {k: v + 1 for k, v in d.state_dict().items()}}, tmp_path / "w.pt")
    g = tiny_generator()
    g_before = {k: v.clone() for k, v in g.state_dict().items()}
    d_before = {k: v.clone() for k, v in d.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as err:
        load_stylegan2_checkpoint(tmp_path / "w.pt", g, d)
    want = "g_ema.convs.4.conv.weight: checkpoint (1, 12, 16, 3, 3) vs model (1, 16, 16, 3, 3)"
    assert want in str(err.value)
    assert all(torch.equal(v, g_before[k]) for k, v in g.state_dict().items())
    assert all(torch.equal(v, d_before[k]) for k, v in d.state_dict().items())


def test_non_strict_loads_what_fits_and_reports_the_rest(tmp_path: Path):
    sd = reference_generator_state(32, 16, 2, {**CH, 32: 12})
    torch.save({"g": sd}, tmp_path / "g.pt")
    g = tiny_generator()
    kept = g.convs[4].conv.weight.detach().clone()
    report = load_stylegan2_checkpoint(tmp_path / "g.pt", g, strict_shapes=False)
    assert report["source"] == "g"
    assert any("convs.4.conv.weight" in p for p in report["skipped"])
    assert torch.equal(g.style[2].weight, sd["style.2.weight"])
    assert torch.equal(g.convs[4].conv.weight, kept)


def test_generator_and_discriminator_round_trip_through_reference_format(tmp_path: Path):
    torch.manual_seed(5)
    g_src, d_src = tiny_generator(), Discriminator(32, channel_multiplier=0.25, channel_max=16)
    torch.save({"g_ema": reference_state_dict(g_src), "d": d_src.state_dict()}, tmp_path / "rt.pt")
    torch.manual_seed(6)
    g, d = tiny_generator(), Discriminator(32, channel_multiplier=0.25, channel_max=16)
    report = load_stylegan2_checkpoint(tmp_path / "rt.pt", g, d)
    assert report["discriminator_loaded"] == len(d.state_dict())
    z = torch.randn(2, 16)
    with torch.no_grad():
        torch.testing.assert_close(g(z, noise_mode="const"), g_src(z, noise_mode="const"))
        x = torch.randn(2, 3, 32, 32)
        torch.testing.assert_close(d(x), d_src(x))


def test_bad_files_give_clear_errors(tmp_path: Path):
    g = tiny_generator()
    with pytest.raises(FileNotFoundError):
        load_stylegan2_checkpoint(tmp_path / "missing.pt", g)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatchError, match="not a readable torch checkpoint"):
        load_stylegan2_checkpoint(tmp_path / "junk.pt", g)
    torch.save({"model": {}}, tmp_path / "nog.pt")
    with pytest.raises(CheckpointMismatchError, match="no 'g_ema'"):
        load_stylegan2_checkpoint(tmp_path / "nog.pt", g)
