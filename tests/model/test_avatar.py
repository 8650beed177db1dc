"""The Emo-Avatar renderer, its config, stage-2 parameter split and the patch discriminator."""

from __future__ import annotations

import json

import pytest
import torch

from backend.model import AvatarConfig, EmoAvatar, PatchDiscriminator
from backend.model.neural_texture import uv_to_grid


def face_uv(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    """A UV map with a disc of coverage in the middle (a stand-in face) and smooth UVs."""
    g = torch.Generator().manual_seed(seed)
    c = torch.linspace(0, 1, size)
    v, u = torch.meshgrid(c, c, indexing="ij")
    cov = (((u - 0.5) ** 2 + (v - 0.5) ** 2) < 0.1).float()
    uv = torch.stack([u, v, cov])[None].repeat(batch, 1, 1, 1)
    uv[:, :2] += 0.02 * torch.randn(batch, 2, 1, 1, generator=g)
    return uv


@pytest.fixture(scope="module")
def cfg() -> AvatarConfig:
    return AvatarConfig.tiny(n_expr=6)


def make(cfg: AvatarConfig, seed: int = 0) -> EmoAvatar:
    torch.manual_seed(seed)
    return EmoAvatar(cfg)


def test_config_round_trip_fingerprint_and_diff(cfg: AvatarConfig):
    d = json.loads(json.dumps(cfg.to_dict()))
    assert AvatarConfig.from_dict(d) == cfg
    assert AvatarConfig.from_dict(d).fingerprint() == cfg.fingerprint()
    other = AvatarConfig.tiny(n_expr=6, size=64)
    assert other.fingerprint() != cfg.fingerprint()
    assert cfg.diff(other) == {"size": (32, 64)}
    with pytest.raises(ValueError, match="unknown AvatarConfig fields"):
        AvatarConfig.from_dict({**d, "bogus": 1})
    with pytest.raises(ValueError, match="power of two"):
        AvatarConfig.tiny(n_expr=6, size=48)
    assert AvatarConfig.paper(n_expr=52).generator_kwargs()["channel_multiplier"] == 2


def test_forward_shapes_and_mask(cfg: AvatarConfig):
    m = make(cfg)
    uv = face_uv(2, cfg.size)
    out = m(uv, torch.randn(2, cfg.window, cfg.n_expr))
    assert out.image.shape == (2, 3, cfg.size, cfg.size)
    assert out.tex_rgb.shape == (2, 3, cfg.size, cfg.size)
    assert out.features.shape == (2, cfg.tex_channels, cfg.size, cfg.size)
    assert out.mask.shape == (2, 1, cfg.size, cfg.size)
    assert out.flow.shape == (2, 2, cfg.deform_size, cfg.deform_size)
    outside = out.mask == 0
    assert out.tex_rgb.masked_select(outside.expand_as(out.tex_rgb)).abs().max() == 0
    assert m.w_pivot.shape == (1, m.generator.n_latent, cfg.style_dim)


def test_gradients_reach_every_part(cfg: AvatarConfig):
    m = make(cfg)
    out = m(face_uv(2, cfg.size), torch.randn(2, cfg.window, cfg.n_expr))
    (out.image.abs().mean() + out.tex_rgb.abs().mean()).backward()
    for part in ("texture", "motion", "deformer", "skips", "generator"):
        # the mapping network (generator.style) is not used at render time: w_pivot replaces it
        grads = [p.grad for n, p in m.named_parameters() if n.startswith(part + ".")
                 and "noise.weight" not in n and not n.startswith("generator.style.")]
        assert grads and all(gr is not None for gr in grads), part
        assert sum(float(gr.abs().sum()) for gr in grads) > 0, part
    assert m.w_pivot.grad is not None and m.w_pivot.grad.abs().sum() > 0


def test_expressions_change_the_render_through_the_flow(cfg: AvatarConfig):
    m = make(cfg)
    with torch.no_grad():
        m.deformer.to_flow.weight.mul_(100)  # make the (initially tiny) flow visible
        uv = face_uv(1, cfg.size)
        a = m(uv, torch.zeros(1, cfg.window, cfg.n_expr))
        b = m(uv, torch.ones(1, cfg.window, cfg.n_expr) * 3)
    assert not torch.allclose(a.flow, b.flow)
    assert not torch.allclose(a.image, b.image)


def test_zero_flow_equals_undeformed_sampling(cfg: AvatarConfig):
    m = make(cfg)
    with torch.no_grad():
        m.deformer.to_flow.weight.zero_()
        m.deformer.to_flow.bias.zero_()
        uv = face_uv(2, cfg.size)
        feats, mask, flow = m.sample_features(uv, torch.randn(2, cfg.window, cfg.n_expr))
        grid, _ = uv_to_grid(uv)
        assert flow.abs().max() == 0
        torch.testing.assert_close(feats, m.texture.sample(grid) * mask)
    no_flow = make(AvatarConfig.tiny(n_expr=6, use_flow=False))
    with torch.no_grad():
        f2, m2, fl2 = no_flow.sample_features(uv, torch.randn(2, cfg.window, cfg.n_expr))
        torch.testing.assert_close(f2, no_flow.texture.sample(grid) * m2)
        assert fl2.abs().max() == 0


def test_constant_flow_shifts_the_lookup(cfg: AvatarConfig):
    m = make(cfg)
    with torch.no_grad():
        m.deformer.to_flow.weight.zero_()
        m.deformer.to_flow.bias.copy_(torch.tensor([0.3, 0.0]))  # du = max_flow * tanh(0.3)
        uv = face_uv(1, cfg.size)
        feats, mask, _ = m.sample_features(uv, torch.zeros(1, cfg.window, cfg.n_expr))
        du = cfg.max_flow * torch.tanh(torch.tensor(0.3))
        shifted = uv.clone()
        shifted[:, 0] += du
        grid, _ = uv_to_grid(shifted)
        torch.testing.assert_close(feats, m.texture.sample(grid) * mask, atol=1e-5, rtol=1e-4)


def test_stage2_parameters_are_exactly_the_skip_modules(cfg: AvatarConfig):
    m = make(cfg)
    skip_ids = {id(p) for p in m.skips.parameters()}
    assert {id(p) for p in m.stage2_parameters()} == skip_ids
    names = m.stage2_module_names()
    assert names and all(n.startswith("skips.") for n in names)
    owned = {id(p) for n in names for p in m.get_submodule(n).parameters(recurse=False)}
    assert owned == skip_ids
    trainable = m.set_stage2_trainable()
    assert {id(p) for p in trainable} == skip_ids
    assert {id(p) for p in m.parameters() if p.requires_grad} == skip_ids
    out = m(face_uv(1, cfg.size), torch.randn(1, cfg.window, cfg.n_expr))
    out.image.mean().backward()
    assert all(p.grad is None for n, p in m.named_parameters() if not n.startswith("skips."))
    assert all(p.grad is not None for p in m.skips.parameters())


def test_deterministic_output_with_fixed_noise_and_state_dict_round_trip(cfg: AvatarConfig):
    m = make(cfg, seed=1)
    uv, ew = face_uv(2, cfg.size), torch.randn(2, cfg.window, cfg.n_expr)
    with torch.no_grad():
        for layer in m.generator.convs:
            layer.noise.weight.fill_(0.3)
        a = m(uv, ew).image
        assert torch.equal(a, m(uv, ew).image)
        assert not torch.equal(m(uv, ew, noise_mode="random").image, m(uv, ew, noise_mode="random").image)
        m2 = make(cfg, seed=2)
        m2.load_state_dict(m.state_dict())
        assert torch.equal(a, m2(uv, ew).image)
        # batching does not change a frame
        torch.testing.assert_close(m(uv[:1], ew[:1]).image, a[:1], atol=1e-5, rtol=1e-4)


def test_bad_inputs_raise_clear_errors(cfg: AvatarConfig):
    m = make(cfg)
    with pytest.raises(ValueError, match="resample"):
        m(face_uv(1, cfg.size * 2), torch.randn(1, cfg.window, cfg.n_expr))
    with pytest.raises(ValueError, match=r"\[u, v, coverage\]"):
        m(torch.rand(1, 2, cfg.size, cfg.size), torch.randn(1, cfg.window, cfg.n_expr))
    with pytest.raises(ValueError, match="expression window"):
        m(face_uv(1, cfg.size), torch.randn(1, cfg.window, cfg.n_expr + 1))


def test_patch_discriminator_shapes_and_gradient():
    d = PatchDiscriminator(in_channels=6, channels=8, n_layers=3)
    img = torch.randn(2, 3, 64, 64, requires_grad=True)
    logits = d(img, torch.rand(2, 3, 64, 64))
    assert logits.shape == (2, 1, 8, 8)
    logits.mean().backward()
    assert img.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="6 channels"):
        d(img, torch.rand(2, 1, 64, 64))
