"""UV-conditioned patch discriminator (paper eq. 2): D_p(image, uv) -> a map of real/fake logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from backend.model.layers import EqualConv2d


class PatchDiscriminator(nn.Module):
    """PatchGAN-style discriminator on the concatenation of an image and its UV map.

    Layers: ``n_layers`` 4x4 stride-2 convs (widths ``channels * 2**i`` capped at ``channel_max``),
    one 3x3 conv, a 3x3 conv to 1 channel; leaky ReLU 0.2 between; equalised learning rate and no
    normalisation (pairs well with an R1 penalty). Each logit sees a patch of roughly
    ``2**(n_layers + 2)`` pixels.

    Args:
        in_channels: image channels + condition channels (3 + 3 for RGB + [u, v, coverage]).
    Forward:
        image (B, 3, H, W) in [-1, 1], uv (B, in_channels - 3, H, W)
        -> logits (B, 1, H / 2**n_layers, W / 2**n_layers).
    """

    def __init__(self, in_channels: int = 6, channels: int = 32, n_layers: int = 3,
                 channel_max: int = 256) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.blocks = nn.ModuleList()
        cin = in_channels
        for i in range(n_layers):
            cout = min(channels * 2 ** i, channel_max)
            self.blocks.append(EqualConv2d(cin, cout, 4, stride=2, padding=1))
            cin = cout
        self.mid = EqualConv2d(cin, cin, 3, padding=1)
        self.out = EqualConv2d(cin, 1, 3, padding=1)

    def features(self, image: torch.Tensor, uv: torch.Tensor) -> list[torch.Tensor]:
        """The activations after each strided block and after the middle conv:
        ``n_layers + 1`` maps, (B, C_i, H / 2**i, W / 2**i) then the last one's size again."""
        x = torch.cat([image, uv.to(image.dtype)], dim=1)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"patch discriminator expects {self.in_channels} channels (image + uv), "
                             f"got {x.shape[1]}")
        feats = []
        for conv in self.blocks:
            x = F.leaky_relu(conv(x), 0.2)
            feats.append(x)
        feats.append(F.leaky_relu(self.mid(x), 0.2))
        return feats

    def forward(self, image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(image, uv)[-1])
