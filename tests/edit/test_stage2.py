"""Stage-2 editing on a tiny avatar: what changes, what falls, what is written, what is refused."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.paths import checkpoint_path
from backend.progress import Cancelled
from backend.train.reference import ReferenceError
from backend.train.stage2 import (
    EDIT_SETTINGS,
    FALLBACK_ENCODER,
    edit_avatar,
    prepare_edit,
    render_from_skip_input,
)
from backend.train.style import StyleMismatchError, apply_style, load_style
from backend.train.stylize import stylize_image

from .conftest import draw_frame, make_checkpoint

FAST = replace(EDIT_SETTINGS["tiny"], steps=3, patches=32, clip_patches=8, id_pool=2)


def _reference(frame: int = 3) -> np.ndarray:
    return stylize_image(draw_frame(frame)[0], "cartoon")


def _hashes(module: torch.nn.Module) -> dict[str, str]:
    return {
        k: hashlib.sha256(v.detach().cpu().numpy().tobytes()).hexdigest()
        for k, v in module.state_dict().items()
    }


def test_only_skips_change_and_patchnce_falls(synthetic_edit_subject: Path) -> None:
    job = prepare_edit(synthetic_edit_subject, _reference(), frame=3, settings=replace(FAST, steps=10))
    trainable = {n for n, p in job.avatar.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("skips.") for n in trainable)
    assert job.trainable == sum(p.numel() for p in job.avatar.skips.parameters()) < job.total
    _, uv, win = job.tensors.batch([3], job.device)
    with torch.no_grad():  # the cached skip input renders exactly what the full forward renders
        assert torch.allclose(
            render_from_skip_input(job.avatar, job.skip_ref), job.avatar(uv, win).image, atol=1e-5
        )
    before = _hashes(job.avatar)
    nce = [h["nce"] for h in job.run(seed=0).history]
    after = _hashes(job.avatar)
    changed = {k for k in before if before[k] != after[k]}
    assert changed, "the edit changed nothing"
    assert all(k.startswith("skips.") for k in changed), sorted(
        k for k in changed if not k.startswith("skips.")
    )
    assert np.mean(nce[-3:]) < 0.8 * np.mean(nce[:3]), nce


def test_edit_writes_style_metrics_and_sheet(edit_subject: Path, caplog: pytest.LogCaptureFixture) -> None:
    seen = []
    ref = edit_subject / "ref.png"
    import cv2

    cv2.imwrite(str(ref), cv2.cvtColor(cv2.resize(_reference(), (48, 40)), cv2.COLOR_RGB2BGR))
    with caplog.at_level(logging.INFO):
        path = edit_avatar(edit_subject, ref, frame=3, name="toon", settings=FAST, method="skips",
                           progress=seen.append)
    assert "resized to 32x32" in caplog.text and "not square" in caplog.text
    assert "stage 2 trains" in caplog.text and "(skips)" in caplog.text
    assert FALLBACK_ENCODER in caplog.text
    assert path == edit_subject / "styles" / "toon.style"
    assert [u.step for u in seen] == [1, 2, 3] and seen[-1].stage == "edit"
    style = load_style(path)
    m = style.meta
    assert m["subject_id"] == edit_subject.name and m["encoder"] == FALLBACK_ENCODER
    assert m["reference_sha256"] == hashlib.sha256(ref.read_bytes()).hexdigest()
    assert m["steps"] == 3 and m["discriminator"] == "stage-1" and m["reference_resized"]
    metrics = json.loads(path.with_name("toon.metrics.json").read_text())
    for key in ("style_distance", "identity", "temporal", "loss_curve"):
        assert key in metrics
    assert metrics["clip_direction"] is None
    assert 0 <= metrics["style_distance"]["histogram_after"] <= 1
    assert len(metrics["loss_curve"]["nce"]) == 3
    assert path.with_name("toon.contact.png").stat().st_size > 0
    # the style applies to a fresh copy of the base avatar and reproduces the edited skips
    from backend.train.checkpoint import checkpoint_sha256, load_avatar

    avatar, meta = load_avatar(checkpoint_path(edit_subject))
    apply_style(
        avatar,
        style,
        subject_id=meta["subject_id"],
        checkpoint_sha256=checkpoint_sha256(checkpoint_path(edit_subject)),
    )
    for k, v in style.skips.items():
        assert torch.equal(avatar.skips.state_dict()[k], v)


def test_clip_encoder_used_when_given(edit_subject: Path, tiny_clip_checkpoint: tuple[Path, Path]) -> None:
    cfg, ckpt = tiny_clip_checkpoint
    path = edit_avatar(
        edit_subject, _reference(), frame=3, clip_checkpoint=ckpt, clip_arch=str(cfg), settings=FAST,
        method="skips",
    )
    meta = load_style(path).meta
    assert meta["encoder_kind"] == "clip" and meta["encoder"].startswith("clip:EmoTestTinyCLIP")
    assert meta["clip"]["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    metrics = json.loads(path.with_name("style.metrics.json").read_text())
    assert -1 <= metrics["clip_direction"]["reference_frame"] <= 1


def test_bad_inputs(edit_subject: Path, tmp_path: Path, tiny_clip_checkpoint: tuple[Path, Path]) -> None:
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    with pytest.raises(ReferenceError, match="not an image"):
        edit_avatar(edit_subject, text, settings=FAST, method="skips")
    with pytest.raises(FileNotFoundError, match="reference image"):
        edit_avatar(edit_subject, tmp_path / "missing.png", settings=FAST, method="skips")
    with pytest.raises(ReferenceError, match="RGB"):
        edit_avatar(edit_subject, np.zeros((32, 32, 2), np.uint8), settings=FAST, method="skips")
    with pytest.raises(IndexError, match="out of range"):
        edit_avatar(edit_subject, _reference(), frame=500, settings=FAST, method="skips")
    from backend.train.clip_encoder import ClipLoadError

    _cfg, ckpt = tiny_clip_checkpoint
    with pytest.raises(ClipLoadError, match="unknown CLIP architecture 'NotAClip'"):
        edit_avatar(edit_subject, _reference(), clip_checkpoint=ckpt, clip_arch="NotAClip", settings=FAST,
                    method="skips")
    assert not (edit_subject / "styles").exists()  # nothing written by failed edits


def test_style_refused_on_other_subject_or_checkpoint(edit_subject: Path, tmp_path: Path) -> None:
    from backend.train.checkpoint import checkpoint_sha256, load_avatar

    path = edit_avatar(edit_subject, _reference(), frame=3, settings=FAST, method="skips",
                       write_metrics=False)
    style = load_style(path)
    ckpt = checkpoint_path(edit_subject)
    avatar, meta = load_avatar(ckpt)
    with pytest.raises(StyleMismatchError, match="belongs to subject"):
        apply_style(avatar, style, subject_id="someone-else", checkpoint_sha256=checkpoint_sha256(ckpt))
    make_checkpoint(edit_subject, seed=1)  # retrain: a new base checkpoint
    with pytest.raises(StyleMismatchError, match="base checkpoint"):
        apply_style(avatar, style, subject_id=meta["subject_id"], checkpoint_sha256=checkpoint_sha256(ckpt))


def test_cancel_writes_nothing(edit_subject: Path) -> None:
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(Cancelled):
        edit_avatar(edit_subject, _reference(), settings=FAST, method="skips", should_stop=stop)
    assert not (edit_subject / "styles").exists()


def test_fresh_discriminator_when_checkpoint_has_none(
    edit_subject: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_checkpoint(edit_subject, with_disc=False)
    with caplog.at_level(logging.WARNING):
        job = prepare_edit(edit_subject, _reference(), settings=FAST)
    assert job.disc_source == "fresh" and "fresh one" in caplog.text


def test_edit_cli(edit_subject: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import cv2

    from backend.cli import main

    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), cv2.cvtColor(_reference(), cv2.COLOR_RGB2BGR))
    out = tmp_path / "out" / "ink"
    assert (
        main(
            [
                "edit",
                str(edit_subject),
                "--reference",
                str(ref),
                "--frame",
                "3",
                "--steps",
                "2",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert (tmp_path / "out" / "ink.style").is_file()
    assert load_style(tmp_path / "out" / "ink.style").meta["name"] == "ink"
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\x00\x01garbage")
    assert main(["edit", str(edit_subject), "--reference", str(bad), "-o", str(out)]) == 2
    assert "not an image" in capsys.readouterr().err
