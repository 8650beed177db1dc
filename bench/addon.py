"""Per-frame overhead of the Blender add-on at 256 px (curve sampling + Cycles UV pass + strip
update) and the live preview's latency (frame change -> preview image updated) against a real
``emo-avatar serve``.

    python bench/addon.py [--quick] [--size 256] [--frames N] [--no-preview | --preview-only] [--compare]
    EMO_BACKEND_PYTHON=.venv/bin/python .venv-bpy5/bin/python bench/addon.py   # Blender 5.0

Builds the extension zip (wheel cache; offline when it is filled), installs it into a temporary
Blender user folder, builds a rig on the canonical face mesh (468 vertices, 898 triangles, 30 shape
keys with animated curves and head pose), then times per frame:

- baseline: a bare ``scene.frame_set`` (what any per-frame Blender tool pays);
- curve sampling: ``curves_bpy.sample_rig`` over the shot, divided by its frame count;
- UV pass: ``uv_pass.iter_uv_maps`` (Cycles CPU, 1 sample, EXR read back);
- strip update: PNG encode + atomic write of a 256 px frame + ``vse.update_strip``.

The first UV-pass frame builds Cycles' scene (persistent data) and is reported in its own row; the
per-frame figure is the mean of the others. Target: total <= 0.2 s per frame.

Live preview: a subject is made once (``sample --tiny``, ``track --size 128``, ``train --preset cpu
--steps 2``: the demo preset's 128 px generator; weights barely trained, which does not change the
time per frame) and cached in ``.cache/bench-addon``; ``emo-avatar serve`` runs on it, the add-on
connects, imports the rig with animated curves and turns Live preview on. Each sample is
``scene.frame_set(f)`` (the handler sends the request) until the preview image holds frame ``f``,
calling the add-on's timer callbacks at the intervals they ask for, as Blender's event loop does
(``blender -b`` runs no timers; polling faster would hide a slow timer); the backend is idle in
between. Each sample's CPU time is summed per process (Blender with its I/O thread; the backend,
all threads), so a run on a loaded machine still says how much work a preview costs. At 256 px the
128 px generator's frame is resized by the backend (no 256 px preset exists). Targets: <= 100 ms at
128 px and <= 200 ms at 256 px (median).

Where the time goes: the backend runs with ``EMO_STAGE_LOG`` (each job's stage stamps) and the
add-on keeps its own (``preview.PREVIEW.stages``), both on the system-wide monotonic clock; a
second table gives each stage's median and p90 (frame change -> request sent -> backend took it ->
accepted -> scheduled -> render start/end -> frame handed on -> frame sent -> add-on received ->
image updated). ``--compare`` interleaves samples of the journalled render path (the same request
without ``params.preview``: journal rows, stored inputs, a PNG per frame, progress events) with
the preview path, so both are measured under the same load.
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
BACKEND_PYTHON = os.environ.get("EMO_BACKEND_PYTHON", sys.executable)
"""The backend's Python (with torch); the bpy 5.0 and 4.2 venvs have none: set EMO_BACKEND_PYTHON
to the main venv's python there, as ``make test-bpy5`` does."""


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


def _backend(*args: str) -> None:
    subprocess.run(
        [BACKEND_PYTHON, "-m", "backend.cli", *args],
        cwd=ROOT,
        check=True,
        capture_output=True,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )


