"""Tracking and UV-map throughput.

    python bench/track.py [--quick] [--frames N]
    python bench/track.py --framing-quality [--steps N] [--clip VIDEO ...] [--framing NAME ...]
                          [--follow-face]

Rows (one markdown table):
- decode: reading the 720p clip with OpenCV (the floor of any tracker).
- mediapipe: decode + MediaPipe FaceMesh (refine_landmarks, video mode) - the baseline.
- track_video: the whole `emo-avatar track` pipeline at --size 256 (two decode passes, FaceMesh,
  pose, face model, smoothing, PNG crops, UV maps, atomic write), frames/s end to end.
- uv maps (rig.uv_maps, batch 16) and rasterize_uv (one frame per call) at 256 px, maps/s.
- pass-1 signals: FaceMesh, the shot-cut / face-jump signature, dlib's 68-point predictor (every
  face; it reads mouthRight) and the identity signal (dlib's descriptor on a few frames per
  segment, or the rig-shape fallback), CPU ms per call and per frame; and the appearance measure
  (noseSneer, jawLeft/Right, eyeSquint, mouthUpperUp, mouthLowerDown; ``backend.face.appearance``):
  its canonical crop (pass 2, every kept frame) and its flow against the neutral crop (once per
  clip, per frame).
Ratios are against the MediaPipe baseline (tracking rows) and single-frame rasterize_uv (UV rows),
measured in the same run. Targets: tracking >= 30 frames/s at 720p, UV maps >= 200/s at 256.

``--framing-quality`` measures what the default framing is chosen by: for each clip (the
synthetic sample, plus every ``--clip``, e.g. a real CGI clip) and each framing, track at 128 px,
train the ``cpu`` preset for ``--steps`` steps (default: the preset's whole budget, the same for
every framing), and evaluate on the held-out frames: face-box PSNR / SSIM at the face's own size
(what ``emo-avatar eval`` reports: more pixels on a tighter framing's face), the same face box of
render and ground truth both resampled (area) to ``COMMON_FACE_PX`` square (every framing's face
seen at one size, no bigger than the loosest framing's), whole-frame PSNR (different content per
framing: not comparable across framings) and the dlib identity distance (render vs ground truth;
lower is better, computed on a 150 px aligned chip, so independent of the face's pixel size).
``--out DIR`` keeps each run's metrics.json and contact sheet; ``--framing NAME`` (repeatable)
runs only those framings; ``--follow-face`` tracks with framing segments (``track_video``'s
``follow_face``; the default is one crop per shot).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_clip(path: Path, n: int, tiny: bool) -> Path:
    """A 1280x720 clip: the synthetic sample (the tiny one, upscaled, with ``tiny``) when
    available, else the astronaut photo moving."""
    frames: list[np.ndarray] = []
    try:
        from backend.data.sample import synthesize_sample

        sample_video = synthesize_sample(path.parent / "sample", tiny=tiny)
        cap = cv2.VideoCapture(str(sample_video))
        while len(frames) < n:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(bgr)
        cap.release()
        source = "tiny synthetic sample" if tiny else "synthetic sample"
    except ImportError:
        from skimage import data

        img = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
        for t in range(n):
            M = cv2.getRotationMatrix2D((256, 200), 4 * np.sin(t / 6), 1.0)
            frames.append(cv2.warpAffine(img, M, (512, 512), borderMode=cv2.BORDER_REFLECT))
        source = "astronaut photo (sample synthesiser not available)"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (1280, 720))
    for i in range(n):
        f = cv2.resize(frames[i % len(frames)], (720, 720), interpolation=cv2.INTER_LINEAR)
        canvas = cv2.copyMakeBorder(f, 0, 0, 280, 280, cv2.BORDER_REFLECT)
        writer.write(canvas)
    writer.release()
    print(f"clip: {n} frames 1280x720 from the {source}", file=sys.stderr)
    return path


def accuracy(sample_video: Path, out: Path) -> list[tuple[str, str]]:
    """Track the sample at 256 px and compare with its ground truth: rows of (measure, value)."""
    from backend.data.sample import load_ground_truth
    from backend.data.subject import Subject
    from backend.face.track import track_video

    s = Subject.open(track_video(sample_video, out, size=256, overwrite=True))
    gt = load_ground_truth(sample_video.parent / "ground_truth.npz")
    truth = s.video_to_crop(gt["vertices"])
    err = np.linalg.norm(s.landmarks[:, :468, :2] - truth, axis=-1)
    rows = [("landmark error, mean / p95 (px at 256)", f"{err.mean():.2f} / {np.percentile(err, 95):.2f}")]
    names = [str(n) for n in gt["names"]]
    for n in names:
        r = np.corrcoef(s.expressions[:, s.expression_names.index(n)], gt["expressions"][:, names.index(n)])
        rows.append((f"{n} correlation", f"{r[0, 1]:.3f}"))
    for k, n in enumerate(("yaw", "pitch", "roll")):
        rows.append((f"{n} correlation", f"{np.corrcoef(s.pose[:, k], gt['pose'][:, k])[0, 1]:.3f}"))
    p = gt["pose"]
    want = {"min_yaw": int(np.argmin(p[:, 0])), "max_yaw": int(np.argmax(p[:, 0])),
            "min_pitch": int(np.argmin(p[:, 1])), "max_pitch": int(np.argmax(p[:, 1]))}
    rows.append(("extreme frames (ours / truth)", f"{s.extreme_frames} / {want}"))
    return rows


class Clock:
    """Wall time and this process's CPU time (all threads) since creation."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def bench_decode(video: Path) -> tuple[int, float, float]:
    from backend.face.video_io import iter_frames

    c = Clock()
    n = sum(1 for _ in iter_frames(video))
    return (n, *c.stop())


