"""The steady filter along the motion: neighbours warped onto each frame before they are weighed.

``backend.style.steady`` averages a styled pixel with the same pixel of its neighbours where the
unstyled render holds still there. Where the head moves, it either leaves the pixel alone (a small
``sigma``), so a look whose strokes flicker keeps flickering there, or averages across the motion
(a large ``sigma``), which draws a faded second outline beside every moving line and greys a
thresholded look's black-and-white strokes. With ``SteadyFilter(motion=True)`` each neighbour is
first warped onto the frame along the optical flow of the unstyled renders, so a stroke is
averaged with the same stroke where the motion carried it: the lines stay where they are drawn
and as dark, and only what changes along the motion (the flicker) is averaged.

The flow: DIS optical flow of each pair of consecutive unstyled renders' grey, both ways
(``consecutive_flows``, ``backend.imaging.flow.fast_flow``). A neighbour k frames away is
reached by composing k consecutive flows: the flow to k - 1 frames away, plus that frame's own
flow on, read where the first one lands. The weight is then the same as without motion,
measured between the frame's render and the neighbour's render warped onto it, so where the flow
is wrong (occlusions, a blink) the neighbour's weight vanishes as before. Rendering a frame still
needs only its neighbours' renders, so a frame's pixels do not depend on which range it was
rendered in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from backend.imaging.coords import position_channels
from backend.imaging.flow import fast_flow
from backend.style.steady import check_frames, grey, neighbour_weights

if TYPE_CHECKING:
    from backend.style.steady import SteadyFilter


def grey_uint8(g: torch.Tensor) -> np.ndarray:
    """(N, 1, H, W) ``grey`` in [0, 1] -> (N, H, W) uint8, what the flow reads."""
    return g[:, 0].mul(255).round_().clamp_(0, 255).to(torch.uint8).numpy()


def consecutive_flows(a: np.ndarray, b: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The flows between frames ``a[i]`` and ``b[i]`` (each (N, H, W) uint8 grey), both ways.

    Returns:
        (forward, backward), each (N, 2, H, W) float32 px (x then y): ``a[i]``'s pixel p is
        ``b[i]``'s pixel p + forward[i](p), and ``b[i]``'s pixel q is ``a[i]``'s q + backward[i](q)
        (``backend.imaging.flow.fast_flow``).
    """
    h, w = a.shape[1:]
    fwd = [fast_flow(x, y) for x, y in zip(a, b, strict=True)]
    bwd = [fast_flow(y, x) for x, y in zip(a, b, strict=True)]

    def stack(flows: list[np.ndarray]) -> torch.Tensor:
        if not flows:
            return torch.zeros(0, 2, h, w)
        return torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2).contiguous()

    return stack(fwd), stack(bwd)


_GRIDS: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}


def _grid_terms(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale (2,), origin (h, w, 2)): a pixel p moved by a flow f is at ``origin + f * scale`` in
    ``grid_sample``'s [-1, 1] units (x then y; corners aligned)."""
    terms = _GRIDS.get((h, w))
    if terms is None:
        scale = torch.tensor([2 / max(w - 1, 1), 2 / max(h - 1, 1)])
        origin = position_channels(h, w)[0].permute(1, 2, 0).contiguous()  # each pixel where it is
        terms = _GRIDS.setdefault((h, w), (scale, origin))
    return terms


