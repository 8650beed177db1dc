"""Frame-to-frame stability of the style translator: pairs of consecutive renders and one loss.

A translator applied frame by frame can amplify the small changes between two consecutive
renders that the motion does not explain (a render's texture shimmering, a tone crossing a
posterisation threshold): the styled shot then flickers more than the unstyled one. The fit gets
pairs of consecutive training-frame renders, the earlier one warped onto the later by the optical
flow of the renders (``backend.imaging.flow``), so both show the same structure in the same
place. Where the flow is trusted, the styled outputs of the two may differ by as much as the
renders differ, and the excess is penalised (``stability_loss``). Lines that move with the head
are not penalised (the warp aligns them), and a real change (a blink) is as large in the renders
as the look makes it, so it is allowed.

The term is only used where it is needed (``amplification``): when, halfway through the fit, the
translator already changes no more than ``FitSettings.temporal_above`` times as much as the renders
between the neighbouring frames, unaligned (the flicker the user sees), the fit goes on without it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from backend.imaging.convert import to_uint8
from backend.imaging.flow import backward_flow, warp


@dataclass
class FramePairs:
    """Consecutive renders aligned on the later one.

    Attributes:
        current: (N, C, H, W) the later frames' network inputs in [-1, 1] (RGB first).
        earlier_warped: (N, C, H, W) the earlier frames' inputs warped onto the later ones.
        trusted: (N, 1, H, W) 1 where the forward and backward flows agree, else 0.
        earlier: (N, C, H, W) the earlier frames' inputs as they are (not warped).
    """

    current: torch.Tensor
    earlier_warped: torch.Tensor
    trusted: torch.Tensor
    earlier: torch.Tensor

    def __len__(self) -> int:
        return self.current.shape[0]

    def with_channels(self, extra: torch.Tensor) -> FramePairs:
        """The three input stacks with (1, E, H, W) frame-locked channels appended (screen, positions)."""
        e = extra.to(self.current).expand(len(self), -1, -1, -1)
        return FramePairs(torch.cat([self.current, e], 1), torch.cat([self.earlier_warped, e], 1),
                          self.trusted, torch.cat([self.earlier, e], 1))


def frame_pairs(current: torch.Tensor, previous: torch.Tensor) -> FramePairs:
    """Align each of ``previous`` (N, C, H, W) on the matching ``current`` frame by the renders'
    optical flow (measured on the RGB channels, applied to all)."""
    if current.shape != previous.shape or current.ndim != 4 or current.shape[1] < 3:
        raise ValueError(f"frame pairs need two (N, C>=3, H, W) stacks of one shape, got "
                         f"{tuple(current.shape)} and {tuple(previous.shape)}")
    warped, masks = [], []
    rgb_now, rgb_before = to_uint8(current[:, :3]), to_uint8(previous[:, :3])
    for i, before in enumerate(previous):
        back, ok = backward_flow(rgb_now[i], rgb_before[i])
        moved = warp(before.permute(1, 2, 0).cpu().numpy(), back)
        warped.append(torch.from_numpy(moved.reshape(*moved.shape[:2], -1)).permute(2, 0, 1))
        masks.append(torch.from_numpy(ok)[None].float())
    return FramePairs(current, torch.stack(warped).to(current), torch.stack(masks).to(current), previous)


def amplification(styled_current: torch.Tensor, styled_earlier: torch.Tensor, pairs: FramePairs) -> float:
    """How many times as much the styled frames (N, 3, H, W) change from the earlier to the current
    frame of each pair as the renders do (mean absolute change, unaligned, as the flicker metric
    measures it); where the renders do not change: inf if the styled frames do, else 0."""
    return change_ratio(float((styled_current - styled_earlier).abs().mean()),
                        float((pairs.current[:, :3] - pairs.earlier[:, :3]).abs().mean()))


def change_ratio(styled: float, source: float) -> float:
    """``styled`` / ``source`` mean absolute changes; where the source does not change: inf if the
    styled frames do, else 0."""
    if source > 0:
        return styled / source
    return float("inf") if styled > 0 else 0.0


def _change(now: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
    """(B, 1, h, w) channel-mean absolute difference of (B, 3, h, w) images after a 3 x 3 box
    filter of the signed difference: a line one pixel off (the flow's sub-pixel error on a crisp
    line) leaves a +- pair that mostly cancels, a tone that changes keeps its whole size."""
    local = F.avg_pool2d(now - before, 3, stride=1, padding=1, count_include_pad=False)
    return local.abs().mean(1, keepdim=True)


def stability_loss(out_now: torch.Tensor, out_before: torch.Tensor, in_now: torch.Tensor,
                   in_before: torch.Tensor, trusted: torch.Tensor) -> torch.Tensor:
    """Mean over trusted pixels of how much more the styled outputs (B, 3, h, w) of two aligned
    frames change than their RGB inputs (B, >=3, h, w) do (``_change``, [-1, 1] units);
    ``trusted`` (B, 1, h, w)."""
    styled = _change(out_now, out_before)
    source = _change(in_now[:, :3], in_before[:, :3])
    excess = torch.relu(styled - source) * trusted
    return excess.sum() / trusted.sum().clamp(min=1.0)
