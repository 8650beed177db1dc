"""The appearance measure's geometry: which canonical pixels count as facing the camera."""

from __future__ import annotations

import numpy as np

from backend.face.appearance import (
    FACING_MIN,
    REGIONS,
    _region_slices,
    canonical_grid,
    surface_normals,
    visibility,
)
from backend.face.canonical import load_canonical_mesh


def test_chin_pixels_turned_towards_the_outline_stop_counting() -> None:
    """On the canonical face, the chin box faces the camera at zero pose; turned 35 degrees (nose to
    image right, as the real clip's 30-degree stretches), its far side (the subject's left, +x) gets
    less weight and the near side more; the nose wing box keeps plain means."""
    neutral = load_canonical_mesh().vertices[:468].astype(np.float64)
    normals = surface_normals(canonical_grid(neutral))
    assert np.allclose(np.linalg.norm(normals, axis=-1), 1.0)
    rs, cs = _region_slices(neutral)["chin"]
    box = normals[rs, cs]
    half = box.shape[1] // 2
    w = visibility(box, np.array([[0.0, 0.0, 0.0], [np.deg2rad(35.0), 0.0, 0.0]]))
    assert w.shape == (2, *box.shape[:2]) and (w >= 0.0).all()
    assert w[0].mean() > 0.25  # most of the chin faces the camera at zero pose
    near, far = w[1][:, :half].mean(), w[1][:, half:].mean()
    assert far < w[0][:, half:].mean() and near > w[0][:, :half].mean() and far < 0.5 * near
    assert (w[1][:, half:] == 0.0).mean() > (w[0][:, half:] == 0.0).mean()  # past cos 60 degrees: zero
    assert 0.0 < FACING_MIN < 1.0
    assert REGIONS["chin"].facing and not REGIONS["wingLeft"].facing and not REGIONS["wingRight"].facing


def test_sneer_takes_out_the_wing_depth_share_of_a_nose_tip_lift_only() -> None:
    """A lift that grows with depth (the crop's pitch or depth error, the nose tip most) reads no
    sneer; a wing rising on its own reads its full rise; the tip's drop (a smile's upper lip
    pulling the columella down) is not read as a sneer."""
    from backend.face.appearance import APPEARANCE

    depth = {"wingRight": 5.5, "outerCheekRight": 4.0, "noseTip": 7.0}  # wing's share: 1.5 / 3.0
    fn = APPEARANCE["noseSneerRight"].fn

    def motion(wing: float, cheek: float, tip: float) -> dict[str, np.ndarray]:
        return {"wingRight": np.array([[0.0, wing]]), "outerCheekRight": np.array([[0.0, cheek]]),
                "noseTip": np.array([[0.0, tip]])}

    lift = 0.1  # cm per cm of depth
    assert abs(fn(motion(5.5 * lift, 4.0 * lift, 7.0 * lift), depth)[0]) < 1e-9
    assert np.isclose(fn(motion(0.6, 0.0, 0.0), depth)[0], 0.6)
    assert np.isclose(fn(motion(0.0, 0.0, -0.4), depth)[0], 0.0)
    assert "noseTip" in REGIONS and not REGIONS["noseTip"].facing
