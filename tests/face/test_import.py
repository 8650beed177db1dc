"""`import-tracking`: external tracker npz -> the subject layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backend.cli import main as cli_main
from backend.data.subject import Subject
from backend.face.import_tracking import TrackingImportError, import_tracking, map_names
from tests.face.conftest import moving_frames, write_video

T, S = 12, 128


def _payload(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    frames, roll = moving_frames(T, S)
    pose = np.zeros((T, 6), np.float32)
    pose[:, 0] = np.linspace(-0.2, 0.3, T)
    pose[:, 1] = np.sin(np.arange(T))  * 0.1
    pose[:, 2] = roll
    pose[:, 3:5] = S / 2
    uv = rng.uniform(0, 1, (T, S, S, 2)).astype(np.float32)
    uv[:, :20] = 0.0  # uncovered rows
    return {
        "expressions": rng.uniform(0, 1, (T, 4)).astype(np.float32),
        "expression_names": np.array(["jaw_open", "eyeBlink_L", "exp_00", "exp_01"]),
        "pose": pose, "uv": uv, "frames": np.stack(frames), "fps": np.float64(30.0),
    }


def test_map_names() -> None:
    assert map_names(["jaw_open", "EyeBlinkLeft", "exp_00", "jawOpen", "smile_r"]) == [
        "jawOpen", "eyeBlinkLeft", "residual_00", "residual_01", "mouthSmileRight"]


def test_import_with_frames_round_trips(tmp_path: Path) -> None:
    p = _payload()
    np.savez(tmp_path / "track.npz", **p)
    s = Subject.open(import_tracking(tmp_path / "track.npz", tmp_path / "subj"))
    assert s.n_frames == T and s.size == S and s.fps == 30.0
    assert s.expression_names == ["jawOpen", "eyeBlinkLeft", "residual_00", "residual_01"]
    assert s.meta["source_expression_names"] == ["jaw_open", "eyeBlink_L", "exp_00", "exp_01"]
    np.testing.assert_allclose(s.expressions, p["expressions"])
    np.testing.assert_allclose(s.pose, p["pose"], atol=1e-6)
    uv = s.uv(3)
    np.testing.assert_allclose(uv[..., :2], p["uv"][3], atol=1e-3)  # float16 storage
    assert (uv[:20, :, 2] == 0).all() and (uv[20:, :, 2] == 1).all()
    np.testing.assert_array_equal(s.frame(5), p["frames"][5])
    assert s.landmarks.shape == (T, 478, 3) and s.valid.all()
    assert s.rig.names == s.expression_names and s.rig.deltas.shape == (4, 468, 3)
    assert s.scale.shape == (T,) and (s.scale > 0).all()
    assert s.extreme_frames["min_yaw"] == 0 and s.extreme_frames["max_yaw"] == T - 1


def test_import_from_video_with_v_down_and_own_rig(tmp_path: Path) -> None:
    p = _payload(1)
    frames = p.pop("frames")
    write_video(tmp_path / "crops.mp4", list(frames))
    p["video"] = np.array("crops.mp4")
    del p["fps"]
    p["uv_v_down"] = np.array(True)
    p["scale"] = np.full(T, 5.0, np.float32)
    n = 10
    p["rig_neutral"] = np.zeros((n, 3), np.float32)
    p["rig_deltas"] = np.ones((4, n, 3), np.float32)
    p["rig_uvs"] = np.zeros((n, 2), np.float32)
    p["rig_triangles"] = np.array([[0, 1, 2]], np.int32)
    np.savez(tmp_path / "track.npz", **p)
    assert cli_main(["import-tracking", str(tmp_path / "track.npz"), "-o", str(tmp_path / "subj")]) == 0
    s = Subject.open(tmp_path / "subj")
    assert s.fps == 25.0  # from the video (the npz has no fps)
    assert s.meta["rig_source"] == "npz" and s.rig.neutral.shape == (n, 3)
    cov = p["uv"][0].sum(-1) > 0
    np.testing.assert_allclose(s.uv(0)[..., 1][cov], 1 - p["uv"][0, ..., 1][cov], atol=1e-3)
    np.testing.assert_allclose(s.scale, 5.0)


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: p.pop("pose"), "missing required arrays"),
    (lambda p: p.update(pose=np.zeros((T, 3))), "pose must be"),
    (lambda p: p.update(uv=np.zeros((T, 8, 9, 3))), "uv must be"),
    (lambda p: p.update(expression_names=np.array(["a"])), "expression_names has 1 names"),
    (lambda p: p.pop("frames"), "give the frames"),
    (lambda p: p.update(frames=p["frames"][:5]), "5 frames for 12"),
    (lambda p: p["expressions"].__setitem__((0, 0), np.nan), "NaN"),
])
def test_bad_npz(tmp_path: Path, change, message: str) -> None:
    p = _payload()
    change(p)
    np.savez(tmp_path / "bad.npz", **p)
    with pytest.raises(TrackingImportError, match=message):
        import_tracking(tmp_path / "bad.npz", tmp_path / "subj")
    assert not (tmp_path / "subj").exists()


def test_unreadable_and_pickled_npz_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TrackingImportError, match="no such file"):
        import_tracking(tmp_path / "none.npz", tmp_path / "subj")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(TrackingImportError, match="not a readable npz"):
        import_tracking(tmp_path / "junk.npz", tmp_path / "subj")
    p = _payload()
    p["expression_names"] = np.array([{"a": 1}] * 4, dtype=object)
    np.savez(tmp_path / "pickled.npz", **p)
    with pytest.raises(TrackingImportError, match="pickle"):
        import_tracking(tmp_path / "pickled.npz", tmp_path / "subj")
    assert not (tmp_path / "subj").exists()


def test_existing_output_and_cli_error(tmp_path: Path, capsys) -> None:
    np.savez(tmp_path / "t.npz", **_payload())
    (tmp_path / "subj").mkdir()
    with pytest.raises(FileExistsError):
        import_tracking(tmp_path / "t.npz", tmp_path / "subj")
    assert cli_main(["import-tracking", str(tmp_path / "t.npz"), "-o", str(tmp_path / "subj")]) == 2
    assert "already exists" in capsys.readouterr().err
