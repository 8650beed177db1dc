"""Balanced sampling over pose and expression (``Preset.balance``, off in every preset): rare
frames get larger weights within the bounds, the sampler draws them more often, the uniform
draws are unchanged (a training run with them: ``test_stage1_options.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.train.balanced_sampling import MAX_RATIO, balance_features, balance_weights
from backend.train.data import TrainSampler


def _clip(n_common: int = 120, n_rare: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """(rotation, expressions): most frames near rest, the first ``n_rare`` turned with an open jaw."""
    rng = np.random.default_rng(0)
    rot = rng.normal(0.0, 0.03, (n_common + n_rare, 3))
    expr = rng.normal(0.0, 0.05, (n_common + n_rare, 8))
    rot[:n_rare, 0] += np.linspace(0.4, 0.6, n_rare)
    expr[:n_rare, 0] += 0.8
    return rot, expr


def test_rare_poses_and_expressions_weigh_more_within_the_bounds() -> None:
    rot, expr = _clip()
    feats = balance_features(rot, expr)
    assert feats.shape == (126, 3 + 4)
    assert np.allclose(feats.mean(axis=0), 0.0, atol=1e-9) and np.allclose(feats.std(axis=0), 1.0)
    w = balance_weights(feats, power=1.0)
    assert w.shape == (126,) and abs(w.mean() - 1.0) < 1e-6
    assert w.min() >= 1 / MAX_RATIO - 1e-9 and w.max() <= MAX_RATIO + 1e-9
    assert w[:6].min() > 1.2 * np.median(w[6:])  # every rare frame above the common ones
    assert np.array_equal(balance_weights(feats, power=0.0), np.ones(126))
    stronger = balance_weights(feats, power=2.0)
    assert stronger[:6].mean() > w[:6].mean()


def test_a_flat_expression_track_leaves_the_rotation() -> None:
    rot, _ = _clip()
    feats = balance_features(rot, np.zeros((126, 8)))
    assert feats.shape == (126, 3)


def test_the_sampler_draws_rare_frames_more_and_uniform_draws_are_unchanged() -> None:
    ids = np.arange(100, 226)
    rot, expr = _clip()
    w = balance_weights(balance_features(rot, expr), power=2.0)
    counts = np.zeros(226)
    sampler = TrainSampler(ids, batch=4, seed=3, weights=w)
    for _ in range(2000):
        np.add.at(counts, sampler.next(), 1)
    rare_share = counts[100:106].sum() / counts.sum()
    assert rare_share > 2 * 6 / 126  # uniform draws would give 6/126 of them
    plain = TrainSampler(ids, batch=4, seed=3)
    gen = torch.Generator().manual_seed(3)
    assert np.array_equal(plain.next(), ids[torch.randint(126, (4,), generator=gen).numpy()])
    with pytest.raises(ValueError, match="126 positive"):
        TrainSampler(ids, batch=4, seed=3, weights=np.r_[w[:-1], 0.0])
