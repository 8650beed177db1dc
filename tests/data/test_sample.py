"""The synthetic sample clip: files, ground truth, MediaPipe agreement, deformations, schedule."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from backend.data.sample import (
    GROUND_TRUTH_NAME,
    VIDEO_NAME,
    detect_photo_landmarks,
    euler_to_matrix,
    load_ground_truth,
)
from backend.data.sample_schedule import make_schedule
from backend.data.synthetic_expressions import (
    ANIMATED_NAMES,
    LEFT_EYE_LOWER,
    LEFT_EYE_UPPER,
    RIGHT_EYE_LOWER,
    RIGHT_EYE_UPPER,
    build_expression_model,
)
from backend.data.warp import FaceWarper
from backend.face.canonical import load_canonical_mesh
from protocol.expressions import FACE_MODEL_NAMES


def _read_frames(video: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


@pytest.fixture(scope="module")
def photo_and_landmarks() -> tuple[np.ndarray, np.ndarray]:
    from skimage import data

    photo = data.astronaut()
    return photo, detect_photo_landmarks(photo)


def test_tiny_sample_files_and_ground_truth(tiny_sample: Path):
    video, gt_path = tiny_sample / VIDEO_NAME, tiny_sample / GROUND_TRUTH_NAME
    assert video.is_file() and gt_path.is_file()
    assert not [p for p in tiny_sample.iterdir() if p.name.startswith(".")]  # no temp leftovers
    gt = load_ground_truth(gt_path)  # allow_pickle=False inside
    T = gt["expressions"].shape[0]
    assert T == 50 and int(gt["width"]) == int(gt["height"]) == 160 and float(gt["fps"]) == 25.0
    assert list(gt["names"]) == list(ANIMATED_NAMES) and set(ANIMATED_NAMES) <= set(FACE_MODEL_NAMES)
    assert gt["expressions"].dtype == np.float32 and gt["expressions"].shape == (T, len(ANIMATED_NAMES))
    assert gt["expressions"].min() >= 0 and gt["expressions"].max() <= 1
    assert gt["pose"].dtype == np.float32 and gt["pose"].shape == (T, 6) and np.all(gt["pose"][:, 5] == 0)
    assert gt["vertices"].dtype == np.float32 and gt["vertices"].shape == (T, 468, 2)
    assert gt["vertices"].min() > 0 and gt["vertices"].max() < 160
    assert int(gt["seed"]) == 0
    # A real MP4 that OpenCV reads back at the right size and length.
    cap = cv2.VideoCapture(str(video))
    assert cap.isOpened() and round(cap.get(cv2.CAP_PROP_FPS)) == 25
    frames = _read_frames(video)
    assert len(frames) == T and frames[0].shape == (160, 160, 3)
    with open(video, "rb") as f:
        assert f.read(12)[4:8] == b"ftyp"
    # Every kind of event happens: each curve goes from near 0 to a clear peak.
    ex = gt["expressions"]
    assert np.all(ex.max(0) > 0.6) and np.all(ex.min(0) < 0.05)


def test_mediapipe_tracks_every_tiny_frame_near_ground_truth(tiny_sample: Path):
    """The synthesiser's ground truth agrees with what MediaPipe sees in the video."""
    import mediapipe as mp

    gt = load_ground_truth(tiny_sample / GROUND_TRUTH_NAME)
    frames = _read_frames(tiny_sample / VIDEO_NAME)
    errors = []
    face_mesh = mp.solutions.face_mesh.FaceMesh
    with face_mesh(static_image_mode=False, refine_landmarks=True, max_num_faces=1) as mesh:
        for t, frame in enumerate(frames):
            result = mesh.process(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            assert result.multi_face_landmarks, f"no face found in frame {t}"
            lm = result.multi_face_landmarks[0].landmark
            xy = np.array([[p.x * 160, p.y * 160] for p in lm[:468]])
            errors.append(np.linalg.norm(xy - gt["vertices"][t], axis=1).mean())
    errors = np.array(errors)
    assert errors.mean() < 1.5, errors  # px at 160 px
    assert errors.max() < 2.5, errors


def test_ground_truth_vertices_follow_from_expressions_and_pose(tiny_sample: Path, photo_and_landmarks):
    """vertices = crop(project(R (deform(expressions) - c) + c + t)): the ground truth is consistent."""
    _, lm = photo_and_landmarks
    model = build_expression_model(lm)
    gt = load_ground_truth(tiny_sample / GROUND_TRUTH_NAME)
    x0, y0, side = (int(v) for v in gt["crop"])
    zoom = int(gt["width"]) / side
    for t in (0, 12, 17, 26, 36, 49):
        yaw, pitch, roll, tx, ty, tz = gt["pose"][t].astype(np.float64)
        R = euler_to_matrix(yaw, pitch, roll)
        shift = np.array([tx, ty, 0.0]) / zoom  # pose tx, ty are in video pixels
        shape = model.deform(gt["expressions"][t])
        posed = (shape - model.head_centre) @ R.T + model.head_centre + shift
        expect = (posed[:, :2] - [x0, y0]) * zoom
        assert np.abs(expect - gt["vertices"][t]).max() < 1e-3, t
        assert tz == 0


def test_first_frame_is_the_photo(tiny_sample: Path, photo_and_landmarks):
    """Neutral expression and pose at t=0: the warp is the identity on the photo crop."""
    photo, _ = photo_and_landmarks
    gt = load_ground_truth(tiny_sample / GROUND_TRUTH_NAME)
    assert np.abs(gt["expressions"][0]).max() < 1e-3 and np.abs(gt["pose"][0]).max() < 1e-3
    x0, y0, side = (int(v) for v in gt["crop"])
    ref = cv2.resize(photo[y0: y0 + side, x0: x0 + side], (160, 160), interpolation=cv2.INTER_AREA)
    frame = cv2.cvtColor(_read_frames(tiny_sample / VIDEO_NAME)[0], cv2.COLOR_BGR2RGB)
    mse = np.mean((frame.astype(float) - ref.astype(float)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 28  # only codec loss


def test_identity_warp_reproduces_photo(photo_and_landmarks):
    photo, lm = photo_and_landmarks
    model = build_expression_model(lm)
    warper = FaceWarper(photo, model.neutral, load_canonical_mesh().triangles, model.head_centre, model.scale)
    out = warper.render(model.neutral, np.eye(3), np.zeros(3))
    diff = np.abs(out.astype(int) - photo.astype(int))
    assert diff.mean() < 0.5 and np.percentile(diff, 99.9) <= 3


def test_expression_fields_move_the_right_parts(photo_and_landmarks):
    _, lm = photo_and_landmarks
    model = build_expression_model(lm)
    v0, s = model.neutral, model.scale

    def lid_gap(v, upper, lower):
        return np.linalg.norm(v[list(upper[1:-1])] - v[list(lower[1:-1])], axis=1).mean()

    blink = model.deform({"eyeBlinkLeft": 1.0})
    assert lid_gap(blink, LEFT_EYE_UPPER, LEFT_EYE_LOWER) < 0.15 * lid_gap(v0, LEFT_EYE_UPPER, LEFT_EYE_LOWER)
    assert np.allclose(blink[list(RIGHT_EYE_UPPER)], v0[list(RIGHT_EYE_UPPER)], atol=0.05 * s)
    jaw = model.deform({"jawOpen": 1.0})
    assert jaw[14, 1] - v0[14, 1] > 0.2 * s  # lower lip down
    assert jaw[152, 1] - v0[152, 1] > 0.12 * s  # chin down
    assert abs(jaw[13, 1] - v0[13, 1]) < 0.02 * s and np.allclose(jaw[10], v0[10])  # upper lip, forehead stay
    smile = model.deform({"mouthSmileLeft": 1.0})  # subject's left = image right (landmark 291)
    assert smile[291, 1] < v0[291, 1] - 0.08 * s and smile[291, 0] > v0[291, 0] + 0.05 * s
    assert np.linalg.norm(smile[61] - v0[61]) < 0.01 * s
    brow = model.deform({"browInnerUp": 1.0})
    assert brow[107, 1] < v0[107, 1] - 0.1 * s and brow[336, 1] < v0[336, 1] - 0.1 * s
    lower_lids = list(LEFT_EYE_LOWER + RIGHT_EYE_LOWER)
    assert np.allclose(brow[lower_lids], v0[lower_lids])
    with pytest.raises(ValueError, match="unknown expression"):
        model.deform({"notAShape": 1.0})


def _warper_and_model(photo, lm):
    model = build_expression_model(lm)
    warper = FaceWarper(photo, model.neutral, load_canonical_mesh().triangles, model.head_centre, model.scale)
    return warper, model


def _bbox(points: np.ndarray, pad: int = 0) -> tuple[slice, slice]:
    lo, hi = np.floor(points.min(0)).astype(int) - pad, np.ceil(points.max(0)).astype(int) + pad
    return slice(lo[1], hi[1]), slice(lo[0], hi[0])


def test_warp_blink_covers_the_eye_and_jaw_opens_a_dark_mouth(photo_and_landmarks):
    photo, lm = photo_and_landmarks
    warper, model = _warper_and_model(photo, lm)
    eye = _bbox(model.neutral[list(LEFT_EYE_UPPER + LEFT_EYE_LOWER), :2])
    closed = warper.render(model.deform({"eyeBlinkLeft": 1.0}), np.eye(3), np.zeros(3))
    grey = lambda im: im.astype(float).mean(-1)  # noqa: E731
    # The dark iris/pupil disappears under the lid: the darkest eye pixels get much brighter.
    assert np.percentile(grey(closed[eye]), 5) > np.percentile(grey(photo[eye]), 5) + 25
    mouth_ids = [13, 14, 78, 308]
    jaw = model.deform({"jawOpen": 1.0})
    mouth = _bbox(jaw[mouth_ids, :2])
    opened = warper.render(jaw, np.eye(3), np.zeros(3))
    dark = grey(opened[mouth]) < 70
    assert dark.mean() > 0.25  # a dark cavity fills a good part of the open mouth
    assert (grey(photo[mouth]) < 70).mean() < 0.1


def test_warp_keeps_background_and_torso_still_while_the_head_turns(photo_and_landmarks):
    from backend.data.sample import euler_to_matrix as rot

    photo, lm = photo_and_landmarks
    warper, model = _warper_and_model(photo, lm)
    c = model.head_centre
    diffs = []
    for yaw, pitch in ((0.28, 0.0), (-0.28, 0.0), (0.0, 0.15), (0.0, -0.15)):
        R = rot(yaw, pitch, 0.0)
        out = warper.render((model.neutral - c) @ R.T + c, R, np.zeros(3))
        d = np.abs(out.astype(int) - photo.astype(int)).max(-1)
        diffs.append(d)
        # The face region changes a lot ...
        assert d[_bbox(model.neutral[:, :2])].mean() > 10
    d = np.max(diffs, axis=0)
    # ... while the torso (below the collar) and the image corners do not move.
    assert d[330:, :].mean() < 1.0 and d[:60, :60].max() <= 2 and d[:60, -60:].max() <= 2


def test_warp_map_has_no_holes_or_tears_inside_the_face(photo_and_landmarks):
    """Frontal, strongly deformed: the photo position varies smoothly across the whole face.

    (Blinks are left out: a closing lid *occludes* the eyeball, a deliberate discontinuity.)
    """
    from backend.data.warp import boundary_loop

    photo, lm = photo_and_landmarks
    warper, model = _warper_and_model(photo, lm)
    target = model.deform({"jawOpen": 0.8, "mouthSmileLeft": 1.0, "browInnerUp": 1.0, "browOuterUpRight": 1})
    map_xy, cavity = warper.map_for(target, np.eye(3), np.zeros(3))
    outline = target[boundary_loop(load_canonical_mesh().triangles), :2]
    inside = np.zeros(photo.shape[:2], np.uint8)
    cv2.fillPoly(inside, [np.round(outline - 0.5).astype(np.int32)], 1)
    inside = cv2.erode(inside, np.ones((5, 5), np.uint8)).astype(bool) & (cavity[..., 0] == 0)
    jump_x = np.abs(np.diff(map_xy, axis=1)).max(-1)
    jump_y = np.abs(np.diff(map_xy, axis=0)).max(-1)
    both = inside[:, 1:] & inside[:, :-1]
    assert jump_x[both].max() < 3.0
    both = inside[1:] & inside[:-1]
    assert jump_y[both].max() < 3.0
    assert (cavity[..., 0] > 0).sum() > 50  # the mouth is open


def test_pose_convention():
    """yaw > 0 turns the nose to image right, pitch > 0 moves it down, roll > 0 is counter-clockwise."""
    nose = np.array([0.0, 0.0, 1.0])  # towards the viewer
    top = np.array([0.0, -1.0, 0.0])  # image y points down
    assert (euler_to_matrix(0.3, 0, 0) @ nose)[0] > 0.2
    assert (euler_to_matrix(0, 0.3, 0) @ nose)[1] > 0.2
    assert (euler_to_matrix(0, 0, 0.3) @ top)[0] < -0.2
    R = euler_to_matrix(0.2, -0.1, 0.3)
    assert np.allclose(R @ R.T, np.eye(3)) and np.isclose(np.linalg.det(R), 1)


@pytest.mark.parametrize("tiny", [True, False])
def test_schedule_extremes_are_unambiguous_and_deterministic(tiny: bool):
    n = 50 if tiny else 250
    ex, pose = make_schedule(n, 25.0, tiny, seed=0)
    assert np.array_equal(ex, make_schedule(n, 25.0, tiny, seed=0)[0])
    assert not np.array_equal(ex, make_schedule(n, 25.0, tiny, seed=3)[0])
    for seed in (0, 1, 7):
        _, pose = make_schedule(n, 25.0, tiny, seed=seed)
        for axis in (0, 1):  # yaw, pitch
            for sign in (1, -1):
                curve = sign * pose[:, axis]
                order = np.argsort(curve)[::-1]
                assert curve[order[0]] - curve[order[1]] > 0.004, (axis, sign, seed)  # > 0.2 degree
                assert curve[order[0]] > 0.1
    # Blinks are short: at most ~0.3 s above half closed per event.
    blink = ex[:, ANIMATED_NAMES.index("eyeBlinkLeft")] > 0.5
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, blink.astype(int), 0])))[::2]
    assert runs.max() <= 6