def bench_mediapipe(video: Path) -> tuple[int, float, float]:
    from backend.face.landmarks import FaceMeshTracker
    from backend.face.video_io import iter_frames

    with FaceMeshTracker() as tracker:
        c = Clock()
        n = 0
        for rgb in iter_frames(video):
            tracker.process(rgb)
            n += 1
        return (n, *c.stop())


def bench_track(video: Path, out: Path) -> tuple[int, float, float]:
    from backend.data.subject import Subject
    from backend.face.track import track_video

    c = Clock()
    track_video(video, out, size=256, overwrite=True)
    return (Subject.open(out).n_frames, *c.stop())


def bench_uv(subject: Path, n: int) -> dict[str, tuple[int, float, float]]:
    from backend.data.subject import Subject
    from backend.face.uv_raster import rasterize_uv

    s = Subject.open(subject)
    ids = np.arange(n) % s.n_frames
    e, p, sc = s.expressions[ids], s.pose[ids], s.scale[ids]
    rig = s.rig
    out = {}
    c = Clock()
    rig.uv_maps(e, p, sc, 256)
    out["uv maps (rig.uv_maps, batch 16)"] = (n, *c.stop())
    verts = rig.posed(e, p, sc)
    c = Clock()
    for v in verts:
        rasterize_uv(v, rig.uvs, rig.triangles, 256, 256)
    out["rasterize_uv (1 frame per call)"] = (n, *c.stop())
    return out


