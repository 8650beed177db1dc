"""Shot cuts and face segments: where a video's picture or its tracked face changes abruptly.

Two signals, both computed frame by frame while landmarks are found (``SegmentTracker``):

- **Shot cut**: the colour histogram (hue x saturation x value, ``HIST_BINS``, of a 64 x 64
  thumbnail) of a frame against the previous frame's, as the Bhattacharyya distance
  (0 = same colours, 1 = disjoint). A cut is a distance above ``CUT_THRESHOLD`` that is also
  ``CUT_RATIO`` times the median distance of the last ``CUT_CONTEXT`` frames (fast pans and
  flashes raise the median, so they are not cuts).
- **Face jump**: within a shot, the tracked (largest) face moves by more than ``JUMP_FACE_HEIGHTS``
  face heights or changes size by more than ``JUMP_SIZE_RATIO`` from one detection to the next:
  another face became the largest one.

A *segment* is a run of frames between two such events (or a long gap without a face): one
face, one framing. Identities (``backend.face.identity``) are decided per segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

HIST_BINS = (16, 8, 4)
"""Hue, saturation, value bins of the frame signature."""
THUMB = 64
"""Side (px) of the thumbnail the signature is computed on."""
CUT_THRESHOLD = 0.2
"""Bhattacharyya distance between consecutive frames above which a frame may start a new shot."""
CUT_RATIO = 3.0
"""A cut's distance is also at least this many times the recent median distance."""
CUT_CONTEXT = 12
"""Frames of recent distances the median is taken over."""
MAX_GAP_S = 0.5
"""Gaps without a face up to this long (seconds) stay in a segment (and are interpolated); a face
reappearing after a longer gap starts a new segment."""
JUMP_FACE_HEIGHTS = 0.5
"""Face-centre move (in face heights) between consecutive detections that starts a new segment."""
JUMP_SIZE_RATIO = 1.5
"""Face-size change (ratio) between consecutive detections that starts a new segment."""


def frame_signature(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (prod(HIST_BINS),) float32 colour histogram summing to 1."""
    small = cv2.resize(rgb, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    h = cv2.calcHist([hsv], [0, 1, 2], None, list(HIST_BINS), [0, 180, 0, 256, 0, 256]).ravel()
    return (h / max(float(h.sum()), 1.0)).astype(np.float32)


def signature_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance in [0, 1] between two signatures (0 = identical colours)."""
    bc = float(np.sqrt(np.clip(a, 0, None) * np.clip(b, 0, None)).sum())
    return float(np.sqrt(max(0.0, 1.0 - min(bc, 1.0))))


def face_box(points: np.ndarray) -> tuple[float, float, float]:
    """(478 or 468, 2+) pixel landmarks -> (centre x, centre y, face height) in pixels."""
    p = points[:468, :2]
    lo, hi = p.min(0), p.max(0)
    return float(lo[0] + hi[0]) / 2, float(lo[1] + hi[1]) / 2, max(float(hi[1] - lo[1]), 1.0)


def face_jump(a: np.ndarray, b: np.ndarray) -> bool:
    """True when the face in ``b`` is not the same on-screen face as in ``a`` (moved or resized)."""
    ax, ay, ah = face_box(a)
    bx, by, bh = face_box(b)
    moved = np.hypot(bx - ax, by - ay) / max(ah, bh)
    ratio = max(ah, bh) / min(ah, bh)
    return bool(moved > JUMP_FACE_HEIGHTS or ratio > JUMP_SIZE_RATIO)


@dataclass(frozen=True)
class Segment:
    """Frames ``start``..``stop - 1`` (source numbering) of one shot with one continuous face.

    Attributes:
        start, stop: source frame range (stop exclusive).
        shot: index of the shot the segment belongs to.
        reason: why it starts here: "start", "cut", "face jump" or "face reappears".
    """

    start: int
    stop: int
    shot: int
    reason: str

    @property
    def n_frames(self) -> int:
        return self.stop - self.start


class SegmentTracker:
    """Online shot-cut and face-jump detection; feed every frame in order with ``add``.

    ``max_gap`` is the longest run of faceless frames (in frames) that does not end a segment.
    """

    def __init__(self, max_gap: int) -> None:
        self.max_gap = max(int(max_gap), 1)
        self.scores: list[float] = []
        """Per frame: signature distance to the previous frame (0 for the first)."""
        self.cuts: list[int] = []
        """Frames that start a new shot (after the first)."""
        self._starts: list[tuple[int, int, str]] = []
        self._prev_sig: np.ndarray | None = None
        self._last_face: np.ndarray | None = None
        self._last_face_frame = -1
        self._n = 0

    def add(self, signature: np.ndarray, points: np.ndarray | None) -> bool:
        """Record frame ``n`` (its signature and landmarks or None); True when it starts a segment."""
        i = self._n
        self._n += 1
        score = 0.0 if self._prev_sig is None else signature_distance(self._prev_sig, signature)
        recent = self.scores[-CUT_CONTEXT:]
        self.scores.append(score)
        self._prev_sig = signature
        context = float(np.median(recent)) if recent else 0.0
        cut = i > 0 and score > CUT_THRESHOLD and score > CUT_RATIO * context
        if cut:
            self.cuts.append(i)
        reason = None
        if i == 0:
            reason = "start"
        elif cut:
            reason = "cut"
        elif points is not None and self._last_face is not None:
            if i - self._last_face_frame > self.max_gap + 1:
                reason = "face reappears"
            elif face_jump(self._last_face, points):
                reason = "face jump"
        if points is not None:
            self._last_face, self._last_face_frame = points, i
        if cut:
            self._last_face = None if points is None else points
        if reason is not None:
            self._starts.append((i, len(self.cuts), reason))
        return reason is not None

    @property
    def n_frames(self) -> int:
        return self._n

    def segments(self) -> list[Segment]:
        """All segments so far, covering frames 0..n_frames-1 without overlap."""
        out = []
        for k, (start, shot, reason) in enumerate(self._starts):
            stop = self._starts[k + 1][0] if k + 1 < len(self._starts) else self._n
            out.append(Segment(start, stop, shot, reason))
        return out
