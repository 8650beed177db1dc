"""Expression curves: Live Link Face CSV and JSON files, validation, conform()."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from protocol.curves import (
    LLF_COLUMNS,
    Curves,
    crop_to_head_pose,
    head_pose_to_crop,
    read_curves,
    read_live_link_csv,
    write_curves,
    write_live_link_csv,
)
from protocol.errors import CurveError
from protocol.expressions import ARKIT_NAMES, FACE_MODEL_NAMES, residual_name


def random_curves(T: int = 12, fps: float = 30.0, frame_start: int = 0, seed: int = 0) -> Curves:
    rng = np.random.default_rng(seed)
    pose = np.zeros((T, 6), np.float32)
    pose[:, :3] = rng.normal(0, 0.2, (T, 3))
    return Curves(list(ARKIT_NAMES), fps, frame_start, rng.random((T, 52)).astype(np.float32), pose)


@pytest.mark.parametrize(("fps", "frame_start"), [(30.0, 0), (60.0, 1234), (24.0, 101), (29.97, 17)])
def test_live_link_csv_write_read_is_identity(tmp_path, fps, frame_start) -> None:
    curves = random_curves(fps=fps, frame_start=frame_start)
    path = tmp_path / "take.csv"
    write_curves(curves, path)
    assert path.read_text().splitlines()[0] == ",".join(LLF_COLUMNS)
    assert read_curves(path) == curves


def test_hand_written_live_link_face_csv_parses(tmp_path) -> None:
    header = ["Timecode", "BlendShapeCount"]
    header += [n[0].upper() + n[1:] for n in ARKIT_NAMES]
    header += ["HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
               "RightEyeYaw", "RightEyePitch", "RightEyeRoll"]
    rows = []
    for i, tc in enumerate(["13:42:51:12.000", "13:42:51:12.500", "13:42:51:13.000", "13:42:51:13.500"]):
        shapes = ["0"] * 52
        shapes[ARKIT_NAMES.index("jawOpen")] = f"{0.1 * (i + 1):.6f}"
        shapes[ARKIT_NAMES.index("eyeBlinkLeft")] = "0.983"
        rotations = [f"{0.05 * i:.6f}", "-0.120000", "0.010000", "0.1", "0.2", "0", "0.1", "0.2", "0"]
        rows.append(",".join([tc, "61", *shapes, *rotations]))
    path = tmp_path / "MySlate_7_iPhone.csv"
    path.write_text(",".join(header) + "\n" + "\n".join(rows) + "\n")
    curves = read_live_link_csv(path)
    assert curves.names == list(ARKIT_NAMES)
    assert curves.fps == 60.0  # half a 30 fps timecode frame apart
    assert curves.frame_start == round((13 * 3600 + 42 * 60 + 51 + 12 / 30) * 60)
    np.testing.assert_allclose(curves.column("JawOpen"), [0.1, 0.2, 0.3, 0.4], rtol=1e-6)
    np.testing.assert_allclose(curves.column("eyeblink_l"), 0.983, rtol=1e-6)
    np.testing.assert_allclose(curves.head_pose[:, 0], [0, 0.05, 0.1, 0.15], atol=1e-7)
    np.testing.assert_allclose(curves.head_pose[:, 1:3], [[-0.12, 0.01]] * 4, rtol=1e-6)
    assert not curves.head_pose[:, 3:].any()
    with_eyes = read_live_link_csv(path, eye_rotations=True)
    assert with_eyes.names[-6:] == ["LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
                                    "RightEyeYaw", "RightEyePitch", "RightEyeRoll"]


def test_csv_names_are_case_insensitive_with_aliases(tmp_path) -> None:
    path = tmp_path / "other_tool.csv"
    path.write_text("timecode,JAWOPEN,blink_l,EyeBlink_R\n00:00:01:00.000,0.5,1,0\n00:00:01:01.000,0.25,0,1\n")
    curves = read_live_link_csv(path)
    assert curves.names == ["jawOpen", "eyeBlinkLeft", "eyeBlinkRight"]
    assert curves.fps == 30.0 and curves.frame_start == 30 and curves.head_pose is None


@pytest.mark.parametrize(("text", "match"), [
    ("Frame,jawOpen\n0,1\n", "first column must be 'Timecode'"),
    ("Timecode,jawOpen,wiggleEars\n00:00:00:00.000,0,0\n", "unknown column.*wiggleEars"),
    ("Timecode,jawOpen\n00:00:00:00.000,nan\n", "row 2, column jawOpen.*not finite"),
    ("Timecode,jawOpen\n00:00:00:00.000,abc\n", "'abc' is not a number"),
    ("Timecode,jawOpen\n12:00\n", "truncated"),
    ("Timecode,jawOpen\n1:2,0.5\n", "not HH:MM:SS:FF.fff"),
    ("Timecode,jawOpen,JawOpen\n00:00:00:00.000,0,0\n", "same curve"),
    ("", "empty file"),
])
def test_bad_csv_gets_curve_error(tmp_path, text, match) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(CurveError, match=match):
        read_live_link_csv(path)


def test_json_round_trip_keeps_residuals_and_pose(tmp_path) -> None:
    names = [*FACE_MODEL_NAMES, residual_name(0), residual_name(1)]
    rng = np.random.default_rng(1)
    curves = Curves(names, 23.976, -5, rng.normal(size=(7, len(names))).astype(np.float32),
                    rng.normal(size=(7, 6)).astype(np.float32))
    write_curves(curves, tmp_path / "c.json")
    assert read_curves(tmp_path / "c.json") == curves
    with pytest.raises(CurveError, match="residual_00"):
        write_live_link_csv(curves, tmp_path / "c.csv")
    assert not (tmp_path / "c.csv").exists()


def test_validation_rejects_nan_shapes_and_names() -> None:
    with pytest.raises(CurveError, match=r"NaN/inf.*row 1, column 0"):
        Curves(["jawOpen"], 30, 0, np.array([[0.0], [np.inf]]))
    with pytest.raises(CurveError, match=r"shape \(2, 2\); expected \(T, 1\)"):
        Curves(["jawOpen"], 30, 0, np.zeros((2, 2)))
    with pytest.raises(CurveError, match=r"head_pose has shape \(2, 3\); expected \(2, 6\)"):
        Curves(["jawOpen"], 30, 0, np.zeros((2, 1)), np.zeros((2, 3)))
    with pytest.raises(CurveError, match="duplicate curve names: jawOpen"):
        Curves(["jawOpen", "jawOpen"], 30, 0, np.zeros((2, 2)))
    with pytest.raises(CurveError, match="positive"):
        Curves(["jawOpen"], 0, 0, np.zeros((2, 1)))


def test_conform_reorders_drops_fills_and_reports() -> None:
    source = Curves(["eyeBlinkLeft", "JawOpen", "tongueOut", "smile_l"], 30, 0,
                    np.arange(8, dtype=np.float32).reshape(2, 4))
    target = ["jawOpen", "mouthSmileLeft", "eyeBlinkLeft", residual_name(0)]
    out = source.conform(target)
    assert out.names == target
    np.testing.assert_array_equal(out.values, [[1, 3, 0, 0], [5, 7, 4, 0]])
    assert out.dropped == ["tongueOut"]
    with pytest.raises(CurveError, match=r"lack 1 name.*cheekPuff"):
        source.conform([*target, "cheekPuff"])
    filled = source.conform([*target, "cheekPuff"], fill_missing=True)
    assert not filled.column("cheekPuff").any()
    with pytest.raises(CurveError, match=r"unknown curve names.*wobble"):
        Curves(["jawOpen", "wobble"], 30, 0, np.zeros((1, 2))).conform(["jawOpen"])
    assert Curves(["wobble"], 30, 0, np.ones((1, 1))).conform(["wobble"]).values[0, 0] == 1  # rig-specific
    with pytest.raises(CurveError, match="both map to 'eyeBlinkLeft'"):
        Curves(["blink_l", "EyeBlinkLeft"], 30, 0, np.zeros((1, 2))).conform(["eyeBlinkLeft"])


def test_head_scale_round_trips_and_is_validated(tmp_path, caplog) -> None:
    base = random_curves(T=4)
    scaled = Curves(base.names, base.fps, base.frame_start, base.values, base.head_pose, [1.0, 1.1, 1.2, 0.9])
    assert scaled != base
    write_curves(scaled, tmp_path / "s.json")
    assert read_curves(tmp_path / "s.json") == scaled
    np.savez(tmp_path / "s.npz", names=np.array(base.names), values=base.values, head_scale=scaled.head_scale)
    np.testing.assert_array_equal(read_curves(tmp_path / "s.npz").head_scale, scaled.head_scale)
    assert scaled.conform(list(reversed(base.names))).head_scale.tolist() == scaled.head_scale.tolist()
    # a file written before head_scale existed has no key: no scale
    data = json.loads((tmp_path / "s.json").read_text())
    del data["head_scale"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    assert read_curves(tmp_path / "old.json").head_scale is None
    with caplog.at_level(logging.WARNING):
        write_curves(scaled, tmp_path / "s.csv")
    assert "no head scale" in caplog.text
    for bad, match in (([1.0, 0.0, 1.0, 1.0], r"> 0.*row 1"), ([1.0, 2.0], r"shape \(2,\); expected \(4,\)"),
                       ([1.0, float("nan"), 1.0, 1.0], "NaN/inf"), ("big", "not a list of numbers")):
        with pytest.raises(CurveError, match=match):
            Curves(base.names, 30, 0, base.values, None, bad)


def test_unknown_suffix_and_broken_json(tmp_path) -> None:
    with pytest.raises(CurveError, match=r"unknown curves format '\.txt'"):
        read_curves(tmp_path / "c.txt")
    (tmp_path / "b.json").write_text("{not json")
    with pytest.raises(CurveError, match="cannot read curves JSON"):
        read_curves(tmp_path / "b.json")
    (tmp_path / "o.json").write_text('{"format": "something-else"}')
    with pytest.raises(CurveError, match="not an emo-avatar curves file"):
        read_curves(tmp_path / "o.json")


@pytest.mark.parametrize(("name", "canonical"), [
    ("EyeBlinkLeft", "eyeBlinkLeft"), ("eyeBlink_L", "eyeBlinkLeft"), ("mouthSmile.R", "mouthSmileRight"),
    ("JAWOPEN", "jawOpen"), ("HeadYaw", "HeadYaw"), ("residual_03", "residual_03"), ("wiggle", None),
])
def test_canonical_names(name, canonical) -> None:
    from protocol.expressions import canonical_name

    assert canonical_name(name) == canonical


def test_head_pose_file_convention_round_trips_through_crop_pixels() -> None:
    """Curve files hold cm offsets around the rest pose (y up); crop pixels are absolute (y down)."""
    rest = np.array([0.1, -0.05, 0.02, 64.0, 47.0, 3.0], np.float32)
    head = np.array([[0.2, 0.1, -0.1, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0, 1.0, -0.5]], np.float32)
    crop = head_pose_to_crop(head, rest, px_per_cm=2.5)
    np.testing.assert_allclose(crop[0], [0.2, 0.1, -0.1, 64.0, 47.0, 3.0])
    np.testing.assert_allclose(crop[1], [0.0, 0.0, 0.0, 69.0, 44.5, 1.75])  # up in the file = up on screen
    np.testing.assert_allclose(crop_to_head_pose(crop, rest, px_per_cm=2.5), head, atol=1e-6)
