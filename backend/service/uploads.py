"""Uploaded inputs (``upload_chunk``): a video to track, sent in chunks, kept by id.

``WORKDIR/uploads/<upload_id>/partial`` grows chunk by chunk (each at the expected offset;
a repeated chunk is acknowledged, not appended twice); the final chunk checks the size and
the optional whole-file crc32, then renames it to ``data<suffix>`` (suffix of the original
file name, so readers that look at extensions still work). Jobs name the upload by id.

Bounds: ``max_bytes`` per upload and ``max_open`` unfinished uploads at once (a chunk that would
open one more gets ``QuotaExceeded``). Chunks are written on the server's intake thread.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from pathlib import Path

from backend.service.jobs import JobError, QuotaExceeded
from backend.service.sandbox import inside

DEFAULT_MAX_UPLOAD_BYTES = 4 * 1024**3
DEFAULT_MAX_OPEN_UPLOADS = 16
_SUFFIX_RE = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


class Uploads:
    """The uploads folder of a workdir."""

    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
                 max_open: int = DEFAULT_MAX_OPEN_UPLOADS) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.max_open = max_open

    def open_uploads(self) -> int:
        """Uploads started but not finished."""
        if not self.root.is_dir():
            return 0
        return sum(1 for d in self.root.iterdir() if (d / "partial").is_file() or (
            (d / "upload.json").is_file() and not any(p.name.startswith("data") for p in d.iterdir())))

    def _dir(self, upload_id: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return inside(self.root, upload_id, what="upload id")

    def completed(self, upload_id: str) -> Path | None:
        """The finished upload's file, or None."""
        d = self._dir(upload_id)
        if not d.is_dir():
            return None
        done = sorted(p for p in d.iterdir() if p.name.startswith("data"))
        return done[0] if done else None

    def chunk(self, upload_id: str, filename: str, offset: int, total: int, data: memoryview | bytes,
              final: bool = False, checksum: str | None = None) -> tuple[int, bool]:
        """Store one chunk; return ``(bytes received so far, done)``. Raises ``JobError`` on bad input."""
        if total > self.max_bytes:
            raise JobError(f"upload of {total} bytes exceeds the server's limit of {self.max_bytes} bytes")
        d = self._dir(upload_id)
        finished = self.completed(upload_id)
        if finished is not None:
            return finished.stat().st_size, True
        if not d.is_dir():
            opened = self.open_uploads()
            if opened >= self.max_open:
                raise QuotaExceeded(f"{opened} uploads are unfinished, the backend's limit (serve "
                                    f"--max-open-uploads {self.max_open}); finish or abandon one first")
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        meta_path, part = d / "upload.json", d / "partial"
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            if meta["total"] != total:
                raise JobError(f"upload {upload_id!r} was started with total={meta['total']}, not {total}")
        else:
            meta_path.write_text(json.dumps({"filename": filename, "total": total}))
        size = part.stat().st_size if part.is_file() else 0
        n = len(data)
        if offset + n > total:
            raise JobError(f"chunk at offset {offset} with {n} bytes runs past total={total}")
        if offset < size and offset + n <= size:
            return size, False  # a retried chunk we already have
        if offset != size:
            raise JobError(f"upload {upload_id!r}: chunk offset {offset} but {size} bytes received so far; "
                           f"resend from offset {size}")
        with open(part, "ab") as f:
            f.write(data)
            if final:
                f.flush()
                os.fsync(f.fileno())
        size += n
        if not final:
            return size, False
        if size != total:
            raise JobError(f"upload {upload_id!r} ended with {size} of {total} bytes; "
                           "send the missing chunks")
        if checksum is not None:
            with open(part, "rb") as f:
                crc = 0
                while block := f.read(1 << 20):
                    crc = zlib.crc32(block, crc)
            if checksum.lower() != f"crc32:{crc & 0xFFFFFFFF:08x}":
                part.unlink()
                raise JobError(f"upload {upload_id!r}: checksum mismatch (got crc32:{crc & 0xFFFFFFFF:08x}); "
                               "upload the file again")
        suffix = Path(filename).suffix
        os.replace(part, d / ("data" + (suffix.lower() if _SUFFIX_RE.match(suffix) else "")))
        return size, True
