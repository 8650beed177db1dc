"""PatchNCE loss, patch allocation and region-aware sampling."""

from __future__ import annotations

import pytest
import torch

from backend.train.patchnce import (
    PatchMLPHeads,
    allocate_patches,
    gather_patches,
    patch_nce_loss,
    region_patch_nce,
    sample_region_positions,
)


def test_loss_prefers_matching_positions() -> None:
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 32, 16, generator=g)
    aligned = patch_nce_loss(q, q + 0.05 * torch.randn(2, 32, 16, generator=g))
    shuffled = patch_nce_loss(q, q[:, torch.randperm(32, generator=g)])
    assert aligned < 0.1 < shuffled
    # with orthogonal unit vectors and keys == queries the loss has a closed form
    eye = torch.eye(8)[None]
    expected = -torch.log(torch.exp(torch.tensor(1 / 0.07)) / (torch.exp(torch.tensor(1 / 0.07)) + 7))
    assert torch.allclose(patch_nce_loss(eye, eye), expected, atol=1e-5)


def test_loss_edge_cases() -> None:
    one = torch.randn(1, 1, 4, requires_grad=True)
    zero = patch_nce_loss(one, one)
    assert float(zero.detach()) == 0.0
    zero.backward()  # still differentiable
    with pytest.raises(ValueError, match=r"\(B, P, C\)"):
        patch_nce_loss(torch.randn(1, 4, 3), torch.randn(1, 5, 3))


def test_loss_falls_when_keys_are_optimised() -> None:
    g = torch.Generator().manual_seed(1)
    q = torch.randn(1, 64, 8, generator=g)
    k = torch.randn(1, 64, 8, generator=g, requires_grad=True)
    opt = torch.optim.Adam([k], lr=0.05)
    losses = []
    for _ in range(30):
        loss = patch_nce_loss(q, k)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_allocate_patches_equal_shares_capped() -> None:
    alloc = allocate_patches({0: 1000, 1: 10, 2: 500}, 256)
    assert alloc == {0: 123, 1: 10, 2: 123}
    assert allocate_patches({0: 1, 1: 3}, 256) == {0: 0, 1: 3}
    assert sum(allocate_patches({0: 100, 1: 100, 2: 100}, 256).values()) == 256


def test_sample_region_positions_stay_in_region_without_repeats() -> None:
    regions = torch.zeros(32, 32, dtype=torch.long)
    regions[:, 16:] = 1
    regions[24:, :] = 2
    pos = sample_region_positions(regions, (16, 16), 256, torch.Generator().manual_seed(0))
    grid = regions[::2, ::2].flatten()
    assert set(pos) == {0, 1, 2}
    for r, idx in pos.items():
        assert idx.unique().numel() == idx.numel()
        assert bool((grid[idx] == r).all())
    assert sum(v.numel() for v in pos.values()) == 256


def test_region_nce_contrasts_only_within_a_region() -> None:
    g = torch.Generator().manual_seed(2)
    q = {0: torch.randn(1, 6, 8, generator=g), 1: torch.randn(1, 10, 8, generator=g)}
    k = {r: v + 0.3 * torch.randn(v.shape, generator=g) for r, v in q.items()}
    expected = (patch_nce_loss(q[0], k[0]) * 6 + patch_nce_loss(q[1], k[1]) * 10) / 16
    assert torch.allclose(region_patch_nce(q, k), expected)
    # all patches in one pool (no regions) gives a different value: negatives differ
    pooled = patch_nce_loss(torch.cat([q[0], q[1]], 1), torch.cat([k[0], k[1]], 1))
    assert not torch.allclose(pooled, expected)


def test_gather_and_heads_shapes() -> None:
    feats = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    idx = torch.tensor([0, 5, 15])
    patches = gather_patches(feats, idx)
    assert patches.shape == (2, 3, 3)
    assert torch.equal(patches[1, 1], feats[1, :, 1, 1])
    heads = PatchMLPHeads([3, 7], dim=16)
    assert heads(0, patches).shape == (2, 3, 16)
