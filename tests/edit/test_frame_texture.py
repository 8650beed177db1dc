"""Frame-locked texture without a period (paper grain): the evidence that tells it from a fit's
errors and from the source's own noise, and a real fit that finds it, keeps it where it is in the
frame, and finds none in a look without one."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from backend.imaging.convert import frame_to_tensor
from backend.style.fit import FitSettings, fit_translator
from backend.style.frame_texture import (
    FLAT_QUANTILE,
    LAYER_CLIP,
    LAYER_KEEP,
    TEXTURE_MAX_RMS,
    busyness,
    flatness,
    frame_texture,
    high_pass,
    still_pixels,
    texture_evidence,
)
from backend.style.translator import TranslatorConfig
from tests.edit.conftest import draw_frame


def _grain(size: int, seed: int = 7) -> torch.Tensor:
    """(1, 1, size, size) a fixed paper grain, unit standard deviation."""
    g = torch.randn(1, 1, size, size, generator=torch.Generator().manual_seed(seed))
    g = F.avg_pool2d(F.pad(g, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
    return g / g.std()


def _frame(t: int, size: int = 64) -> torch.Tensor:
    """(1, 3, size, size) in [-1, 1]: frame ``t`` of the drawn test clip."""
    return frame_to_tensor(draw_frame(t, size)[0], size)[None]


def _source(size: int = 64) -> torch.Tensor:
    return _frame(0, size)


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def test_a_grain_independent_of_the_source_is_a_texture() -> None:
    src = _source()
    ev = texture_evidence(0.08 * _grain(64).expand(1, 3, -1, -1), src)
    assert ev.is_texture, ev
    assert ev.flat_share > 0.7 and abs(ev.source_corr) < 0.1


def test_errors_on_the_sources_edges_are_not_a_texture() -> None:
    src = _source()
    edges = high_pass(src).abs().mean(1, keepdim=True)
    ev = texture_evidence((0.5 * edges * _grain(64)).expand(1, 3, -1, -1), src)
    assert ev.flat_rms < ev.busy_rms
    assert not ev.is_texture, ev


def test_the_sources_own_noise_amplified_is_not_a_texture() -> None:
    """A colour-dodge sketch lifts a video's sensor noise: the residual follows the source's
    fine detail, which changes from frame to frame."""
    noise = 0.03 * _grain(64, seed=3)
    src = _source() + noise
    ev = texture_evidence((4 * noise).expand(1, 3, -1, -1), src)
    assert ev.source_corr > 0.5
    assert not ev.is_texture, ev


def test_faint_residuals_are_not_a_texture() -> None:
    ev = texture_evidence(0.002 * _grain(64).expand(1, 3, -1, -1), _source())
    assert ev.flat_rms < 0.02 and not ev.is_texture


def test_strong_marks_in_flat_regions_are_drawn_not_printed() -> None:
    """Cell borders of a superpixel mosaic drawn at full contrast over flat regions: the look's
    own drawing (``drawn``), which a layer may hold only where the video holds still."""
    ev = texture_evidence(0.5 * _grain(64).expand(1, 3, -1, -1), _source())
    assert ev.flat_rms > TEXTURE_MAX_RMS and abs(ev.source_corr) < 0.1
    assert ev.is_texture and ev.drawn, ev
    faint = texture_evidence(0.08 * _grain(64).expand(1, 3, -1, -1), _source())
    assert faint.is_texture and not faint.drawn, faint


def test_still_pixels_are_where_the_video_holds_still() -> None:
    frames = torch.cat([_frame(t) for t in range(0, 40, 4)])
    moving = (frames - frames.median(0, keepdim=True).values).abs().amax((0, 1)) > 0.2
    still = still_pixels(frames)
    assert still.shape == (1, 64, 64)
    assert float(still[0][moving].max()) == 0.0  # nothing that moves is kept
    assert float((still == 1).float().mean()) > 0.3  # the background is
    with pytest.raises(ValueError, match="at least"):
        still_pixels(frames[:3])


def test_a_drawn_layer_is_kept_only_where_the_video_holds_still() -> None:
    src = _source()
    residual = 0.5 * _grain(64).expand(1, 3, -1, -1)
    still = torch.zeros(1, 64, 64)
    still[:, :, :32] = 1.0
    layer = frame_texture(residual, src, still)
    assert float(layer[:, :, 32:].abs().max()) == 0.0
    assert float(layer[:, :, :32].abs().mean()) > 0.05


def test_the_layer_keeps_flat_pixels_and_leaves_out_the_keyframes_busy_ones() -> None:
    """In a keyframe's eyes, mouth and outlines the residual is the fit's error on that content;
    copied to other frames it would be a ghost of the keyframe's features."""
    src = _source()
    residual = 0.08 * _grain(64).expand(1, 3, -1, -1)
    residual[..., 30:34, 30:34] = 1.0  # a fit's error on an edge, far beyond the grain
    layer = frame_texture(residual, src)
    w = flatness(src)[0, 0]
    keep, drop = w == 1, w == 0
    expected = high_pass(residual)[0]
    busy = busyness(src)[0, 0]
    limit = LAYER_CLIP * expected.mean(0)[busy <= busy.quantile(FLAT_QUANTILE)].square().mean().sqrt()
    assert torch.allclose(layer[:, keep], expected.clamp(-limit, limit)[:, keep], atol=1e-6)
    assert layer.abs().max() <= limit + 1e-6 < expected.abs().max()
    assert layer[:, drop].abs().max() == 0
    lo, hi = LAYER_KEEP
    assert float(keep.float().mean()) >= lo and abs(float(drop.float().mean()) - (1 - hi)) < 0.05


