"""UV maps per second at 256 x 256 for the 898-triangle face mesh (issue 3 target: >= 200 on 2 cores).

    .venv/bin/python bench/uv_raster.py [--quick] [--size 256] [--threads 2]

Rows: a straightforward per-triangle bounding-box rasteriser in numpy (the baseline, measured in
the same run), ``rasterize_uv`` one map per call, and ``rasterize_uv_batch`` with its thread pool.
Poses sweep yaw/pitch so parts of the mesh are hidden (the z-buffer does real work).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from backend.data.sample import euler_to_matrix
from backend.face.canonical import load_canonical_mesh
from backend.face.uv_raster import rasterize_uv, rasterize_uv_batch


def posed_meshes(n: int, size: int) -> np.ndarray:
    """(n, 468, 3) canonical mesh in image pixels, face ~70% of the frame, varied yaw/pitch/roll."""
    mesh = load_canonical_mesh()
    v = (mesh.vertices - mesh.vertices.mean(0)) * np.array([1.0, -1.0, 1.0])  # y down
    v *= 0.7 * size / np.ptp(v[:, :2], axis=0).max()
    out = []
    for i in range(n):
        yaw, pitch, roll = 0.4 * np.sin(i * 0.7), 0.25 * np.sin(i * 1.3), 0.1 * np.sin(i * 0.4)
        R = euler_to_matrix(yaw, pitch, roll)
        out.append(v @ R.T + np.array([size / 2, size / 2, 0.0]))
    return np.stack(out)


def baseline_rasterize(
    vertices: np.ndarray, uvs: np.ndarray, triangles: np.ndarray, h: int, w: int
) -> np.ndarray:
    """Per-triangle Python loop: bounding box, barycentrics, z-test (the obvious implementation)."""
    out = np.zeros((h, w, 3), dtype=np.float32)
    zbuf = np.full((h, w), -np.inf)
    for tri in triangles:
        p = vertices[tri]
        x0, x1 = max(int(np.ceil(p[:, 0].min() - 0.5)), 0), min(int(np.floor(p[:, 0].max() - 0.5)), w - 1)
        y0, y1 = max(int(np.ceil(p[:, 1].min() - 0.5)), 0), min(int(np.floor(p[:, 1].max() - 0.5)), h - 1)
        if x1 < x0 or y1 < y0:
            continue
        area2 = (p[1, 0] - p[0, 0]) * (p[2, 1] - p[0, 1]) - (p[2, 0] - p[0, 0]) * (p[1, 1] - p[0, 1])
        if abs(area2) < 1e-12:
            continue
        xs, ys = np.meshgrid(np.arange(x0, x1 + 1) + 0.5, np.arange(y0, y1 + 1) + 0.5)
        b1 = ((xs - p[0, 0]) * (p[2, 1] - p[0, 1]) - (p[2, 0] - p[0, 0]) * (ys - p[0, 1])) / area2
        b2 = ((p[1, 0] - p[0, 0]) * (ys - p[0, 1]) - (xs - p[0, 0]) * (p[1, 1] - p[0, 1])) / area2
        b0 = 1 - b1 - b2
        z = b0 * p[0, 2] + b1 * p[1, 2] + b2 * p[2, 2]
        region = zbuf[y0: y1 + 1, x0: x1 + 1]
        win = (b0 >= 0) & (b1 >= 0) & (b2 >= 0) & (z > region)
        region[win] = z[win]
        o = out[y0: y1 + 1, x0: x1 + 1]
        for c in range(2):
            o[..., c][win] = (b0 * uvs[tri[0], c] + b1 * uvs[tri[1], c] + b2 * uvs[tri[2], c])[win]
        o[..., 2][win] = 1
    return out


def rate(fn, n_maps: int, repeats: int) -> tuple[float, float]:
    """Best-of-``repeats`` maps per wall-clock second, and CPU milliseconds per map (all threads).

    On a shared machine the wall rate depends on the load; CPU time per map does much less.
    """
    best, cpu = np.inf, np.inf
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        best = min(best, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return n_maps / best, cpu / n_maps * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer maps and repeats (a few seconds)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    n, repeats = (32, 3) if args.quick else (128, 5)
    mesh = load_canonical_mesh()
    poses = posed_meshes(n, args.size)
    uvs, tris, s = mesh.uvs, mesh.triangles, args.size
    # Same answer from all three (coverage and uv agree away from exact edge ties).
    ref = baseline_rasterize(poses[0], uvs, tris, s, s)
    ours = rasterize_uv(poses[0], uvs, tris, s, s)
    agree = np.mean(ref[..., 2] == ours[..., 2])
    n_base = max(4, n // 8)
    rows = [
        ("baseline: per-triangle numpy loop", rate(lambda: [baseline_rasterize(p, uvs, tris, s, s)
                                                            for p in poses[:n_base]], n_base, repeats)),
        ("rasterize_uv (one map per call)", rate(lambda: [rasterize_uv(p, uvs, tris, s, s) for p in poses],
                                                 n, repeats)),
        (f"rasterize_uv_batch (threads={args.threads})",
         rate(lambda: rasterize_uv_batch(poses, uvs, tris, s, s, threads=args.threads), n, repeats)),
    ]
    base = rows[0][1][0]
    load = os.getloadavg()[0]
    print(f"UV rasteriser, {s}x{s}, {len(tris)} triangles, {n} posed maps, {os.cpu_count()} CPUs, "
          f"load average {load:.1f} (coverage agreement with baseline: {agree:.4%})")
    print(f"{'method':44s} {'maps/s':>9s} {'x baseline':>11s} {'CPU ms/map':>11s}")
    for name, (r, cpu) in rows:
        print(f"{name:44s} {r:9.1f} {r / base:11.1f} {cpu:11.2f}")
    best = max(r for _, (r, _) in rows)
    cpu_rate = 1e3 / rows[1][1][1]
    print(f"target >= 200 maps/s on 2 cores: wall {'met' if best >= 200 else 'NOT met'} ({best:.0f}/s); "
          f"CPU-bound estimate for 2 idle cores {2 * cpu_rate:.0f}/s ({cpu_rate:.0f}/s per core)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
