"""Which source frames become the subject, and why the others are left out.

Inputs: the segments of a video (``backend.face.shots``), the people found in them
(``backend.face.identity``), and the user's choices: ``--frames A:B[,C:D...]`` (source frame
ranges, ``A`` included, ``B`` excluded, like Python slices) and ``--person N`` (1-based, as
``--list-people`` prints them) or ``--all-people``.

Output: ``Selection``: *runs* of consecutive kept source frames, each inside one shot and one
segment (every run is smoothed and gap-filled on its own, never across a cut), and a report of
the left-out ranges with the reason for each. The subject numbers the kept frames densely
(0..T-1, runs in order); ``meta.json`` maps them back (``source_frames``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from backend.face.identity import PeopleResult
from backend.face.shots import Segment

MIN_RUN_FRAMES = 8
"""Fewest usable frames a shot's run must have to be kept (fewer cannot be smoothed or fitted)."""


class SelectionError(ValueError):
    """The requested frames or person cannot be used (the message says why and what to do)."""


def parse_frame_ranges(text: str, n_frames: int) -> list[tuple[int, int]]:
    """``"A:B,C:D"`` -> sorted ``[(A, B), (C, D)]`` source frame ranges (B exclusive).

    ``A:`` runs to the end of the video, ``:B`` starts at 0, a single ``N`` is frame N alone.

    Raises:
        SelectionError: malformed, empty, outside the video's ``n_frames`` frames, or overlapping.
    """
    out = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            raise SelectionError(f"--frames {text!r}: empty range (write A:B[,C:D...])")
        try:
            if ":" in part:
                a_s, b_s = part.split(":", 1)
                a = int(a_s) if a_s.strip() else 0
                b = int(b_s) if b_s.strip() else n_frames
            else:
                a = int(part)
                b = a + 1
        except ValueError:
            raise SelectionError(f"--frames {text!r}: {part!r} is not A:B with whole frame numbers") from None
        if a < 0 or b <= a:
            raise SelectionError(f"--frames {text!r}: {part!r} is empty or negative (A:B needs 0 <= A < B)")
        if b > n_frames:
            raise SelectionError(f"--frames {text!r}: {part!r} ends after the video's last frame "
                                 f"(the video has {n_frames} frames: 0:{n_frames})")
        out.append((a, b))
    out.sort()
    for (a0, b0), (a1, b1) in itertools.pairwise(out):
        if a1 < b0:
            raise SelectionError(f"--frames {text!r}: ranges {a0}:{b0} and {a1}:{b1} overlap")
    return out


@dataclass(frozen=True)
class Run:
    """Kept source frames ``start``..``stop - 1`` of one segment in one shot."""

    start: int
    stop: int
    shot: int
    person: int

    @property
    def n_frames(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class LeftOut:
    """Source frames ``start``..``stop - 1`` not in the subject, and why."""

    start: int
    stop: int
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"start": self.start, "stop": self.stop, "reason": self.reason}


@dataclass
class Selection:
    """Kept runs (in source order) and left-out ranges (covering every other source frame)."""

    runs: list[Run]
    left_out: list[LeftOut]
    persons: list[int]

    @property
    def source_frames(self) -> np.ndarray:
        """(T,) int source frame of every subject frame (dense numbering)."""
        return np.concatenate([np.arange(r.start, r.stop) for r in self.runs]).astype(np.int64)


