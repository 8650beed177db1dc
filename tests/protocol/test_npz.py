"""protocol.fileio.atomic_write_npz / read_npz: what np.savez writes and np.load reads, written
atomically, read back whole, damage detected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from protocol import fileio
from protocol.fileio import atomic_write_npz, read_npz


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    uv = rng.random((5, 16, 16, 3)).astype(np.float16)
    return {
        "expressions": rng.standard_normal((7, 52)).astype(np.float32),
        "uv_maps": uv,
        "strided": rng.standard_normal((6, 8))[:, ::2],  # made contiguous on the way
        "fortran": np.asfortranarray(rng.standard_normal((3, 4))),
        "flags": rng.random(11) > 0.5,
        "scalar": np.array(3.5),
        "empty": np.zeros((0, 6), np.float32),
        "big_endian": np.arange(5, dtype=">i4"),
    }


def test_round_trip_equals_savez(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fileio, "NPZ_CHUNK_BYTES", 100)  # many chunks per array, a partial last one
    arrays = _arrays()
    atomic_write_npz(tmp_path / "a.npz", arrays)
    np.savez(tmp_path / "b.npz", **arrays)
    with np.load(tmp_path / "a.npz", allow_pickle=False) as a, np.load(tmp_path / "b.npz") as b:
        assert a.files == b.files == list(arrays)
        for name in arrays:
            assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
            assert np.array_equal(a[name], b[name]), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.npz"]  # no temp file left


def test_object_arrays_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    target = tmp_path / "inputs.npz"
    atomic_write_npz(target, {"x": np.ones(3)})
    before = target.read_bytes()
    with pytest.raises(ValueError, match="object arrays"):
        atomic_write_npz(target, {"ok": np.ones(2), "bad": np.array([{"a": 1}], dtype=object)})
    assert target.read_bytes() == before  # the old file stays whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs.npz"]


@pytest.mark.parametrize("writer", ["atomic_write_npz", "savez", "savez_compressed"])
def test_read_npz_equals_np_load(tmp_path: Path, writer: str) -> None:
    arrays = _arrays()
    path = tmp_path / "x.npz"
    if writer == "atomic_write_npz":
        atomic_write_npz(path, arrays)
    else:
        getattr(np, writer)(path, **arrays)
    got = read_npz(path)
    with np.load(path) as want:
        assert list(got) == want.files
        for name in want.files:
            assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape, name
            assert np.array_equal(got[name], want[name]), name
    assert got["fortran"].flags.f_contiguous or got["fortran"].flags.c_contiguous


def test_read_npz_refuses_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    uv = np.arange(4096, dtype=np.float16).reshape(4, 32, 32)
    atomic_write_npz(path, {"uv_maps": uv})
    raw = bytearray(path.read_bytes())
    at = raw.index(uv.tobytes()[:64]) + 1000  # a byte inside the array data
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="damaged"):
        read_npz(path)
