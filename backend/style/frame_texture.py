"""Frame-locked texture without a period: paper grain, canvas tooth, a fixed film-grain overlay.

Some looks print their marks on a texture that stays where it is in the frame while the content
moves under it (a charcoal drawing's paper). A fully convolutional translator trained on random
patches cannot know where a patch was, so it cannot reproduce such a texture; worse, fitting a
reference that carries one, it learns to invent grain from the content, which on other frames is
noise in the wrong places. The screen (``backend.style.screen``) finds periodic patterns only.

The texture is found from a short first fit: the translator fitted for a few hundred steps
(``FitSettings.texture_steps``) learns the look's smooth part first, so what it leaves in the
reference of a keyframe (the residual) high-passed at ``TEXTURE_SIGMA`` is the texture plus the
fit's errors. The fit's errors sit on the content's edges; a texture covers flat regions as much
as edges. So the residual is taken for a texture only where it is as strong in the source's
flattest pixels as in its busiest ones and does not follow the source's own fine detail
(``texture_evidence``), and the layer is kept where the keyframe is flat (``flatness``): in its
eyes, mouth and outlines the residual is mostly the fit's error, which on another frame would be
a ghost of the keyframe's features. A residual stronger than a modulation of the look is the
look's own drawing (``TextureEvidence.drawn``), kept only where the video holds still
(``still_pixels``). The texture is then taken out of the targets, the translator is fitted on
what is left, and the layer is added back to every output (the screen's path).
With several keyframes the residuals are averaged where each is flat: a texture is common to all,
the errors are not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from backend.imaging.blur import gaussian_blur

TEXTURE_SIGMA = 2.0
"""Gaussian sigma (px) of the high-pass: finer than a face's features, coarser than grain."""

FLAT_QUANTILE = 0.3
"""The flattest / busiest share of the source's pixels (by blurred gradient magnitude) compared."""

LAYER_KEEP = (0.6, 0.85)
"""Quantiles of a keyframe's busyness up to which its residual is kept whole in the layer, and
from which it is left out (linear in between; ``flatness``): the busiest 15 % are its outlines,
eyes and mouth. Keeping only the flattest 30 % whole (to the 70 % quantile) left the grain out of
the face: 0.56-0.85 dB lower face PSNR on a film-grain look (docs/editing.md)."""

LAYER_CLIP = 3.0
"""The layer's values are clipped at this many times the residual's RMS in the flattest pixels
(0: not clipped): a grain seldom goes beyond, a fit's error on an edge can."""

TEXTURE_MIN_RMS = 0.02
"""Residual RMS in the flat pixels (in [-1, 1] units: 2.6 levels of 255) below which no texture
is kept: too faint to matter."""

TEXTURE_MAX_RMS = 0.2
"""Residual RMS in the flat pixels (25 levels of 255) above which it is more than a texture: a
grain or a paper modulates the look by a few levels (the test looks' textures leave 0.014-0.086
after the short fit, on the subjects of docs/editing.md), while a look that draws strong marks in
flat regions (the cell borders of a superpixel mosaic: 0.43) leaves its own drawing there. Where
the video holds still that drawing stays put and the layer gives it; where the subject moves it
follows the content, and a frame-locked layer printed it at the keyframe's places on every frame,
a ghost of the keyframe's face over every other pose. So such a layer is kept only where the
video holds still (``still_pixels``)."""

STILL_CHANGE = (0.03, 0.08)
"""``still_pixels``: the largest change of a pixel's grey from its median over the frames ([-1, 1]
units: 4 and 10 levels of 255) up to which it counts as still, and from which as moving."""

MIN_STILL_FRAMES = 8
"""Fewest video frames that can tell still pixels from moving ones (``still_pixels``)."""

TEXTURE_MIN_FLAT_SHARE = 0.5
"""The flat pixels' residual RMS over the busy pixels' at which the residual counts as a texture;
a fit's errors on content score far lower (they follow the edges)."""

TEXTURE_MAX_SOURCE_CORR = 0.08
"""The largest correlation, in the flat pixels, between the high-passed residual and the
high-passed source at which the residual counts as a texture. A look that amplifies the source's
own fine detail (a colour-dodge sketch lifts a video's sensor noise) leaves a residual that
follows the source (0.12-0.43 on the two subjects of docs/editing.md); that detail changes from
frame to frame and is no texture. A paper grain does not follow the source (0.002, -0.025)."""


@dataclass(frozen=True)
class TextureEvidence:
    """How texture-like a keyframe residual is: RMS of the high-passed residual (in [-1, 1]
    units) in the source's flattest and busiest ``FLAT_QUANTILE`` of pixels (their ratio:
    ``flat_share``), and its correlation with the high-passed source in the flat pixels."""

    flat_rms: float
    busy_rms: float
    source_corr: float

    @property
    def flat_share(self) -> float:
        return self.flat_rms / max(self.busy_rms, 1e-6)

    @property
    def is_texture(self) -> bool:
        return (self.flat_rms >= TEXTURE_MIN_RMS and self.flat_share >= TEXTURE_MIN_FLAT_SHARE
                and abs(self.source_corr) <= TEXTURE_MAX_SOURCE_CORR)

    @property
    def drawn(self) -> bool:
        """Stronger than a modulation (``TEXTURE_MAX_RMS``): the look's own marks in flat regions,
        kept in the layer only where the video holds still (``still_pixels``)."""
        return self.flat_rms > TEXTURE_MAX_RMS

    def to_dict(self) -> dict[str, float | bool]:
        return {**{k: round(v, 4) for k, v in asdict(self).items()},
                "flat_share": round(self.flat_share, 3), "is_texture": self.is_texture, "drawn": self.drawn}