def preview_workdir() -> Path:
    """A serve workdir with subject 'bench' (128 px, cpu preset), built once and cached."""
    work = ROOT / ".cache" / "bench-addon" / "work"
    subject = work / "subjects" / "bench"
    if not (subject / "avatar" / "checkpoint.pt").is_file():
        sample = work.parent / "sample"
        _backend("sample", "-o", str(sample), "--tiny")
        _backend(
            "track", str(sample / "sample.mp4"), "-o", str(subject), "--size", "128", "--max-frames", "16"
        )
        _backend("train", str(subject), "--preset", "cpu", "--steps", "2", "--preview-every", "0")
    return work


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads, also those that ended) of process ``pid``, seconds
    (kernel clock ticks: 10 ms resolution)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_timers(timers: list[tuple[object, float]], until, timeout: float, what: str) -> None:
    """Run the add-on's timer callbacks as Blender's event loop does (``blender -b`` runs none):
    each registered ``(callback, first_interval)`` is called when due and comes back after the
    interval it returns (None: unregistered); the thread sleeps in between. Until ``until()``."""
    import bpy

    due: dict[object, float] = {}
    deadline = time.perf_counter() + timeout
    while not until():
        now = time.perf_counter()
        if now > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        for fn, first in timers:
            if not bpy.app.timers.is_registered(fn):
                due.pop(fn, None)
                continue
            when = due.setdefault(fn, now + first)
            if when <= now:
                interval = fn()
                if interval is None:
                    bpy.app.timers.unregister(fn)
                    due.pop(fn, None)
                else:
                    due[fn] = time.perf_counter() + interval
        next_due = min(due.values(), default=now + 0.001)
        time.sleep(max(next_due - time.perf_counter(), 0.0))  # only a timer can show the frame


STAGES = (
    ("change", "sent", "frame change -> request sent (add-on: sampling, I/O thread pickup)"),
    ("sent", "submit", "-> backend took the request (wire, decode, intake)"),
    ("submit", "accepted", "-> accepted (validation; journal row + stored inputs when journalled)"),
    ("accepted", "scheduled", "-> scheduled (worker pickup, running state; the worker may start first)"),
    ("scheduled", "render_start", "-> render start (inputs, renderer)"),
    ("render_start", "render_end", "-> render end (rasterise + generator)"),
    ("render_end", "frame_ready", "-> frame handed on (copy/resize; PNG file when journalled)"),
    ("frame_ready", "frame_sent", "-> frame sent (I/O loop, stream, credit)"),
    ("frame_sent", "received", "-> add-on received (wire, checksum, I/O thread)"),
    ("received", "shown", "-> image updated (main-thread timer, pixels)"),
    ("change", "shown", "**frame change -> image updated**"),
)


def read_stage_log(path: Path) -> dict[str, dict[str, float]]:
    """job id -> stage -> first time stamped (the backend's ``EMO_STAGE_LOG`` lines)."""
    import json

    out: dict[str, dict[str, float]] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        out.setdefault(rec["job"], {}).setdefault(rec["stage"], float(rec["t"]))
    return out


def stage_table(timings: dict[str, list[dict[str, float]]]) -> None:
    """Print median / p90 ms per stage for each mode (``mode -> [stages of one sample]``)."""
    import numpy as np

    modes = list(timings)
    print("| stage | " + " | ".join(f"{m}: median / p90 ms" for m in modes) + " |")
    print("| --- |" + " ---: |" * len(modes))
    for a, b, label in STAGES:
        cells = []
        for m in modes:
            d = [1000 * (t[b] - t[a]) for t in timings[m] if a in t and b in t]
            cells.append(f"{np.median(d):.1f} / {np.percentile(d, 90):.1f} (n={len(d)})" if d else "-")
        print(f"| {label} | " + " | ".join(cells) + " |")
    cells = []
    for m in modes:  # per sample: all but the render itself (which a loaded machine stretches most)
        d = [
            1000 * ((t["shown"] - t["change"]) - (t["render_end"] - t["render_start"]))
            for t in timings[m]
            if all(k in t for k in ("change", "shown", "render_start", "render_end"))
        ]
        cells.append(f"{np.median(d):.1f} / {np.percentile(d, 90):.1f} (n={len(d)})" if d else "-")
    print("| **everything but the render (per sample)** | " + " | ".join(cells) + " |")


