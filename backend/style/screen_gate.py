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
import torch.nn.functional as F
from torch import nn

SCREEN_MODS = 4
"""Channels the translator hands to the per-pixel head (which marks, how strong, here)."""
HEAD_LEAK = 0.2
"""Negative slope of the head's LeakyReLUs."""


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
        self.screen_in = screen_input + 3 * self.parts  # the head's inputs that are the screen's own
        self.head_in = self.head_mid = self.head_out = None
        if head:
            self.head_in = nn.Conv2d(self.screen_in + SCREEN_MODS, head, 1)
            self.head_mid = nn.Conv2d(head, head, 1)
            self.head_out = nn.Conv2d(head, 3, 1)
            nn.init.zeros_(self.head_out.weight)
            nn.init.zeros_(self.head_out.bias)

    @property
    def controls(self) -> int:
        """Channels the translator predicts for it: one gate per part, then the head's inputs."""
        return self.parts + (SCREEN_MODS if self.head_in is not None else 0)

    def screen_term(self, channels: torch.Tensor, parts: torch.Tensor) -> torch.Tensor | None:
        """The head's first layer on the screen's own inputs, with its bias: the same on every
        frame, so rendering computes it once. (B or 1, hidden, H, W); None without a head."""
        if self.head_in is None:
            return None
        own = self.head_in.weight[:, :self.screen_in]
        return F.conv2d(torch.cat([channels, parts], 1), own, self.head_in.bias)

    def _head(self, mods: torch.Tensor, term: torch.Tensor) -> torch.Tensor:
        """The head on (B, SCREEN_MODS, H, W) given its ``screen_term`` -> (B, 3, H, W): its 1x1
        layers as matrix products over the pixels, channels last (twice as fast as 1x1 convolutions)."""
        b, _, h, w = mods.shape
        weight = {name: conv.weight[:, :, 0, 0] for name, conv in
                  (("in", self.head_in), ("mid", self.head_mid), ("out", self.head_out))}
        x = mods.permute(0, 2, 3, 1).reshape(b * h * w, -1)
        hidden = (x @ weight["in"][:, self.screen_in:].t()).view(b, h, w, -1) + term.permute(0, 2, 3, 1)
        hidden = F.leaky_relu(hidden.reshape(b * h * w, -1), HEAD_LEAK)
        hidden = F.leaky_relu(torch.addmm(self.head_mid.bias, hidden, weight["mid"].t()), HEAD_LEAK)
        out = torch.addmm(self.head_out.bias, hidden, weight["out"].t())
        return out.view(b, h, w, 3).permute(0, 3, 1, 2)  # channels-last memory

    def forward(self, image: torch.Tensor, controls: torch.Tensor, channels: torch.Tensor | None,
                parts: torch.Tensor, term: torch.Tensor | None = None) -> torch.Tensor:
        """image (B, 3, H, W) + the gated screen.

        controls: (B, ``controls``, H, W) from the translator; channels: (B, screen_input, H, W)
        ``screen_channels``; parts: (B or 1, 3 * parts, H, W) ``screen_parts``; term: their
        ``screen_term`` when already computed (then ``channels`` is not read). Returns (B, 3, H, W).
        """
        out = image
        for d in range(self.parts):
            out = out + (1 + controls[:, d:d + 1]) * parts[:, 3 * d:3 * d + 3]
        if self.head_in is not None:
            if term is None:
                term = self.screen_term(channels, parts)
            out = out + self._head(controls[:, self.parts:], term)
        return out
