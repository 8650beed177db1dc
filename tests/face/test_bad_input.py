"""Every bad input gets a clear error and leaves no (half-written) subject behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backend.data.subject import Subject
from backend.face.track import TrackError, track_video
from tests.face.conftest import moving_frames, write_video


def _nothing_left(parent: Path, name: str = "subj") -> bool:
    return not any(p.name.startswith((name, f".{name}")) for p in parent.iterdir())


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TrackError, match="no such file"):
        track_video(tmp_path / "nope.mp4", tmp_path / "subj")
    assert _nothing_left(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(TrackError, match="empty"):
        track_video(tmp_path / "empty.mp4", tmp_path / "subj")
    assert _nothing_left(tmp_path)


def test_corrupt_file(tmp_path: Path) -> None:
    (tmp_path / "bad.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(TrackError, match=r"cannot open|zero readable frames"):
        track_video(tmp_path / "bad.mp4", tmp_path / "subj")
    assert _nothing_left(tmp_path)


def test_truncated_video(tmp_path: Path, astro_video) -> None:
    data = astro_video[0].read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[:200])
    with pytest.raises(TrackError, match=r"cannot open|zero readable frames"):
        track_video(tmp_path / "cut.mp4", tmp_path / "subj")
    assert _nothing_left(tmp_path)


def test_zero_frames(tmp_path: Path) -> None:
    import cv2

    path = tmp_path / "zero.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 64))
    writer.release()
    with pytest.raises(TrackError, match=r"zero readable frames|empty|cannot open"):
        track_video(path, tmp_path / "subj")
    folder = tmp_path / "no_images"
    folder.mkdir()
    with pytest.raises(TrackError, match="holds no images"):
        track_video(folder, tmp_path / "subj")
    assert _nothing_left(tmp_path)


def test_no_face_at_all(tmp_path: Path) -> None:
    video = write_video(tmp_path / "gray.mp4", [np.full((128, 128, 3), 120, np.uint8)] * 10)
    with pytest.raises(TrackError, match="no face found"):
        track_video(video, tmp_path / "subj")
    assert _nothing_left(tmp_path)


def hide_face(rgb: np.ndarray, block: int = 24) -> np.ndarray:
    """The frame with its face region pixelated: same colours (no shot cut), but no face found."""
    import cv2

    out = rgb.copy()
    y0, y1, x0, x1 = 40, 170, 70, 190
    small = cv2.resize(rgb[y0:y1, x0:x1], ((x1 - x0) // block, (y1 - y0) // block),
                       interpolation=cv2.INTER_AREA)
    out[y0:y1, x0:x1] = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    return out


def test_short_gap_interpolated_long_gap_left_out(tmp_path: Path) -> None:
    frames, _ = moving_frames(50)
    blank = np.full_like(frames[0], 120)
    for i in (5, 6):  # short gap without a face in the same shot: interpolated
        frames[i] = hide_face(frames[i])
    for i in range(20, 34):  # 14 blank frames = 0.56 s > MAX_GAP_S: left out
        frames[i] = blank
    video = write_video(tmp_path / "gaps.mp4", frames)
    s = Subject.open(track_video(video, tmp_path / "subj", size=64))
    assert s.meta["source_frames"] == list(range(20)) + list(range(34, 50))
    assert s.run_starts == s.cuts == [20]  # the left-out gap is a cut between runs
    assert s.meta["frames_interpolated"] == [5, 6]
    assert s.meta["frames_left_out"] == [{"start": 20, "stop": 34, "reason": "no face"}]
    assert s.n_frames == 36 and s.valid.all() and s.meta["frames_dropped"] == []
    assert np.isfinite(s.landmarks).all() and np.isfinite(s.expressions).all()
    # the interpolated frames lie between their neighbours
    mid = s.landmarks[5:7, 1, :2]
    lo, hi = np.minimum(s.landmarks[4, 1, :2], s.landmarks[7, 1, :2]), np.maximum(
        s.landmarks[4, 1, :2], s.landmarks[7, 1, :2])
    assert ((mid >= lo - 1e-3) & (mid <= hi + 1e-3)).all()


def test_frames_without_face_are_left_out_and_reported(tmp_path: Path) -> None:
    frames, _ = moving_frames(20)
    blank = np.full_like(frames[0], 120)
    frames = [blank] * 3 + frames[:9] + [blank] * 8
    video = write_video(tmp_path / "mostly_blank.mp4", frames)
    s = Subject.open(track_video(video, tmp_path / "subj", size=32))
    assert s.meta["source_frames"] == list(range(3, 12))
    assert s.meta["frames_left_out"] == [{"start": 0, "stop": 3, "reason": "no face"},
                                         {"start": 12, "stop": 20, "reason": "no face"}]


def test_fewer_than_eight_usable_frames(tmp_path: Path) -> None:
    frames, _ = moving_frames(6)
    video = write_video(tmp_path / "short.mp4", frames)
    with pytest.raises(TrackError, match=r"no shot .* has 8 usable frames .*shot too short \(6 frames"):
        track_video(video, tmp_path / "subj")
    assert _nothing_left(tmp_path)


def test_existing_output_without_overwrite(tmp_path: Path, astro_video) -> None:
    out = tmp_path / "subj"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        track_video(astro_video[0], out)
    assert (out / "keep.txt").read_text() == "mine"


def test_failed_overwrite_keeps_the_old_subject(tmp_path: Path, astro_video) -> None:
    out = tmp_path / "subj"
    track_video(astro_video[0], out, size=32, max_frames=8)
    with pytest.raises(TrackError):
        track_video(tmp_path / "missing.mp4", out, overwrite=True)
    assert Subject.open(out).n_frames == 8


def test_bad_arguments(tmp_path: Path, astro_video) -> None:
    with pytest.raises(TrackError, match="--size"):
        track_video(astro_video[0], tmp_path / "subj", size=4)
    with pytest.raises(TrackError, match="--max-frames"):
        track_video(astro_video[0], tmp_path / "subj", max_frames=0)
