"""UV-map rasteriser: posed mesh with per-vertex UVs -> H x W x 3 float map (u, v, coverage).

Conventions (shared with the tracker and the face rig):
- ``vertices[:, 0:2]`` are image pixels, origin at the top-left *corner* of the image; the centre
  of pixel ``(row, col)`` is ``(x, y) = (col + 0.5, row + 0.5)``.
- ``vertices[:, 2]`` points towards the viewer: the larger z wins the z-buffer.
- A pixel is covered by a triangle when its centre lies inside or on the triangle's edges
  (both windings are accepted). Attributes are interpolated with exact (float64) barycentrics
  and stored as float32 - no 8-bit quantisation.
- Uncovered pixels hold ``(0, 0, 0)``.

Algorithm: vectorised scanline rasterisation in numpy. For every (triangle, bounding-box row) the
run of covered columns is solved analytically from the triangle's normalised edge functions;
all covered pixels of all triangles (and all batch items) are then enumerated in one flat array
and resolved with an iterative z-buffer (assign, then let the few candidates that are nearer
than the current winner overwrite, until nothing changes) - no sort, no per-triangle Python
loop. Attributes of the winning triangle are evaluated from its plane equation in float64.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# Pixel centres this close (pixels) outside a triangle still count as inside, so centres exactly
# on a shared edge never fall through both neighbours because of rounding.
_EDGE_EPS = 1e-7
# Triangles with |2 * area| below this (pixels^2) cover no pixel reliably and are skipped.
_MIN_AREA2 = 1e-9


def _check_inputs(
    vertices: np.ndarray, uvs: np.ndarray, triangles: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate and convert; vertices may be (N,3) or (B,N,3). Returns (B,N,3) float64, (N,2), (F,3)."""
    if not (isinstance(height, int | np.integer) and isinstance(width, int | np.integer)):
        raise ValueError(f"height and width must be integers, got {height!r} x {width!r}")
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height} x {width}")
    v = np.asarray(vertices)
    if v.ndim == 2:
        v = v[None]
    if v.ndim != 3 or v.shape[-1] != 3:
        raise ValueError(f"vertices must have shape (N, 3) (x, y pixels, z) or (B, N, 3), got {v.shape}")
    n = v.shape[1]
    uv = np.asarray(uvs)
    if uv.shape != (n, 2):
        raise ValueError(f"uvs must have shape ({n}, 2) to match {n} vertices, got {uv.shape}")
    tri = np.asarray(triangles)
    if tri.ndim != 2 or tri.shape[1] != 3:
        raise ValueError(f"triangles must have shape (F, 3), got {tri.shape}")
    if tri.size and not np.issubdtype(tri.dtype, np.integer):
        raise ValueError(f"triangles must hold integer vertex indices, got dtype {tri.dtype}")
    if tri.size and (tri.min() < 0 or tri.max() >= n):
        raise ValueError(f"triangle vertex indices must be in [0, {n}), got range [{tri.min()}, {tri.max()}]")
    v = v.astype(np.float64, copy=False)
    uv = uv.astype(np.float64, copy=False)
    if not np.isfinite(v).all():
        raise ValueError("vertices contain NaN or infinite values")
    if not np.isfinite(uv).all():
        raise ValueError("uvs contain NaN or infinite values")
    return v, uv, tri.astype(np.int64, copy=False)


# Columns of the per-triangle table gathered once per scanline (see _triangle_table).
_XA, _YA, _XB, _YB, _SL, _SU, _SD, _Z0, _ZX, _ZY, _U0, _UX, _UY, _V0, _VX, _VY = range(16)