def measure_preview(mod, samples: int, compare: bool = False
                    ) -> tuple[list[tuple[str, float, float, float, int, float, float]], dict]:
    """(rows, stages): rows are (label, median ms, p90 ms, max ms, n, Blender CPU ms, backend CPU
    ms) of frame change -> preview image updated, the CPU times per sample (mean, both processes'
    every thread); stages maps "<size> px, <mode>" to each sample's stage times. With
    ``compare`` every other sample is a journalled render (the same request without
    ``params.preview``); its rows are labelled so."""
    import bpy
    import numpy as np

    work = preview_workdir()
    conn = work / "connection.json"
    before = conn.stat().st_mtime_ns if conn.exists() else None
    stage_log = Path(tempfile.mkdtemp(prefix="emo_stages_")) / "stages.jsonl"
    proc = subprocess.Popen(
        [
            BACKEND_PYTHON,
            "-m",
            "backend.cli",
            "serve",
            "--workdir",
            str(work),
            "--connection-file",
            str(conn),
            "--device",
            "cpu",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "2", "EMO_STAGE_LOG": str(stage_log)},
    )
    rows = []
    samples_of: dict[str, list[tuple[str, dict[str, float]]]] = {}
    try:
        deadline = time.monotonic() + 120
        while not (conn.exists() and conn.stat().st_mtime_ns != before):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("emo-avatar serve did not start")
            time.sleep(0.1)
        api, runtime, preview = mod("api"), mod("runtime"), mod("preview")
        timers = [
            (runtime.apply_pending, runtime.TIMER_INTERVAL),
            (preview.poll_results, preview.POLL_INTERVAL),
        ]
        api.connect(conn, timeout=120, reply_timeout=30.0)
        scene = bpy.data.scenes.new("preview bench")
        head = api.import_subject(folder=work / "subjects" / "bench", scene=scene)
        settings = scene.emo_avatar_preview
        real_call = runtime.call

        def journalled_call(op, on_done=None, **kwargs):
            if op == "submit":  # the same request without the preview fast path
                kwargs["params"] = {k: v for k, v in kwargs["params"].items() if k != "preview"}
            return real_call(op, on_done, **kwargs)

        modes = ("preview job", "journalled job") if compare else ("preview job",)
        for size in (128, 256):
            settings.size = size
            settings.live = False
            # warm up: the renderer is loaded (and the subject's rig read) by the first request
            preview.request(scene, 1, head)
            runtime.wait_for(lambda: preview.PREVIEW.in_flight is None, 300, "the first preview")
            settings.live = True
            per_mode = {m: ([], [0.0, 0.0]) for m in modes}
            for i in range(samples * len(modes)):
                mode = modes[i % len(modes)]
                f = 2 + i % 14
                runtime.call = journalled_call if mode == "journalled job" else real_call
                time.sleep(0.05)  # the backend is idle before the change
                c_blender, c_backend = time.process_time(), cpu_seconds(proc.pid)
                t0 = time.perf_counter()
                scene.frame_set(f)  # the frame_change_post handler sends the request
                run_timers(
                    timers,
                    lambda f=f, t0=t0: preview.PREVIEW.shown_frame == f and preview.PREVIEW.shown_at >= t0,
                    120,
                    f"the preview of frame {f}",
                )
                runtime.call = real_call
                lat, cpu = per_mode[mode]
                lat.append(preview.PREVIEW.shown_at - t0)
                cpu[0] += time.process_time() - c_blender
                cpu[1] += cpu_seconds(proc.pid) - c_backend
                job_id = next(reversed(preview.PREVIEW.stages))
                own = preview.PREVIEW.stages[job_id]
                samples_of.setdefault(f"{size} px, {mode}", []).append((job_id, own))
            settings.live = False
            for mode, (lat, cpu) in per_mode.items():
                a = np.asarray(lat) * 1000
                rows.append(
                    (
                        f"{size} px" + (f", {mode}" if compare else ""),
                        float(np.median(a)),
                        float(np.percentile(a, 90)),
                        float(a.max()),
                        len(a),
                        1000 * cpu[0] / len(a),
                        1000 * cpu[1] / len(a),
                    )
                )
        api.disconnect()
    finally:
        proc.terminate()
        proc.wait(30)
    backend_stages = read_stage_log(stage_log)
    stages = {
        key: [{**backend_stages.get(job_id, {}), **own} for job_id, own in items]
        for key, items in samples_of.items()
    }
    return rows, stages


