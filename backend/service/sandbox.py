"""Path rules of the service: what a client may name, read and write.

Clients never send file-system paths for things the service keeps. Subjects, styles, uploads
and render outputs are named by *id* and live inside the workdir (``backend.paths`` layout).
The only outside files the service reads are inputs (a video to track, a reference image)
under a directory the operator listed with ``--allow-read``; everything else is refused with
a ``SandboxError`` that says what was wrong.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class SandboxError(ValueError):
    """A client-supplied name or path breaks the service's path rules."""


def check_id(value: object, what: str = "id") -> str:
    """Return ``value`` when it is a safe id: 1-128 chars of ``A-Z a-z 0-9 _ . -``.

    It must start with a letter or digit, and may not contain ``..``, a slash or a backslash,
    so it can never leave the folder it is joined to.
    """
    if not isinstance(value, str) or not _ID_RE.match(value) or ".." in value:
        raise SandboxError(
            f"invalid {what} {value!r}: use 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit (no paths, no '..')"
        )
    return value


def inside(root: Path, *ids: str, what: str = "id") -> Path:
    """Join checked ids under ``root`` and verify the result stays inside ``root``.

    Symlinks are resolved, so a link planted inside the workdir cannot point out of it.
    """
    root_real = Path(os.path.realpath(root))
    path = root_real.joinpath(*(check_id(i, what) for i in ids))
    real = Path(os.path.realpath(path))
    if real != root_real and root_real not in real.parents:
        raise SandboxError(f"{what} {'/'.join(ids)!r} resolves outside {root}")
    return real


class ReadPolicy:
    """The directories the operator allowed the service to read inputs from (``--allow-read``)."""

    def __init__(self, dirs: Iterable[str | os.PathLike[str]] = ()) -> None:
        self.dirs = [Path(os.path.realpath(d)) for d in dirs]

    def resolve(self, path: object, what: str = "input file") -> Path:
        """Return the real path of an existing file under one of the allowed directories.

        Raises ``SandboxError`` for non-strings, relative paths, files outside every allowed
        directory (after resolving symlinks and ``..``) and missing files.
        """
        if not isinstance(path, str) or not path:
            raise SandboxError(f"{what} must be a non-empty path string, got {path!r}")
        if not os.path.isabs(path):
            raise SandboxError(f"{what} {path!r} must be an absolute path under an --allow-read directory")
        if not self.dirs:
            raise SandboxError(
                f"{what} {path!r} refused: the server was started without --allow-read; "
                "upload the bytes instead (upload_chunk) or restart with --allow-read DIR"
            )
        real = Path(os.path.realpath(path))
        if not any(real == d or d in real.parents for d in self.dirs):
            allowed = ", ".join(str(d) for d in self.dirs)
            raise SandboxError(f"{what} {path!r} is outside the allowed directories ({allowed})")
        if not real.is_file():
            raise SandboxError(f"{what} {path!r} does not exist or is not a file")
        return real
