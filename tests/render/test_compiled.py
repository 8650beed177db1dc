"""``Renderer(compile=True)``: torch.compile (inductor, the real C++ compiler) renders the same
frames as eager, one graph serves a short last batch, and a compiler that fails falls back to
eager with the reason logged and recorded."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.data.subject import Subject
from backend.model.compiled import InferenceForward
from backend.paths import checkpoint_path
from backend.render import Renderer


def _frames(r: Renderer, subject: Subject, n: int, batch: int) -> np.ndarray:
    return np.stack(list(r.render(subject.expressions[:n], uv_maps=subject.uv_maps[:n], batch=batch)))


def test_compiled_renderer_matches_eager(tiny_avatar_subject: Path, caplog: pytest.LogCaptureFixture) -> None:
    subject = Subject.open(tiny_avatar_subject)
    ckpt = checkpoint_path(tiny_avatar_subject)
    eager = Renderer.from_checkpoint(ckpt, device="cpu")
    compiled = Renderer.from_checkpoint(ckpt, device="cpu", compile=True)
    assert compiled.forward.compiled and compiled.forward.status.startswith("compiling")
    with caplog.at_level(logging.INFO, logger="backend.model.compiled"):
        got = _frames(compiled, subject, 7, batch=4)  # 4 + 3: the last batch is padded to 4
    assert compiled.forward.status == "compiled (inductor)", compiled.forward.status
    assert "renderer compiled" in caplog.text
    want = _frames(eager, subject, 7, batch=4)
    assert got.shape == want.shape == (7, eager.size, eager.size, 3)
    # the same network, fused differently: at most one 8-bit level apart
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert got.std() > 5  # real frames, not a constant


def _broken_backend(gm: torch.fx.GraphModule, example_inputs: list) -> object:
    raise RuntimeError("no C++ compiler found (test backend)")


def test_a_failing_compiler_falls_back_to_eager(tiny_avatar_subject: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    subject = Subject.open(tiny_avatar_subject)
    r = Renderer.from_checkpoint(checkpoint_path(tiny_avatar_subject), device="cpu")
    want = _frames(r, subject, 3, batch=2)
    r.forward = InferenceForward(r.avatar, compile=True, backend=_broken_backend)
    with caplog.at_level(logging.WARNING, logger="backend.model.compiled"):
        got = _frames(r, subject, 3, batch=2)
    assert np.array_equal(got, want)
    assert not r.forward.compiled
    assert r.forward.status.startswith("eager (compile failed:") and "no C++ compiler" in r.forward.status
    assert "rendering eager from now on" in caplog.text
