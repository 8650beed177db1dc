"""Deferred-neural-rendering baseline (Thies et al. 2019) for the reference table of ``emo-avatar eval``.

The same neural texture as the Emo-Avatar (``NeuralTexture``: Laplacian pyramid, sampled by the
UV map, masked by coverage) but no flow, no StyleGAN: the sampled features + (u, v) + coverage go
through a small U-Net straight to RGB. It takes the avatar's forward signature so training and
rendering code can treat both alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from backend.model.neural_texture import NeuralTexture, uv_to_grid


@dataclass
class DNROutput:
    """image (B, 3, H, W) in about [-1, 1]; tex_rgb (B, 3, H, W) texture channels 1..3; mask (B, 1, H, W)."""

    image: torch.Tensor
    tex_rgb: torch.Tensor
    mask: torch.Tensor


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.2, inplace=True),
                         nn.Conv2d(cout, cout, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True))


class UNet(nn.Module):
    """A small U-Net: ``depth`` stride-2 downsamplings (channels ``base * 2**i``, capped at
    ``channel_max``), bilinear upsampling with concatenated skips, a 1x1 conv to ``out_channels``.
    Input (B, in_channels, H, W) with H, W divisible by 2**depth."""

    def __init__(self, in_channels: int, out_channels: int = 3, base: int = 16, depth: int = 4,
                 channel_max: int = 128) -> None:
        super().__init__()
        ch = [min(base * 2**i, channel_max) for i in range(depth + 1)]
        self.inc = _block(in_channels, ch[0])
        self.down = nn.ModuleList(_block(ch[i], ch[i + 1], stride=2) for i in range(depth))
        self.up = nn.ModuleList(_block(ch[i + 1] + ch[i], ch[i]) for i in reversed(range(depth)))
        self.out = nn.Conv2d(ch[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [self.inc(x)]
        for d in self.down:
            feats.append(d(feats[-1]))
        y = feats.pop()
        for u in self.up:
            skip = feats.pop()
            y = u(torch.cat([F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False),
                             skip], dim=1))
        return self.out(y)


class DNRBaseline(nn.Module):
    """Neural texture + U-Net renderer.

    Args:
        size: output side in pixels (divisible by 2**depth).
        tex_channels, tex_size, levels: the neural texture (as ``AvatarConfig``).
        base, depth, channel_max: the U-Net.
    """

    def __init__(self, size: int, tex_channels: int = 12, tex_size: int = 128, levels: int = 4,
                 base: int = 16, depth: int = 4, channel_max: int = 128) -> None:
        super().__init__()
        if size % (2**depth):
            raise ValueError(f"size {size} must be divisible by 2**depth = {2**depth}")
        self.size = size
        self.texture = NeuralTexture(tex_channels, tex_size, levels)
        self.unet = UNet(tex_channels + 3, 3, base, depth, channel_max)

    def forward(self, uv: torch.Tensor, expr_window: torch.Tensor | None = None) -> DNROutput:
        """uv (B, 3, H, W) [u, v, coverage]; ``expr_window`` is ignored (DNR has no expression input)."""
        grid, mask = uv_to_grid(uv)
        feats = self.texture.sample(grid) * mask
        image = self.unet(torch.cat([feats, uv[:, :2] * mask, mask], dim=1))
        return DNROutput(image=image, tex_rgb=feats[:, :3], mask=mask)
