"""Frame reading: videos, image folders, prefetching."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from backend.face.video_io import VideoError, iter_frames, prefetch, probe
from tests.face.conftest import write_video


def test_probe_and_iter_video(tmp_path: Path) -> None:
    frames = [np.full((48, 64, 3), 10 * i, np.uint8) for i in range(7)]
    path = write_video(tmp_path / "v.mp4", frames, fps=30.0)
    info = probe(path)
    assert (info.width, info.height, info.fps, info.is_folder) == (64, 48, 30.0, False)
    got = list(iter_frames(path))
    assert len(got) == 7 and got[0].shape == (48, 64, 3) and got[0].dtype == np.uint8
    assert abs(float(got[3].mean()) - 30) < 4  # RGB order and content survive mp4v
    assert len(list(iter_frames(path, max_frames=3))) == 3


def test_image_folder_sizes_must_agree(tmp_path: Path) -> None:
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((20, 20, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((21, 20, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    assert probe(tmp_path).n_frames == 2
    with pytest.raises(VideoError, match="differs from the first image"):
        list(iter_frames(tmp_path))
    (tmp_path / "c.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "b.png").unlink()
    with pytest.raises(VideoError, match="cannot read this image"):
        list(iter_frames(tmp_path))


def test_prefetch_keeps_order_and_stops_early() -> None:
    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))
    before = threading.active_count()
    gen = prefetch(iter(range(1000)), depth=2)
    assert [next(gen) for _ in range(3)] == [0, 1, 2]
    gen.close()
    assert threading.active_count() <= before


def test_prefetch_reraises_reader_errors() -> None:
    def broken():
        yield 1
        raise VideoError("bad frame")

    out = []
    with pytest.raises(VideoError, match="bad frame"):
        for x in prefetch(broken()):
            out.append(x)
    assert out == [1]


def test_image_folder_natural_order(tmp_path: Path) -> None:
    import cv2

    for i in (1, 2, 10):
        cv2.imwrite(str(tmp_path / f"frame_{i}.png"), np.full((8, 8, 3), 20 * i, np.uint8))
    values = [int(f[0, 0, 0]) for f in iter_frames(tmp_path)]
    assert values == [20, 40, 200]
