"""Shared, session-scoped fixtures: the tiny synthetic sample, its tracked subject, a tiny
trained avatar. Each is built once per test run, from real code (no stand-ins)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def tiny_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with the tiny synthetic talking-head clip (``sample.mp4``) and its ground truth."""
    from backend.data.sample import synthesize_sample

    out = tmp_path_factory.mktemp("tiny_sample")
    synthesize_sample(out, tiny=True)
    return out


@pytest.fixture(scope="session")
def tiny_subject(tiny_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny sample tracked into a subject folder (64 px crops). Treat as read-only."""
    from backend.face.track import track_video

    out = tmp_path_factory.mktemp("tiny_subject") / "subject"
    track_video(tiny_sample / "sample.mp4", out, size=64)
    return out


@pytest.fixture(scope="session")
def tiny_avatar_subject(tiny_subject: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny subject with a tiny-preset avatar trained into it. Treat as read-only."""
    from backend.train.stage1 import train_avatar

    subject = tmp_path_factory.mktemp("tiny_avatar") / "subject"
    shutil.copytree(tiny_subject, subject)
    train_avatar(subject, preset="tiny", seed=0)
    return subject


@pytest.fixture
def writable_subject(tiny_avatar_subject: Path, tmp_path: Path) -> Path:
    """A private copy of the trained tiny subject that a test may change."""
    subject = tmp_path / "subject"
    shutil.copytree(tiny_avatar_subject, subject)
    return subject


@pytest.fixture
def untrained_subject(tiny_subject: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the tracked (untrained) tiny subject."""
    subject = tmp_path / "untrained_subject"
    shutil.copytree(tiny_subject, subject)
    return subject


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    """Call ``predicate`` every ``interval`` s until it returns something true (returned), or
    fail after ``timeout`` s naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
