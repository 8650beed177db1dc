"""protocol.fileio.atomic_write_npz / read_npz: what np.savez writes and np.load reads, written
atomically, read back whole, damage detected."""

from __future__ import annotations

import io
import struct
import zipfile
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


# -- malformed input ----------------------------------------------------------------------------
def _npy(descr: str, shape: tuple[int, ...], data: bytes, pad_dims: int = 0) -> bytes:
    """An ``.npy`` file whose header says ``descr`` and ``shape`` (whatever ``data`` holds)."""
    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape + (1,) * pad_dims}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + data


def _zip(path: Path, member: bytes, compression: int) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        zf.writestr("x.npy", member)
    return path


FLOATS = np.arange(10, dtype="<f4").tobytes()
MALFORMED = {
    "header asks for more bytes than stored": (_npy("<f4", (1000,), FLOATS), "holds 40 bytes.*says 4000"),
    "header asks for 4 TiB": (_npy("<f4", (2**40,), FLOATS), "holds 40 bytes.*says 4398046511104"),
    "header asks for fewer bytes than stored": (_npy("<f4", (3,), FLOATS), "holds 40 bytes.*says 12"),
    "object dtype (pickle)": (_npy("|O", (10,), FLOATS), "object array"),
    "header over numpy's bound": (_npy("<f4", (10,), FLOATS, pad_dims=4000), "large"),
    "no .npy magic": (b"this is not an npy file at all", "magic"),
    ".npy version 9.0": (b"\x93NUMPY\x09\x00" + bytes(100), "version 9.0"),
}


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED],
                         ids=["stored", "deflated"])
@pytest.mark.parametrize("case", list(MALFORMED))
def test_read_npz_refuses_malformed_members(tmp_path: Path, case: str, compression: int) -> None:
    member, match = MALFORMED[case]
    path = _zip(tmp_path / "x.npz", member, compression)
    with pytest.raises(ValueError, match=f"x.npz: member 'x.npy'.*{match}"):
        read_npz(path)


@pytest.mark.parametrize("writer", ["savez", "savez_compressed"])
def test_read_npz_never_unpickles(tmp_path: Path, writer: str) -> None:
    path = tmp_path / "x.npz"
    getattr(np, writer)(path, ok=np.ones(3), bad=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match=r"'bad\.npy' is an object array"):
        read_npz(path)


def test_read_npz_refuses_sizes_the_file_cannot_hold(tmp_path: Path) -> None:
    """A zip directory claiming more bytes than the file holds is refused before any allocation."""
    for writer, match in ((np.savez, "past the end of the file"),
                          (np.savez_compressed, "more than the file")):
        path = tmp_path / f"{writer.__name__}.npz"
        writer(path, x=np.zeros(1000, np.float32))
        raw = bytearray(path.read_bytes())
        central = raw.index(b"PK\x01\x02")
        sizes = struct.unpack("<II", raw[central + 20:central + 28])
        big = 2**31  # the header is not touched: the directory's sizes alone lie
        raw[central + 20:central + 28] = struct.pack("<II", big if writer is np.savez else sizes[0], big)
        path.write_bytes(bytes(raw))
        with pytest.raises(ValueError, match=match):
            read_npz(path)


def test_read_npz_refuses_files_that_are_no_npz(tmp_path: Path) -> None:
    cut = tmp_path / "cut.npz"
    atomic_write_npz(cut, {"x": np.arange(100, dtype=np.float32)})
    cut.write_bytes(cut.read_bytes()[:300])  # the directory at the end is gone
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip" * 100)
    for path in (cut, garbage):
        with pytest.raises(ValueError, match=f"{path.name}: not a readable .npz"):
            read_npz(path)
    # a compressed member whose stream is damaged: zlib's or the crc's error, named as the file's
    bad = tmp_path / "deflated.npz"
    np.savez_compressed(bad, x=np.arange(4096, dtype=np.float32))
    raw = bytearray(bad.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"deflated\.npz"):
        read_npz(bad)
