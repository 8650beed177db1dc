"""numpy arrays <-> raw buffer frames described in the (signed) content.

A message's content carries ``"_buffers": [descriptor, ...]`` in the same order as the
buffer frames that follow the content frame. A descriptor is::

    {"name": "uv_maps", "dtype": "float16", "shape": [T, H, W, 3], "nbytes": 393216 * T,
     "checksum": "crc32:1a2b3c4d"}          # checksum optional, see below

Conventions:
- dtypes come from :data:`ALLOWED_DTYPES` only (no object / structured dtypes), always
  little-endian and C-contiguous on the wire; big-endian or strided arrays are converted on send.
- decoded arrays are zero-copy, **read-only** views of the received frames
  (``np.frombuffer``); ``arr.copy()`` when you need to write.
- checksums cover the buffer bytes: ``"crc32:%08x"`` (zlib.crc32, ~3.5 GB/s here: catches
  corruption and bugs, not an attacker) or ``"hmac-sha256:<hex>"`` keyed with the session key
  (~1.1 GB/s: authenticates the bytes like the signature does the dicts). The key is the
  ``buffers`` key derived from the connection key (:mod:`protocol.keys`), never the one that
  signs envelopes. The descriptor itself, with the checksum, is inside the HMAC-signed content.
- bounds (:mod:`protocol.limits`): at most ``MAX_NDIM`` dimensions, each at most ``MAX_DIM``,
  ``MAX_BUFFERS`` buffers per message; ``nbytes`` must equal the frame's length.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import BufferSpecError
from .limits import MAX_BUFFERS, MAX_DIM, MAX_NDIM

BUFFERS_KEY = "_buffers"
"""Reserved content key listing the buffer descriptors."""

ALLOWED_DTYPES: tuple[str, ...] = (
    "bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
    "float16", "float32", "float64",
)
"""dtype names a buffer may have (numpy names; little-endian on the wire)."""

CHECKSUMS: tuple[str, ...] = ("none", "crc32", "hmac-sha256")
"""Buffer checksum schemes: ``none`` trusts the transport, ``crc32`` detects corruption,
``hmac-sha256`` authenticates the bytes with the session key."""

_MAX_EXTENT = 2**62
"""Bytes a shape may span with its zero dimensions counted as 1 (what numpy can represent)."""

_LE_DTYPES = {name: np.dtype(name).newbyteorder("<") for name in ALLOWED_DTYPES}
_NAME_BY_DTYPE = {**{np.dtype(n): n for n in ALLOWED_DTYPES}, **{d: n for n, d in _LE_DTYPES.items()}}


def compute_checksum(data: memoryview | bytes, scheme: str, key: bytes = b"") -> str:
    """Checksum string for ``data`` under ``scheme`` (``crc32`` or ``hmac-sha256``)."""
    if scheme == "crc32":
        return f"crc32:{zlib.crc32(data) & 0xFFFFFFFF:08x}"
    if scheme == "hmac-sha256":
        return "hmac-sha256:" + hmac.new(key, data, hashlib.sha256).hexdigest()
    raise BufferSpecError(f"unknown checksum scheme {scheme!r}; use one of {', '.join(CHECKSUMS)}")


def checksum_scheme(checksum: Any, what: str = "buffer") -> str:
    """The scheme of a ``scheme:hex`` checksum string, or :class:`BufferSpecError` (reads no data)."""
    if not isinstance(checksum, str) or ":" not in checksum:
        raise BufferSpecError(f"{what}: checksum {str(checksum)[:80]!r} is not of the form 'crc32:<hex>'")
    scheme = checksum.split(":", 1)[0]
    if scheme == "none" or scheme not in CHECKSUMS:
        raise BufferSpecError(f"{what}: unknown checksum scheme {scheme[:40]!r}; "
                              "expected crc32 or hmac-sha256")
    return scheme


def verify_checksum(data: memoryview | bytes, checksum: str, key: bytes = b"", *,
                    what: str = "buffer") -> None:
    """Raise :class:`BufferSpecError` unless ``checksum`` (``scheme:hex``) matches ``data``."""
    scheme = checksum_scheme(checksum, what)
    expected = compute_checksum(data, scheme, key)
    if not hmac.compare_digest(expected.encode(), checksum.encode("utf-8", "replace")):
        raise BufferSpecError(
            f"{what}: {scheme} checksum mismatch (bytes damaged or altered in transit); resend it")


def dtype_name(dtype: np.dtype) -> str:
    """Wire name of ``dtype`` or :class:`BufferSpecError` when it is not allowed."""
    name = _NAME_BY_DTYPE.get(dtype)  # fast path (dtype.name is slow)
    if name is not None:
        return name
    name = np.dtype(dtype).name
    if name not in _LE_DTYPES:
        raise BufferSpecError(
            f"dtype {np.dtype(dtype)} cannot travel as a buffer; convert to one of "
            f"{', '.join(ALLOWED_DTYPES)}")
    return name


def encode_buffers(buffers: Mapping[str, np.ndarray] | None, checksum: str = "crc32",
                   key: bytes = b"") -> tuple[list[dict[str, Any]], list[memoryview]]:
    """Describe and expose ``buffers`` for sending.

    Returns (descriptors, frames): frames are memoryviews of little-endian C-contiguous arrays
    (no copy when the array already is one), ready for ``send_multipart(copy=False)``.
    """
    if checksum not in CHECKSUMS:
        raise BufferSpecError(f"unknown checksum scheme {checksum!r}; use one of {', '.join(CHECKSUMS)}")
    descriptors: list[dict[str, Any]] = []
    frames: list[memoryview] = []
    for name, arr in (buffers or {}).items():
        if not isinstance(name, str) or not name:
            raise BufferSpecError(f"buffer name {name!r} must be a non-empty string")
        if not isinstance(arr, np.ndarray):
            raise BufferSpecError(f"buffer {name!r} is a {type(arr).__name__}; pass a numpy array")
        wire = _LE_DTYPES[dtype_name(arr.dtype)]
        if arr.ndim > MAX_NDIM:
            raise BufferSpecError(f"buffer {name!r} has {arr.ndim} dimensions; at most {MAX_NDIM} allowed")
        arr = np.ascontiguousarray(arr, dtype=wire)
        view = memoryview(arr).cast("B") if arr.size else memoryview(b"")
        desc: dict[str, Any] = {"name": name, "dtype": _NAME_BY_DTYPE[wire], "shape": list(arr.shape),
                                "nbytes": int(arr.nbytes)}
        if checksum != "none":
            desc["checksum"] = compute_checksum(view, checksum, key)
        descriptors.append(desc)
        frames.append(view)
    return descriptors, frames


def _check_descriptor(desc: Any, i: int) -> tuple[str, np.dtype, tuple[int, ...], int]:
    if not isinstance(desc, Mapping):
        raise BufferSpecError(f"buffer descriptor #{i} is a {type(desc).__name__}, expected a map")
    name, dt, shape, nbytes = desc.get("name"), desc.get("dtype"), desc.get("shape"), desc.get("nbytes")
    if not isinstance(name, str) or not name:
        raise BufferSpecError(f"buffer descriptor #{i} has no valid 'name'")
    if dt not in _LE_DTYPES:
        raise BufferSpecError(f"buffer {name!r}: dtype {dt!r} not allowed; use one of "
                              f"{', '.join(ALLOWED_DTYPES)}")
    if (not isinstance(shape, list | tuple) or len(shape) > MAX_NDIM
            or not all(type(s) is int and 0 <= s <= MAX_DIM for s in shape)):
        raise BufferSpecError(f"buffer {name!r}: shape {str(shape)[:80]} must be a list of at most "
                              f"{MAX_NDIM} ints in 0..2^31")
    if not isinstance(nbytes, int) or isinstance(nbytes, bool):
        raise BufferSpecError(f"buffer {name!r}: 'nbytes' missing or not an int")
    dtype = _LE_DTYPES[dt]
    if dtype.itemsize * math.prod(max(s, 1) for s in shape) > _MAX_EXTENT:
        raise BufferSpecError(f"buffer {name!r}: shape {list(shape)} spans more than 2^62 bytes "
                              "(even an empty array must have a representable extent)")
    expected = dtype.itemsize * math.prod(shape)
    if expected != nbytes:
        raise BufferSpecError(f"buffer {name!r}: {dt} x {list(shape)} is {expected} bytes "
                              f"but nbytes says {nbytes}")
    return name, dtype, tuple(int(s) for s in shape), nbytes


def decode_buffers(descriptors: Any, frames: Sequence[memoryview], key: bytes = b"",
                   require_checksum: bool = False, pending: dict[str, str] | None = None
                   ) -> dict[str, np.ndarray]:
    """Turn received buffer frames into read-only arrays, checking every descriptor.

    Raises :class:`BufferSpecError` for a bad descriptor, a frame whose size disagrees with
    dtype x shape, a duplicate name, a checksum mismatch, or (``require_checksum``) a missing one.
    With ``pending`` (a dict), the checksums are not computed here (they read every byte): their
    form is checked and ``pending[name] = checksum`` is filled in for :func:`verify_pending`.
    """
    if descriptors is None:
        descriptors = []
    if not isinstance(descriptors, list | tuple):
        raise BufferSpecError(f"content[{BUFFERS_KEY!r}] must be a list of buffer descriptors")
    if len(descriptors) > MAX_BUFFERS:
        raise BufferSpecError(f"{len(descriptors)} buffers; at most {MAX_BUFFERS} per message")
    if len(descriptors) != len(frames):
        raise BufferSpecError(f"content describes {len(descriptors)} buffers but {len(frames)} buffer "
                              "frames arrived (truncated message?)")
    out: dict[str, np.ndarray] = {}
    for i, (desc, frame) in enumerate(zip(descriptors, frames, strict=True)):
        name, dtype, shape, nbytes = _check_descriptor(desc, i)
        if name in out:
            raise BufferSpecError(f"buffer name {name!r} appears twice")
        if len(frame) != nbytes:
            raise BufferSpecError(f"buffer {name!r}: frame has {len(frame)} bytes, descriptor says {nbytes}")
        checksum = desc.get("checksum")
        if checksum is not None and pending is not None:
            checksum_scheme(checksum, f"buffer {name!r}")
            pending[name] = checksum
        elif checksum is not None:
            verify_checksum(frame, checksum, key, what=f"buffer {name!r}")
        elif require_checksum:
            raise BufferSpecError(f"buffer {name!r} has no checksum but this receiver requires one")
        try:
            arr = np.frombuffer(frame, dtype=dtype).reshape(shape) if nbytes else np.zeros(shape, dtype)
        except (ValueError, MemoryError) as exc:  # guarded above; a last line for numpy's own limits
            raise BufferSpecError(f"buffer {name!r}: shape {list(shape)} is not allowed ({exc})") from None
        arr.flags.writeable = False
        out[name] = arr
    return out


def verify_pending(buffers: Mapping[str, np.ndarray], pending: dict[str, str], key: bytes = b"") -> None:
    """Verify the checksums :func:`decode_buffers` left in ``pending`` (emptied when all match);
    raises :class:`BufferSpecError` at the first mismatch."""
    for name, checksum in list(pending.items()):
        arr = buffers[name]
        data = memoryview(arr).cast("B") if arr.size else b""
        verify_checksum(data, checksum, key, what=f"buffer {name!r}")
        del pending[name]
