"""Choosing how strongly a style is steadied over time, from how much it flickers.

How much a styled shot flickers depends on the look: a cartoon's flat fills barely change from one
frame to the next, while a pencil sketch's strokes appear and fade as the render drifts slowly
under the look's threshold. One steady filter (``backend.style.steady``) for every look either
leaves the pencil flickering or blurs the cartoon's motion for nothing. So the edit measures,
after the fit, how many times as much its styled frames change from frame to frame as the
unstyled renders do on a run of the subject's *training* frames (``flicker_ratio``; the held-out
frames stay unseen), with each filter of ``STEADY_LADDER`` in turn, and keeps the weakest one that
brings the ratio to ``STEADY_AIM`` or under (``choose_steady``): the flicker target
``FLICKER_BOUND`` less a margin for the difference between those frames and another shot. Where
none does, it keeps the strongest, unless the ladder's strongest leaves the ratio over the target
itself: a miss is then predicted, and the ``LAST_RESORT`` filter is taken (it costs the face too
much to be worth it where the target would be met anyway). A look that already flickers little keeps the first
filter, the one every style had before the choice existed.

The ladder's small steps alternate between a wider window (radius and tau) and a larger sigma (a
neighbour also counts where the render moved a little more). Each step costs some fidelity where
the look's strokes change between frames (they are averaged); measured in docs/editing.md ("The
steady filter chosen per style").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from backend.style.stability import change_ratio
from backend.style.steady import SteadyFilter, steady_frames

FLICKER_BOUND = 1.2
"""The flicker target: styled frame-to-frame change at most this many times the unstyled."""
PROBE_MARGIN = 0.05
"""How far under ``FLICKER_BOUND`` the edit aims on its training frames (``STEADY_AIM``): on 13
looks x subjects, the chosen filter's ratio there was within -0.01 to +0.03 of the ratio on an
80-frame evaluation shot."""
STEADY_AIM = FLICKER_BOUND - PROBE_MARGIN
"""The ratio the edit's choice aims at on the training frames (``FitSettings.steady_bound``)."""

STEADY_LADDER: tuple[SteadyFilter, ...] = (
    SteadyFilter(radius=3, sigma=0.08, tau=1.5),
    SteadyFilter(radius=4, sigma=0.08, tau=2.0),
    SteadyFilter(radius=5, sigma=0.08, tau=2.5),
    SteadyFilter(radius=5, sigma=0.10, tau=2.5),
    SteadyFilter(radius=5, sigma=0.12, tau=2.5),
    SteadyFilter(radius=6, sigma=0.12, tau=3.0),
    SteadyFilter(radius=7, sigma=0.12, tau=3.5),
    SteadyFilter(radius=8, sigma=0.12, tau=4.0),
    SteadyFilter(radius=8, sigma=0.14, tau=4.0),
    SteadyFilter(radius=8, sigma=0.17, tau=4.0),
)
"""Steady filters from the weakest (the fixed default before the choice) to the strongest. Small
steps: each costs fidelity, so the choice should stop as near the bound as it can. The last step
(sigma 0.17) came with the per-pixel weights, which average a little less than the 2x2 blocks did:
it takes the looks that flicker most back to what the blocks' last step gave them."""

LAST_RESORT: tuple[SteadyFilter, ...] = (SteadyFilter(radius=8, sigma=0.20, tau=5.0),)
"""Filters past the ladder, tried in turn only where its strongest leaves the ratio over the aim
plus ``PROBE_MARGIN`` (``FLICKER_BOUND`` for the default aim): a predicted miss. On the rows that
reached the ladder's end (docs/editing.md, "A last resort past the ladder") it cost the face
0.12-0.35 dB and took 0.09-0.12x off the flicker, which is worth it where the flicker misses and
not where the ladder's end already leaves it at the target (Roxanne's `pencil`: -0.77 -> -1.12 dB,
past the face target)."""


@dataclass(frozen=True)
class SteadyChoice:
    """The outcome of ``choose_steady``.

    Attributes:
        steady: the chosen filter.
        ratios: the flicker ratio with each filter tried, weakest first (the last is the chosen
            one; fewer than the ladder's when one met the bound early, more when the last resort
            was tried).
        raw: the ratio without any filter.
        frames: how many frames were measured.
    """

    steady: SteadyFilter
    ratios: tuple[float, ...]
    raw: float
    frames: int

    def to_dict(self) -> dict:
        return {"steady": self.steady.to_dict(), "ratios": [round(r, 4) for r in self.ratios],
                "raw": round(self.raw, 4), "frames": self.frames}


def flicker_ratio(styled: torch.Tensor, plain: torch.Tensor) -> float:
    """How many times as much (T, 3, H, W) ``styled`` frames change from frame to frame as the
    ``plain`` renders they were made from (both about [-1, 1]; ``stability.change_ratio``: inf
    where the renders hold still and the styled frames do not, 0 where neither changes)."""
    return change_ratio(float((styled[1:] - styled[:-1]).abs().mean()),
                        float((plain[1:] - plain[:-1]).abs().mean()))


def choose_steady(styled: torch.Tensor, plain: torch.Tensor, ladder: tuple[SteadyFilter, ...] = STEADY_LADDER,
                  bound: float = STEADY_AIM, last_resort: tuple[SteadyFilter, ...] = LAST_RESORT
                  ) -> SteadyChoice:
    """The weakest filter of ``ladder`` that keeps the steadied frames' ``flicker_ratio`` at or
    under ``bound``, else the strongest; where that one leaves the ratio over ``bound`` +
    ``PROBE_MARGIN``, the weakest of ``last_resort`` that meets ``bound``, else its strongest.

    Args:
        styled: (T, 3, H, W) a run of consecutive styled frames, unfiltered, about [-1, 1]; T >= 2.
        plain: (T, 3, H, W) their unstyled renders.
        ladder: filters from the weakest to the strongest, at least one.
        bound: the largest ratio accepted (> 0).
        last_resort: stronger filters still, weakest first (may be empty).
    Raises:
        ValueError: fewer than 2 frames, shapes that differ, an empty ladder or a bound <= 0.
    """
    if styled.shape != plain.shape or styled.ndim != 4 or len(styled) < 2:
        raise ValueError(f"need two runs of the same (T >= 2, 3, H, W) shape, got {tuple(styled.shape)} "
                         f"and {tuple(plain.shape)}")
    if not ladder or not bound > 0:
        raise ValueError(f"need at least one filter and a bound > 0, got {len(ladder)} and {bound}")
    styled, plain = styled.float(), plain.float()
    ratios = []
    for f in ladder:
        ratios.append(flicker_ratio(steady_frames(styled, plain, f), plain))
        if ratios[-1] <= bound:
            break
    if ratios[-1] > bound + PROBE_MARGIN:
        for f in last_resort:
            ratios.append(flicker_ratio(steady_frames(styled, plain, f), plain))
            if ratios[-1] <= bound:
                break
    return SteadyChoice(steady=f, ratios=tuple(ratios), raw=flicker_ratio(styled, plain), frames=len(styled))
