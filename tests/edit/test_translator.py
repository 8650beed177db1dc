"""The style translator, its fitting, its place in style files and the translator edit's input checks."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from backend.style.fit import FitSettings, fit_translator
from backend.style.translator import (
    StyleTranslator,
    TranslatorConfig,
    split_conv,
    translator_from_state,
    translator_state,
)
from tests.edit.conftest import N_FRAMES, SIZE, draw_frame
from tests.edit.unseen_looks import cool_halftone, emboss_grey, neon_edges, posterised_ink


def _t(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1).float()[None] / 127.5 - 1


def _u8(t: torch.Tensor) -> np.ndarray:
    return ((t[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def test_untrained_translator_is_identity_at_any_size() -> None:
    net = StyleTranslator(TranslatorConfig(width=8, blocks=1, guides=1))
    x = torch.rand(2, 3, 37, 50) * 2 - 1
    out = net(x, torch.zeros(2, 1, 37, 50))
    assert out.shape == x.shape and torch.equal(out, x)


def test_state_round_trip_and_bad_weights() -> None:
    net = StyleTranslator(TranslatorConfig(width=8, blocks=1))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.1)
    back = translator_from_state(translator_state(net))
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(back(x), net(x))
    blob = translator_state(net)
    blob["config"]["width"] = 12
    with pytest.raises(ValueError, match="do not fit"):
        translator_from_state(blob)


def test_split_conv_equals_the_conv_of_the_concatenation() -> None:
    conv = torch.nn.Conv2d(7, 5, 3, 1, 1).to(memory_format=torch.channels_last)
    a, b = torch.randn(2, 3, 9, 11), torch.randn(2, 4, 9, 11)
    with torch.no_grad():
        assert torch.allclose(split_conv([a, b], conv), conv(torch.cat([a, b], 1)), atol=1e-5)


def test_low_merge_keeps_the_weights_layout_and_round_trips() -> None:
    """``low_merge`` changes where the decoder convolves, not which tensors a style file holds; a
    config written before the field existed reads as ``low_merge=0``."""
    plain = StyleTranslator(TranslatorConfig(width=8, blocks=1, refine=4))
    low = StyleTranslator(TranslatorConfig(width=8, blocks=1, refine=4, low_merge=1))
    shapes = [{k: v.shape for k, v in net.state_dict().items()} for net in (plain, low)]
    assert shapes[0] == shapes[1]
    with torch.no_grad():
        for p in low.parameters():
            p.normal_(0, 0.1)
    blob = translator_state(low)
    back = translator_from_state(blob)
    x = torch.rand(2, 3, 20, 28) * 2 - 1
    assert back.cfg.low_merge == 1 and torch.equal(back(x), low(x))
    del blob["config"]["low_merge"]
    assert translator_from_state(blob).cfg.low_merge == 0


@pytest.mark.parametrize("look", [posterised_ink, cool_halftone], ids=["posterised_ink", "cool_halftone"])
def test_fit_on_one_frame_generalises_to_unseen_frames(look) -> None:
    """A look no part of the product makes, learned from frame 0 only, scored on frames it never saw."""
    size = 64
    frames = [draw_frame(t, size)[0] for t in range(0, N_FRAMES, 4)]
    train, unseen = frames[0], frames[1:]
    res = fit_translator(_t(train), _t(look(train)),
                         FitSettings(steps=250, batch=4, patch=32, lr=3e-3,
                                     net=TranslatorConfig(width=8, blocks=1)), seed=1)
    assert res.steps_done == 250 and res.history[-1]["total"] < res.history[0]["total"]
    err_styled, err_plain = [], []
    with torch.no_grad():
        for f in unseen:
            gt = look(f).astype(float)
            err_styled.append(np.abs(_u8(res.translator(_t(f))).astype(float) - gt).mean())
            err_plain.append(np.abs(f.astype(float) - gt).mean())
    assert np.mean(err_styled) < 0.5 * np.mean(err_plain)


def test_fit_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="same P"):
        fit_translator(torch.zeros(2, 3, 8, 8), torch.zeros(1, 3, 8, 8), FitSettings(steps=1))
    with pytest.raises(ValueError, match="channels"):
        fit_translator(torch.zeros(1, 4, 8, 8), torch.zeros(1, 3, 8, 8), FitSettings(steps=1))


def test_version_1_style_files_still_load(tmp_path: Path) -> None:
    """A skip-only file of the first format (the paper's edit) reads as a style without a translator."""
    from backend.train.style import load_style

    path = tmp_path / "old.style"
    torch.save({"format": "emo-avatar-style", "version": 1,
                "meta_json": '{"subject_id": "s", "checkpoint_sha256": "ab"}',
                "skips": {"w": torch.zeros(2)}}, path)
    style = load_style(path)
    assert style.translator is None and list(style.skips) == ["w"]


def _write_png(path: Path, image: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), image)
    return path