def _paper_look(image: torch.Tensor, grain: torch.Tensor) -> torch.Tensor:
    """Grey tone on a multiplied paper grain, (N, 3, H, W) in [-1, 1] both ways."""
    tone = 0.2 + 0.7 * (image.mean(1, keepdim=True) + 1) / 2
    return (tone * (1 + 0.12 * grain) * 2 - 1).expand(-1, 3, -1, -1)


SETTINGS = FitSettings(steps=300, batch=4, patch=32, lr=3e-3, texture_steps=150,
                       net=TranslatorConfig(width=8, blocks=1))


def test_the_fit_finds_the_paper_and_keeps_it_fixed_in_the_frame() -> None:
    size = 64
    grain = _grain(size)
    key = _frame(0, size)
    res = fit_translator(key, _paper_look(key, grain), SETTINGS, seed=0)
    assert res.texture is not None and res.texture.is_texture, res.texture
    layer = res.translator.screen
    assert layer.shape == (3, size, size)
    flat = flatness(key)[0, 0] == 1
    assert _corr(layer.mean(0)[flat], high_pass(grain)[0, 0][flat]) > 0.8
    # another frame: the content moved, the paper did not
    other = _frame(5, size)
    with torch.no_grad():
        out = res.translator(other)
    truth = _paper_look(other, grain)
    assert _corr(high_pass(out).mean(1), high_pass(truth).mean(1)) > 0.6
    without = fit_translator(key, _paper_look(key, grain), replace(SETTINGS, texture_steps=0), seed=0)
    assert without.texture is None
    with torch.no_grad():
        err_with = (out - truth).abs().mean()
        err_without = (without.translator(other) - truth).abs().mean()
    assert err_with < 0.8 * err_without


@pytest.mark.parametrize("learned", [False, True])
def test_a_look_without_paper_gets_no_texture_and_the_same_fit_as_before(learned: bool) -> None:
    size = 64
    key = _frame(0, size)
    target = (key.mean(1, keepdim=True) * 0.8).expand(-1, 3, -1, -1)
    res = fit_translator(key, target, replace(SETTINGS, learned_texture=learned), seed=0)
    assert res.texture is not None and not res.texture.is_texture
    assert res.translator.screen.numel() == 0
    plain = fit_translator(key, target, replace(SETTINGS, texture_steps=0), seed=0)
    with torch.no_grad():
        assert torch.equal(res.translator(key), plain.translator(key))

    assert plain.texture is None  # texture_steps 0: not looked for


