"""The ``paper`` preset runs real training steps (at 32 px so it fits a test), and with a pretrained
StyleGAN2 file, written here in the reference format and read by the real loader
(``--stylegan`` -> ``load_stylegan2_checkpoint``), its generator and w pivot stay frozen in
stage 1 (the paper's frozen StyleGAN) while the texture and skips train, also across a resume.
A randomly initialised generator is trained (the control)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from backend.metrics.perceptual import file_sha256
from backend.model.checkpoint import reference_state_dict
from backend.model.stylegan2 import Generator
from backend.paths import checkpoint_path
from backend.train.checkpoint import read_checkpoint
from backend.train.presets import get_preset
from backend.train.stage1 import train_avatar

# the paper preset's architecture and settings, at 32 px, with a short PTI and the discriminator on
PAPER_SMALL = {"size": 32, "batch": 2, "pti_w_steps": 2, "pti_g_steps": 1, "adv_start": 0}


def _n_expr(subject: Path) -> int:
    from backend.data.subject import Subject

    return len(Subject.open(subject).expression_names)


def _write_stylegan(path: Path, preset: str, n_expr: int, overrides: dict) -> dict[str, torch.Tensor]:
    """A StyleGAN2 ``g_ema`` checkpoint of the preset's generator architecture (seeded random weights)."""
    cfg = get_preset(preset, **overrides).avatar_config(n_expr)
    torch.manual_seed(321)
    g = Generator(**cfg.generator_kwargs())
    sd = reference_state_dict(g)
    torch.save({"g_ema": sd}, path)
    return sd


def _part(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith(prefix)}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    assert a and set(a) == set(b)
    return all(torch.equal(a[k], b[k]) for k in a)


def test_paper_preset_trains_with_its_pretrained_generator_frozen(untrained_subject: Path, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    weights = tmp_path / "stylegan2_paper32.pt"
    file_sd = _write_stylegan(weights, "paper", _n_expr(untrained_subject), PAPER_SMALL)
    caplog.set_level("INFO")
    ckpt = train_avatar(untrained_subject, preset="paper", steps=1, stylegan=weights, preview_every=0,
                        preset_overrides=PAPER_SMALL)
    data1 = read_checkpoint(ckpt)
    m1 = data1["meta"]
    assert m1["preset"] == "paper" and m1["size"] == 32 and m1["step"] == 1
    assert m1["preset_params"]["model"]["channel_max"] == 512  # the paper preset's width
    assert m1["stylegan_init"] == {"kind": "pretrained", "path": str(weights.resolve()),
                                   "sha256": file_sha256(weights)}
    assert m1["pti"]["mode"] == "pti"
    assert m1["stage1_frozen"] == ["generator", "w_pivot"]
    assert m1["generator_stage1"].startswith("frozen")
    # the paper preset asks for mixed precision; on CPU the fallback is named in meta and the log
    assert m1["mixed_precision"].startswith("off (preset asks for mixed precision")
    assert any("mixed precision" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    assert any("stay frozen" in r.getMessage() for r in caplog.records)
    losses = m1["history"][0]
    assert {"l1", "tex", "adv", "d"} <= set(losses) and all(math.isfinite(v) for v in losses.values())

    train1, ema1 = data1["train"]["avatar"], data1["avatar"]
    gen1 = _part(train1, "generator.")
    # the file went through the loader: the mapping network (untouched by PTI, frozen after) is the file's
    mapping = {k: v for k, v in file_sd.items() if k.startswith("style.")}
    assert _same({f"generator.{k}": v for k, v in mapping.items()}, _part(gen1, "generator.style."))
    # PTI tuned the synthesis layers at the pivots (PTI proper), so they moved off the file's values
    assert not all(torch.equal(gen1[f"generator.{k}"], v) for k, v in file_sd.items()
                   if f"generator.{k}" in gen1 and not k.startswith("style."))
    # step 1 did not move the generator: the EMA copy (which lerps towards any update) equals it
    assert _same(gen1, _part(ema1, "generator.")) and torch.equal(train1["w_pivot"], ema1["w_pivot"])

    # resume two more steps: still frozen (restored from meta), while texture and skips train
    train_avatar(untrained_subject, preset="paper", steps=3, resume=True, preview_every=0,
                 preset_overrides=PAPER_SMALL)
    data3 = read_checkpoint(checkpoint_path(untrained_subject))
    assert data3["meta"]["step"] == 3 and data3["meta"]["stage1_frozen"] == ["generator", "w_pivot"]
    train3 = data3["train"]["avatar"]
    assert _same(gen1, _part(train3, "generator.")) and torch.equal(train1["w_pivot"], train3["w_pivot"])
    for trained in ("texture.", "skips."):
        assert not _same(_part(train1, trained), _part(train3, trained)), trained


def test_random_generator_is_trained_in_stage_1(untrained_subject: Path) -> None:
    """The control: without pretrained weights the generator must learn, and does."""
    ckpt = train_avatar(untrained_subject, preset="tiny", steps=1, preview_every=0)
    d1 = read_checkpoint(ckpt)
    assert d1["meta"]["stage1_frozen"] == [] and d1["meta"]["generator_stage1"].startswith("trained (random")
    train_avatar(untrained_subject, preset="tiny", steps=3, resume=True, preview_every=0)
    d3 = read_checkpoint(ckpt)
    g1, g3 = _part(d1["train"]["avatar"], "generator."), _part(d3["train"]["avatar"], "generator.")
    assert not _same(g1, g3)
    assert not torch.equal(d1["train"]["avatar"]["w_pivot"], d3["train"]["avatar"]["w_pivot"])


def test_freezing_is_a_preset_setting(untrained_subject: Path, tmp_path: Path) -> None:
    """``freeze_pretrained_generator=False`` trains a pretrained generator (the paper's NE-Avatar)."""
    weights = tmp_path / "stylegan2_tiny.pt"
    _write_stylegan(weights, "tiny", _n_expr(untrained_subject), {})
    ckpt = train_avatar(untrained_subject, preset="tiny", steps=2, stylegan=weights, preview_every=0,
                        preset_overrides={"freeze_pretrained_generator": False, "pti_g_steps": 0})
    data = read_checkpoint(ckpt)
    assert data["meta"]["stage1_frozen"] == [] and "freeze_pretrained_generator off" in \
        data["meta"]["generator_stage1"]
    # no PTI tuning of G here, so any change of its synthesis layers against the file is stage 1's
    file_sd = torch.load(weights, weights_only=True)["g_ema"]
    gen = _part(data["train"]["avatar"], "generator.")
    assert not all(torch.equal(gen[f"generator.{k}"], v) for k, v in file_sd.items()
                   if f"generator.{k}" in gen)
