"""`emo-avatar demo`: the whole product end to end on the embedded sample.

sample video -> track -> train (stage 1) -> stylised reference -> edit (stage 2) -> backend
service -> a headless Blender session (the built extension, the subject rig, a Live Link Face
performance that differs from the training clip, UV maps from Blender's UV pass, frames over
ZeroMQ into a VSE strip, the sequencer rendered to MP4) -> contact sheet + metrics + a table.

Each step writes its output atomically and is skipped when that output already exists, so a
second run reuses what is done (``--force`` redoes everything). ``--preset`` picks the training
preset, whose size is the size of everything downstream: the tracked crops, the avatar, the
frames Blender receives and the MP4 (``cpu``, 128 px, is ``make demo``; ``studio`` runs the same
pipeline at 256 px). Each preset has its own default output folder, and a folder holding another
preset's demo is refused rather than reused.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from backend import paths
from backend.train.presets import PRESETS

log = logging.getLogger("emo-avatar.demo")
ROOT = Path(__file__).resolve().parents[1]
PERFORMANCE_CSV = ROOT / "examples" / "curves" / "performance_livelinkface.csv"
SUBJECT_ID = "astronaut"
STYLE_NAME = "cartoon"
REFERENCE_FRAME = 0


@dataclass
class DemoConfig:
    """What the demo runs: ``preset`` picks sizes and step counts (``tiny`` for tests)."""

    out: Path
    preset: str = "cpu"
    force: bool = False
    device: str | None = None
    edit_steps: int | None = None
    train_steps: int | None = None

    @property
    def tiny(self) -> bool:
        return self.preset == "tiny"

    @property
    def size(self) -> int:
        """Side in pixels of the tracked crops, the avatar and the shot: the preset's size."""
        return PRESETS[self.preset].size

    @property
    def workdir(self) -> Path:
        return self.out / "work"

    @property
    def subject(self) -> Path:
        return paths.workdir_subjects(self.workdir) / SUBJECT_ID


@dataclass
class StepResult:
    name: str
    seconds: float
    skipped: bool
    facts: dict[str, object] = field(default_factory=dict)


def _print_progress(name: str) -> Callable:
    last = [0.0]

    def report(update) -> None:  # backend.progress.ProgressUpdate
        now = time.monotonic()
        if now - last[0] < 2.0 and update.step < update.total:
            return
        last[0] = now
        losses = " ".join(f"{k}={v:.3f}" for k, v in list(update.losses.items())[:4])
        eta = f" eta {update.eta:.0f}s" if update.eta is not None else ""
        print(f"  [{name}] {update.stage} {update.step}/{update.total} {losses}{eta}", flush=True)

    return report


def step_sample(cfg: DemoConfig) -> dict[str, object]:
    from backend.data.sample import synthesize_sample

    video = synthesize_sample(cfg.out / "sample", tiny=cfg.tiny)
    return {"video": str(video)}


def step_track(cfg: DemoConfig) -> dict[str, object]:
    from backend.data.subject import Subject
    from backend.face.track import track_video

    track_video(cfg.out / "sample" / "sample.mp4", cfg.subject, size=cfg.size, overwrite=True,
                progress=_print_progress("track"))
    subject = Subject.open(cfg.subject)
    return {"frames": subject.n_frames, "size": subject.size, "coefficients": len(subject.expression_names)}


def step_train(cfg: DemoConfig) -> dict[str, object]:
    from backend.train.stage1 import train_avatar

    ckpt = train_avatar(cfg.subject, preset=cfg.preset, steps=cfg.train_steps, device=cfg.device,
                        resume=True, progress=_print_progress("train"))
    train = _read_json(paths.avatar_dir(cfg.subject) / "metrics.json").get("train", {})
    return {
        "checkpoint": str(ckpt), "steps": train.get("step"),
        "heldout_psnr_db": train.get("heldout_psnr_db"), "perceptual": train.get("perceptual"),
        "stylegan_init": (train.get("stylegan_init") or {}).get("kind"),
    }


def step_reference(cfg: DemoConfig) -> dict[str, object]:
    from backend.train.stylize_cli import stylize_subject_frame

    ref = stylize_subject_frame(cfg.subject, REFERENCE_FRAME, STYLE_NAME, cfg.out / "reference.png")
    return {"reference": str(ref), "frame": REFERENCE_FRAME, "look": STYLE_NAME}


