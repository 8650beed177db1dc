"""The skip connections: an encoder of the screen-space texture features whose multi-scale outputs
are added to the StyleGAN synthesis layers. It is the only part trained in stage 2 (paper 3.3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SkipEncoder(nn.Module):
    """Screen-space features -> {resolution: generator-shaped feature map}.

    Structure: a 3x3 stem at the input resolution, then one stride-2 3x3 conv per halving down to
    ``min_res``; at every resolution r in [min_res, size] a 1x1 projection ``proj[str(r)]`` maps the
    encoder feature to the generator's width ``gen_channels[r]``. The projections start small
    (std 0.1 of the default init) so a pretrained generator's behaviour is only nudged at first.

    With ``motion_dim > 0`` every encoder layer is also modulated by the frame's motion code
    (FiLM: ``h * (1 + scale(m)) + shift(m)`` before the activation, ``scale`` and ``shift`` linear
    in the code and zero at first), so what the skips carry can change with the expression and not
    only with the texture the mesh shows (teeth, lid shading, folds).

    Args:
        in_channels: input channels (texture channels + u, v, mask).
        size: input (= output image) resolution.
        gen_channels: generator channels per resolution (``Generator.channels``).
        min_res: lowest resolution that gets a skip feature.
        channel_max: width cap of the encoder's own layers.
        motion_dim: width of the motion code that modulates the layers (0: no modulation).
    Forward:
        x (B, in_channels, size, size), motion (B, motion_dim) or None -> dict
        {r: (B, gen_channels[r], r, r)} for r = size, size/2, ..., min_res.
    """

    def __init__(self, in_channels: int, size: int, gen_channels: dict[int, int], min_res: int = 8,
                 channel_max: int = 64, motion_dim: int = 0) -> None:
        super().__init__()
        self.size = size
        self.resolutions = []
        r = size
        while r >= min_res:
            self.resolutions.append(r)
            r //= 2
        width = {r: min(channel_max, gen_channels[r]) for r in self.resolutions}
        self.stem = nn.Conv2d(in_channels, width[size], 3, padding=1)
        self.down = nn.ModuleList()
        for hi, lo in zip(self.resolutions[:-1], self.resolutions[1:], strict=True):
            self.down.append(nn.Conv2d(width[hi], width[lo], 3, stride=2, padding=1))
        self.proj = nn.ModuleDict()
        for r in self.resolutions:
            conv = nn.Conv2d(width[r], gen_channels[r], 1)
            with torch.no_grad():
                conv.weight.mul_(0.1)
                conv.bias.zero_()
            self.proj[str(r)] = conv
        self.film = nn.ModuleList()
        for r in self.resolutions if motion_dim > 0 else ():
            lin = nn.Linear(motion_dim, 2 * width[r])
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
            self.film.append(lin)

    def _modulate(self, h: torch.Tensor, i: int, motion: torch.Tensor | None) -> torch.Tensor:
        if not len(self.film):
            return h
        if motion is None:
            raise ValueError("this skip encoder is modulated by the motion code: pass motion (B, motion_dim)")
        scale, shift = self.film[i](motion)[:, :, None, None].chunk(2, dim=1)
        return h * (1 + scale) + shift

    def forward(self, x: torch.Tensor, motion: torch.Tensor | None = None) -> dict[int, torch.Tensor]:
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            raise ValueError(f"skip encoder expects {self.size}x{self.size} input, got {tuple(x.shape[-2:])}")
        h = F.leaky_relu(self._modulate(self.stem(x), 0, motion), 0.2)
        out = {self.size: self.proj[str(self.size)](h)}
        for i, (conv, r) in enumerate(zip(self.down, self.resolutions[1:], strict=True), start=1):
            h = F.leaky_relu(self._modulate(conv(h), i, motion), 0.2)
            out[r] = self.proj[str(r)](h)
        return out
