"""Stage-1 training on a tiny synthetic subject: loss goes down, checkpoints round-trip, resume
continues, stops save a loadable checkpoint, wrong checkpoints are rejected."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.paths import checkpoint_path
from backend.progress import Cancelled, ProgressUpdate
from backend.render import Renderer
from backend.train.checkpoint import (
    CheckpointError,
    checkpoint_sha256,
    load_avatar,
    read_checkpoint,
    save_checkpoint,
)
from backend.train.data import load_subject_tensors
from backend.train.presets import get_preset
from backend.train.stage1 import train_avatar


def test_training_lowers_the_loss_and_writes_outputs(tiny_avatar_subject: Path) -> None:
    ckpt = checkpoint_path(tiny_avatar_subject)
    meta = read_checkpoint(ckpt)["meta"]
    hist = meta["history"]
    assert meta["step"] == meta["total_steps"] >= 30 and len(hist) == meta["step"]
    first = np.mean([h["l1"] + h["tex"] for h in hist[:5]])
    at30 = np.mean([h["l1"] + h["tex"] for h in hist[25:30]])
    assert at30 < 0.7 * first, (first, at30)
    # what weights were used is recorded
    assert meta["stylegan_init"]["kind"] == "random-init warm start"
    tiny = get_preset("tiny")  # its PTI is shorter than the run: not capped
    assert meta["pti"]["mode"] == "warm-start"
    assert (meta["pti"]["w_steps"], meta["pti"]["g_steps"]) == (tiny.pti_w_steps, tiny.pti_g_steps)
    assert meta["perceptual"]  # "fallback ssim+gradient" here, "lpips-..." with a backbone file
    # held-out frames were never drawn: they are recorded and disjoint from what training used
    data = load_subject_tensors(tiny_avatar_subject, meta["size"])
    assert sorted(meta["heldout_ids"]) == sorted(data.heldout_ids.tolist())
    assert not set(data.extreme_ids) & set(meta["heldout_ids"])
    metrics = json.loads((tiny_avatar_subject / "avatar" / "metrics.json").read_text())["train"]
    assert metrics["heldout_psnr_db"] > 15 and metrics["perceptual"] == meta["perceptual"]
    for name in ("loss_curve.png", "preview.png", f"previews/step_{meta['step']:06d}.png"):
        assert (tiny_avatar_subject / "avatar" / name).stat().st_size > 1000


def test_save_load_render_identical_pixels(tiny_avatar_subject: Path, tmp_path: Path) -> None:
    ckpt = checkpoint_path(tiny_avatar_subject)
    avatar, meta = load_avatar(ckpt)
    copy = tmp_path / "copy.pt"
    save_checkpoint(copy, avatar.state_dict(), meta)
    subj_uv = np.load(tiny_avatar_subject / "uv" / "uv.npy")[:6].astype(np.float32)
    expr = np.load(tiny_avatar_subject / "expressions.npz")["values"][:6]
    a = np.stack(list(Renderer.from_checkpoint(ckpt, device="cpu").render(expr, subj_uv)))
    b = np.stack(list(Renderer.from_checkpoint(copy, device="cpu").render(expr, subj_uv)))
    assert a.shape == (6, meta["size"], meta["size"], 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert a.std() > 5  # a real image, not a constant


def test_stage2_trainable_is_only_the_skip_modules(tiny_avatar_subject: Path) -> None:
    avatar, _ = load_avatar(checkpoint_path(tiny_avatar_subject))
    names = avatar.stage2_module_names()
    assert names and all(n.startswith("skips.") for n in names)
    params = avatar.set_stage2_trainable()
    trainable = {n for n, p in avatar.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("skips.") for n in trainable)
    assert len(params) == len(trainable)


def test_wrong_checkpoints_are_rejected(tiny_avatar_subject: Path, tmp_path: Path) -> None:
    ckpt = checkpoint_path(tiny_avatar_subject)
    with pytest.raises(CheckpointError, match="preset 'tiny', expected 'cpu'"):
        load_avatar(ckpt, expect_preset="cpu")
    data = read_checkpoint(ckpt)
    # another architecture: config says 16 texture channels, tensors are for 12
    bad_meta = dict(data["meta"], config=dict(data["meta"]["config"], tex_channels=16))
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, data["avatar"], bad_meta)
    with pytest.raises(CheckpointError, match=r"texture\..*checkpoint \(.*12"):
        load_avatar(bad)
    # a missing tensor is named
    state = dict(data["avatar"])
    dropped = next(k for k in state if k.startswith("skips."))
    del state[dropped]
    save_checkpoint(bad, state, data["meta"])
    with pytest.raises(CheckpointError, match=f"missing {dropped}"):
        load_avatar(bad)
    # not a checkpoint at all
    torch.save({"g_ema": {}}, bad)
    with pytest.raises(CheckpointError, match="not an Emo-Avatar checkpoint"):
        load_avatar(bad)
    assert len(checkpoint_sha256(ckpt)) == 64


def test_resume_continues_the_step_count(writable_subject: Path) -> None:
    ckpt = checkpoint_path(writable_subject)
    before = read_checkpoint(ckpt)["meta"]
    seen: list[ProgressUpdate] = []
    n = before["step"]
    train_avatar(writable_subject, preset="tiny", steps=n + 4, resume=True, progress=seen.append,
                 preview_every=0)
    after = read_checkpoint(ckpt)["meta"]
    assert after["step"] == n + 4
    assert [u.step for u in seen if u.stage == "train"] == list(range(n + 1, n + 5))
    assert not [u for u in seen if u.stage == "pti"]  # PTI is not re-run
    assert after["history"][:n] == before["history"]
    with pytest.raises(CheckpointError, match="preset 'tiny'"):
        train_avatar(writable_subject, preset="cpu", steps=n + 10, resume=True)


@pytest.mark.parametrize("how", ["should_stop", "ctrl_c"])
def test_stop_saves_a_loadable_checkpoint(untrained_subject: Path, how: str) -> None:
    calls = {"n": 0}

    def stop() -> bool:
        return how == "should_stop" and calls["n"] >= 3

    def progress(u: ProgressUpdate) -> None:
        if u.stage == "train":
            calls["n"] = u.step
            if how == "ctrl_c" and u.step == 3:
                raise KeyboardInterrupt

    with pytest.raises(Cancelled, match="checkpoint saved"):
        train_avatar(untrained_subject, preset="tiny", steps=50, progress=progress, should_stop=stop,
                     preview_every=0)
    _, meta = load_avatar(checkpoint_path(untrained_subject))
    assert meta["step"] == 3 and meta["total_steps"] == 50
    metrics = json.loads((untrained_subject / "avatar" / "metrics.json").read_text())
    assert metrics["train"]["step"] == 3
    # Ctrl-C draws the loss curve; a service cancel keeps the last checkpoint's (none before step 30)
    assert (untrained_subject / "avatar" / "loss_curve.png").is_file() == (how == "ctrl_c")
    # and it resumes from there
    train_avatar(untrained_subject, preset="tiny", steps=5, resume=True, preview_every=0)
    assert read_checkpoint(checkpoint_path(untrained_subject))["meta"]["step"] == 5


def test_same_seed_same_weights(untrained_subject: Path, tmp_path: Path) -> None:
    outs = []
    for name in ("a", "b"):
        train_avatar(untrained_subject, preset="tiny", steps=2, seed=7, out_dir=tmp_path / name,
                     preview_every=0)
        outs.append(read_checkpoint(tmp_path / name / "checkpoint.pt")["avatar"])
    assert all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])


def test_missing_subject_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train_avatar(tmp_path / "nope", preset="tiny")


def test_training_windows_stay_within_each_shot(writable_subject: Path) -> None:
    """Stage 1 trains each frame's 5-frame window on its own shot's curves, as ``Renderer.render``
    with the subject's cuts renders it."""
    meta_path = writable_subject / "meta.json"
    meta = json.loads(meta_path.read_text())
    n = len(np.load(writable_subject / "expressions.npz")["values"])
    cut = 6
    meta["shots"] = [{"frames": [0, cut], "source_frames": [0, cut]},
                     {"frames": [cut, n], "source_frames": [cut, n]}]
    meta_path.write_text(json.dumps(meta))
    data = load_subject_tensors(writable_subject, 32)
    expr = torch.from_numpy(np.load(writable_subject / "expressions.npz")["values"].astype(np.float32))
    assert torch.equal(data.windows[cut - 1, 3:], expr[[cut - 1, cut - 1]])  # not the next shot's
    assert torch.equal(data.windows[cut, :2], expr[[cut, cut]])  # not the last shot's
    assert torch.equal(data.windows[cut - 3], expr[cut - 5:cut])  # whole windows stay whole
