"""Frames from a video file (anything OpenCV reads: mp4, avi, mov, ...) or a folder of images.

Frames come out as (H, W, 3) uint8 RGB. Every failure is a ``VideoError`` whose message says
what is wrong with which file, so the CLI can print it as is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_FOLDER_FPS = 25.0
"""Frame rate assumed for an image folder (it has none of its own)."""


class VideoError(ValueError):
    """The input video or image folder is missing, unreadable, corrupt or empty."""


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a source before decoding it all.

    Attributes:
        path: the file or folder.
        fps: frames per second (``DEFAULT_FOLDER_FPS`` for an image folder or a file without one).
        width, height: frame size in pixels.
        n_frames: frame count as reported by the container (may be approximate for videos).
        is_folder: True for an image folder.
    """

    path: Path
    fps: float
    width: int
    height: int
    n_frames: int
    is_folder: bool


def _natural_key(path: Path) -> list:
    """Sort key that orders ``img_2.png`` before ``img_10.png``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _folder_images(folder: Path) -> list[Path]:
    """Image files of ``folder`` in natural name order (frame_2 before frame_10)."""
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    return sorted(files, key=_natural_key)


def _read_image(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise VideoError(f"{path}: cannot read this image (corrupt or not an image)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def probe(path: str | Path) -> VideoInfo:
    """Open ``path`` and read its first frame to check it is usable.

    Raises:
        VideoError: missing path, unreadable/corrupt file, or no frames.
    """
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: no such file or folder")
    if path.is_dir():
        images = _folder_images(path)
        if not images:
            raise VideoError(f"{path}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        first = _read_image(images[0])
        return VideoInfo(path, DEFAULT_FOLDER_FPS, first.shape[1], first.shape[0], len(images), True)
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: the file is empty (zero bytes)")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError(f"{path}: OpenCV cannot open this file (corrupt or not a video)")
        ok, frame = cap.read()
        if not ok or frame is None:
            raise VideoError(f"{path}: the video has zero readable frames")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not np.isfinite(fps) or fps <= 0 or fps > 1000:
            fps = DEFAULT_FOLDER_FPS
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        return VideoInfo(path, fps, frame.shape[1], frame.shape[0], max(n, 1), False)
    finally:
        cap.release()


def iter_frames(path: str | Path, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield (H, W, 3) uint8 RGB frames in order, at most ``max_frames`` of them.

    Raises:
        VideoError: as ``probe``; also when an image in a folder has a different size.
    """
    info = probe(path)
    limit = max_frames if max_frames is not None else None
    if info.is_folder:
        for i, image_path in enumerate(_folder_images(info.path)):
            if limit is not None and i >= limit:
                return
            img = _read_image(image_path)
            if img.shape[:2] != (info.height, info.width):
                raise VideoError(
                    f"{image_path}: size {img.shape[1]}x{img.shape[0]} differs from the first image "
                    f"({info.width}x{info.height}); all images of a folder must have one size"
                )
            yield img
        return
    cap = cv2.VideoCapture(str(info.path))
    try:
        i = 0
        while limit is None or i < limit:
            ok, bgr = cap.read()
            if not ok or bgr is None:
                break
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            i += 1
    finally:
        cap.release()


def prefetch(frames: Iterator[np.ndarray], depth: int = 4) -> Iterator[np.ndarray]:
    """Decode ahead in a background thread (OpenCV releases the GIL while decoding).

    Yields the items of ``frames`` in order; an exception in the reader is re-raised here. When
    the consumer stops early (break, exception, cancel) the reader thread is told to stop.
    """
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def reader() -> None:
        try:
            for item in frames:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    thread = threading.Thread(target=reader, name="frame-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
        close = getattr(frames, "close", None)
        if close is not None:
            close()
