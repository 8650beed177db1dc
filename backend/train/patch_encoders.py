"""Patch embedders for the region-aware PatchNCE of stage 2.

Two kinds, one interface (``grids`` + ``embed``):

* ``ClipPatchEncoder`` (the paper): square crops around the sampled positions are embedded by a
  frozen CLIP image tower, one embedding per crop.
* ``FeaturePatchEncoder`` (fallback, the CUT recipe): multi-layer feature maps of a frozen
  convolutional network, read at the sampled positions and projected by learnable 2-layer MLP
  heads (the raw features under the heads also feed the region statistics term). Our generator
  has no image encoder (its input is the UV-sampled neural texture), so the network is the
  stage-1 patch discriminator's conv trunk: the part of the checkpoint that has learned image
  features of this subject. It is a frozen copy (the discriminator that is
  fine-tuned on the reference is a separate module), so the embedding does not drift.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from backend.train.clip_encoder import ClipImageEncoder
from backend.train.patchnce import PatchMLPHeads, gather_patches

Positions = dict[int, torch.Tensor]  # region id -> (n,) flat indices into a layer's grid


class FeaturePatchEncoder(nn.Module):
    """Frozen conv features at up to ``n_layers`` resolutions + learnable MLP heads.

    Args:
        net: the convolutional network (kept as a frozen deep copy).
        call: ``call(net, image, uv)`` runs it (e.g. the discriminator on image + UV condition).
        probe_image: (1, 3, H, W) and probe_uv (1, 3, H, W) used once to find the layers.
        n_layers: feature maps used: the first layer output at each distinct resolution (in
            registration order), skipping 1-channel (logit) maps.
        dim: embedding width of the heads.
        description: recorded in the style meta.
    """

    def __init__(
        self,
        net: nn.Module,
        call: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
        probe_image: torch.Tensor,
        probe_uv: torch.Tensor,
        n_layers: int = 4,
        dim: int = 256,
        description: str = "discriminator-features (CUT fallback)",
    ) -> None:
        super().__init__()
        self.net = copy.deepcopy(net).eval().requires_grad_(False)
        self.call = call
        self.description = description
        leaves = [m for m in self.net.modules() if not list(m.children())]
        shapes: dict[nn.Module, tuple[int, ...]] = {}

        def remember(m: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
            if isinstance(out, torch.Tensor) and out.ndim == 4:
                shapes.setdefault(m, tuple(out.shape))

        hooks = [m.register_forward_hook(remember) for m in leaves]
        try:
            with torch.no_grad():
                self.call(self.net, probe_image, probe_uv)
        finally:
            for h in hooks:
                h.remove()
        chosen, seen = [], set()
        for m in leaves:  # registration order = depth order for feed-forward nets
            shp = shapes.get(m)
            if shp is None or shp[1] < 2 or min(shp[-2:]) < 2 or shp[-2:] in seen:
                continue
            seen.add(shp[-2:])
            chosen.append(m)
        if not chosen:
            raise ValueError(
                f"{type(net).__name__} has no spatial feature layers to take PatchNCE features from"
            )
        self.layers = chosen[:n_layers]
        self._grids = [tuple(shapes[m][-2:]) for m in self.layers]
        self.heads = PatchMLPHeads([shapes[c][1] for c in self.layers], dim)

    def grids(self) -> list[tuple[int, int]]:
        """(h, w) of each feature layer, in order."""
        return list(self._grids)

    def embed(
        self, image: torch.Tensor, uv: torch.Tensor, positions: list[Positions], return_raw: bool = False
    ) -> list[Positions] | tuple[list[Positions], list[Positions]]:
        """(B, 3, H, W) image in [-1, 1] + its UV map -> per layer, per region (B, n, dim) embeddings.

        With ``return_raw`` also the frozen features before the heads, (B, n, C_layer) each.
        """
        feats: dict[nn.Module, torch.Tensor] = {}
        hooks = [c.register_forward_hook(lambda m, i, o: feats.__setitem__(m, o)) for c in self.layers]
        try:
            self.call(self.net, image, uv)
        finally:
            for h in hooks:
                h.remove()
        raw = [
            {r: gather_patches(feats[layer], idx) for r, idx in pos.items()}
            for layer, pos in zip(self.layers, positions, strict=True)
        ]
        out = [{r: self.heads(li, v) for r, v in layer.items()} for li, layer in enumerate(raw)]
        return (out, raw) if return_raw else out


class ClipPatchEncoder(nn.Module):
    """CLIP embeddings of square crops centred on the cells of a ``grid`` x ``grid`` lattice.

    Args:
        clip: the frozen CLIP image encoder.
        grid: crop centres lie on this lattice (a position index is a cell of it).
        crop: crop side as a fraction of the image side.
    """

    def __init__(self, clip: ClipImageEncoder, grid: int = 16, crop: float = 0.25) -> None:
        super().__init__()
        self.clip = clip
        self.grid = grid
        self.crop = crop
        self.description = clip.description

    def grids(self) -> list[tuple[int, int]]:
        return [(self.grid, self.grid)]

    def centers(self, index: torch.Tensor) -> torch.Tensor:
        """(n,) flat cell indices -> (n, 2) crop centres (x, y) in [-1, 1]."""
        g = self.grid
        y = (index // g).float()
        x = (index % g).float()
        return torch.stack([(x + 0.5) / g * 2 - 1, (y + 0.5) / g * 2 - 1], dim=1)

    def embed(
        self, image: torch.Tensor, uv: torch.Tensor, positions: list[Positions], return_raw: bool = False
    ) -> list[Positions] | tuple[list[Positions], list[Positions]]:
        """Per region (B, n, D) CLIP embeddings of the crops (``return_raw``: the same twice)."""
        (pos,) = positions
        regions = list(pos)
        index = torch.cat([pos[r] for r in regions])
        emb = self.clip.encode_crops(image, self.centers(index).to(image.device), self.crop)  # (B, N, D)
        out, start = {}, 0
        for r in regions:
            n = pos[r].numel()
            out[r] = emb[:, start : start + n]
            start += n
        return ([out], [out]) if return_raw else [out]
