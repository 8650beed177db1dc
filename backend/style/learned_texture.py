"""A frame-locked texture layer learned together with the translator.

``backend.style.frame_texture`` finds a look's paper grain or film grain as the residual of a short
first fit. That estimate is weak: the short fit has already learned part of the grain from the
content (a grain of the keyframe can always be "explained" by its pixels), and the high-pass drops
the grain's coarser part. So where a texture is found, the layer is instead a free (3, H, W) image
fitted with the network, one value per frame pixel, initialised from that estimate: a per-pixel
parameter reproduces a frame-locked pattern in a few steps, while the network, applied alike at
every place, can only approximate it from the content, so the fit puts the texture in the layer. The
layer starts learning only once the network has learned the look's content
(``FitSettings.learned_texture_from``: half-way); learning from the first step, it took the
keyframe's edges faster than the network could and showed them on every frame. Each patch carries
the frame position of each of its pixels (and the keyframe's ``flatness`` there) through crops,
warps and flips as extra target channels, and reads the layer there. Where the keyframe is busy
(eyes, mouth, outlines) the layer is held at 0, as the estimated one is: there a free layer would
store the keyframe's features, a ghost on other frames; after the fit, ``busy_fill`` completes it
there by shrinkage. Unlabeled pairs
(``FitSettings.pseudo_frames``) get no layer: their targets are the network's own output on real
frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from backend.imaging.blur import gaussian_blur
from backend.imaging.coords import position_channels
from backend.style.frame_texture import high_pass

LAYER_SIGMA = 4.0
"""Gaussian sigma (px) of the high-pass applied to the learned layer: it keeps a grain's coarser
part (a 2 px high-pass dropped a quarter of a 1 px film grain's power) and leaves shading, which
moves with the content, to the network."""

AUX_CHANNELS = 3
"""Extra target channels a patch carries: frame x, frame y (``position_channels``) and the
layer's weight there."""


def aux_channels(weight: torch.Tensor) -> torch.Tensor:
    """(P, 1, H, W) layer weight per pair (a keyframe's ``flatness``; 0 for unlabeled pairs) ->
    (P, 3, H, W): x, y of every pixel centre in [-1, 1] (``align_corners=True``), then the weight."""
    p, _, h, w = weight.shape
    pos = position_channels(h, w, weight).expand(p, -1, -1, -1)
    return torch.cat([pos, weight], 1)


class TextureLayer(nn.Module):
    """A learned (3, H, W) frame-locked layer, in [-1, 1] image units, high-passed at
    ``LAYER_SIGMA`` before use."""

    def __init__(self, init: torch.Tensor) -> None:
        super().__init__()
        if init.ndim != 3 or init.shape[0] != 3:
            raise ValueError(f"a texture layer is (3, H, W), got {tuple(init.shape)}")
        self.raw = nn.Parameter(init.detach().float().clone())

    def field(self) -> torch.Tensor:
        """(3, H, W) the layer: the parameter minus its Gaussian blur."""
        return high_pass(self.raw[None], LAYER_SIGMA)[0]

    def on_patches(self, aux: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) the layer at each patch pixel's frame position times its weight, from the
        patches' ``aux_channels`` (B, 3, h, w)."""
        grid = aux[:, :2].permute(0, 2, 3, 1)
        field = self.field()[None].expand(aux.shape[0], -1, -1, -1)
        on = F.grid_sample(field, grid, mode="bilinear", padding_mode="border", align_corners=True)
        return on * aux[:, 2:3]


BUSY_FILL_SIGMA = 2.0
"""Gaussian sigma (px) over which the residual's local power is measured for ``busy_fill``."""


def busy_fill(layer: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The layer completed where the keyframe is busy, by shrinkage.

    After the fit, the keyframe's residual (reference minus the network's output and the layer)
    is, where the layer was held at 0, the texture plus the network's error on that content. The
    texture's power is known from the flat pixels (the layer there); where the residual's local
    power is P, the texture's share of it is about ``g / P`` (g: that power, capped at 1), and
    the residual scaled by it is the least-squares guess of the texture from the residual. The
    error part so kept shows on other frames as a ghost, but only at that share, so on another
    frame the texture's error is expected to be below that of leaving it out (the texture's
    whole power) wherever the two are independent.

    Args:
        layer: (3, H, W) the learned layer (already times ``weight``).
        residual: (N, 3, H, W) the keyframes' residuals after the fit, [-1, 1] units.
        weight: (1, H, W) the layer's weight (``flatness``, the keyframes' maximum).
    Returns:
        (3, H, W) the layer plus, where ``weight`` < 1, the shrunk high-passed residual.
    """
    r = high_pass(residual.float().mean(0, keepdim=True), LAYER_SIGMA)
    flat = weight[0] >= 1
    if not bool(flat.any()):
        return layer
    texture_power = layer[:, flat].square().mean(1).view(1, 3, 1, 1)
    local_power = gaussian_blur(r.square(), BUSY_FILL_SIGMA, padding="reflect")
    share = (texture_power / local_power.clamp(min=1e-8)).clamp(max=1.0)
    return layer + ((1 - weight)[None] * share * r)[0]