def sample(images: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) ``images`` read at each pixel p + ``flow`` (N, 2, H, W) px: bilinear, the
    border repeated beyond the frame. -> (N, C, H, W)."""
    scale, origin = _grid_terms(*flow.shape[2:])
    grid = torch.addcmul(origin, flow.permute(0, 2, 3, 1), scale)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)


NEXT, STYLED, GREY, PREVIOUS = slice(0, 2), slice(2, 5), slice(5, 6), slice(6, 8)
"""The channels ``MotionRun`` keeps of each frame: the flow to the next frame (px), the styled RGB,
the unstyled grey, the flow to the previous frame. A step ahead reads channels 0-5 of a neighbour,
a step behind channels 2-7: its pixels, and the flow on to the neighbour one step further."""
CHANNELS = 8
AHEAD, BEHIND = slice(NEXT.start, GREY.stop), slice(STYLED.start, PREVIOUS.stop)
"""What a step ahead / behind reads of its neighbour (six channels each)."""


class MotionRun:
    """Consecutive frames filtered along the motion as they arrive, in order (the module docstring).

    The same interface as ``backend.style.steady.SteadyRun``: ``add(plain, styled)`` appends the
    next frames and returns those whose ``radius`` following frames have arrived; ``finish``
    returns the rest. Between calls it keeps the frames not given out yet and the ``radius`` frames
    before them, each with the flows to its neighbours (``NEXT`` .. ``PREVIOUS``).

    A neighbour k frames ahead is reached along the composed flow; one ``grid_sample`` per step
    reads both its pixels and its own flow on, so each step of each direction costs one read of
    six channels.
    """

    def __init__(self, f: SteadyFilter) -> None:
        self.f = f
        self._frames: torch.Tensor | None = None  # (T, CHANNELS, H, W)
        self._grey8: np.ndarray | None = None  # (T, H, W) uint8, what the flow reads
        self._done = 0  # frames at the front already given out (kept as neighbours)

    def add(self, plain: torch.Tensor, styled: torch.Tensor) -> torch.Tensor:
        """plain, styled: (b, 3, H, W) the next frames' unstyled and styled renders, about [-1, 1]."""
        check_frames(plain, styled, self._frames)
        g = grey(plain)
        new = torch.zeros(len(g), CHANNELS, *g.shape[2:])
        new[:, STYLED], new[:, GREY] = styled.float(), g
        g8 = grey_uint8(g)
        if self._frames is None:
            first = 0  # the frame each new pair starts from
            self._frames, self._grey8 = new, g8
        else:
            first = len(self._frames) - 1
            self._frames = torch.cat([self._frames, new])
            self._grey8 = np.concatenate([self._grey8, g8])
        fwd, bwd = consecutive_flows(self._grey8[first:-1], self._grey8[first + 1:])
        self._frames[first:-1, NEXT] = fwd
        self._frames[first + 1:, PREVIOUS] = bwd
        ready = max(self._done, len(self._frames) - self.f.radius)
        out = self._filter(self._done, ready)
        drop = max(0, ready - self.f.radius)  # keep radius frames before the next to give out
        self._frames, self._grey8 = self._frames[drop:], self._grey8[drop:]
        self._done = ready - drop
        return out

    def finish(self) -> torch.Tensor:
        """The frames still held and not given out, filtered with what arrived."""
        if self._frames is None:
            return torch.zeros(0)
        out = self._filter(self._done, len(self._frames))
        self._frames = self._grey8 = None
        self._done = 0
        return out

    def _filter(self, s: int, e: int) -> torch.Tensor:
        """Frames s..e-1 of those held, each with its held neighbours within ``radius`` warped onto
        it -> (e - s, 3, H, W) float32."""
        frames, total = self._frames, len(self._frames)
        num = frames[s:e, STYLED].clone()
        den = torch.ones_like(frames[s:e, GREY])
        own = frames[:, GREY]
        ahead = frames[s:e, NEXT]  # flows from each target to its neighbour k frames ahead
        behind = frames[s:e, PREVIOUS]  # ... and k frames behind
        for k in range(1, self.f.radius + 1):
            e_k, s_k = min(e, total - k), max(s, k)  # targets with a neighbour k ahead / behind
            if e_k <= s and s_k >= e:
                break
            if e_k > s:
                ahead = ahead[:e_k - s]
                seen = sample(frames[s + k:e_k + k, AHEAD], ahead)  # NEXT 0-1, STYLED 2-4, GREY 5
                w = neighbour_weights(seen[:, 5:6], own[s:e_k], self.f, k)
                num[:e_k - s].addcmul_(w, seen[:, 2:5])
                den[:e_k - s].add_(w)
                ahead = ahead + seen[:, 0:2]
            if s_k < e:
                behind = behind[len(behind) - (e - s_k):]
                seen = sample(frames[s_k - k:e - k, BEHIND], behind)  # STYLED 0-2, GREY 3, PREVIOUS 4-5
                w = neighbour_weights(seen[:, 3:4], own[s_k:e], self.f, k)
                num[s_k - s:].addcmul_(w, seen[:, 0:3])
                den[s_k - s:].add_(w)
                behind = behind + seen[:, 4:6]
        return num / den
