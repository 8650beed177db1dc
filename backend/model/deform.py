"""Motion-aware texture deformation (paper 3.2.2).

``MotionEncoder``: a window of expression coefficients (B, 5, K) -> 3-layer MLP -> motion code.
``TextureDeformer``: the source texture (collapsed neural texture) -> 5-layer conv encoder ->
5-layer conv decoder, every layer followed by AdaIN(motion) -> a flow field in UV units.

How the flow deforms the texture (our exact choice): the deformed texture is
``T'(uv) = T(uv + flow(uv))``. For a screen pixel with UV ``uv`` we bilinearly sample the flow at
``uv`` and then the neural texture (every pyramid level) at ``uv + flow(uv)``. That equals warping
the texture in UV space and sampling it, with one resampling fewer. The flow is ``max_flow *
tanh(.)`` (UV units, i.e. fractions of the texture side), starts near zero (small last layer), and
only matters inside the UV mask because the sampled features are masked by coverage.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MotionEncoder(nn.Module):
    """(B, window, K) expression window -> (B, motion_dim) motion code (3 linear layers)."""

    def __init__(self, n_expr: int, window: int = 5, motion_dim: int = 64, hidden: int = 128) -> None:
        super().__init__()
        self.n_expr = n_expr
        self.window = window
        self.mlp = nn.Sequential(
            nn.Linear(window * n_expr, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, motion_dim),
        )

    def forward(self, expr_window: torch.Tensor) -> torch.Tensor:
        if expr_window.ndim != 3 or expr_window.shape[1:] != (self.window, self.n_expr):
            raise ValueError(f"expression window must be (B, {self.window}, {self.n_expr}), "
                             f"got {tuple(expr_window.shape)}")
        return self.mlp(expr_window.flatten(1))


class AdaIN(nn.Module):
    """Adaptive instance norm: ``M_s(m) * (x - mu(x)) / sigma(x) + M_b(m)``.

    x (B, C, H, W), motion (B, motion_dim) -> (B, C, H, W). ``M_s`` starts near 1 and ``M_b`` near 0
    (small random weights on the motion code, so the motion MLP receives gradients from the first step).
    Statistics are per sample and channel over H, W (needs more than one pixel per map).
    """

    def __init__(self, channels: int, motion_dim: int) -> None:
        super().__init__()
        self.affine = nn.Linear(motion_dim, 2 * channels)
        with torch.no_grad():
            self.affine.weight.mul_(0.25)
            self.affine.bias.copy_(torch.cat([torch.ones(channels), torch.zeros(channels)]))

    def forward(self, x: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        xn = F.instance_norm(x, eps=1e-5)
        scale, bias = self.affine(motion).chunk(2, dim=1)
        return torch.addcmul(bias[:, :, None, None], xn, scale[:, :, None, None])


class _AdaConv(nn.Module):
    """3x3 conv (optionally stride 2) -> AdaIN(motion) -> leaky ReLU."""

    def __init__(self, cin: int, cout: int, motion_dim: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.norm = AdaIN(cout, motion_dim)

    def forward(self, x: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.norm(self.conv(x), motion), 0.2)


class TextureDeformer(nn.Module):
    """Texture auto-encoder conditioned on motion -> flow field in UV units.

    Encoder: 5 conv layers (the first keeps the resolution, the next four halve it); decoder: 5 conv
    layers (the first four follow a 2x bilinear upsampling and take the encoder feature of the same
    scale, U-Net style); AdaIN(motion) after every conv; a final 1x1 conv gives 2 channels.

    Args:
        tex_channels: channels of the input texture.
        motion_dim: width of the motion code.
        base, max_channels: encoder widths ``min(base * 2**i, max_channels)``.
        max_flow: bound of |flow| in UV units.
    Forward:
        texture (1 or B, tex_channels, S, S) with S divisible by 16 and >= 32, motion (B, motion_dim)
        -> flow (B, 2, S, S) (channel 0: du, channel 1: dv), in UV units.
    """

    def __init__(self, tex_channels: int, motion_dim: int, base: int = 16, max_channels: int = 64,
                 max_flow: float = 0.1) -> None:
        super().__init__()
        widths = [min(base * 2 ** i, max_channels) for i in range(5)]
        self.max_flow = max_flow
        self.enc = nn.ModuleList()
        cin = tex_channels
        for i, w in enumerate(widths):
            self.enc.append(_AdaConv(cin, w, motion_dim, stride=1 if i == 0 else 2))
            cin = w
        self.dec = nn.ModuleList()
        for i in range(4):
            skip_w = widths[3 - i]
            self.dec.append(_AdaConv(cin + skip_w, skip_w, motion_dim))
            cin = skip_w
        self.dec.append(_AdaConv(cin, cin, motion_dim))
        self.to_flow = nn.Conv2d(cin, 2, 1)
        nn.init.normal_(self.to_flow.weight, std=1e-3)
        nn.init.zeros_(self.to_flow.bias)

    def forward(self, texture: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        B = motion.shape[0]
        if texture.shape[-1] % 16 or texture.shape[-2] % 16 or min(texture.shape[-2:]) < 32:
            raise ValueError(f"deformer input side must be >= 32 and divisible by 16, got "
                             f"{tuple(texture.shape[-2:])}")
        x = texture.expand(B, -1, -1, -1) if texture.shape[0] == 1 else texture
        feats = []
        for layer in self.enc:
            x = layer(x, motion)
            feats.append(x)
        for i, layer in enumerate(self.dec[:4]):
            skip = feats[3 - i]
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = layer(torch.cat([x, skip], dim=1), motion)
        x = self.dec[4](x, motion)
        return self.max_flow * torch.tanh(self.to_flow(x))
