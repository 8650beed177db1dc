"""Patch-wise contrastive loss (PatchNCE, paper eq. 3), region-aware patch sampling, MLP heads.

The loss follows the InfoNCE form used by CUT: for each query patch ``v`` (from the
reference image) the positive ``v+`` is the patch at the same position of the rendered image
and the negatives ``v-`` are the other sampled patches of the *same* rendered image::

    L = -log( exp(v.v+ / tau) / (exp(v.v+ / tau) + sum_i exp(v.v-_i / tau)) )

Embeddings are L2-normalised before the dot product; ``tau`` = 0.07 as in the paper.

Region awareness: patch positions are drawn per region (face / hair+background / torso, see
``backend.train.regions``) and the negatives of a query come only from its own region, so a
face patch of the reference is pulled towards the face of the render at that position and
pushed away from other face patches, never compared with background patches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

TEMPERATURE = 0.07
NUM_PATCHES = 256


def patch_nce_loss(query: torch.Tensor, keys: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """InfoNCE over patches with negatives from the same image.

    Args:
        query: (B, P, C) embeddings of the query image (the reference), row p at position p.
        keys: (B, P, C) embeddings of the other image (the render) at the same P positions.
        temperature: softmax temperature.
    Returns:
        Scalar: mean over the B*P queries of the cross-entropy of picking the positive.
        Zero (with grad) when P < 2, since there is no negative to contrast with.
    """
    if query.shape != keys.shape or query.ndim != 3:
        raise ValueError(
            f"query and keys must both be (B, P, C), got {tuple(query.shape)} / {tuple(keys.shape)}"
        )
    b, p, _ = query.shape
    if p < 2:
        return keys.sum() * 0.0
    q = F.normalize(query, dim=-1)
    k = F.normalize(keys, dim=-1)
    logits = torch.bmm(q, k.transpose(1, 2)) / temperature  # (B, P, P): [b, i, j] = q_i . k_j
    target = torch.arange(p, device=q.device).expand(b, p)  # the positive of query i is key i
    return F.cross_entropy(logits.reshape(b * p, p), target.reshape(-1))


def allocate_patches(counts: dict[int, int], total: int) -> dict[int, int]:
    """Split ``total`` patches over regions: equal shares, capped by each region's size.

    Equal shares (not proportional to area) keep the small face region as important as the
    large background. Whatever a small region cannot use goes to the others.

    Args:
        counts: region id -> number of available positions in that region.
        total: patches to place.
    Returns:
        region id -> patches to draw (regions with fewer than 2 positions get 0).
    """
    alloc = dict.fromkeys(counts, 0)
    active = sorted(r for r, c in counts.items() if c >= 2)
    left = total
    while left > 0 and active:
        share = left // len(active)
        if share == 0:  # fewer patches left than regions: one more each, in region order
            for r in active[:left]:
                alloc[r] += 1
            break
        for r in active:
            take = min(share, counts[r] - alloc[r])
            alloc[r] += take
            left -= take
        active = [r for r in active if alloc[r] < counts[r]]
    return alloc


def sample_region_positions(
    regions: torch.Tensor,
    size: tuple[int, int],
    total: int = NUM_PATCHES,
    generator: torch.Generator | None = None,
) -> dict[int, torch.Tensor]:
    """Draw patch positions on an ``size`` = (h, w) grid, per region, without repeats.

    Args:
        regions: (H, W) int64 region ids of the image (any resolution; resized by nearest).
        size: the (h, w) grid of the feature map the positions index.
        total: patches over all regions.
        generator: CPU torch generator for reproducible draws.
    Returns:
        region id -> (n_r,) int64 flat indices into h*w (row-major), sorted region ids.
    """
    h, w = size
    grid = (
        F.interpolate(regions[None, None].float(), size=(h, w), mode="nearest")[0, 0].long().flatten().cpu()
    )
    ids = [int(r) for r in torch.unique(grid)]
    counts = {r: int((grid == r).sum()) for r in ids}
    alloc = allocate_patches(counts, total)
    out: dict[int, torch.Tensor] = {}
    for r in ids:
        if alloc[r] < 2:
            continue
        cells = torch.nonzero(grid == r).flatten()
        pick = torch.randperm(cells.numel(), generator=generator)[: alloc[r]]
        out[r] = cells[pick]
    return out


def gather_patches(features: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) feature map, (n,) flat indices -> (B, n, C) patch features."""
    b, c = features.shape[:2]
    flat = features.reshape(b, c, -1)
    return flat[:, :, index.to(features.device)].transpose(1, 2)


def region_patch_nce(
    query: dict[int, torch.Tensor],
    keys: dict[int, torch.Tensor],
    temperature: float = TEMPERATURE,
) -> torch.Tensor:
    """Mean PatchNCE over regions, each region contrasted only with itself.

    Args:
        query / keys: region id -> (B, n_r, C) embeddings at the same positions.
    Returns:
        Scalar: the patch-count-weighted mean of the per-region losses.
    """
    if not query:
        raise ValueError("no region had enough patches for PatchNCE")
    total = 0.0
    count = 0
    for r, q in query.items():
        n = q.shape[1]
        total = total + patch_nce_loss(q, keys[r], temperature) * n
        count += n
    return total / count


class PatchMLPHeads(nn.Module):
    """CUT's projection heads: one 2-layer MLP (Linear-ReLU-Linear) per feature layer.

    Used when no CLIP encoder is given: the features of a convolutional network are projected
    to ``dim`` before the contrastive loss, and the heads are trained with the edited modules.
    """

    def __init__(self, in_channels: list[int], dim: int = 256) -> None:
        super().__init__()
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(c, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim)) for c in in_channels
        )

    def forward(self, layer: int, patches: torch.Tensor) -> torch.Tensor:
        """(B, n, C_layer) -> (B, n, dim)."""
        return self.mlps[layer](patches)
