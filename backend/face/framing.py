"""Framings of the subject crop: how much of the person a square crop holds (one source of truth
for ``track_video``, the CLI and the docs)."""

from __future__ import annotations

FRAMINGS: dict[str, tuple[float, float]] = {
    "face": (1.7, 0.4),
    "head": (2.3, 0.6),
    "bust": (3.0, 0.75),
}
"""Framing name -> (crop side, space above the face), both in face heights (landmark extent,
forehead to chin). ``face``: the face fills the crop (75 px tall at 128 px when it holds still;
smaller when it moves within a shot, as the fixed crop holds its whole motion); ``head``: head and
hair; ``bust``: head, neck and shoulders."""
DEFAULT_FRAMING = "face"
"""The framing ``track`` uses unless told otherwise: the best held-out face after training on the
synthetic sample and a real clip (docs/tracking.md, "How the choices were measured")."""