def _reference(subject: Path, frame: int, size: int = SIZE) -> np.ndarray:
    from backend.data.subject import Subject

    ref = cool_halftone(Subject.open(subject).frame(frame))
    return ref if size == SIZE else cv2.resize(ref, (size, size), interpolation=cv2.INTER_CUBIC)


def test_translator_edit_writes_a_style_that_renders(edit_subject: Path) -> None:
    from backend.paths import checkpoint_path
    from backend.render import Renderer
    from backend.train.stage2 import edit_avatar
    from backend.train.style import load_style

    path = edit_avatar(edit_subject, _reference(edit_subject, 3), frame=3, steps=20, name="ink")
    style = load_style(path)
    assert style.meta["method"] == "translator" and style.meta["keyframes"][0]["frame"] == 3
    assert path.with_name("ink.contact.png").is_file() and path.with_name("ink.metrics.json").is_file()
    r = Renderer.from_checkpoint(checkpoint_path(edit_subject), style=path)
    assert r.translator is not None
    from backend.data.subject import Subject

    s = Subject.open(edit_subject)
    frames = np.stack(list(r.render(s.expressions[:2], np.stack([s.uv(0), s.uv(1)]))))
    assert frames.shape == (2, SIZE, SIZE, 3) and frames.dtype == np.uint8