def measure_overhead(mod, tmp: Path, frames: int, size: int) -> None:
    """Print the per-frame overhead table (``size`` px, ``frames`` frames)."""
    import bpy
    import numpy as np

    scene = bpy.context.scene
    head, cam = mod("rig").build_rig(make_rig(mod, frames, size), scene, frame_start=1)
    frame_list = list(range(1, frames + 1))

    t0 = time.perf_counter()
    for f in frame_list:
        scene.frame_set(f)
    baseline = (time.perf_counter() - t0) / frames

    t0 = time.perf_counter()
    mod("curves_bpy").sample_rig(scene, head, 1, frames)
    sampling = (time.perf_counter() - t0) / frames

    uv_iter = mod("uv_pass").iter_uv_maps(head, cam, frame_list, (size, size))
    t0 = time.perf_counter()
    next(uv_iter)  # the first render builds Cycles' scene: reported in its own row
    uv_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = sum(1 for _ in uv_iter)
    uv = (time.perf_counter() - t0) / max(n, 1)

    vse = mod("vse")
    folder = vse.check_output_folder(tmp / "frames")
    image = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    done: set[int] = set()
    t0 = time.perf_counter()
    for f in frame_list:
        vse.write_frame(folder, "bench", f, image)
        done.add(f)
        vse.update_strip(scene, "bench", folder, "bench", 1, done, 2)
    strip = (time.perf_counter() - t0) / frames

    total = sampling + uv + strip
    print(
        f"\n### Add-on per-frame overhead at {size} px ({frames} frames, Blender {bpy.app.version_string})\n"
    )
    print("| step | ms / frame | x baseline |")
    print("| --- | ---: | ---: |")
    for name, value in (
        ("baseline: scene.frame_set", baseline),
        ("curve sampling (F-curve reader)", sampling),
        (f"Cycles UV pass (1 spp, EXR read back; mean of frames 2-{frames})", uv),
        ("strip update (PNG write + strip)", strip),
        ("**total add-on overhead**", total),
    ):
        print(f"| {name} | {1000 * value:.1f} | {value / baseline:.1f} |")
    print(
        f"| first UV-pass frame (builds Cycles' scene; once per shot, not in the total) | "
        f"{1000 * uv_first:.1f} | {uv_first / baseline:.1f} |"
    )
    print(
        f"\ntarget <= 200 ms / frame: {'met' if total <= 0.2 else 'missed'} ({1000 * total:.0f} ms; "
        f"a {frames}-frame shot with its first frame: {1000 * (total + (uv_first - uv) / frames):.0f} ms)"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="8 frames, 10 preview samples per size")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--no-preview", action="store_true", help="skip the live-preview latency")
    ap.add_argument("--preview-only", action="store_true", help="only the live-preview latency")
    ap.add_argument(
        "--compare",
        action="store_true",
        help="interleave journalled renders (no params.preview) with the preview samples",
    )
    args = ap.parse_args()
    frames = args.frames or (8 if args.quick else 32)
    tmp = Path(tempfile.mkdtemp(prefix="emo_bench_addon_"))
    mod = install_addon(tmp)
    import bpy

    version = bpy.app.version_string
    if not args.preview_only:
        measure_overhead(mod, tmp, frames, args.size)
    if args.no_preview:
        return 0
    load = os.getloadavg()[0]
    rows, stages = measure_preview(mod, 10 if args.quick else 30, compare=args.compare)
    print(f"\n### Live preview: frame change -> preview image updated (Blender {version}, backend idle)\n")
    print(f"Load average before / after the preview runs: {load:.1f} / {os.getloadavg()[0]:.1f}.\n")
    print("| size | median ms | p90 ms | max ms | samples | CPU ms Blender | CPU ms backend | target | |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for label, med, p90, worst, n_s, cpu_b, cpu_s in rows:
        target = 100 if label.startswith("128") else 200
        print(
            f"| {label} | {med:.0f} | {p90:.0f} | {worst:.0f} | {n_s} | {cpu_b:.1f} | {cpu_s:.1f} | "
            f"<= {target} | {'met' if med <= target else 'missed'} (median) |"
        )
    print("\n### Where a live preview's time goes (stage stamps of the add-on and the backend)\n")
    stage_table(stages)
    return 0


if __name__ == "__main__":
    sys.exit(main())