def test_cli_output_is_deterministic(tmp_path: Path, tiny_sample: Path):
    from backend.cli import main

    out = tmp_path / "sample"
    assert main(["sample", "-o", str(out), "--tiny", "--seed", "0"]) == 0
    gt, ref = load_ground_truth(out / GROUND_TRUTH_NAME), load_ground_truth(tiny_sample / GROUND_TRUTH_NAME)
    assert set(gt) == set(ref)
    for key in ("expressions", "pose", "vertices", "seed"):
        assert np.array_equal(gt[key], ref[key]), key
    frames, ref_frames = _read_frames(out / VIDEO_NAME), _read_frames(tiny_sample / VIDEO_NAME)
    assert len(frames) == 50 and all(np.array_equal(a, b) for a, b in zip(frames, ref_frames, strict=True))
    # Output that is a file, not a folder: clear error, nothing written.
    bad = tmp_path / "file.txt"
    bad.write_text("x")
    assert main(["sample", "-o", str(bad), "--tiny"]) == 2
    assert main(["sample", "-o", str(bad / "below"), "--tiny"]) == 1  # cannot create: clear error
    assert bad.read_text() == "x"


def test_failed_run_leaves_previous_output_untouched(tmp_path: Path):
    """A run stopped half-way (here by its progress callback) keeps the old files, no temp files."""
    from backend.data.sample import synthesize_sample

    (tmp_path / VIDEO_NAME).write_bytes(b"old video")
    (tmp_path / GROUND_TRUTH_NAME).write_bytes(b"old truth")

    def stop_at_five(update) -> None:
        if update.step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        synthesize_sample(tmp_path, tiny=True, progress=stop_at_five)
    assert (tmp_path / VIDEO_NAME).read_bytes() == b"old video"
    assert (tmp_path / GROUND_TRUTH_NAME).read_bytes() == b"old truth"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([VIDEO_NAME, GROUND_TRUTH_NAME])
