"""The sample video's deterministic expression and head-pose curves.

Curves are sums of events: smooth raised-cosine bumps for expressions and small head sways,
and sharp cusps ``A (1 - |t - c| / w)^2`` for the pose extremes, so the frame of the minimum and
the maximum yaw and pitch is unambiguous (neighbouring frames differ by about 2A/(w fps) rad).
Extreme centres sit exactly on frame times. MediaPipe leaks eye, brow and one-sided mouth
motion into the pose it sees, so short or one-sided events are either centred on an extreme
(which keeps it in place) or kept a few frames away from it (an overlapping tail would shift the
tracked extreme by a frame). The seed jitters times and amplitudes a little without changing
which events are the extremes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.data.synthetic_expressions import ANIMATED_NAMES

POSE_COLUMNS = ("yaw", "pitch", "roll", "tx", "ty", "tz")


@dataclass(frozen=True)
class Event:
    """One bump of one curve: ``centre`` and ``half_width`` in seconds, peak ``amplitude``."""

    name: str
    centre: float
    half_width: float
    amplitude: float
    cusp: bool = False


def _events(name: str, *triples: tuple[float, float, float], cusp: bool = False) -> list[Event]:
    return [Event(name, c, w, a, cusp) for c, w, a in triples]


FULL_EVENTS: tuple[Event, ...] = tuple(
    # Talking: syllable-like jaw movements of varied size.
    _events("jawOpen", (0.55, 0.16, 0.6), (0.95, 0.14, 0.35), (1.35, 0.2, 0.8), (2.9, 0.18, 0.5),
            (3.3, 0.15, 0.7), (4.75, 0.25, 1.0), (5.35, 0.15, 0.45), (5.75, 0.18, 0.7), (7.2, 0.2, 0.6),
            (7.65, 0.15, 0.4), (8.7, 0.3, 0.9), (9.45, 0.15, 0.5))
    + _events("mouthSmileLeft", (2.0, 0.8, 0.85), (7.0, 0.9, 0.9))
    + _events("mouthSmileRight", (3.9, 0.7, 0.8), (7.1, 0.9, 0.8), (9.3, 0.45, 0.4))
    + _events("eyeBlinkLeft", (1.6, 0.12, 1.0), (3.6, 0.12, 1.0), (6.0, 0.12, 1.0), (6.8, 0.14, 1.0),
              (8.3, 0.12, 1.0))
    + _events("eyeBlinkRight", (1.6, 0.12, 1.0), (3.6, 0.12, 1.0), (6.0, 0.12, 1.0), (8.3, 0.12, 1.0),
              (9.0, 0.14, 1.0))
    + _events("browInnerUp", (2.5, 0.6, 0.9), (8.9, 0.5, 0.6))
    + _events("browOuterUpLeft", (3.2, 0.5, 0.8), (5.0, 0.55, 0.9), (9.55, 0.3, 0.5))
    + _events("browOuterUpRight", (5.15, 0.55, 0.8), (1.0, 0.4, 0.6))
    + _events("mouthLeft", (3.55, 0.3, 0.9), (9.0, 0.3, 0.8))
    + _events("mouthRight", (1.15, 0.3, 0.9), (5.9, 0.3, 0.8))
    + _events("jawLeft", (4.9, 0.3, 0.8), (8.6, 0.3, 0.6))
    + _events("eyeSquintLeft", (2.8, 0.4, 0.9), (7.6, 0.35, 0.8))
    + _events("eyeSquintRight", (4.6, 0.4, 0.9), (9.6, 0.3, 0.8))
    + _events("noseSneerLeft", (0.5, 0.3, 0.9), (4.4, 0.3, 0.8))
    + _events("noseSneerRight", (1.0, 0.3, 0.9), (5.4, 0.3, 0.8))
    + _events("mouthUpperUpLeft", (5.2, 0.3, 0.9), (9.2, 0.3, 0.8))
    + _events("mouthLowerDownRight", (2.1, 0.3, 0.9), (6.2, 0.25, 0.8))
    + _events("yaw", (2.32, 1.1, 0.25), (6.52, 1.2, -0.28), cusp=True)
    + _events("yaw", (4.4, 0.6, 0.08), (9.0, 0.6, -0.06))
    + _events("pitch", (4.2, 0.9, 0.14), (8.0, 0.9, -0.15), cusp=True)
    + _events("pitch", (1.2, 0.7, -0.05), (6.0, 0.6, 0.05))
    + _events("roll", (3.0, 1.0, 0.08), (7.4, 1.0, -0.09))
    + _events("tx", (1.5, 1.2, 5.0), (5.0, 1.5, -6.0), (8.5, 1.2, 4.0))
    + _events("ty", (3.0, 1.0, 3.0), (7.0, 1.3, -3.0))
)
"""Ten seconds of talking: 12 jaw movements, one-sided and both-sided smiles, blinks and winks,
brow raises, lips and jaw sideways, squints, sneers and one-sided lip raises (never on the same
side as a smile at the same time: a smile lifts the nose wing and the upper lip as well, see
docs/tracking.md), two clear yaw and pitch extremes each. tx, ty are in photo pixels."""

TINY_EVENTS: tuple[Event, ...] = tuple(
    _events("jawOpen", (0.25, 0.14, 0.7), (0.7, 0.18, 1.0), (1.55, 0.15, 0.6))
    + _events("mouthSmileLeft", (0.45, 0.3, 0.9))
    + _events("mouthSmileRight", (1.4, 0.3, 0.9))
    + _events("eyeBlinkLeft", (1.16, 0.1, 1.0), (1.6, 0.1, 1.0))
    + _events("eyeBlinkRight", (1.16, 0.1, 1.0), (0.3, 0.1, 1.0))
    + _events("browInnerUp", (1.45, 0.25, 0.8))
    + _events("browOuterUpLeft", (0.5, 0.25, 0.8))
    + _events("browOuterUpRight", (0.2, 0.2, 0.7))
    + _events("mouthLeft", (0.9, 0.2, 0.9))
    + _events("mouthRight", (0.15, 0.15, 0.8))
    + _events("jawLeft", (1.15, 0.2, 0.8))
    + _events("eyeSquintLeft", (0.8, 0.2, 0.8))
    + _events("eyeSquintRight", (0.62, 0.15, 0.8))
    + _events("noseSneerLeft", (0.6, 0.2, 0.8))
    + _events("noseSneerRight", (0.35, 0.2, 0.8))
    + _events("mouthUpperUpLeft", (1.25, 0.2, 0.8))
    + _events("mouthLowerDownRight", (0.96, 0.2, 0.8))
    + _events("yaw", (0.48, 0.45, 0.22), (1.4, 0.45, -0.24), cusp=True)
    + _events("pitch", (0.96, 0.4, 0.13), (1.8, 0.35, -0.14), cusp=True)
    + _events("roll", (1.2, 0.5, 0.06))
    + _events("tx", (0.6, 0.5, 3.0), (1.5, 0.5, -3.0))
)
"""Two seconds with every kind of event (for fast tests)."""


def _shape(t: np.ndarray, e: Event) -> np.ndarray:
    u = np.abs(t - e.centre) / e.half_width
    inside = u < 1
    if e.cusp:
        return np.where(inside, (1 - np.minimum(u, 1)) ** 2, 0.0) * e.amplitude
    return np.where(inside, 0.5 * (1 + np.cos(np.pi * np.minimum(u, 1))), 0.0) * e.amplitude


def _jitter(events: tuple[Event, ...], seed: int, fps: float) -> list[Event]:
    """Seeded small changes of times (+-40 ms; cusps snap to frames) and amplitudes (+-8%)."""
    rng = np.random.default_rng(seed)
    out = []
    for e in events:
        dt, gain = rng.uniform(-0.04, 0.04), rng.uniform(0.92, 1.08)
        centre = e.centre + dt
        if e.cusp:
            centre, gain = round(centre * fps) / fps, rng.uniform(0.97, 1.03)
        out.append(Event(e.name, centre, e.half_width, e.amplitude * gain, e.cusp))
    return out


def make_schedule(n_frames: int, fps: float, tiny: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Expression and pose curves.

    Returns:
        expressions: (T, K) float32 in [0, 1], columns ``ANIMATED_NAMES``.
        pose: (T, 6) float32 ``POSE_COLUMNS``: yaw, pitch, roll in radians, tx, ty in photo
            pixels, tz = 0.
    """
    if n_frames < 1 or fps <= 0:
        raise ValueError(f"need n_frames >= 1 and fps > 0, got {n_frames}, {fps}")
    t = np.arange(n_frames) / fps
    events = _jitter(TINY_EVENTS if tiny else FULL_EVENTS, seed, fps)
    curves = {name: np.zeros(n_frames) for name in (*ANIMATED_NAMES, *POSE_COLUMNS)}
    for e in events:
        curves[e.name] += _shape(t, e)
    expressions = np.stack([np.clip(curves[n], 0.0, 1.0) for n in ANIMATED_NAMES], axis=1)
    pose = np.stack([curves[n] for n in POSE_COLUMNS], axis=1)
    return expressions.astype(np.float32), pose.astype(np.float32)
