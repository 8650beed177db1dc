"""Per-shot framing with framing segments (``track_video(follow_face=True)``, ``--follow-face``):
a face that moves across a shot keeps its size.

One fixed crop holding a face's whole motion makes a moving face small; with ``follow_face``
``track`` splits such a shot into framing segments of at least ``MIN_RUN_FRAMES`` frames, each with
its own fixed crop. The end-to-end clip slides a real photo (``skimage.data.astronaut()``) 4 px per
frame across a 640 x 360 frame: one crop for the whole shot (the default) is about the frame's full
height (a face of about 40 px at 128 px); the segments keep it at 70 px or more in the ``face``
framing.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from backend.data.subject import Subject
from backend.face.framing import (
    EDGE_SPACE,
    FACE_SIZE_TOLERANCE,
    FRAMINGS,
    MIN_SPACE_BELOW,
    MOTION_MARGIN,
    face_fill,
    face_heights,
    framing_segments,
)
from backend.face.selection import MIN_RUN_FRAMES
from backend.face.track import crop_box, track_video
from tests.face.conftest import write_video

W, H, N, STEP = 640, 360, 64, 4


def face_points(centres: np.ndarray, height: float = 100.0) -> np.ndarray:
    """(T, 2) face centres (px) -> (T, 60, 2) points of an upright oval ``height`` px tall."""
    a = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    oval = np.stack([0.4 * height * np.cos(a), 0.5 * height * np.sin(a)], axis=1)
    return centres[:, None, :] + oval[None]


def check_segments(segments: list[tuple[int, int]], T: int) -> None:
    assert segments[0][0] == 0 and segments[-1][1] == T
    assert all(b0 == a1 for (_, b0), (a1, _) in itertools.pairwise(segments))
    assert all(b - a >= MIN_RUN_FRAMES for a, b in segments)


def test_a_still_face_is_one_segment() -> None:
    pts = face_points(np.tile([[300.0, 200.0]], (80, 1)))
    assert framing_segments(pts, "face", 720, MIN_RUN_FRAMES) == [(0, 80)]


@pytest.mark.parametrize("framing", list(FRAMINGS))
def test_a_moving_face_is_split_into_segments_that_keep_its_size(framing: str) -> None:
    T = 120
    pts = face_points(np.stack([np.linspace(100, 900, T), np.full(T, 300.0)], axis=1))
    lo, hi, h = pts.min(axis=1), pts.max(axis=1), face_heights(pts)
    assert face_fill(lo, hi, h, framing, 1080) < 0.5  # one crop for the shot: less than half size
    segments = framing_segments(pts, framing, 1080, MIN_RUN_FRAMES)
    check_segments(segments, T)
    assert len(segments) > 2
    fills = [face_fill(lo[a:b], hi[a:b], h[a:b], framing, 1080) for a, b in segments]
    # every segment keeps the size but the last two, which share what the greedy pass left over
    assert min(fills[:-2]) >= 1 - FACE_SIZE_TOLERANCE
    assert min(fills[-2:]) >= 0.85


def _with_depth(pts: np.ndarray) -> np.ndarray:
    """(T, N, 2) -> (T, N, 3) landmarks as ``crop_box`` takes them."""
    return np.concatenate([pts, np.zeros((*pts.shape[:2], 1))], axis=2)


@pytest.mark.parametrize("swing", [40.0, 60.0])
def test_one_crop_per_shot_keeps_a_moving_faces_median_size_and_every_landmark(swing: float) -> None:
    """One crop for a shot (the default): where the face moves, the crop grows with the motion only
    until the median face is ``FACE_SIZE_TOLERANCE`` smaller than a still one (70 of 75.3 px at
    128 px in ``face``), and grows past that only as far as keeping every landmark inside needs."""
    T = 60
    t = np.linspace(0, 2 * np.pi, T)
    pts = face_points(np.stack([400 + swing * np.sin(t), 250 + 20 * np.cos(t)], axis=1))
    box = crop_box(_with_depth(pts), None, 1280, 720, "face")
    h = float(np.median(face_heights(pts)))
    span = pts.max(axis=(0, 1)) - pts.min(axis=(0, 1))
    assert box.side < MOTION_MARGIN * span.max()  # the motion term alone would make it larger
    fill = FRAMINGS["face"][0] * h / box.side
    if swing == 40.0:  # the cap holds the median face's size
        assert abs(fill - (1 - FACE_SIZE_TOLERANCE)) < 0.005, fill
    else:  # more motion: the landmarks' box sets the side, and the face is smaller
        assert fill < 1 - FACE_SIZE_TOLERANCE - 0.02, fill
    assert pts[..., 0].min() - box.x0 >= EDGE_SPACE * h - 1
    assert box.x0 + box.side - pts[..., 0].max() >= EDGE_SPACE * h - 1
    assert pts[..., 1].min() - box.y0 >= EDGE_SPACE * h - 1
    assert box.y0 + box.side - pts[..., 1].max() >= MIN_SPACE_BELOW * h - 1


def test_fast_motion_and_short_shots_give_no_short_segments() -> None:
    # 40 px per frame: even 8 frames cannot keep the size; segments still hold 8 frames or more
    T = 45
    pts = face_points(np.stack([np.linspace(0, 40 * T, T), np.full(T, 300.0)], axis=1))
    segments = framing_segments(pts, "face", 10_000, MIN_RUN_FRAMES)
    check_segments(segments, T)
    # a shot of fewer than two segments' frames stays whole, however it moves
    assert framing_segments(pts[:15], "face", 10_000, MIN_RUN_FRAMES) == [(0, 15)]


def test_swinging_face_height_alone_makes_no_churn() -> None:
    """A face that holds still but whose height swings by +-15 % every 4 frames (which no crop
    fixed for 8 frames can follow) is not cut into many segments that gain nothing."""
    T = 96
    pts = face_points(np.tile([[300.0, 200.0]], (T, 1)))
    swing = 1 + 0.15 * np.sin(np.arange(T) * 2 * np.pi / 8)
    pts = pts[:, :1] + (pts - pts[:, :1]) * swing[:, None, None]
    assert len(framing_segments(pts, "face", 720, MIN_RUN_FRAMES)) <= 2


@pytest.fixture(scope="module")
def sliding_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 300 px head of the astronaut photo sliding 4 px per frame across a black 640 x 360 frame
    (64 frames, one shot)."""
    from skimage import data

    head = data.astronaut()[:300, 80:380]
    frames = []
    for k in range(N):
        canvas = np.zeros((H, W, 3), np.uint8)
        canvas[30:330, k * STEP:k * STEP + 300] = head
        frames.append(canvas)
    return write_video(tmp_path_factory.mktemp("sliding") / "slide.mp4", frames)


