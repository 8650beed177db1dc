"""``Renderer(compile=True)``: torch.compile (inductor, the real C++ compiler) renders the same
frames as eager, one graph serves a short last batch, and a compiler that fails falls back to
eager with the reason logged and recorded."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
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
    assert "compiling the renderer" in caplog.text and "renderer compiled" in caplog.text
    want = _frames(eager, subject, 7, batch=4)
    assert got.shape == want.shape == (7, eager.size, eager.size, 3)
    # the same network, fused differently: at most one 8-bit level apart
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert got.std() > 5  # real frames, not a constant


def test_one_graph_serves_a_render_with_a_short_last_batch(tiny_avatar_subject: Path) -> None:
    """The renderer's batches arrive as permuted views and the padded last one as a new tensor:
    without one input layout the graph compiled again for the last batch (40 s at 128 px)."""
    subject = Subject.open(tiny_avatar_subject)
    r = Renderer.from_checkpoint(checkpoint_path(tiny_avatar_subject), device="cpu")
    graphs: list[int] = []

    def counting_backend(gm: torch.fx.GraphModule, example_inputs: list) -> object:
        graphs.append(len(gm.graph.nodes))
        return gm.forward  # run the captured graph as is: counts compiles without inductor's cost

    r.forward = InferenceForward(r.avatar, compile=True, backend=counting_backend)
    got = _frames(r, subject, 6, batch=4)  # 4 + 2 padded with 2 copies (a stride-0 expand)
    assert r.forward.status == "compiled (counting_backend)"
    assert len(graphs) == 1, f"{len(graphs)} graphs compiled for one render"
    r.forward = InferenceForward(r.avatar)
    assert np.abs(got.astype(int) - _frames(r, subject, 6, batch=4).astype(int)).max() <= 1


def _broken_backend(gm: torch.fx.GraphModule, example_inputs: list) -> object:
    raise RuntimeError("no C++ compiler found (test backend)")


def test_a_styled_render_compiles_the_avatar_only_and_runs_the_translators_plan(
        tiny_avatar_subject: Path) -> None:
    """The translator runs after the compiled graph, through its own fused plan (cheaper than
    inductor's graph of it), and the styled frames are the eager styled render's."""
    from backend.style.translator import StyleTranslator, TranslatorConfig

    subject = Subject.open(tiny_avatar_subject)
    r = Renderer.from_checkpoint(checkpoint_path(tiny_avatar_subject), device="cpu")
    torch.manual_seed(0)
    translator = StyleTranslator(TranslatorConfig(width=8, blocks=1, refine=4)).eval()
    with torch.no_grad():
        for w in translator.parameters():
            w.normal_(0, 0.1)
    graphs: list[int] = []

    def counting_backend(gm: torch.fx.GraphModule, example_inputs: list) -> object:
        graphs.append(len(gm.graph.nodes))
        return gm.forward

    r.forward = InferenceForward(r.avatar, compile=True, backend=counting_backend)
    plain = _frames(r, subject, 4, batch=4)
    torch._dynamo.reset()  # capture again rather than reuse the cached graph
    r.forward = InferenceForward(r.avatar, compile=True, backend=counting_backend, post=translator)
    styled = _frames(r, subject, 4, batch=4)
    assert r.forward.status == "compiled (counting_backend)"
    assert len(graphs) == 2 and graphs[0] == graphs[1]  # the same graph: no translator inside it
    assert translator._cache.plans  # its plan ran
    r.forward = InferenceForward(r.avatar, post=translator)
    assert np.abs(styled.astype(int) - _frames(r, subject, 4, batch=4).astype(int)).max() <= 1
    assert np.abs(styled.astype(int) - plain.astype(int)).mean() > 2  # the style did change the frames


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


def test_render_cli_compile_writes_the_eager_frames(tiny_avatar_subject: Path, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    from backend.cli import main as cli_main
    from protocol.curves import Curves, write_curves

    subject = Subject.open(tiny_avatar_subject)
    cfile = tmp_path / "shot.json"
    write_curves(Curves(list(subject.expression_names), 25.0, 1, subject.expressions[:6]), cfile)
    args = ["render", str(tiny_avatar_subject), "--curves", str(cfile), "--batch", "4"]
    with caplog.at_level(logging.INFO):
        assert cli_main([*args, "-o", str(tmp_path / "compiled"), "--compile"]) == 0
    assert "compiled (inductor)" in caplog.text  # the summary line says which path ran
    assert cli_main([*args, "-o", str(tmp_path / "eager")]) == 0
    for i in range(1, 7):
        a, b = (cv2.imread(str(tmp_path / d / f"{i:06d}.png")).astype(int) for d in ("compiled", "eager"))
        assert np.abs(a - b).max() <= 1
