"""UV rasteriser: exactness, z-buffer, coverage rules, degenerate input, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.face.canonical import load_canonical_mesh
from backend.face.uv_raster import rasterize_uv, rasterize_uv_batch


def _centres(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (H, W) x and y."""
    return np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)


def _reference(vertices, uvs, triangles, h, w):
    """Brute force: per triangle, barycentrics at every pixel centre; nearest z wins.

    Returns (H, W, 3) like rasterize_uv plus an (H, W) mask of centres within 1e-6 px of some
    triangle edge, where inside/outside is a matter of rounding and is not compared.
    """
    x, y = _centres(h, w)
    out = np.zeros((h, w, 3))
    zbuf = np.full((h, w), -np.inf)
    ambiguous = np.zeros((h, w), dtype=bool)
    for tri in triangles:
        (x0, y0, z0), (x1, y1, z1), (x2, y2, z2) = vertices[tri]
        area2 = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if abs(area2) < 1e-9:
            continue
        b1 = ((x - x0) * (y2 - y0) - (x2 - x0) * (y - y0)) / area2
        b2 = ((x1 - x0) * (y - y0) - (x - x0) * (y1 - y0)) / area2
        b0 = 1 - b1 - b2
        bary = np.stack([b0, b1, b2])
        # Distance (px) of each centre to each edge line, to flag on-edge centres.
        for (ax, ay), (bx, by) in (((x0, y0), (x1, y1)), ((x1, y1), (x2, y2)), ((x2, y2), (x0, y0))):
            length = np.hypot(bx - ax, by - ay)
            dist = np.abs((bx - ax) * (y - ay) - (by - ay) * (x - ax)) / length
            ambiguous |= (dist < 1e-6) & (bary.min(0) > -1e-3)
        inside = bary.min(0) >= 0
        z = b0 * z0 + b1 * z1 + b2 * z2
        win = inside & (z > zbuf)
        zbuf[win] = z[win]
        for c in range(2):
            a = b0 * uvs[tri[0], c] + b1 * uvs[tri[1], c] + b2 * uvs[tri[2], c]
            out[..., c][win] = a[win]
        out[..., 2][win] = 1
    return out, ambiguous


def test_analytic_plane_is_exact_both_windings():
    """A rotated quad whose uv is an affine function of pixel position: exact at every centre."""
    h, w = 48, 64
    corners = np.array([[7.3, 5.1], [55.2, 11.7], [49.9, 44.4], [3.6, 38.2]])
    A = np.array([[0.011, -0.004], [0.003, 0.017]])
    b = np.array([0.05, -0.02])
    uvs = corners @ A.T + b
    z = 2.0 + 0.01 * corners[:, 0] - 0.02 * corners[:, 1]
    vertices = np.column_stack([corners, z])
    x, y = _centres(h, w)
    expected = np.stack([x, y], -1) @ A.T + b
    for triangles in (np.array([[0, 1, 2], [0, 2, 3]]), np.array([[0, 2, 1], [0, 3, 2]])):
        out = rasterize_uv(vertices, uvs, triangles, h, w)
        assert out.dtype == np.float32 and out.shape == (h, w, 3)
        cov = out[..., 2] == 1
        assert set(np.unique(out[..., 2])) <= {0.0, 1.0}
        # Inside the convex quad: every centre covered (no crack along the shared diagonal).
        inside = np.ones((h, w), dtype=bool)
        for i in range(4):
            (ax, ay), (bx, by) = corners[i], corners[(i + 1) % 4]
            inside &= (bx - ax) * (y - ay) - (by - ay) * (x - ax) > 1e-6
        assert cov[inside].all()
        assert cov.sum() >= inside.sum() and cov.sum() <= inside.sum() + 4  # at most a few on-edge centres
        err = np.abs(out[..., :2][cov] - expected[cov])
        assert err.max() < 1e-6  # float32 storage of values < 1
        assert np.all(out[~cov] == 0)


def test_uv_keeps_float_precision():
    """Neighbouring pixels differ by far less than 1/256: no 8-bit quantisation."""
    corners = np.array([[0.0, 0.0], [256.0, 0.0], [256.0, 4.0], [0.0, 4.0]])
    uvs = np.column_stack([corners[:, 0] / 256 * 0.01, np.zeros(4)])  # u spans only 0.01
    vertices = np.column_stack([corners, np.zeros(4)])
    out = rasterize_uv(vertices, uvs, np.array([[0, 1, 2], [0, 2, 3]]), 4, 256)
    u = out[1, :, 0]
    assert len(np.unique(u)) == 256
    assert np.allclose(np.diff(u), 0.01 / 256, atol=1e-8)


