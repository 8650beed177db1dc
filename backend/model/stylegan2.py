"""StyleGAN2 generator and residual discriminator in plain PyTorch.

Module names mirror the common PyTorch checkpoint layout (``style``, ``input``, ``conv1``,
``to_rgb1``, ``convs``, ``to_rgbs``, ``noises``; discriminator ``convs``, ``final_conv``,
``final_linear``) so ``backend.model.checkpoint`` loads such checkpoints by name.

Additions over the reference generator:
- ``channel_max`` caps every layer width and ``channel_multiplier`` may be fractional (small presets);
- ``synthesis(w_plus, skip_features, noise_mode)`` adds encoder features at chosen resolutions
  (the Emo-Avatar skip connections) and has deterministic noise modes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from backend.model.layers import (
    NOISE_MODES,
    ConstantInput,
    ConvLayer,
    EqualLinear,
    PixelNorm,
    ResBlock,
    StyledConv,
    ToRGB,
)
from backend.model.ops import DEFAULT_BLUR_KERNEL

_BASE_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
_MULTIPLIED_FROM = 64  # resolutions >= this scale with channel_multiplier (reference layout)


def channel_table(size: int, channel_multiplier: float = 2, channel_max: int = 512) -> dict[int, int]:
    """Feature channels per resolution 4..size.

    Reference layout: 512 up to 32 px, then ``256*m, 128*m, 64*m, ...`` for 64, 128, 256 px (m the
    channel multiplier); every value capped at ``channel_max`` and at least 8.
    """
    if size < 4 or size & (size - 1):
        raise ValueError(f"size must be a power of two >= 4, got {size}")
    out = {}
    res = 4
    while res <= size:
        base = _BASE_CHANNELS.get(res, max(16 * 1024 // res, 1))
        c = base * channel_multiplier if res >= _MULTIPLIED_FROM else base
        out[res] = int(max(8, min(channel_max, round(c))))
        res *= 2
    return out


class Generator(nn.Module):
    """StyleGAN2 generator.

    Args:
        size: output resolution (power of two).
        style_dim: width of z and w.
        n_mlp: layers of the mapping network.
        channel_multiplier, channel_max: see ``channel_table``.
        lr_mlp: learning-rate multiplier of the mapping network.

    Attributes:
        n_latent: number of w vectors consumed by ``synthesis`` (``2 * log2(size) - 2``).
        channels: ``channel_table(...)``, resolution -> channels.
        num_layers: number of noise inputs (``2 * log2(size) - 3``).
    """

    def __init__(
        self, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: float = 2,
        channel_max: int = 512, blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL, lr_mlp: float = 0.01,
    ) -> None:
        super().__init__()
        self.size = size
        self.style_dim = style_dim
        self.channels = channel_table(size, channel_multiplier, channel_max)
        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.n_latent = self.log_size * 2 - 2
        self.channels_last = True
        """Run synthesis in channels-last memory format (faster convolutions on CPU and CUDA)."""

        self.style = nn.Sequential(
            PixelNorm(),
            *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True) for _ in range(n_mlp)],
        )
        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(self.channels[4], self.channels[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(self.channels[4], style_dim, upsample=False)

        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = (layer_idx + 5) // 2
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, 2 ** res, 2 ** res))

        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_ch = self.channels[4]
        for i in range(3, self.log_size + 1):
            out_ch = self.channels[2 ** i]
            self.convs.append(StyledConv(in_ch, out_ch, 3, style_dim, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_ch, out_ch, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_ch, style_dim))
            in_ch = out_ch

    # -- latents -------------------------------------------------------------------------------
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, style_dim) -> w (B, style_dim)."""
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean of ``mapping`` over ``n`` random z (seeded by ``generator``). Returns (1, style_dim)."""
        device = self.input.input.device
        z = torch.randn(n, self.style_dim, generator=generator, device="cpu").to(device)
        return self.mapping(z).mean(0, keepdim=True)

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """(B, style_dim) -> w+ (B, n_latent, style_dim)."""
        return w[:, None, :].expand(-1, self.n_latent, -1)

    # -- synthesis ------------------------------------------------------------------------------
    def noise_list(self, noise_mode: str, batch: int, device: torch.device,
                   dtype: torch.dtype = torch.float32) -> list[torch.Tensor | None]:
        """Noise per layer: ``random`` fresh N(0,1), ``const`` the stored buffers, ``none`` no noise."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        bufs = [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        if noise_mode == "none":
            return [None] * self.num_layers
        if noise_mode == "const":
            return [b.to(device=device, dtype=dtype) for b in bufs]
        return [torch.randn(batch, 1, b.shape[2], b.shape[3], device=device, dtype=dtype) for b in bufs]

    def synthesis(
        self, w_plus: torch.Tensor, skip_features: dict[int, torch.Tensor] | None = None,
        noise_mode: str = "random",
    ) -> torch.Tensor:
        """Render images from per-layer styles.

        Args:
            w_plus: (B, n_latent, style_dim). Layer ``i`` of the network uses ``w_plus[:, i]``.
            skip_features: optional {resolution: (B, channels[resolution], res, res)} added to the
                feature map after the first conv at that resolution (4 px: after ``conv1``; higher:
                after the upsampling conv, before the second conv). Missing resolutions get nothing.
            noise_mode: "random" | "const" (stored buffers, deterministic) | "none".
        Returns:
            (B, 3, size, size) image, nominally in [-1, 1] (not clamped).
        """
        if w_plus.ndim != 3 or w_plus.shape[1] != self.n_latent or w_plus.shape[2] != self.style_dim:
            raise ValueError(
                f"w_plus must be (B, {self.n_latent}, {self.style_dim}), got {tuple(w_plus.shape)}")
        skips = skip_features or {}
        unknown = set(skips) - set(self.channels)
        if unknown:
            raise ValueError(f"skip_features at resolutions {sorted(unknown)} not in {sorted(self.channels)}")
        B = w_plus.shape[0]
        noise = self.noise_list(noise_mode, B, w_plus.device, w_plus.dtype)

        out = self.input(B)
        if self.channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        out = self.conv1(out, w_plus[:, 0], noise[0])
        if 4 in skips:
            out = out + skips[4]
        rgb = self.to_rgb1(out, w_plus[:, 1])
        i = 1
        for j, to_rgb in enumerate(self.to_rgbs):
            res = 2 ** (j + 3)
            out = self.convs[2 * j](out, w_plus[:, i], noise[2 * j + 1])
            if res in skips:
                out = out + skips[res]
            out = self.convs[2 * j + 1](out, w_plus[:, i + 1], noise[2 * j + 2])
            rgb = to_rgb(out, w_plus[:, i + 2], rgb)
            i += 2
        return rgb

    def forward(
        self, z: torch.Tensor, truncation: float = 1.0, truncation_latent: torch.Tensor | None = None,
        noise_mode: str = "random", skip_features: dict[int, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """z (B, style_dim) -> image (B, 3, size, size); optional truncation toward ``truncation_latent``."""
        w = self.mapping(z)
        if truncation < 1.0 and truncation_latent is not None:
            w = truncation_latent + truncation * (w - truncation_latent)
        return self.synthesis(self.broadcast(w), skip_features, noise_mode)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator with a minibatch standard-deviation layer.

    (B, in_channels, size, size) -> (B, 1) logits.
    """

    def __init__(
        self, size: int, channel_multiplier: float = 2, channel_max: int = 512, in_channels: int = 3,
        blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL, stddev_group: int = 4,
    ) -> None:
        super().__init__()
        ch = channel_table(size, channel_multiplier, channel_max)
        self.size = size
        log_size = int(math.log2(size))
        convs: list[nn.Module] = [ConvLayer(in_channels, ch[size], 1)]
        in_ch = ch[size]
        for i in range(log_size, 2, -1):
            out_ch = ch[2 ** (i - 1)]
            convs.append(ResBlock(in_ch, out_ch, blur_kernel))
            in_ch = out_ch
        self.convs = nn.Sequential(*convs)
        self.stddev_group = stddev_group
        self.stddev_feat = 1
        self.final_conv = ConvLayer(in_ch + 1, ch[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(ch[4] * 4 * 4, ch[4], activation=True), EqualLinear(ch[4], 1)
        )

    def minibatch_std(self, x: torch.Tensor) -> torch.Tensor:
        """Append the mean std over groups of samples as one extra channel: (B, C, H, W) -> (B, C+1, H, W)."""
        B, C, H, W = x.shape
        group = max(g for g in range(1, min(B, self.stddev_group) + 1) if B % g == 0)
        y = x.view(group, -1, self.stddev_feat, C // self.stddev_feat, H, W)
        y = torch.sqrt(y.var(0, unbiased=False) + 1e-8)
        y = y.mean(dim=(2, 3, 4), keepdim=True).squeeze(2)  # (B/group, feat, 1, 1)
        y = y.repeat(group, 1, H, W)
        return torch.cat([x, y], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.convs(x)
        out = self.final_conv(self.minibatch_std(out))
        return self.final_linear(out.flatten(1))