def test_without_paper_the_fit_goes_on_from_the_first_fit() -> None:
    """``texture_warm_start``: the first fit is the whole fit's first ``texture_steps`` steps (its
    losses, step for step) and the rest starts from its weights, not from new ones; progress counts
    the ``steps`` once."""
    key = _frame(0, 64)
    target = (key.mean(1, keepdim=True) * 0.8).expand(-1, 3, -1, -1)
    settings = replace(SETTINGS, steps=200, texture_steps=100, texture_warm_start=True)
    updates = []
    warm = fit_translator(key, target, settings, seed=0, progress=updates.append)
    assert warm.texture is not None and not warm.texture.is_texture
    k = settings.texture_steps
    first = fit_translator(key, target, replace(settings, steps=k, texture_steps=0, screen=False,
                                                lattice=False), seed=0)
    assert warm.steps_done == len(warm.history) == settings.steps
    assert warm.history[:k] == first.history
    # new weights start where the first fit's step 1 did
    assert warm.history[k]["total"] < 0.5 * warm.history[0]["total"]
    assert [u.step for u in updates] == list(range(1, settings.steps + 1))
    assert {u.total for u in updates} == {settings.steps}
    short = fit_translator(key, target, replace(settings, steps=60), seed=0)
    assert short.steps_done == len(short.history) == 60  # the first fit no longer than the whole


@pytest.mark.parametrize("learned", [False, True])
def test_with_paper_the_progress_counts_every_step_once(learned: bool) -> None:
    """A learned layer goes on from the first fit with the network (``steps`` in all); a fixed
    layer is taken out of the targets and the network starts again (``steps + texture_steps``)."""
    size = 64
    key = _frame(0, size)
    updates = []
    settings = replace(SETTINGS, texture_warm_start=True, learned_texture=learned)
    res = fit_translator(key, _paper_look(key, _grain(size)), settings, seed=0, progress=updates.append)
    assert res.texture is not None and res.texture.is_texture
    assert res.steps_done == len(res.history) == SETTINGS.steps  # the steps of the translator returned
    total = SETTINGS.steps if learned else SETTINGS.steps + SETTINGS.texture_steps
    assert [u.step for u in updates] == list(range(1, total + 1))


def test_the_learned_layer_reads_at_each_patch_pixels_frame_position() -> None:
    """A patch cut, warped and flipped like the fit's patches reads the layer where its pixels
    were in the frame, times the layer's weight there."""
    from backend.style.fit import sample_patches
    from backend.style.learned_texture import LAYER_SIGMA, TextureLayer, aux_channels

    size = 32
    layer = TextureLayer(0.1 * _grain(size).expand(1, 3, -1, -1)[0])
    field = layer.field().detach()
    assert torch.allclose(field, high_pass(layer.raw.detach()[None], LAYER_SIGMA)[0], atol=1e-6)
    weight = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(3))
    frame = torch.cat([field[None], weight], 1)  # what a patch must read, carried as targets
    gen = torch.Generator().manual_seed(0)
    _, xt = sample_patches(frame, torch.cat([frame, aux_channels(weight)], 1), 6, 16, gen)
    with torch.no_grad():
        read = layer.on_patches(xt[:, 4:])
    assert torch.allclose(read, xt[:, :3] * xt[:, 3:4], atol=1e-5)  # crops and flips: exact


def test_the_learned_layer_finds_more_of_the_paper_than_the_first_fits_estimate() -> None:
    """Learned with the network (from half-way), the layer follows the grain more closely than
    the residual of the short first fit, and another frame's output is closer to the look."""
    size = 64
    grain = _grain(size)
    key, other = _frame(0, size), _frame(5, size)
    fixed = fit_translator(key, _paper_look(key, grain), SETTINGS, seed=0)
    learned = fit_translator(key, _paper_look(key, grain),
                             replace(SETTINGS, learned_texture=True), seed=0)
    assert learned.texture == fixed.texture and learned.texture.is_texture  # the same decision
    flat = flatness(key)[0, 0] == 1
    true_layer = (_paper_look(key, grain) - _paper_look(key, torch.zeros_like(grain))).mean(1)[0]
    err = {name: float((r.translator.screen.mean(0) - true_layer)[flat].square().mean())
           for name, r in (("fixed", fixed), ("learned", learned))}
    assert err["learned"] < 0.8 * err["fixed"], err
    truth = _paper_look(other, grain)
    with torch.no_grad():
        out = {name: float((r.translator(other) - truth).abs().mean())
               for name, r in (("fixed", fixed), ("learned", learned))}
    assert out["learned"] < out["fixed"], out