@pytest.fixture(scope="module")
def sliding_subject(sliding_video: Path) -> Path:
    """The sliding clip tracked at 128 px in the ``face`` framing with ``follow_face``."""
    return track_video(sliding_video, sliding_video.parent / "s", size=128, framing="face", follow_face=True)


def _segments(s: Subject) -> list[dict]:
    return [seg for shot in s.meta["shots"] for seg in shot["framing_segments"]]


def _video_landmarks(s: Subject) -> np.ndarray:
    """(T, 468, 2) landmarks back in video px through each frame's crop."""
    out = np.empty((s.n_frames, 468, 2))
    for i in range(s.n_frames):
        c = s.crop_of(i)
        out[i] = s.landmarks[i, :468, :2] * c["side"] / s.size + (c["x0"], c["y0"])
    return out


def test_moving_face_keeps_70_px_in_face_framing(sliding_subject: Path) -> None:
    s = Subject.open(sliding_subject)
    assert s.n_frames == N and len(s.meta["shots"]) == 1 and s.meta["follow_face"] is True
    heights = np.ptp(s.landmarks[:, :468, 1], axis=1)
    assert heights.min() >= 70.0, heights.min()
    # what one crop for the whole shot would give: about the frame's full height, a face under 50 px
    video = _video_landmarks(s)
    whole = crop_box(_with_depth(video), None, W, H, "face")
    assert whole.side >= 0.95 * H and np.median(face_heights(video)) * s.size / whole.side < 50