def step_edit(cfg: DemoConfig) -> dict[str, object]:
    from backend.train.stage2 import edit_avatar
    from backend.train.style import load_style

    style = edit_avatar(cfg.subject, cfg.out / "reference.png", frame=REFERENCE_FRAME, steps=cfg.edit_steps,
                        name=STYLE_NAME, device=cfg.device, progress=_print_progress("edit"))
    metrics = _read_json(style.with_suffix(".metrics.json"))
    distance = metrics.get("style_distance") or {}
    return {
        "style": str(style), "method": load_style(style).meta.get("method"),
        "face_gram_distance_before": distance.get("gram_before"),
        "face_gram_distance_after": distance.get("gram_after"),
        "temporal_change_ratio": (metrics.get("temporal") or {}).get("ratio"),
        "f_lmd_styled_vs_unstyled": (metrics.get("identity") or {}).get("f_lmd_styled_vs_unstyled"),
    }


def step_blender(cfg: DemoConfig) -> dict[str, object]:
    """Start the service, then drive a headless Blender session against it."""
    conn = cfg.workdir / paths.CONNECTION_FILE_NAME
    server = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "serve", "--workdir", str(cfg.workdir),
         "--connection-file", str(conn)] + (["--device", cfg.device] if cfg.device else []),
        cwd=ROOT,
    )
    try:
        _wait_for(conn, server, timeout=120)
        cmd = [
            sys.executable, str(ROOT / "examples" / "demo_blender.py"),
            "--connection-file", str(conn), "--subject", SUBJECT_ID, "--style", STYLE_NAME,
            "--curves", str(PERFORMANCE_CSV), "--out", str(cfg.out),
            "--frames", "25" if cfg.tiny else "100",
        ]
        _run_quietly(cmd, keep=lambda line: line.startswith("  [blender]"))
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    return _read_json(cfg.out / "blender.json")


def _run_quietly(cmd: list[str], keep: Callable[[str], bool]) -> None:
    """Run ``cmd``, echoing only the output lines ``keep`` accepts (Blender prints a few lines per
    rendered frame); on failure, print the last 60 lines and raise ``CalledProcessError``."""
    tail: deque[str] = deque(maxlen=60)
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line)
            if keep(line):
                print(line, end="", flush=True)
    if proc.returncode != 0:
        print("".join(tail), end="", file=sys.stderr, flush=True)
        raise subprocess.CalledProcessError(proc.returncode, cmd)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    t0 = time.monotonic()
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"the backend service exited with code {proc.returncode} before it started")
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"the backend service did not write {path} within {timeout:.0f} s")
        time.sleep(0.2)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


STEPS: list[tuple[str, Callable[[DemoConfig], dict[str, object]], Callable[[DemoConfig], Path]]] = [
    # (name, run, output that marks the step done)
    ("sample", step_sample, lambda c: c.out / "sample" / "ground_truth.npz"),
    ("track", step_track, lambda c: c.subject / "meta.json"),
    ("train", step_train, lambda c: paths.avatar_dir(c.subject) / "metrics.json"),
    ("reference", step_reference, lambda c: c.out / "reference.png"),
    ("edit", step_edit, lambda c: paths.style_path(c.subject, STYLE_NAME)),
    ("blender", step_blender, lambda c: c.out / "shot.mp4"),
    ("summary", lambda c: step_summary(c), lambda c: c.out / "contact_sheet.png"),
]


def step_summary(cfg: DemoConfig) -> dict[str, object]:
    from backend.demo_sheet import write_demo_contact_sheet

    facts = write_demo_contact_sheet(cfg.out, cfg.subject, STYLE_NAME, PERFORMANCE_CSV)
    return {"contact_sheet": str(cfg.out / "contact_sheet.png"), **facts}


class DemoOutError(ValueError):
    """The output folder holds another preset's demo."""


PRESET_FILE = "preset.json"
"""``OUT/steps/preset.json``: the preset the folder's steps were run with."""