def signal_costs(video: Path, n: int = 40) -> list[tuple[str, int, float, float]]:
    """CPU cost of each pass-1 signal on the first ``n`` frames of ``video`` (held in memory).

    CPU time of the whole process (all threads, so MediaPipe's and OpenCV's workers count), which
    does not depend on what else loads the machine. Rows: (signal, calls, CPU ms per call, CPU ms
    per video frame as ``track`` runs it: the descriptor on the first 3 detections of a segment
    and then once a second, ``scan.DESCRIBE_*``)."""
    from backend.face.identity import FaceDescriptor, shape_signature
    from backend.face.landmarks import FaceMeshTracker
    from backend.face.scan import DESCRIBE_EVERY_S, DESCRIBE_FIRST
    from backend.face.shape68 import Shape68Predictor
    from backend.face.shots import frame_signature
    from backend.face.video_io import iter_frames, probe

    frames = list(iter_frames(video, n))
    fps = probe(video).fps
    points = []
    with FaceMeshTracker() as tracker:
        c = Clock()
        for f in frames:
            points.append(tracker.process(f).points)
        mesh_cpu = c.stop()[1]
    c = Clock()
    for f in frames:
        frame_signature(f)
    cut_cpu = c.stop()[1]
    faces = [(f, p) for f, p in zip(frames, points, strict=True) if p is not None]
    pred68 = Shape68Predictor()
    c = Clock()
    for f, p in faces:
        pred68(f, p)
    pred68_cpu = c.stop()[1]
    desc = FaceDescriptor()
    c = Clock()
    for f, p in faces:
        desc(f, p)
    desc_cpu = c.stop()[1]
    c = Clock()
    for _, p in faces:
        shape_signature(p)
    shape_cpu = c.stop()[1]
    from backend.face.appearance import REGIONS, CanonicalSampler, region_motion
    from backend.face.track import fit_poses

    lm = np.stack([p for _, p in faces])
    pose, scale, shapes = fit_poses(lm)
    neutral = np.median(shapes, axis=0)
    sampler = CanonicalSampler(neutral)
    c = Clock()
    crops = np.stack([sampler(f, pose[t], scale[t]) for t, (f, _) in enumerate(faces)])
    sample_cpu = c.stop()[1]
    c = Clock()
    region_motion(crops, [(0, len(crops))], neutral, pose[:, :3])  # the tracker's call, chin weighted
    flow_cpu = c.stop()[1]
    k = max(len(faces), 1)
    share = (DESCRIBE_FIRST + max(n - DESCRIBE_FIRST, 0) / (DESCRIBE_EVERY_S * fps)) / n  # one segment
    return [
        ("FaceMesh landmarks (video mode, refine_landmarks)", len(frames), 1000 * mesh_cpu / len(frames),
         1000 * mesh_cpu / len(frames)),
        ("shot cut + face jump signature (HSV histogram of a 64 px thumbnail)", len(frames),
         1000 * cut_cpu / len(frames), 1000 * cut_cpu / len(frames)),
        ("dlib 68-point predictor (face resampled to a 160 px FaceMesh box)", len(faces),
         1000 * pred68_cpu / max(len(faces), 1), 1000 * pred68_cpu / len(frames)),
        ("identity: dlib ResNet descriptor (150 px chip)", len(faces), 1000 * desc_cpu / k,
         1000 * desc_cpu / k * share),
        ("identity fallback: rig-shape signature (Procrustes)", len(faces), 1000 * shape_cpu / k,
         1000 * shape_cpu / k * share),
        ("appearance: canonical crop (pass 2, 116 x 96 px grey)", len(faces), 1000 * sample_cpu / k,
         1000 * sample_cpu / len(frames)),
        (f"appearance: Farneback flow against the run's median crop, {len(REGIONS)} regions", len(faces),
         1000 * flow_cpu / k, 1000 * flow_cpu / len(frames)),
    ]


COMMON_FACE_PX = 48
"""Side (px) both face boxes are resampled to for the common-size face scores: below the face box
of a 128 px ``bust`` crop (~52 px), so every framing is compared downsampled, none upsampled."""


