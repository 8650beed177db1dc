"""The subject loader: contract, errors, split, crop mapping."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from backend.data.subject import Subject, SubjectError, extreme_frames, split_ids
from tests.face.conftest import moving_frames, write_video


@pytest.fixture(scope="module")
def small_subject(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from backend.face.track import track_video

    d = tmp_path_factory.mktemp("subject_tests")
    frames, _ = moving_frames(12, 192)
    return track_video(write_video(d / "clip.mp4", frames), d / "subj", size=48)


def test_open_and_arrays(small_subject: Path) -> None:
    s = Subject.open(small_subject)
    assert s.meta["format"] == "emo-avatar-subject" and s.meta["version"] == 1
    assert isinstance(s.subject_id, str) and s.subject_id.startswith("clip-")
    T, K = s.n_frames, len(s.expression_names)
    assert (T, s.size) == (12, 48)
    assert s.expressions.shape == (T, K) and s.raw_expressions.shape == (T, K)
    assert s.pose.dtype == np.float32 and s.scale.dtype == np.float32 and s.valid.dtype == bool
    assert s.uv_maps.dtype == np.float16 and s.uv_maps.shape == (T, 48, 48, 3)
    assert isinstance(s.uv_maps, np.memmap)
    assert s.uv(0).dtype == np.float32 and s.frame(T - 1).shape == (48, 48, 3)
    with pytest.raises(IndexError):
        s.frame(T)
    assert "Subject(" in repr(s)


def test_video_to_crop_matches_landmarks(small_subject: Path) -> None:
    s = Subject.open(small_subject)
    c = s.crop
    f = s.size / c["side"]
    pts = s.landmarks[0, :5, :2]
    video = pts / f + (c["x0"], c["y0"])
    np.testing.assert_allclose(s.video_to_crop(video), pts, atol=1e-4)


def test_split_rules() -> None:
    train, held = split_ids(100)
    assert set(held) == set(range(0, 90, 10)) | set(range(90, 100))
    assert len(train) == 100 - len(held) and not set(train) & set(held)
    valid = np.ones(100, bool)
    valid[[1, 10, 95]] = False
    train, held = split_ids(100, valid)
    assert 1 not in train and 10 not in held and 95 not in held


def test_extreme_frames_among_ids() -> None:
    pose = np.zeros((6, 6), np.float32)
    pose[:, 0] = [0.0, -0.5, 0.2, 0.6, -0.1, 0.1]
    pose[:, 1] = [0.3, 0.0, -0.4, 0.1, 0.2, 0.5]
    valid = np.ones(6, bool)
    assert extreme_frames(pose, valid) == {"min_yaw": 1, "max_yaw": 3, "min_pitch": 2, "max_pitch": 5}
    assert extreme_frames(pose, valid, ids=[0, 4]) == {"min_yaw": 4, "max_yaw": 0,
                                                      "min_pitch": 4, "max_pitch": 0}
    valid[:] = False
    with pytest.raises(SubjectError):
        extreme_frames(pose, valid)


def test_open_errors(small_subject: Path, tmp_path: Path) -> None:
    with pytest.raises(SubjectError, match="no such subject folder"):
        Subject.open(tmp_path / "missing")
    with pytest.raises(SubjectError, match=r"no meta\.json"):
        Subject.open(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(small_subject, copy)
    meta = json.loads((copy / "meta.json").read_text())
    (copy / "meta.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(SubjectError, match="version 99 is not supported"):
        Subject.open(copy)
    (copy / "meta.json").write_text(json.dumps({**meta, "format": "something-else"}))
    with pytest.raises(SubjectError, match="format is 'something-else'"):
        Subject.open(copy)
    (copy / "meta.json").write_text("{not json")
    with pytest.raises(SubjectError, match="unreadable"):
        Subject.open(copy)
    (copy / "meta.json").write_text(json.dumps(meta))
    (copy / "pose.npy").unlink()
    with pytest.raises(SubjectError, match=r"missing pose\.npy"):
        Subject.open(copy)


def test_inconsistent_or_corrupt_parts(small_subject: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(small_subject, copy)
    (copy / "rig" / "blendshapes.npz").unlink()
    with pytest.raises(SubjectError, match="blendshapes"):
        _ = Subject.open(copy).rig
    s = Subject.open(copy)
    (copy / "landmarks.npy").write_bytes(b"garbage")  # arrays load lazily: the error comes on use
    with pytest.raises(SubjectError, match=r"landmarks\.npy"):
        _ = s.landmarks
    (copy / "scale.npy").write_bytes(b"garbage")
    with pytest.raises(SubjectError, match=r"scale\.npy: unreadable"):
        Subject.open(copy)
    np.save(copy / "scale.npy", np.ones(3, np.float32))
    with pytest.raises(SubjectError, match=r"scale\.npy: shape \(3,\)"):
        Subject.open(copy)
    np.save(copy / "scale.npy", np.ones(12, np.float32))
    (copy / "frames" / "000011.png").unlink()
    with pytest.raises(SubjectError, match="11 frames"):
        Subject.open(copy)


def test_runs_of_a_subject_with_cuts() -> None:
    from backend.data.subject import runs_of

    assert runs_of(126, [56]) == [(0, 56), (56, 126)]
    assert runs_of(10, []) == [(0, 10)]
    assert runs_of(10, [0, 4, 4, 10, 7]) == [(0, 4), (4, 7), (7, 10)]  # 0, 10 and repeats ignored
