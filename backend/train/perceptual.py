"""The perceptual distance under its trainer-side name: it lives in ``backend.metrics.perceptual``."""

from backend.metrics.perceptual import Perceptual, build_perceptual, file_sha256

__all__ = ["Perceptual", "build_perceptual", "file_sha256"]