def common_size_face_scores(subject_dir: Path, side: int = COMMON_FACE_PX) -> tuple[float, float]:
    """(PSNR dB, SSIM) of the held-out frames' face boxes, render and ground truth both resampled
    (``cv2.INTER_AREA``) to ``side`` x ``side``; means over frames. Boxes are
    ``backend.metrics.regions`` face boxes (landmark box + 10%), the ones ``evaluate`` scores."""
    from backend.data.subject import Subject
    from backend.imaging.convert import frame_at
    from backend.metrics.evaluate import heldout_ids
    from backend.metrics.psnr import psnr
    from backend.metrics.regions import subject_regions
    from backend.metrics.ssim import ssim_uint8
    from backend.paths import checkpoint_path
    from backend.render import Renderer

    renderer = Renderer.from_checkpoint(checkpoint_path(subject_dir), device="cpu", subject=subject_dir)
    subject = Subject.open(subject_dir)
    ids = heldout_ids(renderer.meta, subject)
    size = renderer.size
    renders = list(renderer.render(subject.expressions, uv_maps=subject.uv_maps, indices=ids))
    psnrs, ssims = [], []
    for i, r, reg in zip(ids, renders, subject_regions(subject, ids, size), strict=True):
        x0, y0, x1, y1 = reg.face
        g = frame_at(subject.frame(int(i)), size)
        a = cv2.resize(np.ascontiguousarray(r[y0:y1, x0:x1]), (side, side), interpolation=cv2.INTER_AREA)
        b = cv2.resize(np.ascontiguousarray(g[y0:y1, x0:x1]), (side, side), interpolation=cv2.INTER_AREA)
        psnrs.append(min(psnr(a, b), 100.0))
        ssims.append(ssim_uint8(a, b))
    return float(np.mean(psnrs)), float(np.mean(ssims))