def test_crops_are_fixed_within_segments_and_long_enough(sliding_subject: Path) -> None:
    s = Subject.open(sliding_subject)
    segments = _segments(s)
    check_segments([tuple(seg["frames"]) for seg in segments], s.n_frames)
    assert len(segments) >= 3
    shot = s.meta["shots"][0]
    assert shot["crop"] == segments[0]["crop"]  # a reader of one crop per shot gets the first
    for seg in segments:
        a, b = seg["frames"]
        assert seg["source_frames"] == [a, b]
        assert all(s.crop_of(i) == seg["crop"] for i in range(a, b))
    assert len({tuple(seg["crop"].values()) for seg in segments}) == len(segments)
    # a crop change is a cut for what renders and scores frames over time, though the shot is one run
    assert s.cuts == [seg["frames"][0] for seg in segments[1:]] and s.run_starts == []


def test_landmarks_and_pose_are_continuous_across_segment_boundaries(sliding_subject: Path) -> None:
    """Back in video px, the face slides 4 px per frame through every boundary: the landmarks are
    mapped with their own frame's crop, and the smoothed pose was not blurred by a crop change."""
    s = Subject.open(sliding_subject)
    centre_x = _video_landmarks(s)[:, :, 0].mean(axis=1)
    np.testing.assert_allclose(np.diff(centre_x), STEP, atol=1.0)
    f = np.array([s.size / s.crop_of(i)["side"] for i in range(s.n_frames)])
    x0 = np.array([s.crop_of(i)["x0"] for i in range(s.n_frames)])
    tx_video = s.pose[:, 3] / f + x0
    np.testing.assert_allclose(np.diff(tx_video), STEP, atol=1.0)


def test_subjects_without_framing_segments_still_read(sliding_subject: Path) -> None:
    """A subject tracked before framing segments existed has one ``crop`` per shot."""
    s = Subject.open(sliding_subject)
    for shot in s.meta["shots"]:
        del shot["framing_segments"]
    assert all(s.crop_of(i) == s.meta["shots"][0]["crop"] for i in range(s.n_frames))


def test_by_default_a_shot_keeps_one_crop(sliding_video: Path, sliding_subject: Path) -> None:
    """Without ``follow_face`` (the default: segments cost held-out quality on the measured real
    clip, docs/tracking.md) the same clip gets one crop for its one shot, about the frame's full
    height (the landmarks' box over the shot), and a face under 50 px; its landmarks match the
    ``follow_face`` subject's in video px."""
    s = Subject.open(track_video(sliding_video, sliding_video.parent / "default", size=128, framing="face"))
    assert s.meta["follow_face"] is False
    assert s.n_frames == N and len(s.meta["shots"]) == 1
    shot = s.meta["shots"][0]
    assert [seg["frames"] for seg in shot["framing_segments"]] == [[0, N]]
    first = {k: s.meta["crop"][k] for k in ("x0", "y0", "side")}
    assert shot["framing_segments"][0]["crop"] == shot["crop"] == first
    assert {tuple(s.crop_of(i).values()) for i in range(N)} == {tuple(shot["crop"].values())}
    assert shot["crop"]["side"] >= 0.95 * H
    heights = np.ptp(s.landmarks[:, :468, 1], axis=1)
    assert np.median(heights) < 50 and heights.max() < 70, heights
    following = Subject.open(sliding_subject)
    np.testing.assert_allclose(_video_landmarks(s), _video_landmarks(following), atol=1e-3)
