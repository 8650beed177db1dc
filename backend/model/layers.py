"""StyleGAN2 building blocks as small modules (equalised learning rate, modulated convolution, ...).

Parameter names and shapes follow the widely used PyTorch port of StyleGAN2 (rosinality's
``model.py``), so that a checkpoint of that format loads by name: e.g. a ``ModulatedConv2d``
holds ``weight`` (1, out, in, k, k) and ``modulation.{weight,bias}``; a ``StyledConv`` holds
``conv``, ``noise.weight`` and ``activate.bias``. The code is our own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from backend.model.ops import (
    DEFAULT_BLUR_KERNEL,
    LRELU_GAIN,
    LRELU_SLOPE,
    Blur,
    FusedLeakyReLU,
    ScaledLeakyReLU,
    Upsample,
    fused_leaky_relu,
)

NOISE_MODES = ("random", "const", "none")


class PixelNorm(nn.Module):
    """Normalise each vector to unit mean square: (B, D) -> (B, D)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: weights stored N(0, 1) / lr_mul, scaled at run time.

    Parameters: ``weight`` (out, in), ``bias`` (out,). With ``activation=True`` the bias is added
    inside a leaky ReLU (slope 0.2, gain sqrt(2)).
    """

    def __init__(
        self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0, lr_mul: float = 1.0,
        activation: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = (1.0 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in) -> (..., out)."""
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            out = F.linear(x, self.weight * self.scale)
            if bias is not None:
                out = out + bias
            return F.leaky_relu(out, 0.2) * math.sqrt(2.0)
        return F.linear(x, self.weight * self.scale, bias)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, lr_mul={self.lr_mul}, act={self.activation}"


