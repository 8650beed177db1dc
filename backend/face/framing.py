"""Framings of the subject crop: how much of the person a square crop holds (one source of truth
for ``track_video``, the CLI and the docs), and the framing segments a shot's frames are split
into when one fixed crop would make a moving face too small.

Pure numpy on landmarks in video pixels; ``backend.face.track`` turns the sides and segments into
crop boxes."""

from __future__ import annotations

import numpy as np

FRAMINGS: dict[str, tuple[float, float]] = {
    "face": (1.7, 0.4),
    "head": (2.3, 0.6),
    "bust": (3.0, 0.75),
}
"""Framing name -> (crop side, space above the face), both in face heights (landmark extent,
forehead to chin). ``face``: the face fills the crop (75 px tall at 128 px when it holds still);
``head``: head and hair; ``bust``: head, neck and shoulders. A crop also holds the face's whole
motion within its shot or framing segment (``MOTION_MARGIN``, ``crop_side``), so a moving face can
be somewhat smaller (the median face by at most ``FACE_SIZE_TOLERANCE``)."""
DEFAULT_FRAMING = "face"
"""The framing ``track`` uses unless told otherwise: the best held-out face after training on the
synthetic sample and a real clip (docs/tracking.md, "How the choices were measured")."""
MOTION_MARGIN = 1.3
"""A crop's side is at least this times the face's motion range (the landmarks' extent over the
crop's frames, larger of width and height)."""
MIN_SPACE_BELOW = 0.1
"""Fewest face heights a crop leaves below the lowest chin point of its frames: where the motion
term sets the side, the framing's space above the face yields to this."""
FACE_SIZE_TOLERANCE = 0.07
"""How much smaller than the framing's still-face size (``size / FRAMINGS[framing][0]``) a crop
may make a frame's face (relative): at 128 px in ``face``, 75.3 px may drop to 70 px. The motion
term of a crop's side stops there for the median face (``crop_side``); with framing segments, a
shot whose face moves (or changes size) too much for one crop to keep every frame's face there is
split, each segment with its own crop."""
EDGE_SPACE = 0.05
"""Fewest face heights a crop leaves between its frames' landmarks and its left, right and top
edges where the motion term is capped (``crop_side``): no landmark leaves the crop."""


def face_heights(points: np.ndarray) -> np.ndarray:
    """(T, N, 2) landmarks (video px) -> (T,) face height per frame (landmark extent in y, px)."""
    return points[:, :, 1].max(axis=1) - points[:, :, 1].min(axis=1)


def crop_side(lo: np.ndarray, hi: np.ndarray, face_h: float, framing: str, limit: float) -> float:
    """Side (whole video px) of the crop of frames whose landmarks span ``lo``..``hi``.

    Args:
        lo, hi: (2,) smallest and largest landmark x, y over the frames (video px).
        face_h: the frames' median face height (video px).
        framing: a ``FRAMINGS`` name.
        limit: the largest side allowed (the video's short side, px).
    Returns:
        ``FRAMINGS[framing][0] * face_h`` (the still-face side), or more where the face moves:
        ``MOTION_MARGIN`` times the motion range, but no more than makes the median face
        ``FACE_SIZE_TOLERANCE`` smaller than a still one, unless the landmarks' box with
        ``EDGE_SPACE`` on three sides and ``MIN_SPACE_BELOW`` below needs more; at most
        ``limit``, rounded.
    """
    still = FRAMINGS[framing][0] * face_h
    width, height = (float(v) for v in hi - lo)
    motion = MOTION_MARGIN * max(width, height)
    cap = still / (1.0 - FACE_SIZE_TOLERANCE)
    landmarks_box = max(width + 2 * EDGE_SPACE * face_h, height + (EDGE_SPACE + MIN_SPACE_BELOW) * face_h)
    side = max(still, min(motion, max(cap, landmarks_box)))
    return float(round(min(side, float(limit))))


def face_fill(lo: np.ndarray, hi: np.ndarray, heights: np.ndarray, framing: str, limit: float) -> float:
    """How full one crop over these frames holds their smallest face, relative to the framing's
    still-face size (1: as a still face at the median height; 0.93 is 70 of 75.3 px at 128 px in
    ``face``).

    Args:
        lo, hi: (L, 2) per-frame smallest and largest landmark x, y (video px).
        heights: (L,) per-frame face heights (video px).
        framing: a ``FRAMINGS`` name; limit: the largest crop side (px).
    """
    side = crop_side(lo.min(axis=0), hi.max(axis=0), float(np.median(heights)), framing, limit)
    return FRAMINGS[framing][0] * float(heights.min()) / side


def framing_segments(points: np.ndarray, framing: str, limit: float, min_frames: int
                     ) -> list[tuple[int, int]]:
    """Split one shot's frames into consecutive segments, each to get one fixed crop.

    Greedy from the first frame: a segment takes at least ``min_frames`` frames and grows while
    one crop holding its whole motion keeps every frame's face at least ``1 -
    FACE_SIZE_TOLERANCE`` of the framing's size (``face_fill``). Where even ``min_frames`` frames
    miss that (fast motion, or the face's own height swinging with pitch and mouth), the segment
    grows while its smallest face gets no smaller than theirs: no split that gains nothing. The last
    segment is never shorter than ``min_frames``, and the boundary before it is placed so the worse
    of the two last segments is as full as can be. A shot stays whole when its face fits one crop,
    when it has fewer than ``2 * min_frames`` frames, and when the split's least full segment is
    no fuller than one crop for the whole shot (crop changes that gain nothing).

    Args:
        points: (T, N, 2) landmarks of the shot's frames in order (video px).
        framing: a ``FRAMINGS`` name.
        limit: the largest crop side (the video's short side, px).
        min_frames: fewest frames of a segment (>= 1).
    Returns:
        ``[(a, b), ...]`` frame ranges (b exclusive) covering ``0..T`` in order.
    """
    T = len(points)
    lo, hi = points.min(axis=1), points.max(axis=1)
    heights = face_heights(points)

    def fill(a: int, b: int) -> float:
        return face_fill(lo[a:b], hi[a:b], heights[a:b], framing, limit)

    bounds = [0]
    a = 0
    while T - a >= 2 * min_frames:
        b = a + min_frames
        target = min(1.0 - FACE_SIZE_TOLERANCE, fill(a, b))
        while b < T and fill(a, b + 1) >= target:
            b += 1
        if b >= T:
            break
        b = min(b, T - min_frames)
        bounds.append(b)
        a = b
    if len(bounds) > 1:
        bounds[-1] = _balanced_last_bound(bounds[-2], T, min_frames, fill)
    segments = list(zip(bounds, [*bounds[1:], T], strict=True))
    if min(fill(a, b) for a, b in segments) <= fill(0, T):
        return [(0, T)]
    return segments


def _balanced_last_bound(a: int, T: int, min_frames: int, fill) -> int:
    """Where the last two segments (frames ``a..T``) meet: the boundary whose worse segment keeps
    the larger ``fill`` (capped at ``1 - FACE_SIZE_TOLERANCE``), the latest among equals. The greedy
    pass leaves the last segment whatever frames remain, however they move."""
    goal = 1.0 - FACE_SIZE_TOLERANCE
    cands = range(a + min_frames, T - min_frames + 1)
    return max(cands, key=lambda c: (min(fill(a, c), fill(c, T), goal), c))
