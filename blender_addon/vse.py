"""Frames from the backend -> an image-sequence strip in the Video Sequence Editor.

One strip per shot, named after the job, on a chosen channel (or the first channel above it
whose frames are free: an earlier take of the same frames stays where it is, the new one lies on
top of it, as the sequencer does for strips added in the UI), starting at the shot's first
frame. Frames land as ``<folder>/<prefix>_<frame:05d>.png``; the strip lists the contiguous run
of frames received so far, so a cancelled shot still holds every frame that arrived.
"""

from __future__ import annotations

import os
from pathlib import Path

import bpy
import numpy as np

from . import compat
from .io_thread import frame_filename
from .png import write_png

MAX_CHANNEL = 128
"""The sequencer's highest channel."""
PROP_JOBS = "emo_avatar_jobs"
PROP_SUBJECT = "emo_avatar_subject"
PROP_STYLE = "emo_avatar_style"
PROP_FRAME_START = "emo_avatar_frame_start"


def check_output_folder(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` if needed and prove it is writable; raises ``OSError`` with the reason.

    A blend-relative ``//`` folder needs a saved .blend: otherwise ``bpy.path.abspath`` would
    silently resolve it against Blender's working directory.
    """
    text = str(folder)
    if text.startswith("//") and not bpy.data.filepath:
        raise OSError(
            f"output folder '{text}' is relative to the .blend file, which is not saved yet: "
            "save the file or pick an absolute Frames folder"
        )
    path = Path(bpy.path.abspath(text)) if text.startswith("//") else Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".emo_avatar_write_test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise OSError(f"output folder '{path}' is not writable: {exc.strerror or exc}") from exc
    return path


def write_frame(folder: Path, prefix: str, frame: int, image: np.ndarray) -> Path:
    """Write one uint8 (H, W, 3|4) frame (top row first) as PNG; returns its path."""
    path = folder / frame_filename(prefix, frame)
    write_png(path, image)
    return path


def find_strip(scene: bpy.types.Scene, name: str):
    strips = compat.sequencer_strips(scene, create=False)
    return None if strips is None else strips.get(name)


def free_channel(scene: bpy.types.Scene, channel: int, frame_start: int, length: int) -> int:
    """The first channel >= ``channel`` where no top-level strip overlaps ``length`` frames from
    ``frame_start`` (strips on one channel must not overlap)."""
    strips = compat.sequencer_strips(scene, create=False)
    end = frame_start + max(1, int(length))
    busy = {
        s.channel for s in (strips or []) if s.frame_final_start < end and s.frame_final_end > frame_start
    }
    while channel in busy and channel < MAX_CHANNEL:
        channel += 1
    return channel


def update_strip(
    scene: bpy.types.Scene,
    name: str,
    folder: Path,
    prefix: str,
    frame_start: int,
    frames_done: set[int] | list[int],
    channel: int = 2,
    length: int | None = None,
    relative: bool = False,
):
    """Create or extend the strip ``name`` to the contiguous frames received from ``frame_start``.

    Returns the strip, or None while the first frame has not arrived. The strip always starts at
    ``frame_start`` and has one element per received frame. It is created on ``channel``, or on the
    first channel above it that is free for the shot's ``length`` frames (default: those received).
    With ``relative`` (a ``//`` frames folder) the strip's directory is stored relative to the .blend.
    The scene's colour management is never touched (``set_standard_view`` is the opt-in).
    """
    done = set(frames_done)
    count = 0
    while frame_start + count in done:
        count += 1
    strip = find_strip(scene, name)
    if count == 0:
        return strip
    if strip is None:
        strips = compat.sequencer_strips(scene)
        first = folder / frame_filename(prefix, frame_start)
        channel = free_channel(scene, channel, frame_start, length or count)
        strip = strips.new_image(name=name, filepath=str(first), channel=channel, frame_start=frame_start)
        strip.colorspace_settings.name = "sRGB"
        if relative and bpy.data.filepath:
            strip.directory = bpy.path.relpath(str(folder)).rstrip("/\\") + "/"
    have = len(strip.elements)
    for i in range(have, count):
        strip.elements.append(frame_filename(prefix, frame_start + i))
    if strip.frame_final_duration != count:
        strip.frame_final_duration = count
    return strip


def tag_strip(strip, job_ids: list[str], subject_id: str, style: str, frame_start: int | None = None) -> None:
    """Record on the strip which jobs, subject and style made it (custom properties, saved)."""
    strip[PROP_JOBS] = list(job_ids)
    strip[PROP_SUBJECT] = subject_id
    strip[PROP_STYLE] = style
    if frame_start is not None:
        strip[PROP_FRAME_START] = int(frame_start)


def set_standard_view(scene: bpy.types.Scene) -> None:
    """Opt-in ("Show frames as delivered"): Standard view transform and an sRGB sequencer, so the
    sequencer shows the backend's pixels unchanged. Changes the whole scene's colour management."""
    compat.set_standard_view(scene)


def strip_frame_count(strip) -> int:
    return len(strip.elements)
