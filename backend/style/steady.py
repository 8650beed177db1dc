"""Steadying a styled shot: each styled frame averaged with its neighbours where the render holds still.

A style translator applied frame by frame turns the small changes between consecutive renders into
larger ones: a tone crosses a posterisation threshold, a line is drawn one pixel over, a hatch
switches on. The styled shot flickers more than the unstyled one (``bench/style.py``'s flicker
column), on pixels where the avatar itself barely moved.

The filter is guided by the unstyled renders, which the translator is computed from and which
carry the shot's real motion. For frame t and each neighbour t+k within ``radius`` frames, the
weight of the neighbour's styled pixel is

    w_k(x) = exp(-(d_k(x) / sigma)^2) * exp(-k^2 / (2 tau^2)),

where d_k is the largest absolute difference of the two unstyled renders' grey (RGB mean, [0, 1]
units) in the 3x3 neighbourhood of x. Where the render holds still (d_k << sigma) the styled frames are
averaged, and their flicker is; where it moves or changes (a turning head, a blink, an opening
mouth: d_k >> sigma) the weight vanishes and frame t keeps its own styled pixel. The frame itself
has weight 1. This is a cross (joint) bilateral filter along time with the render as the guide,
without motion compensation: moving pixels are simply left alone. ``SteadyFilter(motion=True)``
warps each neighbour onto the frame along the renders' optical flow first
(``backend.style.steady_motion``), so moving strokes are averaged with themselves.

Rendering a frame needs the unstyled and styled renders of its neighbours, so ``Renderer`` also
renders the batch of rows beyond each end of a requested range where the curves have them (the
pixels of a frame do not depend on which range it was rendered in). Frames are filtered as they arrive
(``SteadyRun``): each pair of frames is weighed once, so the cost is ``radius`` weighings and six
multiply-adds of a frame per frame, whatever the batch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from backend.style.steady_motion import MotionRun


@dataclass(frozen=True)
class SteadyFilter:
    """The temporal filter's settings, stored with a style's translator.

    Attributes:
        radius: neighbours used on each side (frames), 1..``MAX_RADIUS``.
        sigma: unstyled-render change (``grey_change``, [0, 1] units) at which
            a neighbour's weight falls to 1/e; larger averages more, also where the render moved.
        tau: temporal fall-off (frames): a neighbour k frames away is weighted exp(-k^2 / 2 tau^2).
        motion: warp each neighbour onto the frame along the unstyled renders' optical flow before
            it is weighed (``backend.style.steady_motion``); False: the same pixel of each
            neighbour (styles written before the option).
    """

    radius: int = 3
    sigma: float = 0.08
    tau: float = 1.5
    motion: bool = False

    MAX_RADIUS = 8

    def __post_init__(self) -> None:
        if not 1 <= int(self.radius) <= self.MAX_RADIUS:
            raise ValueError(f"steady filter radius must be 1..{self.MAX_RADIUS} frames, got {self.radius}")
        if not (self.sigma > 0 and self.tau > 0):
            raise ValueError(f"steady filter sigma and tau must be > 0, got {self.sigma}, {self.tau}")
        if not isinstance(self.motion, bool):
            raise ValueError(f"steady filter motion must be true or false, got {self.motion!r}")

    def to_dict(self) -> dict[str, float | bool]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SteadyFilter:
        """Rebuild from ``to_dict``; missing keys take the defaults, bad values raise ValueError."""
        if not isinstance(d, dict):
            raise ValueError("steady filter settings must be a dict of radius, sigma, tau and motion")
        try:
            return cls(radius=int(d.get("radius", cls.radius)), sigma=float(d.get("sigma", cls.sigma)),
                       tau=float(d.get("tau", cls.tau)), motion=d.get("motion", cls.motion))
        except (TypeError, ValueError) as e:
            raise ValueError(f"steady filter settings {d}: {e}") from e


def grey(plain: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) renders in about [-1, 1] -> (N, 1, H, W) float32 grey (RGB mean) in [0, 1]."""
    return plain.float().mean(1, keepdim=True) * 0.5 + 0.5


