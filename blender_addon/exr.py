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


def _parse_header(data: bytes, pos: int) -> tuple[dict[str, tuple[str, bytes]], int]:
    header: dict[str, tuple[str, bytes]] = {}
    while data[pos] != 0:
        name, pos = _cstr(data, pos)
        typ, pos = _cstr(data, pos)
        size = struct.unpack_from("<i", data, pos)[0]
        pos += 4
        header[name] = (typ, data[pos : pos + size])
        pos += size
    return header, pos + 1


def read_exr(path: str | Path) -> dict[str, np.ndarray]:
    """Read every channel of an uncompressed scanline EXR -> ``{name: (H, W) float32}``.

    Single-part (Blender 4.x) and multi-part (Blender 5.0 multilayer) files; in a multi-part file
    a channel is named ``<part name>.<channel>`` unless its own name already has a dot. Rows are
    returned top row first (EXR ``INCREASING_Y`` storage order), as in image files.
    """
    data = Path(path).read_bytes()
    if len(data) < 8 or struct.unpack_from("<i", data, 0)[0] != _MAGIC:
        raise ValueError(f"{path}: not an OpenEXR file")
    flags = struct.unpack_from("<I", data, 4)[0]
    multipart = bool(flags & 0x1000)
    if flags & 0x200 or flags & 0x800:
        raise ValueError(f"{path}: tiled or deep EXR files are not supported (flags {flags:#x})")
    pos = 8
    headers = []
    while True:
        header, pos = _parse_header(data, pos)
        headers.append(header)
        if not multipart or data[pos] == 0:
            break
    if multipart:
        pos += 1  # the empty header that ends the list
    parts = []
    for header in headers:
        compression = header["compression"][1][0]
        if compression != 0:
            raise ValueError(
                f"{path}: EXR compression {compression} is not supported (write with codec NONE)"
            )
        xmin, ymin, xmax, ymax = struct.unpack("<iiii", header["dataWindow"][1])
        height = ymax - ymin + 1
        count = struct.unpack("<i", header["chunkCount"][1])[0] if "chunkCount" in header else height
        offsets = np.frombuffer(data, dtype="<u8", count=count, offset=pos)
        pos += 8 * count
        prefix = header["name"][1].decode("utf-8").rstrip("\x00") if "name" in header else ""
        parts.append((header, offsets, prefix, xmin, ymin, xmax - xmin + 1, height))
    out: dict[str, np.ndarray] = {}
    for header, offsets, prefix, _xmin, ymin, width, height in parts:
        channels = _parse_channels(header["channels"][1])
        names = [n if ("." in n or not prefix) else f"{prefix}.{n}" for n, _ in channels]
        planes = {n: np.zeros((height, width), dtype=np.float32) for n in names}
        for offset in offsets:
            at = int(offset) + (4 if multipart else 0)  # multi-part chunks start with the part number
            y, nbytes = struct.unpack_from("<ii", data, at)
            cursor = at + 8
            row = y - ymin
            for name, (_n, dtype) in zip(names, channels, strict=True):  # stored in header order
                planes[name][row] = np.frombuffer(data, dtype=dtype, count=width, offset=cursor)
                cursor += width * dtype.itemsize
            if cursor - at - 8 != nbytes:
                raise ValueError(f"{path}: scanline {y} has {nbytes} bytes, expected {cursor - at - 8}")
        out.update(planes)
    return out
