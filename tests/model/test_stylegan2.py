"""StyleGAN2 generator / discriminator: shapes, demodulation math, gradients, determinism."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from backend.model.layers import ModulatedConv2d
from backend.model.stylegan2 import Discriminator, Generator, channel_table


def tiny_g(size: int = 32) -> Generator:
    torch.manual_seed(0)
    return Generator(size, style_dim=16, n_mlp=2, channel_multiplier=0.25, channel_max=16)


def test_channel_table_reference_layout():
    want = {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64}
    assert channel_table(512, 2, 512) == want
    assert channel_table(256, 1, 512) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64}
    assert channel_table(128, 0.25, 128) == {4: 128, 8: 128, 16: 128, 32: 128, 64: 64, 128: 32}


def test_modulated_conv_equals_explicit_per_sample_weights():
    torch.manual_seed(1)
    for demod, batch in ((True, 3), (False, 3), (True, 1), (False, 1)):
        conv = ModulatedConv2d(5, 7, 3, style_dim=6, demodulate=demod)
        x, s = torch.randn(batch, 5, 8, 8), torch.randn(batch, 6)
        w = conv.modulated_weight(s)  # (B, out, in, k, k), reference formula
        if demod:  # demodulated weights have unit norm per output channel
            norms = w.pow(2).sum(dim=(2, 3, 4))
            torch.testing.assert_close(norms, torch.ones(batch, 7), atol=1e-4, rtol=1e-4)
        want = torch.stack([F.conv2d(x[b:b + 1], w[b], padding=1)[0] for b in range(batch)])
        torch.testing.assert_close(conv(x, s), want, atol=1e-5, rtol=1e-4)
        bias = torch.randn(7)
        torch.testing.assert_close(conv(x, s, out_gain=1.5, bias=bias), want * 1.5 + bias.view(1, -1, 1, 1),
                                   atol=1e-5, rtol=1e-4)


def test_modulated_upsample_conv_shape_and_per_sample_reference():
    torch.manual_seed(2)
    conv = ModulatedConv2d(4, 6, 3, style_dim=5, upsample=True)
    for batch in (2, 1):
        x, s = torch.randn(batch, 4, 8, 8), torch.randn(batch, 5)
        out = conv(x, s)
        assert out.shape == (batch, 6, 16, 16)
        w = conv.modulated_weight(s)
        for b in range(batch):
            ref = conv.blur(F.conv_transpose2d(x[b:b + 1], w[b].transpose(0, 1), stride=2))
            torch.testing.assert_close(out[b:b + 1], ref, atol=1e-5, rtol=1e-4)


def test_generator_shapes_gradients_and_noise_modes():
    g = tiny_g(32)
    assert g.n_latent == 8 and g.num_layers == 7
    z = torch.randn(2, 16)
    img = g(z)
    assert img.shape == (2, 3, 32, 32)
    img.square().mean().backward()
    for name, p in g.named_parameters():
        if name.endswith("noise.weight"):
            continue  # noise strength starts at 0 and only gets gradient once noise matters
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    w = g.broadcast(g.mapping(z)).detach()
    with torch.no_grad():
        a, b = g.synthesis(w, noise_mode="const"), g.synthesis(w, noise_mode="const")
        assert torch.equal(a, b)
        for layer in g.convs:
            layer.noise.weight.fill_(0.5)
        r1, r2 = g.synthesis(w, noise_mode="random"), g.synthesis(w, noise_mode="random")
        assert not torch.equal(r1, r2)
        c1 = g.synthesis(w, noise_mode="const")
        assert torch.equal(c1, g.synthesis(w, noise_mode="const"))
        assert not torch.equal(c1, g.synthesis(w, noise_mode="none"))


def test_synthesis_skip_features_change_output_and_reject_unknown_resolution():
    g = tiny_g(32)
    w = g.broadcast(g.mean_latent(64, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        base = g.synthesis(w, None, noise_mode="none")
        feat = {16: torch.randn(1, g.channels[16], 16, 16)}
        assert not torch.allclose(base, g.synthesis(w, feat, noise_mode="none"))
    try:
        g.synthesis(w, {64: torch.zeros(1, 16, 64, 64)})
    except ValueError as exc:
        assert "64" in str(exc)
    else:
        raise AssertionError("an unknown skip resolution must be rejected")


def test_mean_latent_is_seeded():
    g = tiny_g(16)
    a = g.mean_latent(32, generator=torch.Generator().manual_seed(3))
    b = g.mean_latent(32, generator=torch.Generator().manual_seed(3))
    assert a.shape == (1, 16) and torch.equal(a, b)


def test_discriminator_shapes_minibatch_std_and_gradient():
    torch.manual_seed(0)
    d = Discriminator(32, channel_multiplier=0.25, channel_max=16)
    for batch in (1, 3, 4, 6):
        assert d(torch.randn(batch, 3, 32, 32)).shape == (batch, 1)
    x = torch.randn(4, 3, 32, 32, requires_grad=True)
    d(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # minibatch std: identical samples give a ~zero std channel, varied ones a positive one
    same = torch.randn(1, 8, 4, 4).repeat(4, 1, 1, 1)
    assert d.minibatch_std(same)[:, -1].abs().max() < 1e-3
    assert d.minibatch_std(torch.randn(4, 8, 4, 4))[:, -1].min() > 0.1


def test_modulated_conv_gradients_match_reference_in_both_batch_paths():
    torch.manual_seed(4)
    conv = ModulatedConv2d(3, 4, 3, style_dim=5)
    for batch in (1, 2):
        x = torch.randn(batch, 3, 6, 6, requires_grad=True)
        s = torch.randn(batch, 5, requires_grad=True)
        out = conv(x, s, out_gain=1.3, bias=torch.ones(4))
        gx, gs, gw = torch.autograd.grad(out.square().sum(), (x, s, conv.weight))
        w = conv.modulated_weight(s)
        ref = torch.cat([F.conv2d(x[b:b + 1], w[b], padding=1) for b in range(batch)]) * 1.3 + 1
        rx, rs, rw = torch.autograd.grad(ref.square().sum(), (x, s, conv.weight))
        for a, b in ((gx, rx), (gs, rs), (gw, rw)):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
