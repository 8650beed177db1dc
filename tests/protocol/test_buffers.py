"""Buffer frames: dtypes, byte order, zero-copy views, checksum schemes."""

from __future__ import annotations

import numpy as np
import pytest

from protocol.buffers import ALLOWED_DTYPES, decode_buffers, encode_buffers
from protocol.envelope import Session
from protocol.errors import BufferSpecError

KEY = b"buffer-test-key-0123456789"


@pytest.mark.parametrize("dtype", ALLOWED_DTYPES)
def test_every_allowed_dtype_round_trips(dtype: str) -> None:
    arr = (np.arange(24) % 7).astype(dtype).reshape(2, 3, 4)
    descriptors, frames = encode_buffers({"a": arr})
    out = decode_buffers(descriptors, [bytes(f) for f in frames])["a"]
    assert out.dtype == np.dtype(dtype) and np.array_equal(out, arr) and not out.flags.writeable


def test_big_endian_and_strided_arrays_are_converted() -> None:
    big = np.arange(6, dtype=">f4").reshape(2, 3)
    strided = np.arange(20, dtype=np.int32).reshape(4, 5)[:, ::2]
    descriptors, frames = encode_buffers({"big": big, "strided": strided})
    out = decode_buffers(descriptors, [bytes(f) for f in frames])
    assert out["big"].dtype == np.dtype("<f4") and np.array_equal(out["big"], big)
    assert np.array_equal(out["strided"], strided)


def test_contiguous_arrays_are_sent_without_copy() -> None:
    arr = np.zeros((64, 64, 3), np.float16)
    _, (frame,) = encode_buffers({"uv": arr}, checksum="none")
    arr[0, 0, 0] = 1.0  # the frame is a view of the array itself
    assert np.frombuffer(frame, np.float16)[0] == 1.0


def test_hmac_checksum_authenticates_the_bytes_with_the_key() -> None:
    sender = Session(KEY, checksum="hmac-sha256")
    frames = [bytes(f) for f in sender.serialize(
        "upload_chunk", {"upload_id": "u", "filename": "v.mp4", "offset": 0, "total": 4},
        buffers={"data": np.array([1, 2, 3, 4], np.uint8)})]
    assert Session(KEY).deserialize(frames).buffers["data"].tolist() == [1, 2, 3, 4]
    frames[-1] = b"\x01\x02\x03\x05"
    with pytest.raises(BufferSpecError, match="hmac-sha256 checksum mismatch"):
        Session(KEY).deserialize(frames)


def test_require_checksum_refuses_unchecked_buffers() -> None:
    frames = Session(KEY, checksum="none").serialize(
        "upload_chunk", {"upload_id": "u", "filename": "v.mp4", "offset": 0, "total": 1},
        buffers={"data": np.ones(1, np.uint8)})
    assert Session(KEY).deserialize(frames).buffers["data"][0] == 1
    with pytest.raises(BufferSpecError, match="requires one"):
        Session(KEY, require_checksum=True).deserialize(frames)


@pytest.mark.parametrize(("descriptor", "match"), [
    ({"name": "a", "dtype": "float32", "shape": [2], "nbytes": 8, "checksum": "md5:00"}, "unknown checksum"),
    ({"name": "a", "dtype": "float32", "shape": [-2], "nbytes": 8}, r"ints in 0\.\.2\^31"),
    ({"name": "a", "dtype": "float32", "shape": [2], "nbytes": True}, "'nbytes' missing"),
    ({"name": "", "dtype": "float32", "shape": [2], "nbytes": 8}, "no valid 'name'"),
    ("not a map", "expected a map"),
])
def test_bad_descriptors(descriptor, match) -> None:
    with pytest.raises(BufferSpecError, match=match):
        decode_buffers([descriptor], [b"\0" * 8])
