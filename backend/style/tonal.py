"""How much of a look is a tone map: the share of a reference's variance that the colour of the
photograph under it explains, pixel by pixel.

A look that maps each colour to another colour (a duotone, a risograph's inks) can be learned as a
filter, from the photographs, and applied to the render as one (``TranslatorConfig.source_flag``).
A look that redraws (lines from local contrast, washes, strokes) also needs what the render pairs
teach: how a render's softer detail should come out. The share tells the two apart from the
keyframes, before any fitting (``backend.train.translator_edit.settings_for_look``).
"""

from __future__ import annotations

import torch

TONAL_SHARE = 0.9
"""Keyframes whose mean ``tonal_share`` reaches this are a tone map: the edit keeps the source
flag. Chosen on 8 looks on 3 subjects (docs/editing.md, "The source flag"): the flag gained on the
duotone and the risograph (0.92-0.99) and lost on the pencil looks of two subjects (0.36-0.58).
Two looks scored after the choice, at 0.94 on a real clip, lost with it: the flag stays an option."""
TONAL_BINS = 8
"""Bins per colour channel of the photograph (512 colours: about 30 pixels each at 128 px)."""


def tonal_share(photo: torch.Tensor, reference: torch.Tensor, bins: int = TONAL_BINS) -> float:
    """Cross-validated share of ``reference``'s variance that a function of ``photo``'s colour
    explains: each colour bin's mean reference colour, fitted on one checkerboard half of the
    pixels, predicts the other half (and the other way round); 1 - residual / variance, averaged.

    Args:
        photo, reference: (3, H, W) in [-1, 1], pixel-aligned.
        bins: bins per colour channel.
    Returns:
        The share, at most 1 (below 0 where the bins predict worse than the mean colour);
        0 for a flat reference.
    """
    if photo.shape != reference.shape or photo.ndim != 3 or photo.shape[0] != 3:
        raise ValueError(f"photo and reference must be (3, H, W) alike, got {tuple(photo.shape)} "
                         f"and {tuple(reference.shape)}")
    q = ((photo.detach().double().clamp(-1, 1) + 1) / 2 * bins).long().clamp(max=bins - 1)
    index = ((q[0] * bins + q[1]) * bins + q[2]).flatten()
    values = reference.detach().double().flatten(1).T  # (H * W, 3)
    h, w = photo.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    black = ((yy + xx) % 2 == 0).flatten().to(index.device)
    shares = []
    for fit in (black, ~black):
        test = ~fit
        sums = torch.zeros(bins ** 3, 3, dtype=values.dtype, device=values.device)
        counts = torch.zeros(bins ** 3, dtype=values.dtype, device=values.device)
        sums.index_add_(0, index[fit], values[fit])
        counts.index_add_(0, index[fit], torch.ones_like(values[fit, 0]))
        means = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], values[fit].mean(0))
        truth = values[test]
        variance = float(((truth - truth.mean(0)) ** 2).sum())
        residual = float(((truth - means[index[test]]) ** 2).sum())
        shares.append(1.0 - residual / variance if variance > 0 else 0.0)
    return sum(shares) / len(shares)