def test_occlusion_nearest_wins_regardless_of_order():
    """Two overlapping triangles at different depths: the nearer (larger z) one is visible."""
    h = w = 32
    far = [[2, 2, 0.0], [30, 2, 0.0], [2, 30, 0.0]]
    near = [[10, 10, 1.0], [30, 12, 1.0], [12, 30, 1.0]]
    vertices = np.array(far + near, dtype=float)
    uvs = np.array([[0.1, 0.1]] * 3 + [[0.9, 0.9]] * 3)
    tris = np.array([[0, 1, 2], [3, 4, 5]])
    for order in (tris, tris[::-1]):
        out = rasterize_uv(vertices, uvs, order, h, w)
        ref, amb = _reference(vertices, uvs, order, h, w)
        assert np.array_equal(out[..., 2][~amb], ref[..., 2][~amb])
        assert out[15, 15, 0] == pytest.approx(0.9)  # overlap -> near triangle
        assert out[4, 4, 0] == pytest.approx(0.1)  # only the far one
    # Flip depths: the other triangle wins in the overlap.
    vertices[:3, 2], vertices[3:, 2] = 2.0, -1.0
    out = rasterize_uv(vertices, uvs, tris, h, w)
    assert out[15, 15, 0] == pytest.approx(0.1)


def test_interpenetrating_triangles_split_by_depth():
    """Two triangles crossing in depth: each pixel shows whichever is nearer there."""
    h = w = 24
    vertices = np.array([
        [0, 0, 0.0], [24, 0, 10.0], [0, 24, 0.0], [24, 24, 10.0],  # tilted quad, z = 10 x / 24
        [0, 0, 5.0], [24, 0, 5.0], [0, 24, 5.0], [24, 24, 5.0],  # flat quad at z = 5
    ])
    uvs = np.array([[0.2, 0]] * 4 + [[0.7, 0]] * 4)
    tris = np.array([[0, 1, 2], [1, 3, 2], [4, 5, 6], [5, 7, 6]])
    out = rasterize_uv(vertices, uvs, tris, h, w)
    x, _ = _centres(h, w)
    tilted_nearer = 10 * x / 24 > 5
    assert np.all(out[..., 0][tilted_nearer] == np.float32(0.2))
    assert np.all(out[..., 0][~tilted_nearer] == np.float32(0.7))


def test_coverage_edges_follow_pixel_centres():
    """Pixel (row, col) is covered iff its centre (col + .5, row + .5) is inside or on an edge."""
    vertices = np.array([[0, 0, 0], [4, 0, 0], [0, 4, 0]], dtype=float)
    out = rasterize_uv(vertices, np.zeros((3, 2)), np.array([[0, 1, 2]]), 6, 6)
    rows, cols = np.mgrid[0:6, 0:6]
    expected = (cols + 0.5) + (rows + 0.5) <= 4  # on the hypotenuse counts as covered
    assert np.array_equal(out[..., 2] == 1, expected)
    # A square split along its diagonal: exactly its pixels, each once, no crack.
    sq = np.array([[2, 3, 0], [9, 3, 0], [9, 8, 0], [2, 8, 0]], dtype=float)
    out = rasterize_uv(sq, np.zeros((4, 2)), np.array([[0, 1, 2], [0, 2, 3]]), 12, 12)
    expected = np.zeros((12, 12), dtype=bool)
    expected[3:8, 2:9] = True
    assert np.array_equal(out[..., 2] == 1, expected)


def test_empty_and_degenerate_triangles_draw_nothing():
    uvs = np.full((3, 2), 0.5)
    empty = rasterize_uv(np.zeros((3, 3)), uvs, np.zeros((0, 3), dtype=int), 8, 8)
    assert empty.shape == (8, 8, 3) and not empty.any()
    collinear = np.array([[1, 1, 0], [5, 5, 0], [7, 7, 0]], dtype=float)
    assert not rasterize_uv(collinear, uvs, np.array([[0, 1, 2]]), 8, 8).any()
    point = np.array([[3, 3, 0]] * 3, dtype=float)
    assert not rasterize_uv(point, uvs, np.array([[0, 1, 2]]), 8, 8).any()
    # Small triangle between pixel centres covers nothing.
    sliver = np.array([[2.6, 2.6, 0], [3.4, 2.6, 0], [3.0, 3.4, 0]])
    assert not rasterize_uv(sliver, uvs, np.array([[0, 1, 2]]), 8, 8).any()


def test_vertices_outside_the_image_are_clipped():
    h, w = 20, 30
    vertices = np.array([[-50.0, -40.0, 0.0], [80.0, 5.0, 1.0], [10.0, 70.0, 2.0]])
    uvs = np.array([[0.0, 0.0], [1.0, 0.2], [0.3, 1.0]])
    tris = np.array([[0, 1, 2]])
    out = rasterize_uv(vertices, uvs, tris, h, w)
    ref, amb = _reference(vertices, uvs, tris, h, w)
    assert out[..., 2].sum() > 0
    assert np.array_equal(out[..., 2][~amb], ref[..., 2][~amb])
    assert np.abs(out[..., :2] - ref[..., :2])[~amb].max() < 1e-6
    # Entirely off-image triangles (left, right, above, below) draw nothing.
    for dx, dy in ((-200, 0), (200, 0), (0, -200), (0, 200)):
        moved = vertices + np.array([dx, dy, 0.0])
        assert not rasterize_uv(moved, uvs, tris, h, w).any()