def _ranges(mask: np.ndarray) -> list[tuple[int, int]]:
    """(T,) bool -> [(start, stop)] of its True runs."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.nonzero(d == 1)[0].tolist(), np.nonzero(d == -1)[0].tolist(), strict=True))


def select_frames(segments: list[Segment], detected: np.ndarray, people: PeopleResult,
                  frames: list[tuple[int, int]] | None = None, person: int | None = None,
                  all_people: bool = False) -> Selection:
    """Decide which source frames to keep.

    Args:
        segments: every segment of the video (covering all its frames).
        detected: (T,) bool, a face was found in the frame.
        people: segments grouped into people.
        frames: source ranges to keep (``parse_frame_ranges``) or None for the whole video.
        person: 1-based person to keep; default: the one on screen longest within ``frames``.
        all_people: keep every person (no identity selection).
    Raises:
        SelectionError: ``person`` out of range; the chosen frames hold no usable run; the people
            in the chosen frames cannot be told apart and neither ``person`` nor ``all_people`` says
            what to keep.
    """
    T = len(detected)
    n_people = len(people.people)
    if person is not None and not 1 <= person <= n_people:
        raise SelectionError(f"--person {person}: this video has {n_people} "
                             f"{'person' if n_people == 1 else 'people'} (1..{n_people}); "
                             f"see `emo-avatar track --list-people VIDEO`")
    in_range = np.zeros(T, dtype=bool)
    for a, b in frames or [(0, T)]:
        in_range[a:b] = True
    owner = np.zeros(T, dtype=np.int64)  # person of each frame's segment, 0 = none
    for p in people.people:
        for s in p.segments:
            owner[segments[s].start:segments[s].stop] = p.index
    if person is not None:
        chosen = [person]
    elif all_people:
        chosen = [p.index for p in people.people]
    else:
        on_screen = {p.index: int((detected & in_range & (owner == p.index)).sum()) for p in people.people}
        present = [k for k, v in on_screen.items() if v > 0]
        if not present:
            raise SelectionError("no face in the chosen frames")
        chosen = [max(present, key=lambda k: (on_screen[k], -k))]
        undecided = [(a, b) for a, b in people.undecided if a in present and b in present]
        if undecided:
            pairs = ", ".join(f"people {a} and {b} ({people.distances[a - 1, b - 1]:.2f} apart)" if a != b
                              else f"person {a} (may be two people)" for a, b in undecided)
            raise SelectionError(
                f"cannot tell the people in this video apart by {people.signal}: {pairs}: "
                f"neither clearly one person nor clearly two; pass --all-people to keep every face, "
                f"--person N to keep one, or --frames to choose the frames "
                f"(`emo-avatar track --list-people VIDEO` shows them)")
    reason = np.full(T, "", dtype=object)
    reason[~in_range] = "outside --frames"
    runs: list[Run] = []
    for seg in segments:
        sl = slice(seg.start, seg.stop)
        who = int(owner[seg.start])
        if who == 0:
            reason[sl] = np.where(in_range[sl], "no face", reason[sl])
            continue
        if who not in chosen:
            reason[sl] = np.where(in_range[sl], f"person {who}, not selected", reason[sl])
            continue
        for a, b in _ranges(in_range[sl]):
            a, b = a + seg.start, b + seg.start
            ids = np.nonzero(detected[a:b])[0]
            if len(ids) == 0:
                reason[a:b] = "no face"
                continue
            first, last = a + int(ids[0]), a + int(ids[-1]) + 1
            reason[a:first] = "no face"
            reason[last:b] = "no face"
            if last - first < MIN_RUN_FRAMES:
                reason[first:last] = f"shot too short ({last - first} frames < {MIN_RUN_FRAMES})"
                continue
            runs.append(Run(first, last, seg.shot, who))
    kept = np.zeros(T, dtype=bool)
    for r in runs:
        kept[r.start:r.stop] = True
    left_out = []
    for a, b in _ranges(~kept):
        k = a
        for j in range(a + 1, b + 1):
            if j == b or reason[j] != reason[k]:
                left_out.append(LeftOut(k, j, str(reason[k]) or "no face"))
                k = j
    if not runs:
        why = "; ".join(sorted({lo.reason for lo in left_out}))
        raise SelectionError(f"no shot of the chosen person has {MIN_RUN_FRAMES} usable frames with a face "
                             f"({why}); use a longer shot or other --frames")
    return Selection(runs=runs, left_out=left_out, persons=sorted(chosen))
