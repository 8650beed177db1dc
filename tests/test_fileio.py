"""Atomic writes: readers see the old content or the new one, never a half-written file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from protocol.fileio import atomic_dir, atomic_path, atomic_write_bytes, atomic_write_text


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "ckpt.bin"
    atomic_write_bytes(target, b"good")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.bin"]


def test_modes_follow_umask_unless_given(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "plain.txt", "x")
        atomic_write_text(tmp_path / "secret.json", "{}", mode=0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "secret.json").stat().st_mode) == 0o600


def test_atomic_dir_refuses_existing_without_overwrite_and_replaces_with_it(tmp_path: Path) -> None:
    target = tmp_path / "subject"
    with atomic_dir(target) as tmp:
        (tmp / "meta.json").write_text("1")
    with pytest.raises(FileExistsError, match="--overwrite"), atomic_dir(target):
        pass
    with pytest.raises(ValueError), atomic_dir(target, overwrite=True) as tmp:
        (tmp / "meta.json").write_text("half")
        raise ValueError("tracking failed")
    assert (target / "meta.json").read_text() == "1"
    with atomic_dir(target, overwrite=True) as tmp:
        (tmp / "meta.json").write_text("2")
    assert (target / "meta.json").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["subject"]
