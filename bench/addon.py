"""Per-frame overhead of the Blender add-on at 256 px: curve sampling + Cycles UV pass + strip update.

    python bench/addon.py [--quick] [--size 256] [--frames N]

Builds the extension zip (wheel cache; offline when it is filled), installs it into a temporary
Blender user folder, builds a rig on the canonical face mesh (468 vertices, 898 triangles, 30 shape
keys with animated curves and head pose), then times per frame:

- baseline: a bare ``scene.frame_set`` (what any per-frame Blender tool pays);
- curve sampling: ``curves_bpy.sample_rig`` over the shot, divided by its frame count;
- UV pass: ``uv_pass.iter_uv_maps`` (Cycles CPU, 1 sample, EXR read back);
- strip update: PNG encode + atomic write of a 256 px frame + ``vse.update_strip``.

Prints a markdown table; target: total <= 0.2 s per frame.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def install_addon(tmp: Path):
    for var, sub in (
        ("BLENDER_USER_EXTENSIONS", "ext"),
        ("BLENDER_USER_CONFIG", "config"),
        ("BLENDER_USER_SCRIPTS", "scripts"),
    ):
        os.environ[var] = str(tmp / sub)
    cache = ROOT / ".cache" / "wheels"
    cmd = [
        sys.executable,
        str(ROOT / "build_addon.py"),
        "--output-dir",
        str(tmp / "dist"),
        "--wheel-cache",
        str(cache),
        "--platforms",
        "linux-x64",
        "--python-versions",
        "3.11",
    ]
    proc = subprocess.run([*cmd, "--offline"], capture_output=True, text=True)
    if proc.returncode != 0:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    zip_path = proc.stdout.split()[-1]
    import bpy

    bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    return lambda name: importlib.import_module(f"bl_ext.user_default.emo_avatar.{name}")


def make_rig(mod, frames: int, size: int):
    import numpy as np

    from backend.face.canonical import load_canonical_mesh

    mesh = load_canonical_mesh()
    verts, uvs, tris = mesh.vertices, mesh.uvs, mesh.triangles
    rng = np.random.default_rng(0)
    k = 30
    names = [f"residual_{i:02d}" for i in range(k)]
    deltas = rng.normal(scale=0.05, size=(k, len(verts), 3)).astype(np.float32)
    t = np.arange(frames)
    expr = (0.5 + 0.5 * np.sin(t[:, None] / 3.0 + np.arange(k)[None])).astype(np.float32)
    scale = np.full(frames, size / 20.0, np.float32)
    pose = np.stack(
        [
            0.2 * np.sin(t / 5),
            0.1 * np.cos(t / 7),
            0.05 * np.sin(t / 3),
            np.full(frames, size / 2),
            np.full(frames, size / 2),
            np.zeros(frames),
        ],
        axis=1,
    )
    uv_flip = np.stack([uvs[:, 0], 1.0 - uvs[:, 1]], axis=1)
    return mod("rigdata").RigData(
        names=names,
        neutral=verts,
        deltas=deltas,
        uvs=uv_flip,
        triangles=tris,
        expressions=expr,
        pose=pose,
        scale=scale,
        size=size,
        fps=25.0,
        subject_id="bench",
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="8 frames (< 60 s)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=None)
    args = ap.parse_args()
    frames = args.frames or (8 if args.quick else 32)
    tmp = Path(tempfile.mkdtemp(prefix="emo_bench_addon_"))
    mod = install_addon(tmp)
    import bpy
    import numpy as np

    scene = bpy.context.scene
    head, cam = mod("rig").build_rig(make_rig(mod, frames, args.size), scene, frame_start=1)
    frame_list = list(range(1, frames + 1))

    t0 = time.perf_counter()
    for f in frame_list:
        scene.frame_set(f)
    baseline = (time.perf_counter() - t0) / frames

    t0 = time.perf_counter()
    mod("curves_bpy").sample_rig(scene, head, 1, frames)
    sampling = (time.perf_counter() - t0) / frames

    uv_iter = mod("uv_pass").iter_uv_maps(head, cam, frame_list, (args.size, args.size))
    next(uv_iter)  # the first render builds Cycles' scene: report it apart
    t0 = time.perf_counter()
    n = sum(1 for _ in uv_iter)
    uv = (time.perf_counter() - t0) / max(n, 1)

    vse = mod("vse")
    folder = vse.check_output_folder(tmp / "frames")
    image = np.random.default_rng(0).integers(0, 255, (args.size, args.size, 3), dtype=np.uint8)
    done: set[int] = set()
    t0 = time.perf_counter()
    for f in frame_list:
        vse.write_frame(folder, "bench", f, image)
        done.add(f)
        vse.update_strip(scene, "bench", folder, "bench", 1, done, 2)
    strip = (time.perf_counter() - t0) / frames

    total = sampling + uv + strip
    version = bpy.app.version_string
    print(f"\n### Add-on per-frame overhead at {args.size} px ({frames} frames, Blender {version})\n")
    print("| step | ms / frame | x baseline |")
    print("| --- | ---: | ---: |")
    for name, value in (
        ("baseline: scene.frame_set", baseline),
        ("curve sampling (F-curve reader)", sampling),
        ("Cycles UV pass (1 spp, EXR read back)", uv),
        ("strip update (PNG write + strip)", strip),
        ("**total add-on overhead**", total),
    ):
        print(f"| {name} | {1000 * value:.1f} | {value / baseline:.1f} |")
    print(f"\ntarget <= 200 ms / frame: {'met' if total <= 0.2 else 'NOT met'} ({1000 * total:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
