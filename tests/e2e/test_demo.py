"""The main job end to end with the tiny preset: sample -> track -> train -> reference -> edit ->
service -> headless Blender (built extension, rig, Live Link Face performance, UV pass, VSE) ->
MP4 -> contact sheet. Real processes, real sockets, real bpy, real torch. Training and editing run
fewer steps than the preset's (``--train-steps``, ``--edit-steps``): nothing here measures their
quality, which the train and edit tests do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _read_video(path: Path) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(bgr)
    return np.stack(frames) if frames else np.zeros((0,))


@pytest.mark.slow
def test_tiny_demo_end_to_end_and_rerun_reuses(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "backend.cli", "demo", "--preset", "tiny", "--out", str(out),
           "--train-steps", "25", "--edit-steps", "20"]  # past the tiny preset's adv_start (20)
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    video = _read_video(out / "shot.mp4")
    assert video.shape[0] == 25, "the tiny demo renders the first 25 frames of the performance"
    assert video.std() > 10, "the shot is a flat image"
    assert np.abs(np.diff(video.astype(np.float32), axis=0)).mean() > 0.05, "the shot does not move"
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] > 300 and sheet.shape[1] > 1000
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["steps"]) == {"sample", "track", "train", "reference", "edit", "blender", "summary"}
    assert metrics["steps"]["train"]["steps"] == 25  # the step overrides reach the steps
    assert metrics["steps"]["blender"]["frames"] == 25
    assert metrics["steps"]["blender"]["fps"] == 25.0, "the shot must run at the performance's rate"
    # Blender's UV pass of the rig, posed by the performance, must give the backend's own pixels.
    assert metrics["steps"]["summary"]["shot_vs_backend_psnr_db"] > 50, metrics["steps"]["summary"]
    assert "| step | time (s) |" in first.stdout

    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("already done") == 7


def test_demo_preset_sizes_the_pipeline_and_owns_its_folder(tiny_sample: Path, tmp_path: Path,
                                                            capsys) -> None:
    """``emo-avatar demo --preset studio``: the choices are the training presets, the track step
    crops at the preset's size (what the avatar, Blender's frames and the MP4 then follow), the
    default folder is the preset's own, and a folder holding another preset's demo is refused."""
    import argparse
    import shutil

    from backend import demo
    from backend.data.subject import Subject
    from backend.train.presets import PRESETS

    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    assert parser._option_string_actions["--preset"].choices == list(PRESETS)
    args = parser.parse_args(["--preset", "studio"])
    assert args.out is None and demo.default_out("studio") == ROOT / "out" / "demo-studio"
    assert demo.default_out("cpu") == ROOT / "out" / "demo"  # make demo's folder
    with pytest.raises(SystemExit):
        parser.parse_args(["--preset", "huge"])

    cfg = demo.DemoConfig(out=tmp_path / "studio", preset="studio")
    assert cfg.size == PRESETS["studio"].size == 256
    shutil.copytree(tiny_sample, cfg.out / "sample")
    facts = demo.step_track(cfg)
    assert facts["size"] == 256 and Subject.open(cfg.subject).frame(0).shape == (256, 256, 3)

    # a folder claimed by a cpu demo is not reused by a studio one (nor the other way round)
    cpu = demo.DemoConfig(out=tmp_path / "cpu", preset="cpu")
    cpu.out.mkdir()
    demo.claim_out(cpu)
    with pytest.raises(demo.DemoOutError, match="preset 'cpu', and this run asks for 'studio'"):
        demo.claim_out(demo.DemoConfig(out=cpu.out, preset="studio"))
    assert demo.run(parser.parse_args(["--preset", "studio", "--out", str(cpu.out)])) == 2
    assert "demo-studio" in capsys.readouterr().err
    assert sorted(p.name for p in cpu.out.iterdir()) == ["steps"]  # nothing was run
