"""Write the sample performance used by the demo: a Live Link Face CSV (cross-reenactment).

It differs from the training clip on purpose: a short "spoken line" (jaw and mouth shapes at
syllable rate), a smile that builds, two blinks, a brow raise and a head turn and nod. Run it
to regenerate ``performance_livelinkface.csv`` and ``performance.json`` next to this file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from protocol.curves import Curves, write_curves_json, write_live_link_csv
from protocol.expressions import ARKIT_NAMES

FPS = 25.0
SECONDS = 6.0
HERE = Path(__file__).resolve().parent


def _bump(t: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Smooth 0..1..0 bump of the given half-width (seconds)."""
    x = np.clip(1.0 - np.abs(t - centre) / width, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def make_performance() -> Curves:
    t = np.arange(int(SECONDS * FPS)) / FPS
    v = {name: np.zeros_like(t) for name in ARKIT_NAMES}
    speaking = _bump(t, 2.0, 1.8)
    syllables = 0.5 + 0.5 * np.sin(2 * np.pi * 3.2 * t)
    v["jawOpen"] = 0.7 * speaking * syllables
    v["mouthFunnel"] = 0.4 * speaking * _bump(t, 1.4, 0.3)
    v["mouthPucker"] = 0.5 * _bump(t, 2.6, 0.35)
    v["mouthClose"] = 0.3 * speaking * (1 - syllables)
    smile = _bump(t, 4.6, 1.2)
    v["mouthSmileLeft"] = 0.8 * smile
    v["mouthSmileRight"] = 0.7 * smile
    v["cheekSquintLeft"] = 0.3 * smile
    v["cheekSquintRight"] = 0.3 * smile
    blink = _bump(t, 1.1, 0.12) + _bump(t, 3.9, 0.12)
    v["eyeBlinkLeft"] = blink
    v["eyeBlinkRight"] = blink
    brows = _bump(t, 3.2, 0.6)
    v["browInnerUp"] = 0.8 * brows
    v["browOuterUpLeft"] = 0.6 * brows
    v["browOuterUpRight"] = 0.6 * brows
    v["eyeWideLeft"] = 0.4 * brows
    v["eyeWideRight"] = 0.4 * brows
    v["browDownLeft"] = 0.5 * _bump(t, 5.5, 0.35)
    v["browDownRight"] = 0.5 * _bump(t, 5.5, 0.35)
    v["mouthFrownLeft"] = 0.4 * _bump(t, 5.5, 0.35)
    v["mouthFrownRight"] = 0.4 * _bump(t, 5.5, 0.35)
    v["cheekPuff"] = 0.6 * _bump(t, 0.4, 0.3)
    pose = np.zeros((t.size, 6))
    pose[:, 0] = 0.18 * np.sin(2 * np.pi * t / SECONDS)  # yaw (rad)
    pose[:, 1] = 0.08 * np.sin(2 * np.pi * 2 * t / SECONDS)  # pitch (rad)
    pose[:, 2] = 0.04 * np.sin(2 * np.pi * t / SECONDS + 1.0)  # roll (rad)
    values = np.stack([np.clip(v[n], 0.0, 1.0) for n in ARKIT_NAMES], axis=1)
    return Curves(list(ARKIT_NAMES), FPS, 0, values.astype(np.float32), pose.astype(np.float32))


if __name__ == "__main__":
    curves = make_performance()
    write_live_link_csv(curves, HERE / "performance_livelinkface.csv")
    write_curves_json(curves, HERE / "performance.json")
    print(f"wrote {curves.n_frames} frames at {curves.fps} fps to {HERE}")