def _triangle_table(
    v: np.ndarray, uv: np.ndarray, tri: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scanline data for the triangles of one mesh that can cover a pixel centre.

    Args:
        v: (N, 3) float64 vertices; uv: (N, 2) float64; tri: (F, 3) int64.

    Returns:
        row0: (M,) first pixel row whose centre lies within the triangle's y range.
        nrows: (M,) number of such rows (>= 1).
        table: (16, M) float64 - the corners sorted by y: top (x, y) ``_XA, _YA``, middle
            ``_XB, _YB``; edge slopes dx/dy of the long (top -> bottom), upper (top -> middle) and
            lower (middle -> bottom) edges; and the planes of z, u, v over pixel position
            (``a = a0 + ax * x + ay * y``).
    """
    # Corners by y: top (a), middle (b), bottom (c); argmin/argmax beat a 3-element argsort.
    y = v[tri, 1]
    ia, ic = y.argmin(axis=1), y.argmax(axis=1)
    ic = np.where(ia == ic, (ia + 1) % 3, ic)  # all three equal (degenerate, dropped below)
    rows = np.arange(len(tri))
    tri = np.stack([tri[rows, ia], tri[rows, 3 - ia - ic], tri[rows, ic]], axis=1)
    g = np.concatenate([v, uv], axis=1)[tri]  # (F, 3 corners, [x y z u v])
    xa, ya, xb, yb, xc, yc = g[:, 0, 0], g[:, 0, 1], g[:, 1, 0], g[:, 1, 1], g[:, 2, 0], g[:, 2, 1]
    d1x, d1y, d2x, d2y = xb - xa, yb - ya, xc - xa, yc - ya
    area2 = d1x * d2y - d2x * d1y  # twice the signed area (sign = winding after sorting)
    r0 = np.maximum(np.ceil(ya - 0.5), 0)
    r1 = np.minimum(np.floor(yc - 0.5), height - 1)
    xs = g[:, :, 0]
    keep = (np.abs(area2) > _MIN_AREA2) & (r1 >= r0) & (xs.max(1) > 0) & (xs.min(1) < width)
    if not keep.all():
        g, area2, r0, r1 = g[keep], area2[keep], r0[keep], r1[keep]
        xa, ya, xb, yb, xc, yc = g[:, 0, 0], g[:, 0, 1], g[:, 1, 0], g[:, 1, 1], g[:, 2, 0], g[:, 2, 1]
        d1x, d1y, d2x, d2y = xb - xa, yb - ya, xc - xa, yc - ya
    # Attribute planes a(x, y) = a0 + ax * x + ay * y through the three corners, for z, u, v.
    attr = g[:, :, 2:]  # (M, 3 corners, [z u v])
    da1, da2 = attr[:, 1] - attr[:, 0], attr[:, 2] - attr[:, 0]  # (M, 3)
    inv = (1.0 / area2)[:, None]
    ax = (da1 * d2y[:, None] - da2 * d1y[:, None]) * inv
    ay = (da2 * d1x[:, None] - da1 * d2x[:, None]) * inv
    a0 = attr[:, 0] - ax * xa[:, None] - ay * ya[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        su = np.where(d1y > 0, d1x / d1y, 0.0)
        sd = np.where(yc > yb, (xc - xb) / (yc - yb), 0.0)
    sl = d2x / d2y  # d2y > 0 since area2 != 0
    table = np.empty((16, len(area2)))
    table[:7] = (xa, ya, xb, yb, sl, su, sd)
    table[_Z0::3], table[_ZX::3], table[_ZY::3] = a0.T, ax.T, ay.T
    row0 = r0.astype(np.int64)
    return row0, r1.astype(np.int64) - row0 + 1, table


def _spans(
    row0: np.ndarray, nrows: np.ndarray, table: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scanline set-up: the run of covered columns of every (triangle, row) pair.

    At row centre ``cy`` the triangle spans x between its long edge and the upper (above the
    middle corner) or lower short edge; the covered columns are those whose centre ``col + 0.5``
    lies in that interval (closed, widened by ``_EDGE_EPS`` pixels).

    Returns per non-empty span (S,): flat index of its first pixel into (H, W), its length,
    and (6, S) attribute starts and steps per pixel ``[z, dz, u, du, v, dv]``.
    """
    t = np.repeat(np.arange(nrows.size), nrows)
    row = np.arange(t.size) + np.repeat(row0 - (np.cumsum(nrows) - nrows), nrows)
    cy = row + 0.5
    xa, ya, xb, yb = table[_XA][t], table[_YA][t], table[_XB][t], table[_YB][t]
    xl = xa + (cy - ya) * table[_SL][t]
    xs = np.where(cy < yb, xa + (cy - ya) * table[_SU][t], xb + (cy - yb) * table[_SD][t])
    c0 = np.maximum(np.ceil(np.minimum(xl, xs) - (0.5 + _EDGE_EPS)), 0)
    c1 = np.minimum(np.floor(np.maximum(xl, xs) - (0.5 - _EDGE_EPS)), width - 1)
    nz = np.nonzero(c1 >= c0)[0]
    c0, c1, cy, row, t = c0[nz], c1[nz], cy[nz], row[nz], t[nz]
    cx = c0 + 0.5
    P = table[_Z0:, t]  # (9, S) planes of z, u, v
    attrs = np.stack([
        P[0] + P[1] * cx + P[2] * cy, P[1],
        P[3] + P[4] * cx + P[5] * cy, P[4],
        P[6] + P[7] * cx + P[8] * cy, P[7],
    ])
    start = row * width + c0.astype(np.int64)
    return start, (c1 - c0 + 1).astype(np.int64), attrs


def _zbuffer(
    start: np.ndarray, count: np.ndarray, attrs: np.ndarray, npix: int
) -> tuple[np.ndarray, np.ndarray]:
    """Resolve all span pixels with a z-buffer.

    Returns the flat pixel index (n,) of every winning candidate and its (2, n) float64 (u, v).
    A pixel can appear twice only for exact depth ties (centres on a shared edge), where both
    candidates carry the same attribute values up to rounding.
    """
    span = np.repeat(np.arange(count.size), count)  # span of each candidate
    local = np.arange(span.size) - np.repeat(np.cumsum(count) - count, count)
    pix = start[span] + local
    z = attrs[0][span] + attrs[1][span] * local
    zbuf = np.full(npix, -np.inf)
    zbuf[pix] = z
    # Among several writers to one pixel an arbitrary one lands; let every candidate nearer
    # than the stored depth write again until nothing changes (depth-complexity passes, ~2-3).
    sel = np.nonzero(z > zbuf[pix])[0]
    while sel.size:
        zbuf[pix[sel]] = z[sel]
        sel = sel[z[sel] > zbuf[pix[sel]]]
    best = np.nonzero(z == zbuf[pix])[0]
    sb, lb = span[best], local[best]
    return pix[best], np.stack([attrs[2][sb] + attrs[3][sb] * lb, attrs[4][sb] + attrs[5][sb] * lb])


def _render(v: np.ndarray, uv: np.ndarray, tri: np.ndarray, height: int, width: int, out: np.ndarray) -> None:
    """Rasterise one validated mesh v (N, 3) into ``out`` (H * W, 3) float32 (zeroed)."""
    if tri.shape[0] == 0:
        return
    row0, nrows, table = _triangle_table(v, uv, tri, height, width)
    start, count, attrs = _spans(row0, nrows, table, width)
    if count.size:
        pix, uv_px = _zbuffer(start, count, attrs, height * width)
        flat = out.reshape(-1)  # a view: channel c of pixel p is element 3 p + c
        pix3 = pix * 3
        flat[pix3] = uv_px[0].astype(np.float32)
        flat[pix3 + 1] = uv_px[1].astype(np.float32)
        flat[pix3 + 2] = 1.0


def rasterize_uv_batch(
    vertices: np.ndarray,
    uvs: np.ndarray,
    triangles: np.ndarray,
    height: int,
    width: int,
    threads: int | None = None,
) -> np.ndarray:
    """Rasterise B posed meshes (same topology and UVs), one map per item, on a thread pool.

    Args:
        vertices: (B, N, 3) float - x, y in pixels (top-left corner origin), z towards the viewer.
        uvs: (N, 2) float per-vertex texture coordinates.
        triangles: (F, 3) int vertex indices, any winding.
        height, width: output size in pixels.
        threads: worker threads (numpy releases the GIL in the heavy loops); default
            ``min(B, cpu_count, 4)``; 1 runs inline.

    Returns:
        (B, H, W, 3) float32: u, v, coverage (1 where a triangle covers the pixel centre, else 0).
    """
    v, uv, tri = _check_inputs(vertices, uvs, triangles, height, width)
    B = v.shape[0]
    out = np.zeros((B, height * width, 3), dtype=np.float32)
    if threads is None:
        threads = min(B, os.cpu_count() or 1, 4)
    if threads <= 1 or B <= 1:
        for i in range(B):
            _render(v[i], uv, tri, height, width, out[i])
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(lambda i: _render(v[i], uv, tri, height, width, out[i]), range(B)))
    return out.reshape(B, height, width, 3)


def rasterize_uv(
    vertices: np.ndarray, uvs: np.ndarray, triangles: np.ndarray, height: int, width: int
) -> np.ndarray:
    """Rasterise one posed mesh into a UV map.

    Args:
        vertices: (N, 3) float - x, y in pixels (origin at the image's top-left corner, pixel
            centres at +0.5), z towards the viewer (larger = nearer).
        uvs: (N, 2) float per-vertex texture coordinates.
        triangles: (F, 3) int vertex indices; both windings are accepted.
        height, width: output size in pixels.

    Returns:
        (H, W, 3) float32 map of (u, v, coverage in {0, 1}); the nearest triangle wins.

    Raises:
        ValueError: on wrong shapes, out-of-range indices, non-finite values or a bad size.
    """
    v = np.asarray(vertices)
    if v.ndim != 2:
        raise ValueError(f"vertices must have shape (N, 3), got {v.shape} (rasterize_uv_batch takes batches)")
    return rasterize_uv_batch(v[None], uvs, triangles, height, width, threads=1)[0]
