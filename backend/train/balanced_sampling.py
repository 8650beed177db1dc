"""Sampling weights that balance training frames over pose and expression.

A clip spends most of its frames near a resting pose and a neutral face, so uniform sampling
trains the rare turned heads, open jaws and blinks least, and held-out frames there score worst.
Each training frame gets a weight that grows with how far it is from its neighbours in a small
pose-and-expression space, so sparse regions are sampled more often:

* features: the head rotation (yaw, pitch, roll) and the first ``EXPRESSION_COMPONENTS``
  principal components of the expression curves, each scaled to unit standard deviation over
  the training frames (a component with no variance is dropped);
* sparsity: the distance to the ``k``-th nearest other training frame in that space;
* weight: sparsity ** ``power``, normalised to mean 1 and clipped to ``[1 / MAX_RATIO,
  MAX_RATIO]`` times the mean, so no frame is left out and none dominates.

``power`` 0 gives uniform weights.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from backend.train.data import SubjectTensors

log = logging.getLogger(__name__)

EXPRESSION_COMPONENTS = 4
"""Principal components of the expression curves among the features."""
MAX_RATIO = 4.0
"""A frame's weight stays within this factor of the mean weight, either way."""


def balance_features(rotation: np.ndarray, expressions: np.ndarray) -> np.ndarray:
    """(N, <= 3 + EXPRESSION_COMPONENTS) standardised features of N frames.

    Args:
        rotation: (N, 3) yaw, pitch, roll in radians.
        expressions: (N, K) expression coefficients.
    """
    rotation = np.asarray(rotation, np.float64).reshape(len(rotation), -1)
    expr = np.asarray(expressions, np.float64).reshape(len(expressions), -1)
    centred = expr - expr.mean(axis=0)
    if centred.shape[1] and np.any(centred):
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        comps = centred @ vt[:EXPRESSION_COMPONENTS].T
    else:
        comps = np.zeros((len(expr), 0))
    feats = np.concatenate([rotation, comps], axis=1)
    std = feats.std(axis=0)
    keep = std > 1e-9
    return (feats[:, keep] - feats[:, keep].mean(axis=0)) / std[keep]


def balance_weights(features: np.ndarray, power: float, k: int = 5) -> np.ndarray:
    """(N,) float64 sampling weights, mean 1 (see the module docstring).

    Args:
        features: (N, D) standardised features (``balance_features``).
        power: exponent of the sparsity; 0 gives ones.
        k: the neighbour whose distance measures sparsity (fewer frames: the farthest one).
    """
    n = len(features)
    if power == 0 or n < 2 or features.shape[1] == 0:
        return np.ones(n)
    sq = (features * features).sum(axis=1)
    d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * features @ features.T, 0.0))  # (N, N)
    np.fill_diagonal(d, np.inf)
    kth = np.sort(d, axis=1)[:, min(k, n - 1) - 1]
    w = np.maximum(kth, 1e-9) ** power
    w = w / w.mean()
    for _ in range(50):  # clip and renormalise until both hold
        w = np.clip(w, 1.0 / MAX_RATIO, MAX_RATIO)
        w = w / w.mean()
        if w.min() >= 1.0 / MAX_RATIO - 1e-9 and w.max() <= MAX_RATIO + 1e-9:
            break
    return w


def sampling_weights(data: SubjectTensors, power: float) -> np.ndarray | None:
    """(N_train,) weights of ``data.train_ids`` for ``TrainSampler``; None (uniform) at ``power`` 0."""
    if power == 0:
        return None
    ids = data.train_ids
    weights = balance_weights(balance_features(data.rotation[ids], data.windows[ids, 2].numpy()), power)
    log.info("balanced sampling (power %.2f): frame weights %.2f-%.2f of the mean", power,
             float(weights.min()), float(weights.max()))
    return weights
