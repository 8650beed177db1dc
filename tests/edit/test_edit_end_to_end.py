"""End to end on the shared stage-1-trained tiny subject: stylize -> edit -> render with the style."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

# builds (once per session) the shared tracked + trained tiny subject
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def test_stylize_edit_render(writable_subject: Path, tmp_path: Path) -> None:
    from backend.cli import main
    from backend.data.subject import Subject
    from backend.paths import checkpoint_path
    from backend.render import Renderer
    from backend.train.style import load_style

    ref = tmp_path / "ref.png"
    assert main(["stylize", str(writable_subject), "--frame", "1", "--look", "oil", "-o", str(ref)]) == 0
    assert (
        main(
            [
                "edit",
                str(writable_subject),
                "--reference",
                str(ref),
                "--frame",
                "1",
                "--steps",
                "4",
                "--name",
                "oil",
                "--method",
                "skips",
            ]
        )
        == 0
    )
    style = writable_subject / "styles" / "oil.style"
    meta = load_style(style).meta
    assert meta["method"] == "skips"
    assert meta["discriminator"] == "stage-1" and meta["checkpoint_preset"] == "tiny"
    metrics = json.loads((writable_subject / "styles" / "oil.metrics.json").read_text())
    assert metrics["temporal"]["unstyled"] > 0

    subject = Subject.open(writable_subject)
    expr = subject.expressions[:3]
    uv = np.stack([subject.uv(i) for i in range(3)])
    plain = np.stack(list(Renderer.from_checkpoint(checkpoint_path(writable_subject)).render(expr, uv)))
    styled = np.stack(
        list(Renderer.from_checkpoint(checkpoint_path(writable_subject), style=style).render(expr, uv))
    )
    assert plain.shape == styled.shape
    assert np.abs(plain.astype(int) - styled.astype(int)).mean() > 0.5  # the style changes the pixels


def test_translator_edit_two_keyframes_restyles_unseen_frames(writable_subject: Path, tmp_path: Path) -> None:
    """The default edit with two keyframes: the style file renders held-out frames nearer the look."""
    from backend.cli import main
    from backend.data.subject import Subject
    from backend.looks import stylize_image
    from backend.paths import checkpoint_path
    from backend.render import Renderer
    from backend.train.style import load_style
    from backend.train.translator_edit import translator_settings

    subject = Subject.open(writable_subject)
    refs = []
    for f in (1, 7):
        refs.append(tmp_path / f"ref{f}.png")
        assert main(["stylize", str(writable_subject), "--frame", str(f), "--look", "cartoon",
                     "-o", str(refs[-1])]) == 0
    argv = ["edit", str(writable_subject), "--reference", str(refs[0]), "--frame", "1",
            "--reference", str(refs[1]), "--frame", "7", "--steps", "150", "--name", "toon"]
    assert main(argv) == 0
    style = load_style(writable_subject / "styles" / "toon.style")
    assert style.meta["method"] == "translator" and style.translator is not None and not style.skips
    assert [k["frame"] for k in style.meta["keyframes"]] == [1, 7]
    assert style.meta["shots_without_keyframe"] == []  # one shot, and it has keyframes
    # the file carries the preset's steady filter, so the renders below go through it
    assert style.translator["steady"] == translator_settings("tiny").steady.to_dict()

    _, held = subject.split()
    ids = [int(i) for i in held if i not in (1, 7)][:6]
    expr = subject.expressions
    uv = np.stack([subject.uv(i) for i in range(subject.n_frames)])
    ckpt = checkpoint_path(writable_subject)
    plain = Renderer.from_checkpoint(ckpt).render(expr, uv, indices=ids)
    styled = Renderer.from_checkpoint(ckpt, style=style.path).render(expr, uv, indices=ids)
    plain, styled = np.stack(list(plain)).astype(float), np.stack(list(styled)).astype(float)
    looked = np.stack([stylize_image(p.astype(np.uint8), "cartoon") for p in plain]).astype(float)
    # the translator runs on every rendered frame, and on frames it never saw its output is nearer the
    # look (applied to the same render) than the unstyled render is (a 2-step tiny avatar renders
    # blobs at 32 px, so the margin is small here; tests/edit/test_translator.py measures the
    # generalisation itself on looks no part of the product makes)
    assert np.abs(styled - plain).mean() > 1.0
    assert np.abs(styled - looked).mean() < np.abs(plain - looked).mean()


def test_shots_without_a_keyframe_are_named() -> None:
    """A subject with cuts: the runs that hold no keyframe (the edit logs them and stores them in
    the style's meta)."""
    from backend.train.translator_edit import shots_without_keyframe

    assert shots_without_keyframe(126, (56,), [0]) == [(56, 126)]
    assert shots_without_keyframe(126, (56,), [3, 85]) == []
    assert shots_without_keyframe(126, (40, 90), [50]) == [(0, 40), (90, 126)]
    assert shots_without_keyframe(30, (), [7]) == []
