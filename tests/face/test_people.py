"""Shot cuts and identities on a real-photo clip with two people.

The clip cuts between two real portraits that ship offline: ``skimage.data.astronaut()`` (Eileen
Collins) and matplotlib's ``grace_hopper.jpg`` (Grace Hopper), each moving (rotating on screen)
within its shots. A person tells them apart at a glance; so must ``track``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from backend.cli import main as cli_main
from backend.data.subject import Subject
from backend.face.track import TrackError, track_video
from tests.face.conftest import astronaut, write_video

SIZE = 256
# (who, n_frames, zoom): astronaut 14, hopper 12, astronaut (closer) 12, hopper 10
SHOTS = (("astro", 14, 1.0), ("hopper", 12, 1.0), ("astro", 12, 1.35), ("hopper", 10, 1.0))


def hopper(size: int = SIZE) -> np.ndarray:
    from matplotlib import cbook

    bgr = cv2.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[:512]  # 512 x 512 head and shoulders
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)


def shot_frames(img: np.ndarray, n: int, zoom: float, phase: float) -> list[np.ndarray]:
    out = []
    for k in range(n):
        a = 4.0 * np.sin(phase + k * 2 * np.pi / 12)
        M = cv2.getRotationMatrix2D((SIZE / 2, SIZE * 0.4), float(a), zoom)
        out.append(cv2.warpAffine(img, M, (SIZE, SIZE), borderMode=cv2.BORDER_REFLECT))
    return out


def two_people_frames(shots=SHOTS) -> tuple[list[np.ndarray], list[str]]:
    faces = {"astro": astronaut(SIZE), "hopper": hopper(SIZE)}
    frames, who = [], []
    for k, (name, n, zoom) in enumerate(shots):
        frames += shot_frames(faces[name], n, zoom, phase=k)
        who += [name] * n
    return frames, who


@pytest.fixture(scope="module")
def two_people_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frames, _ = two_people_frames()
    return write_video(tmp_path_factory.mktemp("two") / "two.mp4", frames)


@pytest.fixture(scope="module")
def two_people_subject(two_people_video: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return track_video(two_people_video, tmp_path_factory.mktemp("two_subj") / "s", size=64)


def test_cuts_and_people_are_found(two_people_video: Path) -> None:
    from backend.face.scan import scan_video
    from backend.face.video_io import probe

    scan = scan_video(two_people_video, probe(two_people_video))
    assert scan.cuts == [14, 26, 38]
    assert scan.people.signal == "descriptor"
    people = scan.people.people
    assert len(people) == 2 and not scan.people.undecided
    assert people[0].frames.tolist() == list(range(14)) + list(range(26, 38))
    assert people[1].frames.tolist() == list(range(14, 26)) + list(range(38, 48))
    assert scan.people.distances[0, 1] > 0.6


def test_default_keeps_the_person_on_screen_longest(two_people_subject: Path) -> None:
    s = Subject.open(two_people_subject)
    m = s.meta
    assert s.n_frames == 26
    assert m["source_frames"] == list(range(14)) + list(range(26, 38))
    assert [s.source_frame(i) for i in (0, 13, 14, 25)] == [0, 13, 26, 37]
    assert m["people"]["kept"] == [1] and len(m["people"]["people"]) == 2
    assert m["frames_left_out"] == [{"start": 14, "stop": 26, "reason": "person 2, not selected"},
                                    {"start": 38, "stop": 48, "reason": "person 2, not selected"}]
    # dense frames: subject frame 14 is the first frame of the closer astronaut shot
    assert [sh["frames"] for sh in m["shots"]] == [[0, 14], [14, 26]]
    assert [sh["source_frames"] for sh in m["shots"]] == [[0, 14], [26, 38]]
    assert s.run_starts == s.cuts == [14]  # what renders and metrics must not reach across
    # per-shot framing: the closer shot's crop is larger in video px, the face keeps one size
    assert m["shots"][1]["crop"]["side"] > m["shots"][0]["crop"]["side"]
    heights = np.ptp(s.landmarks[:, :468, 1], axis=1)
    assert abs(np.median(heights[14:]) / np.median(heights[:14]) - 1.0) < 0.08


def test_person_two_and_frame_ranges(two_people_video: Path, tmp_path: Path) -> None:
    s = Subject.open(track_video(two_people_video, tmp_path / "p2", size=32, person=2))
    assert s.meta["source_frames"] == list(range(14, 26)) + list(range(38, 48))
    s = Subject.open(track_video(two_people_video, tmp_path / "r", size=32, frames="14:26,40:48"))
    assert s.meta["source_frames"] == list(range(14, 26)) + list(range(40, 48))
    s = Subject.open(track_video(two_people_video, tmp_path / "r2", size=32, frames="14:26,42:48"))
    assert s.meta["source_frames"] == list(range(14, 26))  # 42:48 is 6 frames: too short a run
    reasons = {(d["start"], d["stop"]): d["reason"] for d in s.meta["frames_left_out"]}
    assert reasons == {(0, 14): "outside --frames", (26, 42): "outside --frames",
                       (42, 48): "shot too short (6 frames < 8)"}


def test_cli_list_people_prints_ranges_and_writes_a_sheet(two_people_video: Path, tmp_path: Path,
                                                         capsys) -> None:
    sheet = tmp_path / "people.png"
    assert cli_main(["track", "--list-people", str(two_people_video), "--sheet", str(sheet)]) == 0
    out = capsys.readouterr().out
    assert "3 shot cuts, 2 people" in out
    assert "person 1: 26 frames on screen: 0:14, 26:38" in out
    assert "person 2: 22 frames on screen: 14:26, 38:48" in out
    img = cv2.imread(str(sheet))
    assert img.shape[0] == 2 * 96 and img[:, 60:].std() > 10


def test_cli_track_reports_kept_and_left_out(two_people_video: Path, tmp_path: Path, capsys, caplog) -> None:
    with caplog.at_level(logging.INFO):
        assert cli_main(["track", str(two_people_video), "-o", str(tmp_path / "s"), "--size", "32",
                         "--person", "2"]) == 0
    out = capsys.readouterr().out
    assert "kept source frames 14:26, 38:48 (person 2 of 2" in out
    assert "left out 0:14: person 1, not selected" in out
    assert "frames 26:38 left out: person 1, not selected" in caplog.text


def test_bad_person_and_frames(two_people_video: Path, tmp_path: Path) -> None:
    out = tmp_path / "s"
    with pytest.raises(TrackError, match=r"--person 3: this video has 2 people \(1..2\)"):
        track_video(two_people_video, out, size=32, person=3)
    with pytest.raises(TrackError, match="ends after the video's last frame"):
        track_video(two_people_video, out, size=32, frames="40:60")
    with pytest.raises(TrackError, match="overlap"):
        track_video(two_people_video, out, size=32, frames="0:10,5:12")
    with pytest.raises(TrackError, match="not A:B"):
        track_video(two_people_video, out, size=32, frames="a:b")
    with pytest.raises(TrackError, match="empty or negative"):
        track_video(two_people_video, out, size=32, frames="9:3")
    with pytest.raises(TrackError, match="exclude each other"):
        track_video(two_people_video, out, size=32, person=1, all_people=True)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_no_shot_with_eight_frames_is_a_clear_error(tmp_path: Path) -> None:
    shots = (("astro", 6, 1.0), ("hopper", 7, 1.0), ("astro", 5, 1.2), ("hopper", 6, 1.2))
    frames, _ = two_people_frames(shots)
    video = write_video(tmp_path / "short_shots.mp4", frames)
    with pytest.raises(TrackError, match=r"no shot of the chosen person has 8 usable frames.*shot too short"):
        track_video(video, tmp_path / "s", size=32)
    assert list(tmp_path.iterdir()) == [video]


def test_identities_that_cannot_be_told_apart(two_people_video: Path, tmp_path: Path, monkeypatch) -> None:
    """With only the weak rig-shape signal and a 'same'/'different' band that the two people fall
    into, the run says it cannot tell them apart, and keeps everything only when asked."""
    import backend.face.identity as identity

    monkeypatch.setattr(identity, "SHAPE_SAME", 0.0)
    monkeypatch.setattr(identity, "SHAPE_DIFFERENT", 100.0)
    with pytest.raises(TrackError, match=r"cannot tell the people .* apart by shape.*--all-people"):
        track_video(two_people_video, tmp_path / "s", size=32, descriptor=False)
    s = Subject.open(track_video(two_people_video, tmp_path / "s", size=32, descriptor=False,
                                 all_people=True))
    assert s.n_frames == 48 and len(s.meta["shots"]) == 4


def test_missing_descriptor_weights_fall_back_to_rig_shape(two_people_video: Path, tmp_path: Path,
                                                          monkeypatch, caplog) -> None:
    import backend.face.identity as identity

    monkeypatch.setattr(identity, "DESCRIPTOR_FILE", "no_such_weights.dat")
    with caplog.at_level(logging.WARNING):
        s = Subject.open(track_video(two_people_video, tmp_path / "s", size=32))
    assert "descriptor weights missing" in caplog.text and "rig-fit face shape" in caplog.text
    assert s.meta["people"]["signal"] == "shape"
    assert s.meta["source_frames"] == list(range(14)) + list(range(26, 38))
    json.dumps(s.meta)


@pytest.mark.parametrize(("framing", "lo", "hi"), [("face", 70, 128), ("head", 50, 64), ("bust", 38, 48)])
def test_framing_sets_the_face_size(astro_video, tmp_path: Path, framing: str, lo: float, hi: float) -> None:
    """Face height (landmark extent, forehead to chin) in a 128 px crop: about 128 / 1.7, 1/2.3, 1/3."""
    s = Subject.open(track_video(astro_video[0], tmp_path / "s", size=128, framing=framing))
    heights = np.ptp(s.landmarks[:, :468, 1], axis=1)
    assert lo <= np.median(heights) <= hi
    assert s.meta["framing"] == framing and s.meta["shots"][0]["framing"] == framing
    # one crop within the shot: the face only moves as much as the video does (rotation of 4 deg)
    assert np.ptp(s.landmarks[:, 1, 0]) < 0.1 * 128


def test_unknown_framing_is_refused(astro_video, tmp_path: Path) -> None:
    with pytest.raises(TrackError, match="--framing must be one of face, head, bust"):
        track_video(astro_video[0], tmp_path / "s", framing="wide")
