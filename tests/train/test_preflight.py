"""Bad input to stage 1 is refused before anything is written, or handled and said:
a subject tracked at another size (resampled, recorded and logged; refused beyond 4x), a preset
that does not fit the device's memory (estimate logged, refused when over), and a resume under
another preset (refused, naming both). Real training steps on the tiny subject (64 px crops)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from backend.paths import checkpoint_path
from backend.train.checkpoint import read_checkpoint
from backend.train.preflight import (
    MAX_RESAMPLE,
    RUNTIME_OVERHEAD,
    MemoryBudgetError,
    PresetMismatchError,
    SubjectSizeError,
    available_memory,
    estimate_memory,
    subject_resample,
)
from backend.train.presets import get_preset
from backend.train.stage1 import train_avatar

ROOT = Path(__file__).resolve().parents[2]


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` -> sha256 (empty when the folder does not exist)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# -- subject size ----------------------------------------------------------------------------------
def test_resample_plan_both_ways_and_the_4x_limit() -> None:
    tiny, cpu, paper = get_preset("tiny"), get_preset("cpu"), get_preset("paper")
    assert subject_resample(32, tiny) is None
    assert subject_resample(64, tiny) == {"subject_px": 64, "train_px": 32, "factor": 0.5, "frames": "area",
                                          "uv": "bilinear"}
    assert subject_resample(64, cpu)["frames"] == "cubic"
    assert subject_resample(128, paper)["factor"] == MAX_RESAMPLE == 4.0  # exactly 4x is accepted
    with pytest.raises(SubjectSizeError) as up:
        subject_resample(64, paper, "anna")
    msg = str(up.value)
    for part in ("anna was tracked at 64 px", "preset 'paper' trains at 512 px", "8x upsampling",
                 "more than the 4x", "--size 512", "tiny (32 px)", "cpu (128 px)"):
        assert part in msg, (part, msg)
    with pytest.raises(SubjectSizeError, match=r"256 px .* 32 px: 8x downsampling"):
        subject_resample(256, tiny)


def test_training_at_another_size_resamples_and_says_so(untrained_subject: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    ckpt = train_avatar(untrained_subject, preset="tiny", steps=2, preview_every=0)
    meta = read_checkpoint(ckpt)["meta"]
    want = {"subject_px": 64, "train_px": 32, "factor": 0.5, "frames": "area", "uv": "bilinear"}
    assert meta["subject_resample"] == want and meta["size"] == 32
    report = json.loads((ckpt.parent / "metrics.json").read_text())["train"]
    assert report["subject_resample"] == want
    n_held = len(meta["heldout_ids"])
    assert meta["heldout_psnr_frames"] == report["heldout_psnr_frames"] == f"held-out ({n_held} frames)"
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("tracked at 64 px" in m and "resampled" in m for m in warned), warned
    # the memory estimate is logged before training starts, labelled as an estimate, and recorded
    msgs = [r.getMessage() for r in caplog.records]
    first_step = next(i for i, m in enumerate(msgs) if m.startswith("training "))
    est = [i for i, m in enumerate(msgs)
           if m.startswith("memory:") and "estimated" in m and "available RAM" in m]
    assert est and est[0] < first_step
    mem = meta["memory"]
    assert mem["estimate"] is True and mem["device"] == "cpu" and 0 < mem["total"] < mem["available"]
    assert mem["total"] == mem["weights"] + mem["activations"] + mem["data"] + mem["overhead"]


def test_subject_too_far_from_the_preset_is_refused_before_writing(untrained_subject: Path) -> None:
    before = _snapshot(untrained_subject)
    with pytest.raises(SubjectSizeError, match=r"tracked at 64 px but preset 'paper' trains at 512 px"):
        train_avatar(untrained_subject, preset="paper")
    assert _snapshot(untrained_subject) == before and not (untrained_subject / "avatar").exists()


# -- memory ------------------------------------------------------------------------------------------
def test_memory_estimate_scales_with_batch_processes_and_frames() -> None:
    p = get_preset("tiny")
    one = estimate_memory(p, n_expr=20, n_frames=50)
    assert one.params > 0 and one.activations > 0 and one.overhead == RUNTIME_OVERHEAD
    assert one.data == 50 * (4 * 6 * 32 * 32 + 4 * 5 * 20)
    big = estimate_memory(get_preset("tiny", batch=8), n_expr=20, n_frames=50)
    assert 1.8 < big.activations / one.activations < 2.2  # activations grow with the batch
    split = estimate_memory(get_preset("tiny", batch=8), n_expr=20, n_frames=50, world=2, sharing=2)
    assert split.activations == one.activations and split.total == 2 * one.total  # 2 ranks share RAM
    frozen = estimate_memory(p, n_expr=20, n_frames=50, frozen_generator=True)
    assert frozen.trainable < one.trainable == one.params and frozen.weights < one.weights
    # on a GPU the subject stays in host RAM, and autocast halves the activations
    gpu = estimate_memory(p, n_expr=20, n_frames=50, device_type="cuda", half_activations=True)
    assert not gpu.data_on_device and gpu.activations == one.activations // 2
    assert gpu.total == gpu.weights + gpu.activations + gpu.overhead and "not counted" in gpu.describe()
    # the paper preset at 512 px needs tens of times the cpu preset's memory (float32 on this device)
    paper, cpu = (estimate_memory(get_preset(n), 20, 50).total for n in ("paper", "cpu"))
    assert paper > 20 * cpu


def test_available_memory_of_this_cpu() -> None:
    avail, source = available_memory(torch.device("cpu"))
    assert avail is not None and avail > 64 * 2 ** 20 and ("RAM" in source or "cgroup" in source)


def test_preset_that_does_not_fit_is_refused_before_anything_is_written(untrained_subject: Path) -> None:
    before = _snapshot(untrained_subject)
    with pytest.raises(MemoryBudgetError) as exc:
        train_avatar(untrained_subject, preset="tiny", preset_overrides={"batch": 2 ** 20})
    msg = str(exc.value)
    for part in ("preset 'tiny' (32 px, batch 1048576) does not fit on cpu", "GiB estimated",
                 "activations", "available RAM", "smaller preset"):
        assert part in msg, (part, msg)
    assert _snapshot(untrained_subject) == before and not (untrained_subject / "avatar").exists()


# -- resume across presets -----------------------------------------------------------------------------
def test_resume_under_another_preset_is_refused_naming_both(writable_subject: Path) -> None:
    avatar = checkpoint_path(writable_subject).parent
    before = _snapshot(avatar)
    with pytest.raises(PresetMismatchError) as exc:
        train_avatar(writable_subject, preset="cpu", resume=True)
    msg = str(exc.value)
    assert "trained with preset 'tiny'" in msg and "asks for preset 'cpu'" in msg and "--preset tiny" in msg
    assert _snapshot(avatar) == before
    # the CLI: one error line, exit code 2, nothing written
    cmd = [sys.executable, "-m", "backend.cli", "train", str(writable_subject), "--preset", "cpu", "--resume"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    err = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "'tiny'" in err[0] and "'cpu'" in err[0], proc.stderr
    assert _snapshot(avatar) == before


def test_no_memory_check_flag_reaches_every_rank() -> None:
    import argparse

    from backend.train.train_cli import add_arguments, worker_argv

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["subj", "--preset", "tiny", "--no-memory-check", "--nproc", "2"])
    assert args.no_memory_check and "--no-memory-check" in worker_argv(args)
    assert "--no-memory-check" not in worker_argv(parser.parse_args(["subj"]))
