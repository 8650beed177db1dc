"""The translator's gated screen: a look's frame-locked marks drawn only where the look draws them.

A look that hatches only the shadows, or prints halftone dots whose size follows the tone, has a
frame-locked pattern (``backend.style.screen``) whose strength changes from pixel to pixel. The
translator predicts, per pixel, a gate for each part of the screen (each direction's layer and
the rest, ``screen_parts``): the part is added times ``1 + gate``. A small per-pixel head then
draws what scaling band-limited layers cannot (the hard edges of binary marks, where two
directions cross): it sees the screen's channels (its layer and each direction's phase,
``screen_channels``), the parts and ``SCREEN_MODS`` more channels from the translator, and adds
its output. Gates and head start at zero, so an untrained gated screen is the screen added as
it is.
"""

from __future__ import annotations

import torch
from torch import nn

SCREEN_MODS = 4
"""Channels the translator hands to the per-pixel head (which marks, how strong, here)."""


class GatedScreen(nn.Module):
    """Adds a screen's parts, each scaled per pixel, and a per-pixel head's marks.

    Args:
        directions: screen directions with their own part (``screen_parts``; one more part holds
            the rest).
        screen_input: channels of ``screen_channels`` the head sees.
        head: hidden channels of the head's two 1x1 layers (0: no head).
    """

    def __init__(self, directions: int, screen_input: int, head: int) -> None:
        super().__init__()
        self.parts = directions + 1
        self.head = None
        if head:
            cin = screen_input + 3 * self.parts + SCREEN_MODS
            self.head = nn.Sequential(nn.Conv2d(cin, head, 1), nn.LeakyReLU(0.2, inplace=True),
                                      nn.Conv2d(head, head, 1), nn.LeakyReLU(0.2, inplace=True),
                                      nn.Conv2d(head, 3, 1))
            nn.init.zeros_(self.head[-1].weight)
            nn.init.zeros_(self.head[-1].bias)

    @property
    def controls(self) -> int:
        """Channels the translator predicts for it: one gate per part, then the head's inputs."""
        return self.parts + (SCREEN_MODS if self.head is not None else 0)

    def forward(self, image: torch.Tensor, controls: torch.Tensor, channels: torch.Tensor,
                parts: torch.Tensor) -> torch.Tensor:
        """image (B, 3, H, W) + the gated screen.

        controls: (B, ``controls``, H, W) from the translator; channels: (B, screen_input, H, W)
        ``screen_channels``; parts: (B, 3 * parts, H, W) ``screen_parts``. Returns (B, 3, H, W).
        """
        out = image
        for d in range(self.parts):
            out = out + (1 + controls[:, d:d + 1]) * parts[:, 3 * d:3 * d + 3]
        if self.head is not None:
            out = out + self.head(torch.cat([channels, parts, controls[:, self.parts:]], 1))
        return out
