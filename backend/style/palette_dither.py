"""Dispersed-dot looks: a few flat colours mixed pixel by pixel (an error-diffused 1-bit print,
a stipple, a handheld console's shades).

Where such a look puts each dot depends on its own process (the error carried from the pixels
before it, a random threshold), so the dots of a frame the edit never saw cannot be predicted:
fitted on the dots, the translator gives each pixel the ink most likely there, solid where the
dots are sparse and a mixed tone where they mix, and the output loses the look's texture. The
renderer turns that output back into dots (``PaletteDither.apply``): each pixel's grey is placed
between the two palette colours whose greys bracket it, and the pixel takes the brighter one
where its fraction of the way there exceeds a blue-noise threshold (``blue_noise_tile``). The
threshold map is fixed in the frame, so where the picture holds still the dots do too (no
shimmer), and it runs after the steady filter (``backend.style.steady``), which averages the
tones, not the dots. The network is fitted as without dots: fitted on the proportions the dots
make (the references blurred), it dotted the mixed areas more fully and scored 0.55-1.40 dB
lower in the face on the 11 rows measured (docs/editing.md, "Dots").

Detection (``find_palette``), on the references only: at most ``MAX_COLOURS`` colours (k-means on
all references' pixels, the fewest that hold ``PALETTE_SHARE`` of the pixels within
``PALETTE_TOLERANCE``) and a dispersed mix: of the pixels on a boundary between colours (a
neighbour of another colour), at least ``DOT_SHARE`` are dots, whose four neighbours all take
another colour (``dot_share``). On frames 0 and 40 of three subjects that share is 0.22-0.25 for
a Floyd-Steinberg dither, 0.11 for a stipple, 0.33-0.40 for a 4x4 ordered dither and 0.054-0.078
for an Atkinson dither onto three inks (much of it flat ink), against at most 0.018 for the
few-colour line and print looks, whose boundaries are strokes (woodcut, brush ink), and 0 for a
pixel-art palette. The share of all pixels that are dots, the first measure, left the Atkinson
dither of the two darker subjects (0.010-0.018) among the line looks (up to 0.005) with a flat
frame's dilution.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from backend.imaging.convert import luma

MAX_COLOURS = 4
PALETTE_SHARE = 0.97
PALETTE_TOLERANCE = 0.06
"""RGB distance in [0, 1] units within which a pixel counts as a palette colour."""
DOT_SHARE = 0.035
BLUE_NOISE_TILE = 64
"""Side (px) of the threshold map's tile."""
_KMEANS_ITERS = 30