def test_grey_rgba_and_resized_references_are_accepted(edit_subject: Path, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    from backend.train.keyframes import Keyframe, load_keyframes

    ref = cv2.cvtColor(_reference(edit_subject, 2, size=2 * SIZE), cv2.COLOR_RGB2BGR)
    grey = _write_png(tmp_path / "grey.png", cv2.cvtColor(ref, cv2.COLOR_BGR2GRAY))
    rgba = cv2.cvtColor(ref, cv2.COLOR_BGR2BGRA)
    rgba[:4, :, 3] = 0
    rgba_path = _write_png(tmp_path / "rgba.png", rgba)
    with caplog.at_level(logging.WARNING):
        loaded = load_keyframes([Keyframe(grey, 2), Keyframe(rgba_path, 5)], SIZE, N_FRAMES)
    assert all(k.reference.rgb.shape == (SIZE, SIZE, 3) for k in loaded)
    assert loaded[0].reference.resized
    text = caplog.text
    assert "resized to 32x32" in text and "transparent" in text
    assert (loaded[1].reference.rgb[0] > 200).all()  # transparent rows composited over white


@pytest.mark.parametrize(
    ("frames", "match"),
    [([0, 0], "two references for frame 0"), ([0, N_FRAMES], "out of range"), ([0, 1, 2, 3, 4], "1 to 4")],
)
def test_keyframe_ids_are_checked(edit_subject: Path, tmp_path: Path, frames: list[int], match: str) -> None:
    from backend.train.keyframes import Keyframe, load_keyframes

    ref = _write_png(tmp_path / "r.png", np.zeros((SIZE, SIZE, 3), np.uint8))
    with pytest.raises((ValueError, IndexError), match=match):
        load_keyframes([Keyframe(ref, f) for f in frames], SIZE, N_FRAMES)


def test_pairing_needs_one_frame_per_reference() -> None:
    from backend.train.keyframes import pair_keyframes

    assert pair_keyframes([Path("a.png")], [])[0].frame == 0
    with pytest.raises(ValueError, match="one --frame per"):
        pair_keyframes([Path("a.png"), Path("b.png")], [3])


def test_other_aspect_ratio_is_refused(edit_subject: Path, tmp_path: Path) -> None:
    from backend.train.keyframes import Keyframe, load_keyframes
    from backend.train.reference import ReferenceError

    wide = _write_png(tmp_path / "wide.png", np.zeros((SIZE, SIZE + 4, 3), np.uint8))
    with pytest.raises(ReferenceError, match="aspect"):
        load_keyframes([Keyframe(wide, 0)], SIZE, N_FRAMES)


@pytest.mark.parametrize("look", ["cartoon", "posterised_ink"])
def test_misaligned_references_name_the_shift_or_the_likely_frame(look: str) -> None:
    from backend.looks import stylize_image
    from backend.train.alignment import AlignmentError, check_alignment
    from backend.train.translator_edit import face_box

    drawn = [draw_frame(t, 128) for t in range(N_FRAMES)]
    frames = np.stack([d[0] for d in drawn])
    box = face_box(np.stack([d[1][..., 2] for d in drawn]))
    fn = posterised_ink if look == "posterised_ink" else (lambda rgb: stylize_image(rgb, look))
    assert check_alignment(fn(frames[3]), frames, 3, box=box).best_frame == 3
    with pytest.raises(AlignmentError, match="shifted by"):
        check_alignment(np.roll(fn(frames[3]), (8, 8), axis=(0, 1)), frames, 3, box=box)
    with pytest.raises(AlignmentError, match="matches frame 12 best"):
        check_alignment(fn(frames[12]), frames, 3, box=box)


@pytest.mark.parametrize("look", [neon_edges, emboss_grey], ids=["neon_edges", "emboss_grey"])
def test_looks_that_redraw_edges_pass_the_alignment_check_on_their_own_frame(look) -> None:
    """A glow or a relief moves the gradient off the photograph's edge (the gradient-magnitude
    match alone named another frame for both on the demo subject); the orientation field does not."""
    from backend.train.alignment import AlignmentError, check_alignment
    from backend.train.translator_edit import face_box

    drawn = [draw_frame(t, 128) for t in range(N_FRAMES)]
    frames = np.stack([d[0] for d in drawn])
    box = face_box(np.stack([d[1][..., 2] for d in drawn]))
    for t in (0, 3, 12):
        a = check_alignment(look(frames[t]), frames, t, box=box)
        assert a.ncc_best - a.ncc_frame < 0.05, (t, a)
    with pytest.raises(AlignmentError, match="shifted by"):
        check_alignment(np.roll(look(frames[3]), (8, 8), axis=(0, 1)), frames, 3, box=box)


def test_edit_refuses_a_shifted_reference(edit_subject: Path) -> None:
    from backend.train.alignment import AlignmentError
    from backend.train.stage2 import edit_avatar

    with pytest.raises(AlignmentError, match="shifted by"):
        edit_avatar(edit_subject, np.roll(_reference(edit_subject, 3), (3, 3), axis=(0, 1)), frame=3, steps=1,
                    write_metrics=False)


def test_cancelled_translator_edit_writes_no_style(edit_subject: Path) -> None:
    from backend.paths import style_path
    from backend.progress import Cancelled
    from backend.train.stage2 import edit_avatar

    steps = []

    def progress(update) -> None:
        steps.append(update.step)

    with pytest.raises(Cancelled):
        edit_avatar(edit_subject, _reference(edit_subject, 3), frame=3, steps=50, name="stop",
                    progress=progress, should_stop=lambda: len(steps) >= 10)
    assert steps[-1] == 10
    assert not style_path(edit_subject, "stop").exists()
    assert not list(style_path(edit_subject, "stop").parent.glob("*.tmp*"))

