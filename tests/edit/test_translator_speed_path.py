"""The translator's inference plan (what rendering runs) computes what its reference forward computes.

``StyleTranslator.forward`` runs an ``InferencePlan`` in eval mode without gradients on CPU and
``forward_reference`` otherwise (training). Every configuration a style file can hold must give
the same output both ways, to well under one 8-bit level, and the plan must follow the weights
and the screen when they change.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from backend.style.fit import FitSettings, fit_translator
from backend.style.inference_plan import InferencePlan, bf16_native, bf16_runs
from backend.style.lattice import Lattice
from backend.style.screen import SCREEN_CHANNELS
from backend.style.translator import (
    PHOTOGRAPH,
    RENDER,
    StyleTranslator,
    TranslatorConfig,
    source_plane,
    translator_from_state,
    translator_state,
)
from tests.edit.conftest import N_FRAMES, draw_frame
from tests.edit.unseen_looks import cool_halftone, posterised_ink

SIZE = 64
TOL = 1e-4  # [-1, 1] units: one 8-bit level is 2 / 255 = 7.8e-3
BF16_MEAN, BF16_MAX = 4e-3, 4e-2  # the bfloat16 plan: half an 8-bit level on average, 5 at most

CONFIGS = {
    "cpu preset": TranslatorConfig(width=12, blocks=2, refine=8, low_merge=1),
    "tiny preset": TranslatorConfig(width=8, blocks=1),
    "thorough preset": TranslatorConfig(width=16, blocks=4, refine=8),
    "screen layer only": TranslatorConfig(width=12, blocks=2, refine=8, low_merge=1, screen_input=1),
    "screen phases": TranslatorConfig(width=12, blocks=2, refine=8, low_merge=1,
                                      screen_input=SCREEN_CHANNELS),
    "guides": TranslatorConfig(width=8, blocks=1, guides=1, refine=4),
    "unshuffle": TranslatorConfig(width=8, blocks=2, unshuffle=2, refine=4, screen_input=SCREEN_CHANNELS),
    "unshuffle, low merge, guides": TranslatorConfig(width=8, blocks=1, unshuffle=2, low_merge=1, guides=1),
    "source flag, position grade, gated screen": TranslatorConfig(
        width=12, blocks=2, refine=8, low_merge=1, screen_input=SCREEN_CHANNELS, screen_gates=2,
        screen_head=16, grade=5, source_flag=1),
    "source flag, guides, unshuffle": TranslatorConfig(width=8, blocks=1, unshuffle=2, guides=1,
                                                       source_flag=1),
    "gated screen (cpu preset)": TranslatorConfig(width=12, blocks=2, refine=8, low_merge=1,
                                                  screen_input=SCREEN_CHANNELS, screen_gates=2,
                                                  screen_head=16),
    "gated screen, no head, no refinement": TranslatorConfig(width=8, blocks=1, screen_input=SCREEN_CHANNELS,
                                                             screen_gates=2),
    "gated screen, unshuffle": TranslatorConfig(width=8, blocks=2, unshuffle=2, refine=4,
                                                screen_input=SCREEN_CHANNELS, screen_gates=2, screen_head=8),
    "position grade, gated screen (cpu preset)": TranslatorConfig(
        width=12, blocks=2, refine=8, low_merge=1, screen_input=SCREEN_CHANNELS, screen_gates=2,
        screen_head=16, grade=5),
    "position grade, screen layer, no refinement": TranslatorConfig(
        width=8, blocks=1, screen_input=1, grade=2),
    "cell input (cpu preset, a lattice)": TranslatorConfig(width=12, blocks=2, refine=8, low_merge=1,
                                                            cell_input=1),
    "cell input, screen phases, unshuffle": TranslatorConfig(width=8, blocks=2, unshuffle=2, refine=4,
                                                             screen_input=SCREEN_CHANNELS, cell_input=1),
}
LATTICE = Lattice(size=(SIZE, SIZE), period=(4.5, 5.0), offset=(1.0, 0.5), line=(False, True))
"""The cells every configuration with ``cell_input`` is given (uneven, one axis with grout lines)."""


def _t(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 127.5 - 1


def _frames() -> list[np.ndarray]:
    return [draw_frame(t, SIZE)[0] for t in range(0, N_FRAMES, 4)]


def _random(cfg: TranslatorConfig, seed: int = 0) -> StyleTranslator:
    """A translator with every weight random (the zero-initialised output layers too), scaled so
    that its output stays about in [-1, 1] like a fitted one's."""
    torch.manual_seed(seed)
    net = StyleTranslator(cfg)
    with torch.no_grad():
        for name, p in net.named_parameters():
            fan_in = p[0].numel() if p.ndim > 1 else 1
            p.normal_(0, (0.5 if p.ndim > 1 else 0.05) / fan_in ** 0.5)
            if name.startswith(("out.", "refine.1.")):
                p.mul_(0.5)
    if cfg.cell_input:
        net.set_lattice(LATTICE)
    if cfg.screen_input:
        c = torch.arange(SIZE, dtype=torch.float32)
        yy, xx = torch.meshgrid(c, c, indexing="ij")
        net.set_screen(0.15 * torch.stack([torch.sin(0.9 * xx + 0.5 * yy), torch.sin(0.9 * xx + 0.5 * yy),
                                           torch.cos(1.1 * yy)]))
    return net.eval()


