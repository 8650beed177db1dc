"""A colour grade that varies smoothly over the frame: looks whose colour depends on where a pixel is.

Some looks colour the same content differently in different parts of the frame: a vignette, a
gradient map from one side to the other, a light leak from a corner, edges that glow cyan on the
left and magenta on the right. A fully convolutional translator trained on random patches cannot
know where a patch was, so it learns the average. The grade gives it that knowledge with few
degrees of freedom: a per-pixel affine colour transform whose coefficients are interpolated over
the frame from an ``n`` x ``n`` grid of control points,

    out(x, y) = rgb + sum_k phi_k(x, y) * (A_k @ rgb + b_k),

with ``phi_k`` the bilinear weight ("hat") of control point k at the frame-normalised position
(x, y in [-1, 1]) less the weights' mean (``grade_basis``: the grade has no part common to the
whole frame; the look's global colour is the network's). At ``n`` = 5 that is 25 points 32 px apart in a
128 px frame and 300 numbers: too coarse to memorise where anything is in the keyframe (a
per-pixel correction of 128 x 128 x 3 would), fine enough for a vignette that is flat over the
face and falls off towards the corners (a quadratic polynomial of the position, tried first,
could not be flat in the middle and missed the face's tone on such a look). It is zero at
initialisation (the identity). The fit only gives a translator a grade when its keyframes need
one (``position_share`` >= ``POSITION_SHARE``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from backend.imaging.blur import gaussian_blur
from backend.imaging.coords import position_channels

GRID_SIZES = range(2, 9)
"""Control points per side a grade may have."""


def control_count(n: int) -> int:
    """Control points of an ``n`` x ``n`` grid."""
    return n * n


def _hats(u: torch.Tensor, n: int) -> torch.Tensor:
    """(B, 1, H, W) coordinates in [-1, 1] -> (B, n, H, W) linear interpolation weights of the
    ``n`` evenly spaced control points (-1 .. 1)."""
    k = torch.arange(n, device=u.device, dtype=u.dtype).view(1, n, 1, 1)
    return (1 - ((u + 1) * (0.5 * (n - 1)) - k).abs()).clamp(min=0)


def control_weights(pos: torch.Tensor, n: int) -> torch.Tensor:
    """(B, 2, H, W) positions -> (B, n * n, H, W) bilinear weights of the grid's control points
    (row-major, y down), summing to 1 at every pixel."""
    wx, wy = _hats(pos[:, 0:1], n), _hats(pos[:, 1:2], n)
    return (wy[:, :, None] * wx[:, None]).flatten(1, 2)


def grade_basis(pos: torch.Tensor, n: int) -> torch.Tensor:
    """(B, 2, H, W) positions -> (B, n * n, H, W): the control weights less their mean 1 / n^2, so
    that the basis sums to 0 at every pixel. A grade on it cannot change every pixel alike: a colour
    change the whole frame shares is left to the network. With plain weights (summing to 1) the
    grade took over the look's global colour transform at its higher learning rate and grew to
    coefficients of 2-5 that the network then had to undo. (Centred or not, a grade where the look
    does not need one fits the keyframe's errors by position: hence ``POSITION_SHARE``.)"""
    return control_weights(pos, n) - 1.0 / control_count(n)


class PositionGrade(nn.Module):
    """``rgb + sum_k phi_k(pos) (A_k rgb + b_k)``, (B, 3, H, W) -> (B, 3, H, W).

    Args:
        n: control points per side of the grid (``GRID_SIZES``).

    Forward:
        rgb: (B, 3, H, W), any range.
        pos: (B or 1, 2, H, W) pixel positions in [-1, 1] (``position_channels``; while fitting,
            the crops' own positions, cut, flipped and warped with them).
    """

    def __init__(self, n: int) -> None:
        super().__init__()
        if n not in GRID_SIZES:
            raise ValueError(f"a position grade has {GRID_SIZES.start}..{GRID_SIZES.stop - 1} control "
                             f"points per side, not {n}")
        self.n = n
        k = control_count(n)
        self.matrix = nn.Parameter(torch.zeros(k, 3, 3))
        self.offset = nn.Parameter(torch.zeros(k, 3))

    def fields(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The grade at ``pos`` (B, 2, H, W): the per-pixel matrix (B, 3, 3, H, W) (the change
        only, the identity left out) and offset (B, 3, H, W)."""
        phi = grade_basis(pos, self.n)
        m = torch.einsum("bkhw,kij->bijhw", phi, self.matrix)
        b = torch.einsum("bkhw,ki->bihw", phi, self.offset)
        return m, b

    def forward(self, rgb: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        m, b = self.fields(pos)
        return rgb + torch.einsum("bijhw,bjhw->bihw", m, rgb) + b


POSITION_SHARE = 0.45
"""``position_share`` from which a keyframe's look counts as depending on the frame position, so
the fit gets a grade. Measured on frames 0 and 40 of a real clip and frame 0 of the synthetic
one, for 22 looks: 0.53-0.89 for the four whose tone changes across the frame (a sunset gradient
map, a light leak, a vignetted sepia, a vignetted retro curve); 0.00-0.33 for the 18 others, among
them neon edges whose glow turns from cyan to magenta across the frame (0.14-0.20: its tone does
not change, only the colour of thin edges). A grade where the look does not need one fits the
keyframe's errors by position: it cost up to 0.9 dB in the face on held-out frames
(docs/editing.md)."""


RMS_FLOOR = 0.01
"""Added to both residuals of ``position_share`` ([-1, 1] units, about 1.3 levels of 255)."""


def _pixel_features(source: torch.Tensor) -> torch.Tensor:
    """(3, H, W) source in [-1, 1] -> (H * W, 11): the pixel's colour, its square, the colour
    blurred over ~2 px, the grey gradient magnitude and 1: what a look that ignores the position
    makes of a pixel, to first order."""
    x = source[None].double()
    grey = x.mean(1, keepdim=True)
    gx = F.pad(grey[..., :, 2:] - grey[..., :, :-2], (1, 1, 0, 0), mode="replicate")
    gy = F.pad(grey[..., 2:, :] - grey[..., :-2, :], (0, 0, 1, 1), mode="replicate")
    feats = torch.cat([x, x * x, gaussian_blur(x, 2.0), torch.sqrt(gx * gx + gy * gy), torch.ones_like(grey)],
                      1)
    return feats[0].flatten(1).T


def position_share(source: torch.Tensor, reference: torch.Tensor) -> float:
    """How much of a reference's colour a smooth function of the frame position explains beyond
    what each source pixel and its neighbourhood explain.

    Two least-squares fits of the (3, H, W) reference from the (3, H, W) source (both in [-1, 1]):
    on ``_pixel_features`` alone, and on them times (1, x, y, x^2, x y, y^2) of the frame position.
    Returns 1 - (rms residual of the second + ``RMS_FLOOR``) / (that of the first + ``RMS_FLOOR``):
    near 1 for a gradient map or a vignette, near 0 for a look that does the same everywhere (the
    floor keeps a look the pixel features explain exactly, e.g. a channel swap, near 0 too).
    """
    feats = _pixel_features(source)
    pos = position_channels(*source.shape[-2:], feats)[0].flatten(1).T
    x, y = pos[:, :1], pos[:, 1:]
    terms = torch.cat([x, y, x * x, x * y, y * y], 1)
    with_pos = torch.cat([feats, (feats[:, :, None] * terms[:, None]).flatten(1)], 1)
    target = reference.double().flatten(1).T
    rms = [float((target - a @ torch.linalg.lstsq(a, target).solution).pow(2).mean().sqrt())
           for a in (feats, with_pos)]
    return 1.0 - (rms[1] + RMS_FLOOR) / (rms[0] + RMS_FLOOR)
