"""A minimal OpenEXR reader (pure numpy, no bpy) for the files the add-on itself writes.

Blender's bundled Python has no OpenEXR/OpenImageIO module, and reading render passes through
the compositor differs between 4.x (``Scene.node_tree``) and 5.0 (``compositing_node_group``).
So the UV pass is rendered to a multilayer EXR with ``exr_codec = 'NONE'`` (uncompressed
scanlines) and 32-bit float channels, and parsed here.

Supported: single-part scanline files, compression NONE, pixel types HALF/FLOAT/UINT. Anything
else raises ``ValueError`` with the reason.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

_MAGIC = 20000630
_PIXEL_DTYPES = {0: np.dtype("<u4"), 1: np.dtype("<f2"), 2: np.dtype("<f4")}


def _cstr(data: bytes, pos: int) -> tuple[str, int]:
    end = data.index(b"\x00", pos)
    return data[pos:end].decode("utf-8"), end + 1


def _parse_channels(blob: bytes) -> list[tuple[str, np.dtype]]:
    channels = []
    pos = 0
    while blob[pos] != 0:
        name, pos = _cstr(blob, pos)
        pixel_type, _plinear, xs, ys = struct.unpack_from("<iB3xii", blob, pos)
        pos += 16
        if (xs, ys) != (1, 1):
            raise ValueError(f"EXR channel {name!r} is subsampled ({xs}x{ys}); not supported")
        channels.append((name, _PIXEL_DTYPES[pixel_type]))
    return channels


def read_exr(path: str | Path) -> dict[str, np.ndarray]:
    """Read every channel of an uncompressed scanline EXR -> ``{name: (H, W) float32}``.

    Rows are returned top row first (EXR ``INCREASING_Y`` storage order), as in image files.
    """
    data = Path(path).read_bytes()
    if len(data) < 8 or struct.unpack_from("<i", data, 0)[0] != _MAGIC:
        raise ValueError(f"{path}: not an OpenEXR file")
    flags = struct.unpack_from("<I", data, 4)[0]
    if flags & 0x200 or flags & 0x1000:
        raise ValueError(f"{path}: tiled or multi-part EXR files are not supported")
    pos = 8
    header: dict[str, tuple[str, bytes]] = {}
    while data[pos] != 0:
        name, pos = _cstr(data, pos)
        typ, pos = _cstr(data, pos)
        size = struct.unpack_from("<i", data, pos)[0]
        pos += 4
        header[name] = (typ, data[pos:pos + size])
        pos += size
    pos += 1
    compression = header["compression"][1][0]
    if compression != 0:
        raise ValueError(f"{path}: EXR compression {compression} is not supported (write with codec NONE)")
    channels = _parse_channels(header["channels"][1])
    xmin, ymin, xmax, ymax = struct.unpack("<iiii", header["dataWindow"][1])
    width, height = xmax - xmin + 1, ymax - ymin + 1
    offsets = np.frombuffer(data, dtype="<u8", count=height, offset=pos)
    out = {name: np.zeros((height, width), dtype=np.float32) for name, _ in channels}
    for offset in offsets:
        y, nbytes = struct.unpack_from("<ii", data, int(offset))
        cursor = int(offset) + 8
        row = y - ymin
        for name, dtype in channels:  # channels are stored in the header's (alphabetical) order
            count = width
            values = np.frombuffer(data, dtype=dtype, count=count, offset=cursor)
            out[name][row] = values.astype(np.float32)
            cursor += count * dtype.itemsize
        if cursor - int(offset) - 8 != nbytes:
            raise ValueError(f"{path}: scanline {y} has {nbytes} bytes, expected {cursor - int(offset) - 8}")
    return out
