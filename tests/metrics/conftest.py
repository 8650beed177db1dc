"""Fixtures of engineer C2's tests, on top of the shared session fixtures of tests/conftest.py
(the tiny sample tracked into a subject, with a tiny-preset avatar trained once per session)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synth_avatar(tiny_avatar_subject: Path) -> Path:
    """Subject folder with ``avatar/checkpoint.pt`` (tiny preset, default steps). Read-only."""
    return tiny_avatar_subject


@pytest.fixture
def synth_avatar_copy(writable_subject: Path) -> Path:
    """A private, writable copy of the trained tiny subject."""
    return writable_subject


@pytest.fixture
def synth_subject(tiny_subject: Path, tmp_path: Path) -> Path:
    """A private copy of the untrained tiny subject."""
    dst = tmp_path / "subject"
    shutil.copytree(tiny_subject, dst)
    return dst
