"""Fixtures of the face-tracking tests: small real videos written with OpenCV from
``skimage.data.astronaut()`` (a real photo, so MediaPipe finds a real face), and the full
synthetic sample tracked once per session for the accuracy tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest


def astronaut(size: int = 256) -> np.ndarray:
    """(size, size, 3) uint8 RGB astronaut photo."""
    from skimage import data

    return cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    """Write RGB frames as an mp4 (mp4v) with OpenCV; returns ``path``."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened(), "OpenCV cannot write mp4v here"
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def moving_frames(n: int = 20, size: int = 256, roll_deg: float = 4.0) -> tuple[list[np.ndarray], np.ndarray]:
    """The photo rotated in the image plane by a known angle per frame.

    Returns (frames, roll angles (n,) radians; positive = counter-clockwise on screen).
    """
    img = astronaut(size)
    angles = roll_deg * np.sin(np.arange(n) * 2 * np.pi / n)
    frames = []
    for a in angles:
        M = cv2.getRotationMatrix2D((size / 2, size * 0.4), float(a), 1.0)  # a > 0: counter-clockwise
        frames.append(cv2.warpAffine(img, M, (size, size), borderMode=cv2.BORDER_REFLECT))
    return frames, np.deg2rad(angles)


@pytest.fixture(scope="session")
def astro_video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """(mp4 path, ground-truth roll per frame) of a 20-frame 256 px clip."""
    frames, roll = moving_frames()
    path = tmp_path_factory.mktemp("astro") / "astro.mp4"
    return write_video(path, frames), roll


@pytest.fixture(scope="session")
def astro_subject(astro_video: tuple[Path, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``astro_video`` tracked at 128 px. Read-only."""
    from backend.face.track import track_video

    out = tmp_path_factory.mktemp("astro_subject") / "subject"
    return track_video(astro_video[0], out, size=128)


@pytest.fixture(scope="session")
def tiny_tracked_256(tiny_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny synthetic sample (160 px video, 50 frames) tracked at 256 px. Read-only."""
    from backend.face.track import track_video

    out = tmp_path_factory.mktemp("tiny_tracked_256") / "subject"
    return track_video(tiny_sample / "sample.mp4", out, size=256)
