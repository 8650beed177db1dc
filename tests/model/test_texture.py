"""Neural texture (Laplacian pyramid) and the motion-driven deformation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from backend.model.deform import AdaIN, MotionEncoder, TextureDeformer
from backend.model.neural_texture import NeuralTexture, uv_to_grid


def texel_centre_uv(n: int, batch: int = 1) -> torch.Tensor:
    """UV map (B, 3, n, n) whose pixel (i, j) looks at texel centre (row i, col j) of an n x n texture."""
    c = (torch.arange(n, dtype=torch.float32) + 0.5) / n
    v, u = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([u, v, torch.ones_like(u)])[None].repeat(batch, 1, 1, 1)


def test_pyramid_sample_equals_sum_of_level_lookups():
    torch.manual_seed(0)
    tex = NeuralTexture(channels=5, size=16, levels=3)
    assert [tuple(p.shape) for p in tex.levels] == [(1, 5, 16, 16), (1, 5, 8, 8), (1, 5, 4, 4)]
    uv = torch.rand(2, 3, 9, 11)
    grid, _ = uv_to_grid(uv)
    want = sum(F.grid_sample(lv.expand(2, -1, -1, -1), grid, align_corners=False, padding_mode="border")
               for lv in tex.levels)
    torch.testing.assert_close(tex.sample(grid), want)


def test_texel_centres_read_exact_values_and_uv_convention():
    tex = NeuralTexture(channels=3, size=8, levels=2)
    with torch.no_grad():
        tex.levels[0].copy_(torch.arange(3 * 64, dtype=torch.float32).view(1, 3, 8, 8))
        tex.levels[1].zero_()
    grid, mask = uv_to_grid(texel_centre_uv(8))
    torch.testing.assert_close(tex.sample(grid), tex.levels[0].detach())
    assert mask.shape == (1, 1, 8, 8)
    # u runs along columns, v along rows (row 0 is v = 0)
    one = torch.tensor([0.5 / 8, 7.5 / 8, 1.0]).view(1, 3, 1, 1)
    g1, _ = uv_to_grid(one)
    assert tex.sample(g1)[0, 0, 0, 0] == tex.levels[0][0, 0, 7, 0]


def test_collapse_sums_levels():
    tex = NeuralTexture(channels=2, size=8, levels=3)
    with torch.no_grad():
        for i, lv in enumerate(tex.levels):
            lv.fill_(float(i + 1))
    torch.testing.assert_close(tex.collapse(), torch.full((1, 2, 8, 8), 6.0))
    assert tex.collapse(4).shape == (1, 2, 4, 4)


def test_motion_encoder_and_adain():
    enc = MotionEncoder(n_expr=7, window=5, motion_dim=6, hidden=10)
    assert sum(isinstance(m, torch.nn.Linear) for m in enc.modules()) == 3
    m = enc(torch.randn(4, 5, 7))
    assert m.shape == (4, 6)
    norm = AdaIN(3, 6)
    x = torch.randn(4, 3, 5, 5) * 4 + 2
    with torch.no_grad():
        norm.affine.weight.zero_()
    y = norm(x, m)  # identity affine: plain instance norm
    torch.testing.assert_close(y.mean(dim=(2, 3)), torch.zeros(4, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(dim=(2, 3), unbiased=False), torch.ones(4, 3), atol=1e-3, rtol=0)
    try:
        enc(torch.randn(4, 3, 7))
    except ValueError as exc:
        assert "(B, 5, 7)" in str(exc)
    else:
        raise AssertionError("a wrong window must be rejected")


def test_deformer_shapes_layers_bounds_and_gradients():
    torch.manual_seed(0)
    d = TextureDeformer(tex_channels=12, motion_dim=8, base=4, max_channels=16, max_flow=0.05)
    assert len(d.enc) == 5 and len(d.dec) == 5
    tex = torch.randn(1, 12, 32, 32, requires_grad=True)
    motion = torch.randn(3, 8, requires_grad=True)
    flow = d(tex, motion)
    assert flow.shape == (3, 2, 32, 32)
    assert flow.abs().max() <= 0.05
    flow.sum().backward()
    assert tex.grad.abs().sum() > 0 and motion.grad.abs().sum() > 0
    assert all(p.grad is not None for p in d.parameters())