@dataclass(eq=False)  # arrays: compare ``colours`` and ``seed`` where needed
class PaletteDither:
    """The palette of a dispersed-dot look and the frame-locked threshold map that dots it.

    Attributes:
        colours: (K, 3) float RGB in [0, 1], 2 <= K <= ``MAX_COLOURS``, sorted by grey, no two
            of one grey.
        seed: of the blue-noise threshold map (``threshold_map``).
    """

    colours: np.ndarray
    seed: int = 0
    _maps: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        c = np.asarray(self.colours, np.float32)
        if c.ndim != 2 or c.shape[1] != 3 or not 2 <= len(c) <= MAX_COLOURS or not np.isfinite(c).all():
            raise ValueError(f"a dither palette is 2..{MAX_COLOURS} RGB colours, got shape {c.shape}")
        if np.any(np.diff(luma(c)) <= 1e-4):
            raise ValueError("a dither palette's colours must be sorted by grey, each brighter than the last")
        self.colours = np.clip(c, 0.0, 1.0)

    @property
    def greys(self) -> np.ndarray:
        """(K,) each colour's grey, ascending."""
        return luma(self.colours).astype(np.float32)

    def to_dict(self) -> dict:
        return {"colours": self.colours.tolist(), "seed": int(self.seed)}

    @classmethod
    def from_dict(cls, d: dict) -> PaletteDither:
        """Raises ValueError for anything but a list of RGB colours and an integer seed."""
        if not isinstance(d, dict) or not isinstance(d.get("colours"), list) or \
                not isinstance(d.get("seed", 0), int):
            raise ValueError("translator dither must be a dict of colours (a list of RGB) and a seed")
        try:
            colours = np.asarray(d["colours"], np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"translator dither colours must be RGB triples: {exc}") from None
        return cls(colours, int(d.get("seed", 0)))

    def threshold_map(self, h: int, w: int) -> np.ndarray:
        """(h, w) float32 thresholds in (0, 1): the blue-noise tile (``blue_noise_tile``) repeated
        over the frame from an offset the seed picks. Fixed for a size and seed."""
        if (h, w) not in self._maps:
            tile = blue_noise_tile()
            n = tile.shape[0]
            oy, ox = np.random.default_rng(self.seed).integers(0, n, 2)
            reps = (-(-(h + oy) // n), -(-(w + ox) // n))
            self._maps[(h, w)] = np.tile(tile, reps)[oy:oy + h, ox:ox + w].astype(np.float32)
        return self._maps[(h, w)]

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB (the network's tones) -> (H, W, 3) uint8 of palette colours only.

        A pixel of grey g between the inks' greys g_j < g_j+1 takes ink j + 1 where
        (g - g_j) / (g_j+1 - g_j) exceeds its threshold t: where g > g_j + t (g_j+1 - g_j), a cut
        per ink step fixed for a frame size, so the ink is the count of cuts the grey passes."""
        h, w = frame.shape[:2]
        grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
        index = np.zeros((h, w), np.uint8)
        for cut in self._cuts(h, w):
            index += grey > cut
        return self._inks[index]

    def _cuts(self, h: int, w: int) -> list[np.ndarray]:
        """Per step between neighbouring inks, (h, w) float32 greys (0..255) a pixel must exceed."""
        key = ("cuts", h, w)
        if key not in self._maps:
            t, g = self.threshold_map(h, w), self.greys * 255
            self._maps[key] = [g[j] + t * (g[j + 1] - g[j]) for j in range(len(g) - 1)]
        return self._maps[key]

    @property
    def _inks(self) -> np.ndarray:
        """(K, 3) uint8 the inks as a frame shows them."""
        return np.round(self.colours * 255).astype(np.uint8)


@functools.cache
def blue_noise_tile(n: int = BLUE_NOISE_TILE, sigma: float = 1.5) -> np.ndarray:
    """(n, n) float64 thresholds (i + 0.5) / n**2, each once, that tile the plane: the void-and-
    cluster ranking (Ulichney 1993) on a torus with a Gaussian of ``sigma`` px. Thresholding it at
    any level gives dots as evenly spread as that level allows (no clumps, no grid): a random
    tenth of the pixels is relaxed until its tightest cluster is its largest void, then ranked by
    taking the tightest cluster out (below) and filling the largest void (above). 0.26 s at 64 px."""
    d = np.minimum(np.arange(n), n - np.arange(n)).astype(np.float64)
    kernel = np.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * sigma**2))  # centred on pixel 0

    def splat(i: int) -> np.ndarray:
        return np.roll(kernel, divmod(i, n), (0, 1)).ravel()

    pattern = np.zeros(n * n, bool)
    pattern[np.random.default_rng(0).choice(n * n, n * n // 10, replace=False)] = True
    energy = np.fft.irfft2(np.fft.rfft2(pattern.reshape(n, n).astype(np.float64)) * np.fft.rfft2(kernel),
                           s=(n, n)).ravel()
    for _ in range(n * n):
        cluster = int(np.argmax(np.where(pattern, energy, -np.inf)))
        pattern[cluster], energy = False, energy - splat(cluster)
        void = int(np.argmin(np.where(pattern, np.inf, energy)))
        pattern[void], energy = True, energy + splat(void)
        if void == cluster:
            break
    ranks = np.empty(n * n, np.int64)
    ones, e, k = pattern.copy(), energy.copy(), int(pattern.sum())
    while k > 0:
        cluster = int(np.argmax(np.where(ones, e, -np.inf)))
        ones[cluster], e, k = False, e - splat(cluster), k - 1
        ranks[cluster] = k
    ones, e, k = pattern.copy(), energy.copy(), int(pattern.sum())
    while k < n * n:
        void = int(np.argmin(np.where(ones, np.inf, e)))
        ones[void], e = True, e + splat(void)
        ranks[void], k = k, k + 1
    return ((ranks + 0.5) / (n * n)).reshape(n, n)


def _kmeans(pixels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) -> ((k, 3) centres, (N,) labels): Lloyd's iterations from farthest-point seeds (the
    darkest pixel, then each time the pixel farthest from the seeds so far): deterministic, and
    a palette's colours each get a seed however unevenly they are used."""
    centres = [pixels[int(np.argmin(luma(pixels)))]]
    gap = np.linalg.norm(pixels - centres[0], axis=1)
    for _ in range(k - 1):
        centres.append(pixels[int(np.argmax(gap))])
        gap = np.minimum(gap, np.linalg.norm(pixels - centres[-1], axis=1))
    centres = np.stack(centres)
    labels = np.zeros(len(pixels), np.int64)
    for _ in range(_KMEANS_ITERS):
        labels = np.argmin(((pixels[:, None] - centres[None]) ** 2).sum(-1), 1)
        new = np.stack([pixels[labels == j].mean(0) if np.any(labels == j) else centres[j] for j in range(k)])
        if np.allclose(new, centres, atol=1e-6):
            break
        centres = new
    return centres, labels


def dot_share(labels: np.ndarray) -> float:
    """(H, W) colour labels -> of the pixels with a neighbour of another label, the share whose
    four neighbours all take another label (a dispersed dot; pixels on the frame's edge compare
    with themselves across it); 0.0 for a flat image."""
    p = np.pad(labels, 1, mode="edge")
    h, w = labels.shape
    differ = [p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] != labels
              for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0))]
    boundary = np.logical_or.reduce(differ).sum()
    return float(np.logical_and.reduce(differ).sum() / boundary) if boundary else 0.0


def find_palette(targets: torch.Tensor) -> tuple[PaletteDither | None, float]:
    """The dispersed-dot palette of the references, if they are drawn that way.

    Args:
        targets: (P, 3, H, W) references in [-1, 1].
    Returns:
        (the palette or None, the references' mean ``dot_share``: 0.0 where no palette of
        ``MAX_COLOURS`` colours holds the pixels).
    """
    images = ((targets.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    pixels = images.reshape(-1, 3)
    for k in range(2, MAX_COLOURS + 1):
        centres, labels = _kmeans(pixels, k)
        near = np.linalg.norm(pixels - centres[labels], axis=1) < PALETTE_TOLERANCE
        if near.mean() < PALETTE_SHARE:
            continue
        shares = [dot_share(lab) for lab in labels.reshape(images.shape[:3])]
        share = float(np.mean(shares))
        colours = centres[np.argsort(luma(centres))]
        if share < DOT_SHARE or np.any(np.diff(luma(colours)) <= 1e-4):
            return None, share
        return PaletteDither(colours), share
    return None, 0.0