class EqualConv2d(nn.Module):
    """Conv2d with equalised learning rate. Parameters: ``weight`` (out, in, k, k), ``bias`` (out,)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size ** 2)
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, H, W) -> (B, out, H', W')."""
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, k={k}, stride={self.stride}, padding={self.padding}"


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution with optional demodulation and 2x FIR upsampling.

    For each sample b the effective weight is ``w'[b,o,i] = scale * w[o,i] * s[b,i]`` and, with
    demodulation, ``w''[b,o,i] = w'[b,o,i] / sqrt(sum_{i,k} w'[b,o,i,k]^2 + 1e-8)``. ``forward``
    never builds per-sample weights for a batch: it scales the input by ``s`` and the output by the
    demodulation coefficients around one shared convolution (same result, a plain GEMM-shaped conv);
    at batch 1 it folds everything into the single weight. ``modulated_weight`` is the explicit
    formula (used by tests).

    Parameters: ``weight`` (1, out, in, k, k), ``modulation`` (EqualLinear style_dim -> in, bias init 1).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int, demodulate: bool = True,
        upsample: bool = False, blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.upsample = upsample
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        if upsample:
            factor = 2
            p = len(blur_kernel) - factor - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)

    def modulated_weight(self, style: torch.Tensor) -> torch.Tensor:
        """The explicit per-sample weight (reference formula). (B, style_dim) -> (B, out, in, k, k)."""
        s = self.modulation(style)
        w = self.scale * self.weight * s[:, None, :, None, None]
        if self.demodulate:
            w = w * torch.rsqrt(w.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        return w

    def forward(
        self, x: torch.Tensor, style: torch.Tensor, out_gain: float = 1.0, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Modulated convolution, then ``* out_gain`` and ``+ bias`` (fused into the same pass).

        Args:
            x: (B, in, H, W).
            style: (B, style_dim).
            out_gain: scalar applied to the result (folded into the demodulation coefficients).
            bias: optional (out,) added after the gain.
        Returns:
            (B, out, H, W), or (B, out, 2H, 2W) when upsampling.

        Batch 1 folds modulation and demodulation into the weight (one plain conv); larger batches
        scale the input by ``s`` and the output by the demodulation coefficients around one shared
        conv. Both compute the formula of ``modulated_weight``.
        """
        B = x.shape[0]
        s = self.modulation(style)  # (B, in)
        w = self.weight[0] * self.scale  # (out, in, k, k)
        coef = None  # (B, out) per-output scale
        if self.demodulate:
            coef = torch.rsqrt(s.pow(2) @ w.pow(2).sum(dim=(2, 3)).t() + 1e-8)
        if out_gain != 1.0:
            coef = coef * out_gain if coef is not None else s.new_full((B, self.out_channels), out_gain)
        dtype = x.dtype
        if B == 1:
            wm = w * s[0][None, :, None, None]
            if coef is not None:
                wm = wm * coef[0][:, None, None, None]
            wm = wm.to(dtype)
            if not self.upsample:
                return F.conv2d(x, wm, None if bias is None else bias.to(dtype), padding=self.padding)
            y = self.blur(F.conv_transpose2d(x, wm.transpose(0, 1), stride=2))
            return y if bias is None else y + bias.to(dtype).view(1, -1, 1, 1)
        x = x * s[:, :, None, None].to(dtype)
        if self.upsample:
            y = self.blur(F.conv_transpose2d(x, w.transpose(0, 1).to(dtype), stride=2))
        else:
            y = F.conv2d(x, w.to(dtype), padding=self.padding)
        if coef is not None:
            c = coef[:, :, None, None].to(dtype)
            return y * c if bias is None else torch.addcmul(bias.to(dtype).view(1, -1, 1, 1), y, c)
        return y if bias is None else y + bias.to(dtype).view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, "
                f"upsample={self.upsample}, demodulate={self.demodulate}")


class NoiseInjection(nn.Module):
    """Adds per-pixel noise times a learned scalar ``weight`` (1,) (initialised to 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """x (B, C, H, W); noise (B or 1, 1, H, W) or None (no noise)."""
        if noise is None:
            return x
        return x + self.weight * noise.to(x.dtype)


class ConstantInput(nn.Module):
    """The learned 4x4 start tensor ``input`` (1, C, size, size), repeated over the batch."""

    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        """-> (batch, C, size, size)."""
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    """Modulated conv + noise + biased leaky ReLU. Submodules: ``conv``, ``noise``, ``activate``."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int, upsample: bool = False,
        blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL, demodulate: bool = True,
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, kernel_size, style_dim, demodulate=demodulate,
                                    upsample=upsample, blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None
                ) -> torch.Tensor:
        """x (B, in, H, W), style (B, style_dim), noise (B|1, 1, H', W') or None -> (B, out, H', W').

        Computes ``leaky_relu(conv + noise_weight * noise + bias) * sqrt(2)`` as
        ``leaky_relu(sqrt(2) * conv + sqrt(2) * (noise_weight * noise + bias))`` (equal, since the
        gain is positive) so the gain and bias ride along with the demodulation in one pass.
        """
        out = self.conv(x, style, out_gain=LRELU_GAIN, bias=self.activate.bias * LRELU_GAIN)
        if noise is not None:
            out = torch.addcmul(out, noise.to(out.dtype), self.noise.weight.to(out.dtype) * LRELU_GAIN)
        return F.leaky_relu(out, LRELU_SLOPE, inplace=not torch.is_grad_enabled())


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) to RGB plus the FIR-upsampled RGB of the previous resolution.

    Parameters: ``conv`` (ModulatedConv2d in -> 3), ``bias`` (1, 3, 1, 1).
    """

    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True,
                 blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, in, H, W), style (B, style_dim), skip (B, 3, H/2, W/2) or None -> (B, 3, H, W)."""
        out = self.conv(x, style, bias=self.bias.view(3))
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ConvLayer(nn.Sequential):
    """[FIR blur] -> EqualConv2d (stride 2 when downsampling) -> [biased leaky ReLU].

    Indices follow the reference layout: with downsampling, index 0 is the blur, then the conv, then
    the activation; keys look like ``0.weight`` / ``1.bias`` (or ``1.weight`` / ``2.bias``).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, downsample: bool = False,
        blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL, bias: bool = True, activate: bool = True,
    ) -> None:
        layers: list[nn.Module] = []
        if downsample:
            factor = 2
            p = len(blur_kernel) - factor + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channels) if bias else ScaledLeakyReLU())
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Discriminator residual block: two 3x3 convs (the second downsamples) + a 1x1 downsampling skip,
    summed and divided by sqrt(2). (B, in, H, W) -> (B, out, H/2, W/2)."""

    def __init__(self, in_channels: int, out_channels: int, blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3, blur_kernel=blur_kernel)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, activate=False, bias=False,
                              blur_kernel=blur_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2.0)


__all__ = [
    "NOISE_MODES", "ConstantInput", "ConvLayer", "EqualConv2d", "EqualLinear", "ModulatedConv2d",
    "NoiseInjection", "PixelNorm", "ResBlock", "StyledConv", "ToRGB", "fused_leaky_relu",
]