def _inputs(cfg: TranslatorConfig, b: int, h: int, w: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(b, 3, h, w, generator=g) * 2 - 1
    guides = torch.rand(b, cfg.guides, h, w, generator=g) * 2 - 1 if cfg.guides else None
    if cfg.source_flag:  # renders and photographs in one batch, as the fit mixes them
        flags = torch.tensor([RENDER if i % 2 else PHOTOGRAPH for i in range(b)]).view(b, 1, 1, 1)
        plane = flags.expand(b, 1, h, w)
        guides = plane if guides is None else torch.cat([guides, plane], 1)
    return image, guides


def _both(net: StyleTranslator, image, guides=None, screen_map=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(forward's output, forward_reference's output) in eval mode without gradients, checking that
    forward did run a plan."""
    with torch.no_grad():
        assert net.inference_plan(image, guides, screen_map) is not None
        return net(image, guides, screen_map), net.forward_reference(image, guides, screen_map)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_plan_equals_the_reference_forward_on_random_weights(name: str) -> None:
    cfg = CONFIGS[name]
    net = _random(cfg)
    # a render batch, a short last batch, a size that needs padding, one frame
    for b, h, w in ((8, SIZE, SIZE), (3, SIZE, SIZE), (5, 37, 50), (1, SIZE, SIZE)):
        image, guides = _inputs(cfg, b, h, w)
        fast, ref = _both(net, image, guides)
        assert fast.shape == ref.shape == (b, 3, h, w)
        assert fast.is_contiguous(memory_format=torch.channels_last)
        assert ref.abs().max() > 0.5 and (fast - ref).abs().max() < TOL, (b, h, w)
        assert (fast - image).abs().max() > 0.05  # the network did change the image
    if cfg.screen_input:  # per-batch screen channels, as fitting passes them
        image, guides = _inputs(cfg, 6, SIZE, SIZE)
        parts = 3 * (cfg.screen_gates + 1) if cfg.screen_gates else 0  # gated: screen_parts follow
        screen_map = torch.rand(6, cfg.screen_input + parts, SIZE, SIZE) * 2 - 1
        fast, ref = _both(net, image, guides, screen_map)
        assert (fast - ref).abs().max() < TOL
    with torch.inference_mode():  # what evaluation runs under
        image, guides = _inputs(cfg, 8, SIZE, SIZE)
        assert (net(image, guides) - net.forward_reference(image, guides)).abs().max() < TOL


def test_a_render_without_the_source_plane_is_shown_as_a_photograph() -> None:
    """With ``source_flag``, guides without the flag's plane (how the renderer calls) read
    ``PHOTOGRAPH``, on the plan and on the reference forward; ``RENDER`` gives another output."""
    cfg = CONFIGS["source flag, guides, unshuffle"]
    net = _random(cfg)
    image, guides = _inputs(cfg, 4, SIZE, SIZE)
    uv = guides[:, :cfg.guides]
    as_photo = torch.cat([uv, source_plane(image, PHOTOGRAPH)], 1)
    as_render = torch.cat([uv, source_plane(image, RENDER)], 1)
    with torch.no_grad():
        shown = net(image, uv)
        assert (shown - net.forward_reference(image, as_photo)).abs().max() < TOL
        assert (shown - net(image, as_photo)).abs().max() < TOL
        assert (shown - net(image, as_render)).abs().mean() > 10 * TOL  # the plane is read


def _fitted(look, cfg: TranslatorConfig, screen: bool) -> tuple[StyleTranslator, list[np.ndarray]]:
    frames = _frames()
    settings = FitSettings(steps=60, batch=4, patch=32, lr=3e-3, net=cfg, screen=screen)
    res = fit_translator(_t(frames[0])[None], _t(look(frames[0]))[None], settings, seed=2)
    return res.translator, frames[1:]


@pytest.mark.parametrize(("look", "screen", "gates"),
                         [(posterised_ink, False, 0), (cool_halftone, True, 0), (cool_halftone, True, 2)],
                         ids=["posterised_ink", "cool_halftone with its screen",
                              "cool_halftone, gated screen"])
def test_the_plan_equals_the_reference_forward_on_a_fitted_translator(look, screen: bool, gates: int) -> None:
    cfg = TranslatorConfig(width=12, blocks=2, refine=8, low_merge=1, screen_gates=gates,
                           screen_head=16 if gates else 0)
    net, unseen = _fitted(look, cfg, screen)
    assert (net.screen.numel() > 0) == screen and (net.cfg.screen_input > 0) == screen
    image = torch.stack([_t(f) for f in unseen])
    fast, ref = _both(net, image)
    assert (fast - ref).abs().max() < TOL
    # the same after the style file's round trip (what the renderer loads)
    back = translator_from_state(translator_state(net))
    fast_back, _ = _both(back, image)
    assert (fast_back - ref).abs().max() < TOL
    if not bf16_runs():  # no bfloat16 plan exists on this CPU: the renderer keeps the float32 one
        assert not bf16_native()
        return
    with torch.no_grad():  # and the bfloat16 plan the renderer runs where the CPU has it
        err = (InferencePlan(back, image.shape, False, torch.bfloat16)(image) - ref).abs()
    assert err.mean() < BF16_MEAN and err.max() < BF16_MAX


def test_training_and_gradients_run_the_reference_forward() -> None:
    net = _random(CONFIGS["cpu preset"])
    image, _ = _inputs(net.cfg, 2, SIZE, SIZE)
    assert net.inference_plan(image) is None  # gradients on
    out = net(image)
    assert out.grad_fn is not None
    net.train()
    with torch.no_grad():
        assert net.inference_plan(image) is None  # training mode
    net.eval()
    net.fused_inference = False
    with torch.no_grad():
        assert net.inference_plan(image) is None


def test_the_plan_follows_weight_and_screen_changes() -> None:
    """A plan holds packed copies of the weights: an optimiser step, ``load_state_dict``, a new
    screen or a copy of the module must never run on stale ones."""
    cfg = CONFIGS["screen phases"]
    net = _random(cfg)
    image, _ = _inputs(cfg, 4, SIZE, SIZE)
    before, _ = _both(net, image)
    # an optimiser step in training mode, then rendering again
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    (net(image) - 1).abs().mean().backward()
    opt.step()
    net.eval()
    after, ref = _both(net, image)
    assert (after - before).abs().max() > 1e-3 and (after - ref).abs().max() < TOL
    # another translator's weights
    other = _random(cfg, seed=5)
    net.load_state_dict(other.state_dict())
    fast, ref = _both(net, image)
    assert (fast - ref).abs().max() < TOL and (fast - other(image)).abs().max() < TOL
    # another screen, then none
    net.set_screen(torch.roll(net.screen, 3, dims=-1))
    fast, ref = _both(net, image)
    assert (fast - ref).abs().max() < TOL
    net.set_screen(None)
    fast, ref = _both(net, image)
    assert (fast - ref).abs().max() < TOL
    # a copy (the weight average of fitting copies the module) starts from its own weights
    twin = copy.deepcopy(net)
    with torch.no_grad():
        for p in twin.parameters():
            p.mul_(0.9)
    fast, ref = _both(twin, image)
    assert (fast - ref).abs().max() < TOL
    assert (fast - net(image)).abs().max() > 1e-3


def test_the_screen_channels_are_computed_once_per_size() -> None:
    """The screen's input channels (an FFT of the screen) are the same on every frame."""
    net = _random(CONFIGS["screen phases"])
    a = net.screen_map(SIZE, SIZE, net.screen)
    assert net.screen_map(SIZE, SIZE, net.screen) is a
    b = net.screen_map(32, 40, net.screen)
    assert b.shape == (1, SCREEN_CHANNELS, 32, 40) and b is not a
    net.set_screen(net.screen * 0.5)
    assert net.screen_map(SIZE, SIZE, net.screen) is not a


def test_fitting_with_unlabeled_frames_still_trains_the_same_module() -> None:
    """Fitting switches to eval mode without gradients for its pseudo-targets halfway (a plan is
    built there), then trains on: the result still equals its reference forward."""
    frames = _frames()
    real = torch.stack([_t(f) for f in frames[1:4]])
    settings = replace(FitSettings(steps=20, batch=2, patch=32, lr=3e-3, net=CONFIGS["cpu preset"],
                                   screen=False), pseudo_from=0.5, pseudo_share=0.3)
    res = fit_translator(_t(frames[0])[None], _t(posterised_ink(frames[0]))[None], settings, seed=0,
                         unlabeled=(real, real))
    assert res.steps_done == 20
    fast, ref = _both(res.translator, real)
    assert (fast - ref).abs().max() < TOL


@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_bfloat16_plan_stays_within_bfloat16_rounding_of_the_reference(name: str) -> None:
    """The bfloat16 plan (what the renderer runs where the CPU computes bfloat16 natively) is built
    directly here, so its arithmetic is checked on any CPU oneDNN runs bfloat16 on. Where oneDNN
    runs none (AVX2 only), the renderer must keep this translator's float32 plan."""
    cfg = CONFIGS[name]
    net = _random(cfg)
    if not bf16_runs():
        image, guides = _inputs(cfg, 4, SIZE, SIZE)
        net.low_precision = True
        with torch.no_grad():
            assert not bf16_native() and net.inference_plan(image, guides).dtype == torch.float32
        return
    for b, h, w in ((8, SIZE, SIZE), (5, 37, 50)):
        image, guides = _inputs(cfg, b, h, w)
        with torch.no_grad():
            plan = InferencePlan(net, image.shape, False, torch.bfloat16)
            low, ref = plan(image, guides), net.forward_reference(image, guides)
        assert low.dtype == torch.float32 and low.shape == ref.shape == (b, 3, h, w)
        err = (low - ref).abs()
        assert err.mean() < BF16_MEAN and err.max() < BF16_MAX, (b, h, w, err.mean(), err.max())
        assert err.max() > 0  # it did round: this is not the float32 plan


def test_the_renderers_low_precision_choice_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """``low_precision`` gives a bfloat16 plan exactly where ``bf16_native`` says the CPU has it;
    without native bfloat16 (forced off here) the plan stays float32 and equals the reference."""
    import backend.style.inference_plan as plans

    net = _random(CONFIGS["cpu preset"])
    image, _ = _inputs(net.cfg, 4, SIZE, SIZE)
    with torch.no_grad():
        assert net.inference_plan(image).dtype == torch.float32  # off by default: fitting stays float32
        net.low_precision = True
        want = torch.bfloat16 if bf16_native() else torch.float32
        assert net.inference_plan(image).dtype == want
        monkeypatch.setattr(plans, "_BF16", False)
        assert net.inference_plan(image).dtype == torch.float32
        assert (net(image) - net.forward_reference(image)).abs().max() < TOL
