"""Keyframes of a style edit: (reference image, subject frame) pairs, read and checked.

A reference is the artist's version of one subject frame, so it must line up with that frame.
Checks, each with an error that says what to do:

* 1 to ``MAX_KEYFRAMES`` pairs; frame ids in range; one reference per frame;
* the reference's aspect ratio within 5 % of the subject's square frames (others are refused,
  since stretching would misalign it); another size is resampled and a warning says so;
* grey, grey+alpha, RGBA and 16-bit images are converted (``backend.train.reference``);
* alignment: the reference's edges must match its frame's edges better than (nearly) any other
  frame's, and must not be shifted against them (``alignment``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.train.reference import Reference, ReferenceError, load_reference
from protocol.limits import MAX_KEYFRAMES  # one bound, shared with the service's edit job

log = logging.getLogger(__name__)

MAX_ASPECT_DIFFERENCE = 0.05


@dataclass(frozen=True)
class Keyframe:
    """One (reference, frame) pair as given by the user: an image file or (H, W, 3) uint8 array."""

    reference: Path | np.ndarray
    frame: int


@dataclass
class LoadedKeyframe:
    """A checked keyframe at the avatar's resolution."""

    reference: Reference
    frame: int


def pair_keyframes(references: list[Path], frames: list[int]) -> list[Keyframe]:
    """Pair ``--reference`` and ``--frame`` options in the order given.

    One reference without ``--frame`` stylises frame 0. Otherwise the counts must match.

    Raises:
        ValueError: counts that do not match, or none / too many references.
    """
    if not references:
        raise ValueError("give at least one --reference")
    if not frames and len(references) == 1:
        frames = [0]
    if len(frames) != len(references):
        raise ValueError(f"{len(references)} --reference but {len(frames)} --frame: give one --frame per "
                         "--reference, in the same order (--reference a.png --frame 0 --reference b.png "
                         "--frame 120)")
    return [Keyframe(r, int(f)) for r, f in zip(references, frames, strict=True)]


def check_keyframe_ids(keyframes: list[Keyframe], n_frames: int) -> None:
    """Raise for no/too many keyframes, frame ids outside 0..n_frames-1, or two references for one frame."""
    if not 1 <= len(keyframes) <= MAX_KEYFRAMES:
        raise ValueError(f"an edit takes 1 to {MAX_KEYFRAMES} (reference, frame) pairs, got {len(keyframes)}")
    for k in keyframes:
        if not 0 <= k.frame < n_frames:
            raise IndexError(f"--frame {k.frame} out of range (the subject has frames 0..{n_frames - 1})")
    seen: dict[int, Keyframe] = {}
    for k in keyframes:
        if k.frame in seen:
            raise ValueError(f"two references for frame {k.frame} ({_name(seen[k.frame])} and {_name(k)}); "
                             "give each frame one reference")
        seen[k.frame] = k


def _name(k: Keyframe) -> str:
    return "an array" if isinstance(k.reference, np.ndarray) else str(k.reference)


def check_aspect(ref: Reference) -> None:
    """Refuse a reference whose aspect ratio differs from the square subject frames by more than 5 %."""
    w, h = ref.original_size
    ratio = max(w, h) / max(min(w, h), 1)
    if ratio - 1.0 > MAX_ASPECT_DIFFERENCE:
        raise ReferenceError(f"reference {ref.source} is {w}x{h} (aspect {w / h:.3f}); subject frames are "
                             "square. Paint over the subject frame itself (emo-avatar stylize writes one) "
                             "or crop the reference to the frame")


def load_keyframes(keyframes: list[Keyframe], size: int, n_frames: int) -> list[LoadedKeyframe]:
    """Read and check every keyframe at ``size`` px (alignment is checked separately, it needs frames).

    Raises:
        FileNotFoundError, ReferenceError, IndexError, ValueError.
    """
    check_keyframe_ids(keyframes, n_frames)
    loaded = []
    for k in keyframes:
        ref = load_reference(k.reference, size)
        check_aspect(ref)
        loaded.append(LoadedKeyframe(ref, k.frame))
    return loaded
