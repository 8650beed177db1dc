"""PSNR and SSIM on inputs with known answers."""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity

from backend.metrics.psnr import psnr
from backend.metrics.ssim import ssim_uint8


def test_psnr_of_known_noise() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(20, 235, size=(64, 64, 3)).astype(np.uint8)
    noise = rng.choice(np.array([-5, 5]), size=a.shape)  # MSE exactly 25
    b = (a.astype(int) + noise).astype(np.uint8)
    assert math.isclose(psnr(a, b), 10 * math.log10(255**2 / 25), rel_tol=1e-9)
    assert psnr(a, a) == math.inf


def test_ssim_identical_and_vs_scikit_image() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=(48, 48, 3)).astype(np.uint8)
    assert math.isclose(ssim_uint8(a, a), 1.0, abs_tol=1e-9)
    b = np.clip(a.astype(int) + rng.integers(-30, 30, size=a.shape), 0, 255).astype(np.uint8)
    ours = ssim_uint8(a, b)
    ref = structural_similarity(a, b, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=255)
    assert 0.0 < ours < 1.0
    # identical formula; scikit-image crops the 5-px border while we reflect-pad it
    assert abs(ours - ref) < 0.02