def claim_out(cfg: DemoConfig) -> None:
    """Record ``cfg.preset`` as the preset of ``cfg.out``; refuse a folder whose steps were run with
    another preset (their outputs would be reused at the wrong size). ``--force`` does not help
    here: the trained checkpoint cannot be resumed under another preset."""
    from protocol.fileio import atomic_write_text

    record = cfg.out / "steps" / PRESET_FILE
    was = _read_json(record).get("preset")
    if was is None:  # a folder from before the record: its summary names the preset, if it finished
        was = _read_json(cfg.out / "metrics.json").get("preset")
    if was is not None and was != cfg.preset:
        raise DemoOutError(
            f"{cfg.out} holds a demo run with preset {was!r}, and this run asks for {cfg.preset!r}: "
            f"pass another --out (the default for {cfg.preset!r} is {default_out(cfg.preset)}) or delete "
            f"{cfg.out}")
    atomic_write_text(record, json.dumps({"preset": cfg.preset, "size": cfg.size}))


def run_demo(cfg: DemoConfig) -> list[StepResult]:
    """Run every step (skipping those already done) and write the summary files.

    Raises:
        DemoOutError: ``cfg.out`` holds another preset's demo (``claim_out``)."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    claim_out(cfg)
    results: list[StepResult] = []
    for i, (name, run_step, done_marker) in enumerate(STEPS, 1):
        marker = done_marker(cfg)
        facts_file = cfg.out / "steps" / f"{name}.json"
        if marker.exists() and facts_file.exists() and not cfg.force:
            print(f"[{i}/{len(STEPS)}] {name}: already done ({marker})", flush=True)
            results.append(StepResult(name, 0.0, True, _read_json(facts_file)))
            continue
        print(f"[{i}/{len(STEPS)}] {name} ...", flush=True)
        t0 = time.monotonic()
        facts = run_step(cfg)
        seconds = time.monotonic() - t0
        from protocol.fileio import atomic_write_text

        atomic_write_text(facts_file, json.dumps(facts, indent=2, default=str))
        print(f"[{i}/{len(STEPS)}] {name}: done in {seconds:.1f} s", flush=True)
        results.append(StepResult(name, seconds, False, facts))
    _write_summary(cfg, results)
    return results


def _write_summary(cfg: DemoConfig, results: list[StepResult]) -> None:
    from protocol.fileio import atomic_write_text

    summary = {
        "preset": cfg.preset, "size": cfg.size,
        "steps": {r.name: {"seconds": round(r.seconds, 2), "reused": r.skipped, **r.facts} for r in results},
    }
    atomic_write_text(cfg.out / "metrics.json", json.dumps(summary, indent=2, default=str))
    print()
    print("| step | time (s) | key facts |")
    print("| --- | ---: | --- |")
    for r in results:
        facts = ", ".join(f"{k}={_fmt(v)}" for k, v in r.facts.items() if not str(v).startswith("/"))
        print(f"| {r.name} | {'reused' if r.skipped else f'{r.seconds:.1f}'} | {facts} |")
    print(f"\nout: {cfg.out / 'shot.mp4'}, {cfg.out / 'contact_sheet.png'}, {cfg.out / 'metrics.json'}")


def _fmt(v: object) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def default_out(preset: str) -> Path:
    """``out/demo`` for the ``cpu`` preset (``make demo``), ``out/demo-<preset>`` for the others."""
    return ROOT / "out" / ("demo" if preset == "cpu" else f"demo-{preset}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: out/demo for cpu, out/demo-PRESET for another preset)")
    parser.add_argument("--preset", default="cpu", choices=list(PRESETS),
                        help="training preset (backend/train/presets.py), whose size the whole demo runs at: "
                             + ", ".join(f"{p.name} {p.size} px" for p in PRESETS.values())
                             + " (default: cpu; tiny is for tests)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")
    parser.add_argument("--force", action="store_true", help="redo every step")
    parser.add_argument("--train-steps", type=int, default=None, help="override the preset's step count")
    parser.add_argument("--edit-steps", type=int, default=None, help="override the edit step count")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    cfg = DemoConfig(out=args.out or default_out(args.preset), preset=args.preset, force=args.force,
                     device=args.device, edit_steps=args.edit_steps, train_steps=args.train_steps)
    try:
        run_demo(cfg)
    except DemoOutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
