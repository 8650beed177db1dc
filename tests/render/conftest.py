"""Fixtures of engineer C2's tests: a synthetic subject (real subject writers, real rig/UV
rasteriser) with a tiny-preset avatar trained once per test process."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))

from synth import make_subject, trained_synth_subject


@pytest.fixture(scope="session")
def synth_avatar() -> Path:
    """Subject folder with ``avatar/checkpoint.pt`` (tiny preset, 40 steps). Read-only."""
    return trained_synth_subject()


@pytest.fixture
def synth_avatar_copy(synth_avatar: Path, tmp_path: Path) -> Path:
    """A private, writable copy of ``synth_avatar``."""
    dst = tmp_path / "subject"
    shutil.copytree(synth_avatar, dst)
    return dst


@pytest.fixture
def synth_subject(tmp_path: Path) -> Path:
    """A fresh untrained synthetic subject (40 frames, 32 px)."""
    return make_subject(tmp_path / "subject")