@settings(max_examples=25, deadline=None)
@given(
    st.integers(min_value=0, max_value=2**31 - 1),
    st.integers(min_value=1, max_value=6),
)
def test_matches_brute_force_reference(seed: int, n_tris: int):
    """Random overlapping triangles (random windings, some off-image) agree with brute force."""
    rng = np.random.default_rng(seed)
    h, w = 17, 23
    vertices = np.column_stack([rng.uniform(-5, 28, (3 * n_tris, 2)), rng.uniform(-3, 3, 3 * n_tris)])
    uvs = rng.uniform(0, 1, (3 * n_tris, 2))
    tris = np.arange(3 * n_tris).reshape(n_tris, 3)
    out = rasterize_uv(vertices, uvs, tris, h, w)
    ref, amb = _reference(vertices, uvs, tris, h, w)
    # Exact depth ties between different triangles have measure zero with random input.
    assert np.array_equal(out[..., 2][~amb], ref[..., 2][~amb])
    assert np.abs(out[..., :2] - ref[..., :2])[~amb].max(initial=0) < 1e-5


def test_batch_matches_single_and_face_mesh_is_sensible():
    mesh = load_canonical_mesh()
    v = mesh.vertices.astype(np.float64)
    s = 90 / np.ptp(v[:, :2], axis=0).max()
    centred = (v - v.mean(0)) * s * np.array([1.0, -1.0, 1.0])  # image y points down
    poses = []
    for yaw in (-0.4, 0.0, 0.3):
        c, sn = np.cos(yaw), np.sin(yaw)
        rot = np.array([[c, 0, sn], [0, 1, 0], [-sn, 0, c]])
        poses.append(centred @ rot.T + np.array([64.0, 64.0, 0.0]))
    batch = rasterize_uv_batch(np.stack(poses), mesh.uvs, mesh.triangles, 128, 128)
    assert batch.shape == (3, 128, 128, 3) and batch.dtype == np.float32
    for i, pose in enumerate(poses):
        single = rasterize_uv(pose, mesh.uvs, mesh.triangles, 128, 128)
        assert np.array_equal(single, batch[i])
        cov = single[..., 2] == 1
        assert 3000 < cov.sum() < 128 * 128 / 2
        assert single[..., :2][cov].min() >= -1e-6 and single[..., :2][cov].max() <= 1 + 1e-6
    threaded = rasterize_uv_batch(np.stack(poses), mesh.uvs, mesh.triangles, 128, 128, threads=3)
    assert np.array_equal(threaded, batch)
    # Turned head: the visible side's uv appears, the hidden cheek is occluded (z-buffer at work).
    frontal_u = batch[1, ..., 0][batch[1, ..., 2] == 1]
    assert batch[0, ..., 2].sum() != batch[1, ..., 2].sum()
    assert 0.4 < np.median(frontal_u) < 0.6


@pytest.mark.parametrize(
    ("vertices", "uvs", "triangles", "size", "message"),
    [
        (np.zeros((4, 2)), np.zeros((4, 2)), np.array([[0, 1, 2]]), (8, 8), "vertices must have shape"),
        (np.zeros((4, 3)), np.zeros((3, 2)), np.array([[0, 1, 2]]), (8, 8), "uvs must have shape"),
        (np.zeros((4, 3)), np.zeros((4, 2)), np.array([[0, 1, 2, 3]]), (8, 8), "triangles must have shape"),
        (np.zeros((4, 3)), np.zeros((4, 2)), np.array([[0, 1, 4]]), (8, 8), "indices must be in"),
        (np.zeros((4, 3)), np.zeros((4, 2)), np.array([[0, -1, 2]]), (8, 8), "indices must be in"),
        (np.zeros((4, 3)), np.zeros((4, 2)), np.array([[0.0, 1.0, 2.0]]), (8, 8), "integer vertex indices"),
        (np.full((4, 3), np.nan), np.zeros((4, 2)), np.array([[0, 1, 2]]), (8, 8), "NaN or infinite"),
        (np.zeros((4, 3)), np.full((4, 2), np.inf), np.array([[0, 1, 2]]), (8, 8), "NaN or infinite"),
        (np.zeros((4, 3)), np.zeros((4, 2)), np.array([[0, 1, 2]]), (0, 8), "must be positive"),
        (np.zeros((4, 3)), np.zeros((4, 2)), np.array([[0, 1, 2]]), (8.5, 8), "must be integers"),
        (np.zeros((2, 4, 3)), np.zeros((4, 2)), np.array([[0, 1, 2]]), (8, 8), "rasterize_uv_batch"),
    ],
)
def test_bad_input_raises_clear_value_error(vertices, uvs, triangles, size, message):
    with pytest.raises(ValueError, match=message):
        rasterize_uv(vertices, uvs, triangles, *size)
