"""A colour grade that varies smoothly over the frame: looks whose colour depends on where a pixel is.

Some looks colour the same content differently in different parts of the frame: a vignette, a
gradient map from one side to the other, a light leak from a corner, edges that glow cyan on the
left and magenta on the right. A fully convolutional translator trained on random patches cannot
know where a patch was, so it learns the average. The grade gives it that knowledge with very few
degrees of freedom: a per-pixel affine colour transform whose coefficients are low-order
polynomials of the pixel's position in the frame,

    out(x, y) = rgb + sum_k phi_k(x, y) * (A_k @ rgb + b_k),

with ``phi`` the monomials of degree 1 .. ``degree`` in the frame-normalised coordinates
(x, y in [-1, 1]). At degree 2 that is 5 terms and 60 numbers, too few to memorise where anything
is in the keyframe (a per-pixel correction of 128 x 128 x 3 would), but enough for any smooth
change of the palette across the frame. It is zero at initialisation (the identity).
"""

from __future__ import annotations

import torch
from torch import nn

MAX_DEGREE = 2


def monomial_count(degree: int) -> int:
    """Terms phi_k of degree 1 .. ``degree`` in two variables (2 at degree 1, 5 at degree 2)."""
    return sum(d + 1 for d in range(1, degree + 1))


def position_channels(h: int, w: int, like: torch.Tensor | None = None) -> torch.Tensor:
    """(1, 2, h, w): x and y of every pixel centre, normalised to [-1, 1] across the frame."""
    kw = {} if like is None else {"device": like.device, "dtype": like.dtype}
    ys = torch.linspace(-1.0, 1.0, h, **kw) if h > 1 else torch.zeros(1, **kw)
    xs = torch.linspace(-1.0, 1.0, w, **kw) if w > 1 else torch.zeros(1, **kw)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy])[None]


def monomials(pos: torch.Tensor, degree: int) -> torch.Tensor:
    """(B, 2, H, W) positions -> (B, K, H, W): x, y [, x^2, x y, y^2] (degree 1 [, 2])."""
    x, y = pos[:, 0:1], pos[:, 1:2]
    terms = []
    for d in range(1, degree + 1):
        terms += [x ** (d - i) * y ** i for i in range(d + 1)]
    return torch.cat(terms, 1)


class PositionGrade(nn.Module):
    """``rgb + sum_k phi_k(pos) (A_k rgb + b_k)``, (B, 3, H, W) -> (B, 3, H, W).

    Args:
        degree: highest degree of the position monomials (1 or 2).

    Forward:
        rgb: (B, 3, H, W), any range.
        pos: (B or 1, 2, H, W) pixel positions in [-1, 1] (``position_channels``; while fitting,
            the crops' own positions, cut and flipped with them).
    """

    def __init__(self, degree: int) -> None:
        super().__init__()
        if not 1 <= degree <= MAX_DEGREE:
            raise ValueError(f"a position grade has degree 1..{MAX_DEGREE}, not {degree}")
        self.degree = degree
        k = monomial_count(degree)
        self.matrix = nn.Parameter(torch.zeros(k, 3, 3))
        self.offset = nn.Parameter(torch.zeros(k, 3))

    def fields(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The grade at ``pos`` (B, 2, H, W): the per-pixel matrix (B, 3, 3, H, W) (the change
        only, the identity left out) and offset (B, 3, H, W)."""
        phi = monomials(pos, self.degree)
        m = torch.einsum("bkhw,kij->bijhw", phi, self.matrix)
        b = torch.einsum("bkhw,ki->bihw", phi, self.offset)
        return m, b

    def forward(self, rgb: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        m, b = self.fields(pos)
        return rgb + torch.einsum("bijhw,bjhw->bihw", m, rgb) + b