def grey_change(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """How much two stacks of ``grey`` renders differ: (N, 1, H, W) each -> (N, 1, H, W), the largest
    absolute difference in the 3x3 neighbourhood of each pixel (so an edge moving beside a pixel
    counts there too). Per pixel, not per block: weights shared by 2x2 blocks drew the blocks'
    edges as a comb along every moving outline."""
    p = F.pad((a - b).abs_(), (1, 1, 1, 1))  # zeros beyond the frame: no change there
    h = torch.maximum(p[..., :, :-2], p[..., :, 1:-1])  # a separable running maximum, many times
    h = torch.maximum(h, p[..., :, 2:], out=h)  # faster on CPU than max_pool2d with stride 1
    v = torch.maximum(h[..., :-2, :], h[..., 1:-1, :])
    return torch.maximum(v, h[..., 2:, :], out=v)


def neighbour_weights(near: torch.Tensor, own: torch.Tensor, f: SteadyFilter, k: int) -> torch.Tensor:
    """The weights of neighbours k frames away: ``near`` and ``own`` (n, 1, H, W) are the ``grey``
    of the neighbours' and the frames' unstyled renders (the neighbours' warped onto the frames when
    the filter follows the motion) -> (n, 1, H, W) exp(-(d / sigma)^2) exp(-k^2 / (2 tau^2))."""
    w = grey_change(near, own).square_().mul_(-1 / f.sigma ** 2).exp_()
    return w.mul_(math.exp(-k * k / (2 * f.tau ** 2)))


def check_frames(plain: torch.Tensor, styled: torch.Tensor, held: torch.Tensor | None) -> None:
    """Refuse a batch that a run cannot take: ``plain`` and ``styled`` not one (b, 3, H, W) shape,
    or frames of another size than the ``held`` ones (any (T, C, H, W); None: none held)."""
    if plain.shape != styled.shape or plain.ndim != 4:
        raise ValueError(f"styled {tuple(styled.shape)} and plain {tuple(plain.shape)} must be one "
                         f"(T, 3, H, W) shape")
    if held is not None and held.shape[2:] != plain.shape[2:]:
        raise ValueError(f"frames of {tuple(plain.shape[2:])} px after frames of {tuple(held.shape[2:])} px")


class SteadyRun:
    """Consecutive frames filtered as they arrive, in order (see the module docstring).

    ``add(plain, styled)`` appends the next frames of the run; ``add`` and ``finish`` return the
    frames whose neighbours have all arrived (all the rest, for ``finish``), oldest first, as
    (n, 3, H, W) float32. Only the last ``radius`` frames are kept between calls.
    """

    def __init__(self, f: SteadyFilter) -> None:
        self.f = f
        self._grey = self._styled = self._num = self._den = None  # the frames not given out yet

    def add(self, plain: torch.Tensor, styled: torch.Tensor) -> torch.Tensor:
        """plain, styled: (b, 3, H, W) the next frames' unstyled and styled renders, about [-1, 1]."""
        check_frames(plain, styled, self._grey)
        st = styled.float()
        new = (grey(plain), st, st.clone(), st.new_ones(len(st), 1, *st.shape[2:]))
        held = 0 if self._grey is None else len(self._grey)
        if held:
            new = tuple(torch.cat([old, x]) for old, x in zip(
                (self._grey, self._styled, self._num, self._den), new, strict=True))
        g, st, num, den = new
        total = len(g)
        for k in range(1, min(self.f.radius, total - 1) + 1):
            lo = max(0, held - k)  # pairs (i, i + k) with i + k among the new frames
            hi = total - k
            if lo >= hi:
                continue
            wk = neighbour_weights(g[lo + k:hi + k], g[lo:hi], self.f, k)
            num[lo:hi].addcmul_(wk, st[lo + k:hi + k])  # frame i gets i + k
            num[lo + k:hi + k].addcmul_(wk, st[lo:hi])  # and i + k gets i: d is symmetric
            den[lo:hi] += wk
            den[lo + k:hi + k] += wk
        ready = max(0, total - self.f.radius)
        self._grey, self._styled, self._num, self._den = g[ready:], st[ready:], num[ready:], den[ready:]
        return num[:ready] / den[:ready]

    def finish(self) -> torch.Tensor:
        """The frames still held (the run's last ``radius``), filtered with what arrived."""
        if self._grey is None:
            return torch.zeros(0)
        out = self._num / self._den
        self._grey = self._styled = self._num = self._den = None
        return out


def steady_run(f: SteadyFilter) -> SteadyRun | MotionRun:
    """The run that filters frames as they arrive with ``f``: ``SteadyRun``, or with ``f.motion``
    the one along the motion (``backend.style.steady_motion.MotionRun``, the same interface)."""
    if f.motion:
        from backend.style.steady_motion import MotionRun

        return MotionRun(f)
    return SteadyRun(f)


def steady_frames(styled: torch.Tensor, plain: torch.Tensor, f: SteadyFilter) -> torch.Tensor:
    """Filter a whole run of consecutive frames at once.

    Args:
        styled: (T, 3, H, W) styled renders, about [-1, 1], frame t+1 right after frame t.
        plain: (T, 3, H, W) the unstyled renders of the same frames, about [-1, 1].
        f: the filter's settings.
    Returns:
        (T, 3, H, W) float32: each frame averaged with its neighbours inside the run (frames near
        the ends of the run have fewer).
    """
    run = steady_run(f)
    first = run.add(plain, styled)
    return torch.cat([first, run.finish()])