def test_the_learned_layer_with_two_keyframes_and_unlabeled_frames() -> None:
    """Every labeled pair reads the layer at its own flatness, unlabeled pairs read none; the
    stored layer is 0 where every keyframe is busy."""
    grain = _grain(64)
    keys = torch.cat([_frame(0), _frame(8)])
    others = torch.cat([_frame(3), _frame(4)])
    res = fit_translator(keys, _paper_look(keys, grain),
                         replace(SETTINGS, steps=60, texture_steps=30, learned_texture=True), seed=0,
                         unlabeled=(others, others))
    assert res.texture is not None and res.texture.is_texture
    layer = res.translator.screen
    assert layer.shape == (3, 64, 64) and torch.isfinite(layer).all()
    busy_in_both = flatness(keys).amax(0)[0] == 0
    assert busy_in_both.any() and layer[:, busy_in_both].abs().max() == 0
    assert layer[:, ~busy_in_both].abs().max() > 0


def test_busy_fill_keeps_a_residual_as_strong_as_the_texture_and_shrinks_a_stronger_one() -> None:
    """Where the keyframe is busy, a residual with the texture's power is taken whole; one with
    ten times that power (the network's error on the keyframe's content) mostly left out."""
    from backend.style.learned_texture import busy_fill

    size = 64
    grain = 0.05 * _grain(size)[0].expand(3, -1, -1)
    weight = torch.ones(1, size, size)
    weight[:, :, 32:] = 0  # the right half busy
    layer = grain * weight
    misfit = torch.zeros(1, 3, size, size)
    misfit[..., 48:, 32:] = 0.15 * _grain(size, seed=11)[..., 48:, 32:]  # strong error at the bottom right
    residual = (grain * (1 - weight))[None] + misfit
    filled = busy_fill(layer, residual, weight)
    assert torch.equal(filled[:, :, :32], layer[:, :, :32])  # flat pixels: the layer as it was
    clean = (slice(None), slice(4, 40), slice(36, 60))  # busy, no error: the texture comes back
    noisy = (slice(None), slice(52, 64), slice(36, 60))
    assert _corr(filled[clean], grain[clean]) > 0.9
    err_clean = float((filled[clean] - grain[clean]).square().mean() / grain[clean].square().mean())
    assert err_clean < 0.3
    # busy with a strong error: far less kept than the raw residual, and closer to the texture
    raw_err = float((residual[0][noisy] - grain[noisy]).square().mean())
    fill_err = float((filled[noisy] - grain[noisy]).square().mean())
    zero_err = float(grain[noisy].square().mean())
    assert fill_err < 0.3 * raw_err and fill_err < zero_err


def _drawn_look(image: torch.Tensor, grain: torch.Tensor) -> torch.Tensor:
    """Grey tone times marks as strong as a drawing, (N, 3, H, W) in [-1, 1] both ways."""
    tone = 0.5 * (image.mean(1, keepdim=True) + 1)
    return (tone * (1 + 0.9 * grain) * 2 - 1).clamp(-1, 1).expand(-1, 3, -1, -1)


def test_a_drawn_residual_is_kept_only_where_the_video_holds_still() -> None:
    """Marks as strong as a drawing on a moving clip: the fitted layer (learned, with the busy
    pixels filled, as the ``cpu`` settings fit it) holds them where the clip holds still and
    nothing where it moves, so no keyframe's marks are printed over another frame's content."""
    size = 64
    key = _frame(0, size)
    frames = torch.cat([_frame(t, size) for t in range(2, 40, 4)])
    grain = _grain(size)
    settings = replace(SETTINGS, learned_texture=True, busy_fill=True, pseudo_frames=len(frames))
    res = fit_translator(key, _drawn_look(key, grain), settings, seed=0, unlabeled=(frames, frames))
    assert res.texture is not None and res.texture.is_texture and res.texture.drawn, res.texture
    still = still_pixels(torch.cat([key, frames]))[0]
    layer = res.translator.screen.abs().amax(0)
    assert float(layer[still == 0].max()) == 0.0
    assert float(layer[still == 1].mean()) > 0.05
