"""Where things live on disk: the one place that names files and folders.

A *subject* folder (written by ``emo-avatar track``) holds the tracked data; training,
editing and rendering write beside it unless told otherwise::

    SUBJECT/
      meta.json, frames/, uv/, ... (see backend.data.subject)
      avatar/                 stage-1 output: checkpoint, previews, loss curve, metrics
      styles/<name>.style     stage-2 output: one small file per style

The service keeps everything under its ``--workdir``, named by id::

    WORKDIR/
      connection.json         written by `emo-avatar serve` (mode 0600)
      journal.sqlite3         the job journal
      uploads/<job_id>/       uploaded inputs (video bytes)
      subjects/<subject_id>/  subject folders as above
      renders/<job_id>/       frames of a render job (000000.png ...)
"""

from __future__ import annotations

from pathlib import Path

AVATAR_DIRNAME = "avatar"
CHECKPOINT_NAME = "checkpoint.pt"
STYLES_DIRNAME = "styles"
STYLE_SUFFIX = ".style"
CONNECTION_FILE_NAME = "connection.json"
JOURNAL_NAME = "journal.sqlite3"


def avatar_dir(subject: Path) -> Path:
    return Path(subject) / AVATAR_DIRNAME


def checkpoint_path(subject: Path) -> Path:
    return avatar_dir(subject) / CHECKPOINT_NAME


def frame_file_name(number: int, suffix: str = ".png") -> str:
    """File name of one frame (or its UV map, ``suffix=".npy"``): the frame number, 6 digits."""
    return f"{number:06d}{suffix}"


def styles_dir(subject: Path) -> Path:
    return Path(subject) / STYLES_DIRNAME


def style_path(subject: Path, name: str) -> Path:
    return styles_dir(subject) / f"{name}{STYLE_SUFFIX}"


def workdir_subjects(workdir: Path) -> Path:
    return Path(workdir) / "subjects"


def workdir_renders(workdir: Path) -> Path:
    return Path(workdir) / "renders"


def workdir_uploads(workdir: Path) -> Path:
    return Path(workdir) / "uploads"
