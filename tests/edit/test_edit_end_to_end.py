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
            ]
        )
        == 0
    )
    style = writable_subject / "styles" / "oil.style"
    meta = load_style(style).meta
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