def framing_quality(clips: list[Path], steps: int | None, tmp: Path, keep: Path | None = None,
                    framings: list[str] | None = None, follow_face: bool = False) -> None:
    """Print one markdown row per (clip, framing): face size and held-out quality after training.

    Args:
        steps: training steps for every run (None: the ``cpu`` preset's).
        keep: folder that receives each run's metrics.json and contact sheet (``CLIP_FRAMING.*``).
        framings: ``FRAMINGS`` names to run (None: all).
        follow_face: track with framing segments (``track_video``'s ``follow_face``).
    """
    from backend.data.subject import Subject
    from backend.face.framing import FRAMINGS
    from backend.face.track import track_video
    from backend.metrics.evaluate import CONTACT_SHEET_NAME, evaluate
    from backend.paths import avatar_dir
    from backend.train.presets import get_preset
    from backend.train.stage1 import train_avatar

    steps = steps or get_preset("cpu").steps
    print(f"cpus: {os.cpu_count()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"cpu preset, {steps} steps per run, common face size {COMMON_FACE_PX} px, "
          f"{'framing segments (follow_face)' if follow_face else 'one crop per shot'}", flush=True)
    print("| clip | framing | frames (train / held-out) | face height px (128 px crop) | "
          "face PSNR dB (own size) | face SSIM (own size) | "
          f"face PSNR dB ({COMMON_FACE_PX} px) | face SSIM ({COMMON_FACE_PX} px) | PSNR dB (whole) | "
          "identity distance | train wall s | load avg (1 min) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    for clip in clips:
        for framing in framings or FRAMINGS:
            out = tmp / f"{clip.stem}_{framing}"
            s = Subject.open(track_video(clip, out, size=128, overwrite=True, framing=framing,
                                         follow_face=follow_face))
            face_h = float(np.median(np.ptp(s.landmarks[:, :468, 1], axis=1)))
            n_train, n_held = (len(x) for x in s.split())
            t0 = time.perf_counter()
            train_avatar(out, preset="cpu", steps=steps, device="cpu", preview_every=0)
            dt = time.perf_counter() - t0
            load = os.getloadavg()[0]
            r = evaluate(out, device="cpu", landmarks=False)
            c_psnr, c_ssim = common_size_face_scores(out)
            ident = r.get("identity_distance")
            ident_s = f"{ident:.3f}" if isinstance(ident, float) else "-"
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(avatar_dir(out) / "metrics.json", keep / f"{clip.stem}_{framing}.metrics.json")
                shutil.copy(avatar_dir(out) / CONTACT_SHEET_NAME, keep / f"{clip.stem}_{framing}.sheet.png")
            print(f"| {clip.name} | {framing} | {n_train} / {n_held} | {face_h:.0f} | "
                  f"{r['face_psnr_db']:.2f} | {r['face_ssim']:.3f} | {c_psnr:.2f} | {c_ssim:.3f} | "
                  f"{r['psnr_db']:.2f} | {ident_s} | {dt:.0f} | {load:.1f} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    from backend.face.framing import FRAMINGS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small run (< 30 s)")
    ap.add_argument("--frames", type=int, default=None, help="frames of the 720p clip")
    ap.add_argument("--framing-quality", action="store_true",
                    help="held-out quality of each framing after training (slow: 6 trainings)")
    ap.add_argument("--steps", type=int, default=None,
                    help="training steps per framing-quality run (default: the cpu preset's budget)")
    ap.add_argument("--out", type=Path, default=None,
                    help="--framing-quality: keep each run's metrics.json and contact sheet here")
    ap.add_argument("--clip", type=Path, action="append", default=[],
                    help="another clip for --framing-quality (e.g. a real CGI clip)")
    ap.add_argument("--no-sample", action="store_true", help="--framing-quality on the --clip clips only")
    ap.add_argument("--framing", action="append", default=None, choices=list(FRAMINGS),
                    help="--framing-quality: only this framing (repeatable; default: all)")
    ap.add_argument("--follow-face", action="store_true",
                    help="--framing-quality: track with framing segments (track --follow-face)")
    args = ap.parse_args(argv)
    if args.framing_quality:
        os.environ.setdefault("OMP_NUM_THREADS", "2")
        from backend.data.sample import synthesize_sample

        tmp = Path(tempfile.mkdtemp(prefix="bench_framing_"))
        try:
            sample = [] if args.no_sample else [synthesize_sample(tmp / "sample")]
            framing_quality([*sample, *args.clip], args.steps, tmp, args.out, args.framing, args.follow_face)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return 0
    n = args.frames or (40 if args.quick else 250)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    import mediapipe  # noqa: F401 - import once up front (~4 s, not part of any timing)

    tmp = Path(tempfile.mkdtemp(prefix="bench_track_"))
    try:
        video = make_clip(tmp / "clip720.mp4", n, tiny=args.quick)
        rows: list[tuple[str, int, float, float, float]] = []
        nd, td, cd = bench_decode(video)
        nm, tm, cm = bench_mediapipe(video)
        nt, tt, ct = bench_track(video, tmp / "subject")
        base = nm / tm
        rows.append(("decode 720p (OpenCV)", nd, td, cd, (nd / td) / base))
        rows.append(("MediaPipe FaceMesh 720p (baseline)", nm, tm, cm, 1.0))
        rows.append(("track_video 720p -> 256 px subject", nt, tt, ct, (nt / tt) / base))
        uv = bench_uv(tmp / "subject", 32 if args.quick else 128)
        single = uv["rasterize_uv (1 frame per call)"]
        for name, (k, dt, cpu) in uv.items():
            rows.append((f"{name} 256 px", k, dt, cpu, (k / dt) / (single[0] / single[1])))
        load = os.getloadavg()[0]
        print(f"\ncpus: {os.cpu_count()}, load average: {load:.1f} (other work shares the cores; "
              "items per CPU-second is the load-independent figure)\n")
        print("| step | items | wall s | items/s (wall) | CPU s | items per CPU-s | ratio (wall) |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, k, dt, cpu, ratio in rows:
            per_cpu = k / max(cpu, 1e-9)
            print(f"| {name} | {k} | {dt:.2f} | {k / dt:.1f} | {cpu:.2f} | {per_cpu:.1f} | {ratio:.2f}x |")
        print("\ntargets: tracking >= 30 frames/s at 720p on 2 cores; UV maps >= 200/s at 256 px")
        print("\n| pass-1 signal (720p) | calls | CPU ms per call | CPU ms per video frame in track |")
        print("|---|---:|---:|---:|")
        for name, k, per_run, per_frame in signal_costs(video, min(n, 60)):
            print(f"| {name} | {k} | {per_run:.1f} | {per_frame:.2f} |")
        sample_video = tmp / "sample" / "sample.mp4"
        if not args.quick and sample_video.exists():
            print("\n| accuracy on the synthetic sample (256 px crops) | value |\n|---|---|")
            for name, value in accuracy(sample_video, tmp / "sample_subject"):
                print(f"| {name} | {value} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