def high_pass(x: torch.Tensor, sigma: float = TEXTURE_SIGMA) -> torch.Tensor:
    """(N, C, H, W) minus its Gaussian blur."""
    return x - gaussian_blur(x, sigma, padding="reflect")


def busyness(source: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] -> (N, 1, H, W) gradient magnitude of the grey image, blurred 2 px."""
    g = source[:, :3].mean(1, keepdim=True)
    gx = F.pad(g[..., :, 1:] - g[..., :, :-1], (0, 1, 0, 0))
    gy = F.pad(g[..., 1:, :] - g[..., :-1, :], (0, 0, 0, 1))
    return gaussian_blur(torch.hypot(gx, gy), 2.0, padding="reflect")


def _flat_and_busy(busy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, H, W) busyness -> boolean masks of its flattest and busiest ``FLAT_QUANTILE`` of pixels
    (ties included: a flat-colour background is all flattest)."""
    lo, hi = _quantiles(busy, (FLAT_QUANTILE, 1 - FLAT_QUANTILE))
    return busy <= lo, busy >= hi


def _correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a - a.mean(), b - b.mean()
    return (a * b).sum() / (a.norm() * b.norm()).clamp(min=1e-9)


def texture_evidence(residual: torch.Tensor, source: torch.Tensor) -> TextureEvidence:
    """How texture-like ``residual`` (N, 3, H, W; reference minus a short fit's output, [-1, 1]
    units) is, given the (N, 3+, H, W) sources of the same keyframes."""
    h = high_pass(residual.float()).mean(1, keepdim=True)  # grey: a texture darkens all channels
    hs = high_pass(source[:, :3].float()).mean(1, keepdim=True)
    busy = busyness(source.float())
    flat_ms, busy_ms, corr = [], [], []
    for hi, si, bi in zip(h, hs, busy, strict=True):
        flat, busiest = _flat_and_busy(bi)
        flat_ms.append(hi[flat].square().mean())
        busy_ms.append(hi[busiest].square().mean())
        corr.append(_correlation(hi[flat], si[flat]))
    return TextureEvidence(flat_rms=float(torch.stack(flat_ms).mean().sqrt()),
                           busy_rms=float(torch.stack(busy_ms).mean().sqrt()),
                           source_corr=float(torch.stack(corr).mean()))


def _quantiles(x: torch.Tensor, qs: tuple[float, float]) -> torch.Tensor:
    return torch.quantile(x.flatten(), torch.tensor(qs, dtype=x.dtype, device=x.device))


def flatness(source: torch.Tensor) -> torch.Tensor:
    """(N, 3+, H, W) sources -> (N, 1, H, W) in [0, 1] by the blurred gradient magnitude: 1 up to
    the ``LAYER_KEEP[0]`` quantile of each source's pixels, 0 from the ``LAYER_KEEP[1]`` quantile,
    linear in between."""
    busy = busyness(source.float())
    out = []
    for bi in busy:
        lo, hi = _quantiles(bi, LAYER_KEEP)
        w = ((hi - bi) / (hi - lo).clamp(min=1e-6)).clamp(0, 1)
        out.append(torch.where(bi <= lo, torch.ones_like(w), w))  # ties at lo (flat colour) stay whole
    return torch.stack(out)


def still_pixels(frames: torch.Tensor) -> torch.Tensor:
    """(N, 3+, H, W) video frames spread over the subject, [-1, 1] -> (1, H, W) in [0, 1]: 1 where the video
    holds still (the grey never strays from its median by more than ``STILL_CHANGE[0]``, 2 px
    blurred), 0 where it moves (``STILL_CHANGE[1]``), linear in between.

    Raises:
        ValueError: fewer than ``MIN_STILL_FRAMES`` frames.
    """
    if frames.shape[0] < MIN_STILL_FRAMES:
        raise ValueError(f"{frames.shape[0]} frames cannot tell still pixels from moving ones "
                         f"(at least {MIN_STILL_FRAMES})")
    g = frames[:, :3].float().mean(1, keepdim=True)
    change = (g - g.median(0, keepdim=True).values).abs().amax(0, keepdim=True)
    change = gaussian_blur(F.max_pool2d(change, 5, stride=1, padding=2), 2.0, padding="reflect")[0]
    lo, hi = STILL_CHANGE
    return ((hi - change) / (hi - lo)).clamp(0, 1)


def frame_texture(residual: torch.Tensor, source: torch.Tensor, still: torch.Tensor | None = None
                  ) -> torch.Tensor:
    """(N, 3, H, W) keyframe residuals and their (N, 3+, H, W) sources -> (3, H, W) the texture
    layer: the residuals high-passed, averaged over keyframes where each is flat. Where a
    keyframe is busy (eyes, mouth, outlines) its residual is the fit's error on that content,
    which another frame would show as a ghost of the keyframe's features, so it is left out; and
    no value goes beyond ``LAYER_CLIP`` times the residual's RMS in the flat pixels (grain does
    not; a fit's error on an edge can). ``still`` (1, H, W) in [0, 1], for a drawn residual
    (``TextureEvidence.drawn``): the layer is kept only there."""
    w = flatness(source) * (1.0 if still is None else still)
    h = high_pass(residual.float())
    if LAYER_CLIP:
        flat = torch.stack([_flat_and_busy(bi)[0] for bi in busyness(source.float())])
        limit = LAYER_CLIP * h.mean(1, keepdim=True)[flat].square().mean().sqrt()
        h = h.clamp(-limit, limit)
    h = h * w
    return (h.sum(0) / w.sum(0).clamp(min=1e-6)) * w.amax(0)
