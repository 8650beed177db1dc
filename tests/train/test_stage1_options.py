"""Stage-1 options that stay off in the default presets: the background plate, the motion-modulated
skips, the face L1, the Laplacian-pyramid L1, the focal frequency loss, the per-frame tracking
corrections, balanced sampling and expression noise. Real (tiny) training steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from backend.metrics.pyramid import lap_l1
from backend.model.patch_discriminator import PatchDiscriminator
from backend.model.plate import background_plate
from backend.paths import checkpoint_path
from backend.train.checkpoint import load_avatar, read_checkpoint
from backend.train.data import load_subject_tensors
from backend.train.frame_corrections import FrameCorrections
from backend.train.losses import feature_matching_l1, focal_frequency_loss, laplacian_l1
from backend.train.presets import get_preset
from backend.train.stage1 import train_avatar
from backend.train.stage2 import prepare_edit


def test_corrections_start_as_identity_and_move_only_covered_uvs() -> None:
    corr = FrameCorrections(n_frames=4, n_expr=3)
    uv = torch.rand(2, 3, 8, 8)
    uv[:, 2] = (uv[:, 2] > 0.5).float()
    win = torch.rand(2, 5, 3)
    ids = torch.tensor([1, 3])
    same_uv, same_win = corr(ids, uv, win)
    assert torch.equal(same_uv, uv) and torch.equal(same_win, win)
    with torch.no_grad():
        corr.uv_affine[3, 0, 2] = 0.01  # frame 3: u moves by 0.01
        corr.expr_offset[1] = 0.2
    new_uv, new_win = corr(ids, uv, win)
    covered = uv[1, 2] > 0
    assert torch.allclose(new_uv[1, 0][covered], uv[1, 0][covered] + 0.01)
    assert torch.equal(new_uv[1, 0][~covered], uv[1, 0][~covered])
    assert torch.equal(new_uv[0], uv[0]) and torch.equal(new_uv[:, 2], uv[:, 2])
    assert torch.allclose(new_win[0], win[0] + 0.2) and torch.equal(new_win[1], win[1])
    assert corr.penalty(ids) > 0


def test_laplacian_l1_weighs_detail_as_the_metric_does() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    shifted = np.clip(a.astype(int) + 20, 0, 255).astype(np.uint8)  # colour, no detail
    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255.0
    assert laplacian_l1(t(a), t(a)).item() == 0.0
    # the same ordering and about the same size as the metric's OpenCV pyramid (which upsamples
    # with pyrUp, not bilinearly)
    for x in (b, shifted):
        assert laplacian_l1(t(a), t(x)).item() == pytest.approx(lap_l1(a, x), rel=0.05)
    noise, colour = laplacian_l1(t(a), t(b)).item(), laplacian_l1(t(a), t(shifted)).item()
    assert (noise > colour) == (lap_l1(a, b) > lap_l1(a, shifted))
    pred = t(b).requires_grad_(True)
    laplacian_l1(pred, t(a)).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


def test_focal_frequency_loss_is_the_squared_error_reweighted_by_frequency() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 32, 32, generator=gen), torch.rand(2, 3, 32, 32, generator=gen)
    assert focal_frequency_loss(a, a).item() == 0.0
    mse = ((a - b) ** 2).mean().item()
    # a flat weight (alpha 0) leaves Parseval's squared error: the FFT is orthonormal
    assert focal_frequency_loss(a, b, alpha=0.0).item() == pytest.approx(mse, rel=1e-5)
    # weights are <= 1, so the focal loss never exceeds it; an error in one frequency gets weight 1
    assert 0 < focal_frequency_loss(a, b).item() < mse
    ripple = 0.1 * torch.cos(torch.arange(32.0) * torch.pi / 2).expand(2, 3, 32, 32)
    assert focal_frequency_loss(a + ripple, a).item() == pytest.approx((ripple ** 2).mean().item(), rel=1e-4)
    pred = b.clone().requires_grad_(True)
    focal_frequency_loss(pred, a).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


def test_training_with_every_option_keeps_the_plate_and_resumes(untrained_subject: Path) -> None:
    tiny = get_preset("tiny")
    over = {"model": {**tiny.model, "plate": True, "skip_film": True, "head_texture": 4}, "w_face": 1.0,
            "lr_corr": 1e-2, "balance": 1.0, "expr_noise": 0.2, "w_lap": 1.0, "w_ffl": 1.0}
    train_avatar(untrained_subject, preset="tiny", steps=6, preview_every=0, preset_overrides=over)
    ckpt = checkpoint_path(untrained_subject)
    data = read_checkpoint(ckpt)
    params = data["meta"]["preset_params"]
    assert (params["balance"], params["expr_noise"]) == (1.0, 0.2)
    hist = data["meta"]["history"]
    assert all(h["face"] > 0 and h["lap"] > 0 and h["ffl"] > 0 for h in hist)
    moved = data["train"]["corrections"]["uv_affine"].abs().sum(dim=(1, 2))
    heldout = set(np.asarray(data["meta"]["heldout_ids"]).tolist())
    # only frames that were trained on have corrections; held-out frames keep none
    assert moved.gt(0).any() and heldout
    assert not heldout & set(torch.nonzero(moved).flatten().tolist())
    avatar, _ = load_avatar(ckpt)
    subj = load_subject_tensors(untrained_subject, avatar.cfg.size)
    ids = torch.as_tensor(subj.train_ids)
    expected = background_plate(subj.frames[ids], subj.uv[ids, 2:3])
    assert torch.allclose(avatar.plate[0], expected)  # the EMA copy carries the plate
    train_avatar(untrained_subject, preset="tiny", steps=8, resume=True, preview_every=0,
                 preset_overrides=over)
    assert read_checkpoint(ckpt)["meta"]["step"] == 8
    # the paper's skips edit cannot carry the motion code the skips now take: a clear refusal
    reference = np.zeros((avatar.cfg.size, avatar.cfg.size, 3), np.uint8)
    with pytest.raises(ValueError, match="skip_film"):
        prepare_edit(untrained_subject, reference, frame=0)


def test_learning_rates_decay_to_lr_final_and_beta1_is_the_presets(untrained_subject: Path) -> None:
    tiny = get_preset("tiny")
    train_avatar(untrained_subject, preset="tiny", steps=6, preview_every=0,
                 preset_overrides={"lr_final": 0.1, "adam_beta1": 0.9, "d_adam_beta1": 0.8})
    train = read_checkpoint(checkpoint_path(untrained_subject))["train"]
    groups = train["opt_g"]["param_groups"]
    assert [g["lr"] for g in groups] == pytest.approx([0.1 * tiny.lr_tex, 0.1 * tiny.lr_g])
    assert all(tuple(g["betas"]) == (0.9, 0.99) for g in groups)
    assert [tuple(g["betas"]) for g in train["opt_d"]["param_groups"]] == [(0.8, 0.99)]


def test_learning_rates_stay_constant_by_default(untrained_subject: Path) -> None:
    tiny = get_preset("tiny")
    assert tiny.lr_final == 1.0
    train_avatar(untrained_subject, preset="tiny", steps=6, preview_every=0)
    train = read_checkpoint(checkpoint_path(untrained_subject))["train"]
    groups = train["opt_g"]["param_groups"]
    assert [g["lr"] for g in groups] == [tiny.lr_tex, tiny.lr_g]
    assert all(tuple(g["betas"]) == (0.5, 0.99) for g in groups)
    assert [tuple(g["betas"]) for g in train["opt_d"]["param_groups"]] == [(0.0, 0.99)]


def test_feature_matching_pulls_only_the_output_towards_its_frames_features() -> None:
    torch.manual_seed(0)
    disc = PatchDiscriminator(channels=8, n_layers=3)
    frame, uv = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32)
    real = disc.features(frame, uv)
    assert len(real) == 4 and real[0].shape == (2, 8, 16, 16) and real[-1].shape == real[-2].shape
    assert torch.equal(disc(frame, uv), disc.out(real[-1]))
    assert feature_matching_l1(real, real).item() == 0
    out = (frame + 0.3 * torch.randn_like(frame)).requires_grad_(True)
    real_in = frame.clone().requires_grad_(True)
    loss = feature_matching_l1(disc.features(out, uv), disc.features(real_in, uv))
    loss.backward()
    assert loss.item() > 0 and out.grad.abs().sum() > 0 and real_in.grad is None


def test_training_with_feature_matching_logs_it_once_the_discriminator_is_on(untrained_subject: Path) -> None:
    train_avatar(untrained_subject, preset="tiny", steps=4, preview_every=0,
                 preset_overrides={"w_fm": 1.0, "adv_start": 2})
    hist = read_checkpoint(checkpoint_path(untrained_subject))["meta"]["history"]
    assert [("fm" in h) for h in hist] == [False, False, True, True]
    assert all(h["fm"] > 0 and "adv" in h for h in hist[2:])
