"""Rigid pose (Procrustes, Euler convention), the rig's projection and its files."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from backend.face.canonical import load_canonical_mesh
from backend.face.pose import euler_to_matrices, euler_to_matrix, matrix_to_euler, weighted_procrustes
from backend.face.rig import FaceRig, RigError, canonical_uvs_v_up


def test_euler_round_trip_and_vectorised_form() -> None:
    rng = np.random.default_rng(0)
    angles = rng.uniform(-1.2, 1.2, size=(50, 3))
    R = euler_to_matrices(angles)
    for a, r in zip(angles, R, strict=True):
        np.testing.assert_allclose(r, euler_to_matrix(*a), atol=1e-12)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(matrix_to_euler(R), angles, atol=1e-9)


def test_euler_sign_conventions() -> None:
    nose = np.array([0.0, 0.0, 1.0])  # mesh axes: z towards the viewer
    assert (euler_to_matrix(0.3, 0, 0) @ nose)[0] > 0  # yaw > 0: nose to image right
    assert (euler_to_matrix(0, 0.3, 0) @ nose)[1] < 0  # pitch > 0: nose down
    right = euler_to_matrix(0, 0, 0.3) @ np.array([1.0, 0.0, 0.0])
    assert right[1] > 0  # roll > 0: counter-clockwise as seen by the viewer


def test_weighted_procrustes_recovers_similarity() -> None:
    mesh = load_canonical_mesh()
    src = mesh.vertices[mesh.procrustes_ids].astype(np.float64)
    R = euler_to_matrix(0.2, -0.1, 0.05)
    dst = 7.5 * src @ R.T + np.array([120.0, -80.0, 3.0])
    s, R_fit, t = weighted_procrustes(src, dst, mesh.procrustes_weights)
    assert s == pytest.approx(7.5, rel=1e-9)
    np.testing.assert_allclose(R_fit, R, atol=1e-9)
    np.testing.assert_allclose(t, [120.0, -80.0, 3.0], atol=1e-7)


def _rig(k: int = 3) -> FaceRig:
    mesh = load_canonical_mesh()
    rng = np.random.default_rng(1)
    return FaceRig(names=[f"residual_{i:02d}" for i in range(k)], neutral=mesh.vertices,
                   deltas=rng.normal(0, 0.1, (k, 468, 3)), uvs=canonical_uvs_v_up(), triangles=mesh.triangles)


def test_project_formula_and_batch() -> None:
    rig = _rig()
    v = rig.shape(np.array([0.5, -0.2, 0.1]))
    pose = np.array([0.1, -0.2, 0.05, 64.0, 70.0, 2.0])
    p = FaceRig.project(v, pose, 4.0)
    q = 4.0 * v.astype(np.float64) @ euler_to_matrix(*pose[:3]).T
    np.testing.assert_allclose(p[:, 0], q[:, 0] + 64.0, atol=1e-4)
    np.testing.assert_allclose(p[:, 1], -q[:, 1] + 70.0, atol=1e-4)  # image y is down
    np.testing.assert_allclose(p[:, 2], q[:, 2] + 2.0, atol=1e-4)
    batch = FaceRig.project_batch(v[None], pose[None], np.array([4.0]))
    np.testing.assert_allclose(batch[0], p, atol=1e-4)
    # forehead (mesh y up) lands above the chin (image y down)
    assert p[10, 1] < p[152, 1]


def test_rig_save_load_round_trip_and_obj_readable_by_trimesh(tmp_path) -> None:
    rig = _rig()
    rig.save(tmp_path / "rig")
    back = FaceRig.load(tmp_path / "rig")
    assert back.names == rig.names
    for a in ("neutral", "deltas", "uvs", "triangles"):
        np.testing.assert_array_equal(getattr(back, a), getattr(rig, a))
    mesh = trimesh.load(tmp_path / "rig" / "neutral.obj", process=False, maintain_order=True)
    np.testing.assert_allclose(mesh.vertices, rig.neutral, atol=1e-5)
    np.testing.assert_array_equal(mesh.faces, rig.triangles)
    np.testing.assert_allclose(mesh.visual.uv, rig.uvs, atol=1e-5)


def test_rig_load_errors(tmp_path) -> None:
    with pytest.raises(RigError, match="not a face-rig folder"):
        FaceRig.load(tmp_path)
    np.savez(tmp_path / "blendshapes.npz", names=np.array(["a"]))
    with pytest.raises(RigError, match="missing arrays"):
        FaceRig.load(tmp_path)
    with pytest.raises(RigError, match="coefficients"):
        _rig().shape(np.zeros(5))


def test_uv_maps_cover_the_projected_face() -> None:
    rig = _rig()
    pose = np.array([[0.0, 0.0, 0.0, 32.0, 32.0, 0.0], [0.3, 0.1, 0.0, 30.0, 34.0, 0.0]])
    maps = rig.uv_maps(np.zeros((2, 3)), pose, np.array([3.0, 3.0]), 64)
    assert maps.shape == (2, 64, 64, 3) and maps.dtype == np.float32
    cov = maps[..., 2]
    assert set(np.unique(cov)) <= {0.0, 1.0}
    assert 300 < cov[0].sum() < 64 * 64
    # v is up: the top of the face (forehead) has larger v than the bottom (chin)
    rows = np.nonzero(cov[0].any(1))[0]
    top, bottom = maps[0, rows[2]], maps[0, rows[-3]]
    assert top[top[:, 2] > 0, 1].mean() > bottom[bottom[:, 2] > 0, 1].mean()
