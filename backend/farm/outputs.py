"""The output-folder check every farm entry point runs before any work: the folder (or, when it
does not exist yet, the nearest folder above it) must take a new file. A probe file is created and
removed, so permissions, read-only mounts, full quotas and ACLs are all caught, also for root."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class OutputFolderError(OSError):
    """The output folder cannot be created or written."""


def check_output_folder(path: Path, create: bool) -> Path:
    """Make sure files can be written into ``path``; return it (absolute).

    Args:
        path: the output folder.
        create: make the folder (and its parents) now; else only its nearest existing ancestor
            must be writable (the folder is made later, by the job).
    Raises:
        OutputFolderError: ``path`` (or a parent) is a file, or creating or writing fails (the
            message names the folder and the system's reason).
    """
    path = Path(path).absolute()
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                what = "exists and is not a folder" if p == path else f"has a file in its path: {p}"
                raise OutputFolderError(f"output folder {path} {what}")
            break
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = exc.strerror or exc
            raise OutputFolderError(f"output folder {path} cannot be created: {reason}") from None
    probe_in = path if path.is_dir() else next(p for p in path.parents if p.is_dir())
    try:
        fd, probe = tempfile.mkstemp(prefix=".emo-write-probe-", dir=probe_in)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        where = "" if probe_in == path else f" (checked its existing parent {probe_in})"
        reason = exc.strerror or exc
        raise OutputFolderError(f"output folder {path} is not writable{where}: {reason}") from None
    return path
