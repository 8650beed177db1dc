"""The FaceMesh wrapper: pixel coordinates, small faces in wide frames, no face."""

from __future__ import annotations

import numpy as np

from backend.face.landmarks import FaceMeshTracker, search_windows
from tests.face.conftest import astronaut


def test_search_windows_cover_the_frame() -> None:
    wins = search_windows(720, 1280)
    assert all(x >= 0 and x + s <= 1280 and y >= 0 and y + s <= 720 for x, y, s in wins)
    covered = np.zeros((720, 1280), bool)
    for x, y, s in wins:
        if s == 720:
            covered[y:y + s, x:x + s] = True
    assert covered.all()
    assert {s for _, _, s in wins} == {720, 360}
    assert all(s == 180 for *_, s in search_windows(360, 360))  # square frame: only the half scale


def test_small_face_in_a_wide_frame_is_found_and_followed() -> None:
    face = astronaut(360)
    canvas = np.full((720, 1280, 3), 110, np.uint8)
    x0, y0 = 820, 300
    canvas[y0:y0 + 360, x0:x0 + 360] = face
    with FaceMeshTracker() as tracker:
        results = [tracker.process(canvas) for _ in range(4)]
        assert tracker.searches == 1 and tracker.window is not None
    with FaceMeshTracker() as plain:
        alone = plain.process(face)
    assert all(r.points is not None for r in results)
    # the same landmarks as on the face alone, shifted by where it sits in the canvas
    shifted = alone.points[:, :2] + (x0, y0)
    for r in results:
        assert np.abs(r.points[:, :2] - shifted).mean() < 2.0


def test_no_face() -> None:
    with FaceMeshTracker() as tracker:
        r = tracker.process(np.full((200, 300, 3), 90, np.uint8))
    assert r.points is None and r.n_faces == 0
