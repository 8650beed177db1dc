"""Low-level StyleGAN2 ops in pure torch: FIR up/down-sampling and the biased, scaled leaky ReLU.

Every op here runs on any device with standard torch calls; no compiled extension is needed.
The FIR filter is separable (outer product of a 1-D kernel), so filtering is two depthwise 1-D
convolutions instead of one 2-D one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_BLUR_KERNEL: tuple[int, ...] = (1, 3, 3, 1)
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


def make_kernel_1d(k: Sequence[float]) -> torch.Tensor:
    """1-D FIR taps normalised so that their 2-D outer product sums to 1. Returns (len(k),) float32."""
    t = torch.as_tensor(list(k), dtype=torch.float32)
    return t / t.sum()


def make_kernel_2d(k: Sequence[float]) -> torch.Tensor:
    """The 2-D FIR kernel (outer product of ``k`` with itself), summing to 1. Returns (n, n)."""
    k1 = make_kernel_1d(k)
    return torch.outer(k1, k1)


def upfirdn2d(
    x: torch.Tensor, k1d: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample by zero insertion, pad, filter with the separable FIR ``outer(k1d, k1d) * gain``, downsample.

    Same semantics as the reference ``upfirdn2d`` of StyleGAN2 (the kernel is flipped, i.e. a true
    convolution; symmetric kernels are unaffected).

    Args:
        x: (B, C, H, W).
        k1d: (n,) 1-D taps (the 2-D kernel is their outer product).
        up, down: integer factors.
        pad: (before, after) padding applied on both spatial axes after upsampling (may be negative).
        gain: multiplies the 2-D kernel (``up ** 2`` keeps the mean when upsampling).
    Returns:
        (B, C, (H * up + pad0 + pad1 - n) // down + 1, same for W).
    """
    B, C, H, W = x.shape
    if up > 1:
        x = x.reshape(B, C, H, 1, W, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(B, C, H * up, W * up)
    p0, p1 = pad
    conv_pad = 0
    if p0 == p1 >= 0:
        conv_pad = p0  # symmetric: let the convolution pad (no extra copy)
    else:
        x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
        if p0 < 0 or p1 < 0:
            h, w = x.shape[-2:]
            x = x[..., max(-p0, 0): h - max(-p1, 0), max(-p0, 0): w - max(-p1, 0)]
    k = (k1d.flip(0) * math.sqrt(gain)).to(dtype=x.dtype, device=x.device)
    n = k.numel()
    kv = k.view(1, 1, n, 1).expand(C, 1, n, 1)
    kh = k.view(1, 1, 1, n).expand(C, 1, 1, n)
    x = F.conv2d(x, kv, stride=(down, 1), padding=(conv_pad, 0), groups=C)
    x = F.conv2d(x, kh, stride=(1, down), padding=(0, conv_pad), groups=C)
    return x


class Blur(nn.Module):
    """FIR low-pass filter with padding (used around strided / transposed convolutions).

    The kernel is a non-persistent buffer (a constant, not part of state dicts).
    """

    def __init__(self, kernel: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        self.register_buffer("kernel", make_kernel_1d(kernel), persistent=False)
        self.gain = float(upsample_factor ** 2)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H + pad0 + pad1 - n + 1, ...)."""
        return upfirdn2d(x, self.kernel, pad=self.pad, gain=self.gain)


class Upsample(nn.Module):
    """2x (or ``factor``x) FIR upsampling: (B, C, H, W) -> (B, C, H * factor, W * factor)."""

    def __init__(self, kernel: Sequence[float] = DEFAULT_BLUR_KERNEL, factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel_1d(kernel), persistent=False)
        p = len(kernel) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

        self.bilinear = self.factor == 2 and tuple(kernel) == DEFAULT_BLUR_KERNEL

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bilinear:
            # zero-insertion + [1,3,3,1] filter == bilinear 2x upsampling of the zero-padded input
            # (taps 1/4, 3/4), cropped: one interpolation kernel instead of pad/reshape/two convs.
            y = F.interpolate(F.pad(x, [1, 1, 1, 1]), scale_factor=2, mode="bilinear", align_corners=False)
            return y[..., 2:-2, 2:-2]
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad, gain=float(self.factor ** 2))


class Downsample(nn.Module):
    """2x (or ``factor``x) FIR downsampling: (B, C, H, W) -> (B, C, H // factor, W // factor)."""

    def __init__(self, kernel: Sequence[float] = DEFAULT_BLUR_KERNEL, factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel_1d(kernel), persistent=False)
        p = len(kernel) - factor
        self.pad = ((p + 1) // 2, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, down=self.factor, pad=self.pad)


def fused_leaky_relu(
    x: torch.Tensor, bias: torch.Tensor | None = None, slope: float = LRELU_SLOPE, gain: float = LRELU_GAIN
) -> torch.Tensor:
    """``leaky_relu(x + bias) * gain`` with ``bias`` (C,) broadcast over dim 1 of ``x`` (B, C, ...)."""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, slope) * gain


class FusedLeakyReLU(nn.Module):
    """Learned per-channel bias + leaky ReLU (slope 0.2) + gain sqrt(2). Parameter ``bias`` (C,)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class ScaledLeakyReLU(nn.Module):
    """Leaky ReLU (slope 0.2) times sqrt(2), no bias."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x)
