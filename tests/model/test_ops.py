"""FIR up/down-sampling and blur against a direct 2-D reference computation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from backend.model.ops import Blur, Downsample, Upsample, make_kernel_1d, make_kernel_2d, upfirdn2d


def reference_upfirdn2d(x, k2d, up=1, down=1, pad=(0, 0)):
    """Zero-insert, pad, full 2-D convolution (flipped kernel), subsample - written out plainly."""
    B, C, H, W = x.shape
    xu = x.new_zeros(B, C, H * up, W * up)
    xu[:, :, ::up, ::up] = x
    xu = F.pad(xu, [pad[0], pad[1], pad[0], pad[1]])
    w = k2d.flip(0, 1)[None, None].repeat(C, 1, 1, 1)
    out = F.conv2d(xu, w, groups=C)
    return out[:, :, ::down, ::down]


def test_upfirdn2d_matches_2d_reference():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 9)
    k = (1, 3, 3, 1)
    cases = [(1, 1, (1, 2), 1.0), (2, 1, (2, 1), 4.0), (1, 2, (1, 1), 1.0), (2, 2, (1, 1), 4.0)]
    for up, down, pad, gain in cases:
        got = upfirdn2d(x, make_kernel_1d(k), up=up, down=down, pad=pad, gain=gain)
        want = reference_upfirdn2d(x, make_kernel_2d(k) * gain, up=up, down=down, pad=pad)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_upsample_downsample_shapes_and_constant_content():
    x = torch.full((1, 2, 8, 8), 3.0)
    up = Upsample()(x)
    assert up.shape == (1, 2, 16, 16)
    # away from the zero-padded border a constant stays the same constant (kernel keeps the mean)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.full_like(up[..., 2:-2, 2:-2], 3.0))
    down = Downsample()(x)
    assert down.shape == (1, 2, 4, 4)
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.full_like(down[..., 1:-1, 1:-1], 3.0))


def test_downsample_removes_nyquist_checkerboard():
    yy, xx = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    checker = ((yy + xx) % 2).float()[None, None] * 2 - 1
    down = Downsample()(checker)
    # the [1,3,3,1] filter has a zero at Nyquist: the checkerboard vanishes (inside the border)
    assert down[..., 1:-1, 1:-1].abs().max() < 1e-6
    # plain strided subsampling would have kept it
    assert checker[..., ::2, ::2].abs().min() == 1


def test_blur_pad_keeps_size():
    x = torch.randn(1, 4, 10, 10)
    assert Blur((1, 3, 3, 1), pad=(2, 1))(x).shape == (1, 4, 10, 10)


def test_upsample_fast_path_equals_fir_reference_including_borders():
    torch.manual_seed(3)
    x = torch.randn(2, 3, 6, 5)
    up = Upsample()
    assert up.bilinear
    want = reference_upfirdn2d(x, make_kernel_2d((1, 3, 3, 1)) * 4, up=2, pad=up.pad)
    torch.testing.assert_close(up(x), want, atol=1e-6, rtol=1e-5)
    generic = Upsample((1, 2, 1))
    assert not generic.bilinear
    want = reference_upfirdn2d(x, make_kernel_2d((1, 2, 1)) * 4, up=2, pad=generic.pad)
    torch.testing.assert_close(generic(x), want, atol=1e-6, rtol=1e-5)
