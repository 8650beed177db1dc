"""track_video on a small real clip (astronaut photo rotated on screen) and the CLI."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from backend.cli import main as cli_main
from backend.data.subject import Subject
from backend.face.smoothing import jitter
from protocol.expressions import FACE_MODEL_NAMES


def test_subject_contents(astro_subject: Path) -> None:
    s = Subject.open(astro_subject)
    T = s.n_frames
    assert T == 20 and s.size == 128 and s.fps == pytest.approx(25.0)
    assert s.expression_names[: len(FACE_MODEL_NAMES)] == list(FACE_MODEL_NAMES)
    assert all(n.startswith("residual_") for n in s.expression_names[len(FACE_MODEL_NAMES):])
    assert s.expressions.shape == (T, len(s.expression_names)) and s.expressions.dtype == np.float32
    assert s.pose.shape == (T, 6) and s.scale.shape == (T,) and s.landmarks.shape == (T, 478, 3)
    assert s.valid.all() and s.frame(3).shape == (128, 128, 3) and s.frame(3).dtype == np.uint8
    uv = s.uv(3)
    assert uv.shape == (128, 128, 3) and uv.dtype == np.float32 and uv[..., 2].sum() > 500
    assert s.rig.names == s.expression_names
    # landmarks lie inside the crop, on the face region covered by the UV map
    lm = s.landmarks[3, :468, :2]
    assert (lm > 0).all() and (lm < 128).all()
    inside = uv[lm[:, 1].astype(int), lm[:, 0].astype(int), 2]
    assert inside.mean() > 0.9
    assert set(s.extreme_frames) == {"min_yaw", "max_yaw", "min_pitch", "max_pitch"}
    crop = s.meta["crop"]
    assert crop["side"] <= 256 and s.meta["source"]["width"] == 256


def test_roll_follows_the_on_screen_rotation(astro_subject: Path, astro_video) -> None:
    s = Subject.open(astro_subject)
    roll_gt = astro_video[1]
    roll = s.pose[:, 2]
    assert np.corrcoef(roll, roll_gt)[0, 1] > 0.95
    slope = np.polyfit(roll_gt, roll, 1)[0]
    assert 0.8 < slope < 1.2
    # a still photo rotating in plane: yaw and pitch hardly move
    assert np.ptp(s.pose[:, 0]) < 0.05 and np.ptp(s.pose[:, 1]) < 0.05


def test_rig_projects_onto_the_landmarks(astro_subject: Path) -> None:
    s = Subject.open(astro_subject)
    posed = s.rig.posed(s.expressions, s.pose, s.scale)
    err = np.linalg.norm(posed[:, :, :2] - s.landmarks[:, :468, :2], axis=-1).mean()
    assert err < 1.0  # crop px at 128; smoothed curves and pose vs raw landmarks


def test_smoothing_reduces_pose_jitter(astro_subject: Path) -> None:
    from backend.face.track import fit_poses

    s = Subject.open(astro_subject)
    raw_pose, _, _ = fit_poses(s.landmarks.astype(np.float64))
    assert jitter(s.pose[:, :3]) < jitter(raw_pose[:, :3])


def test_split_is_disjoint_and_holds_out_every_tenth_and_tail(astro_subject: Path) -> None:
    s = Subject.open(astro_subject)
    train, held = s.split()
    assert not set(train) & set(held)
    assert {0, 10}.issubset(held) and {18, 19}.issubset(held)
    assert len(train) + len(held) == s.n_frames


def test_cli_track_writes_a_subject_and_refuses_to_overwrite(astro_video, tmp_path: Path, capsys) -> None:
    out = tmp_path / "subj"
    assert cli_main(["track", str(astro_video[0]), "-o", str(out), "--size", "64", "--max-frames", "10",
                     "--preview", str(tmp_path / "preview.png")]) == 0
    assert (tmp_path / "preview.png").stat().st_size > 1000
    s = Subject.open(out)
    assert s.n_frames == 10 and s.size == 64
    captured = capsys.readouterr()
    assert "track:" in captured.err and "10 frames" in captured.out
    assert cli_main(["track", str(astro_video[0]), "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli_main(["track", str(astro_video[0]), "-o", str(out), "--max-frames", "9", "--overwrite",
                     "--size", "64"]) == 0
    assert Subject.open(out).n_frames == 9


def test_image_folder_input(astro_video, tmp_path: Path) -> None:
    import cv2

    from backend.face.track import track_video
    from backend.face.video_io import iter_frames

    folder = tmp_path / "images"
    folder.mkdir()
    for i, f in enumerate(iter_frames(astro_video[0], 10)):
        cv2.imwrite(str(folder / f"img_{i:03d}.jpg"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    s = Subject.open(track_video(folder, tmp_path / "subj", size=64))
    assert s.n_frames == 10 and s.meta["source"]["kind"] == "images" and s.fps == 25.0


def test_progress_and_cancel_leave_nothing(astro_video, tmp_path: Path) -> None:
    from backend.face.track import track_video
    from backend.progress import Cancelled

    updates = []
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 25  # after the landmark pass, while frames are written

    out = tmp_path / "subj"
    with pytest.raises(Cancelled):
        track_video(astro_video[0], out, size=64, progress=updates.append, should_stop=stop)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert updates and updates[0].stage == "track" and updates[0].total > 0


def test_several_faces_takes_the_largest(tmp_path: Path, caplog) -> None:
    import cv2
    from skimage import data

    from backend.face.track import track_video
    from tests.face.conftest import write_video

    head = data.astronaut()[0:300, 90:350]  # 300 x 260 head-and-shoulders
    small = cv2.resize(head, None, fx=0.7, fy=0.7)
    frame = np.full((300, 462, 3), 128, np.uint8)
    frame[:, :260] = head
    frame[45:45 + small.shape[0], 462 - small.shape[1]:] = small
    video = write_video(tmp_path / "two.mp4", [frame] * 10)
    with caplog.at_level(logging.WARNING):
        s = Subject.open(track_video(video, tmp_path / "subj", size=64))
    assert s.meta["frames_with_several_faces"] > 0
    assert "several faces" in caplog.text
    x0 = s.meta["crop"]["x0"]
    # the tracked face is the big one on the left
    lm_video = s.landmarks[0, :468, 0] * s.meta["crop"]["side"] / s.size + x0
    assert lm_video.max() < 260


def test_contact_sheet_png(astro_subject: Path, tmp_path: Path) -> None:
    import cv2

    from backend.face.overlay import subject_contact_sheet

    out = subject_contact_sheet(astro_subject, tmp_path / "sheet.png", n=2, scale=2)
    img = cv2.imread(str(out))
    assert img.shape == (2 * 256, 3 * 256, 3)
    uv_panel = img[:256, 256:512]
    assert (uv_panel.sum(-1) > 0).mean() > 0.05  # the UV map is drawn
