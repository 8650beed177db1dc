"""Expression fitting: named ARKit-style coefficients measured from landmarks, a blendshape basis
solved over the clip by least squares, and residual (PCA) components.

Input is the pose-free face shape of every frame, ``shapes`` (T, 468, 3) in canonical cm, mesh
axes (x = image right = the subject's *left*, y up, z towards the viewer), obtained by undoing the
per-frame similarity pose (``backend.face.track``).

1. **Named coefficients** (``protocol.expressions.FACE_MODEL_NAMES``), ARKit semantics, each from
   a geometric measure (``MEASURES``): jawOpen from the chin drop + inner-lip gap, eyeBlink from
   the lid distance over the eye width, mouthSmile/Frown from the mouth-corner height relative to
   the nose bridge, brows from brow height over the eye corners, etc. A measure is turned into a
   coefficient in [0, 1] over the clip: ``e = clip((m - base) / max(p99(m - base), min_range))``
   where ``base`` is the neutral level (the clip's median for expressions that are usually
   absent, a low percentile for ones that are on half the time, e.g. jaw opening while talking)
   and ``min_range`` (cm or ratio) stops a clip without, say, any smile from blowing noise up to
   a full smile.
2. **Basis**: ``S_t = neutral + sum_k e_tk B_k`` solved by ridge least squares over the valid
   frames. Each named coefficient may only move the vertices of its region (eyes for blinks,
   mouth for smiles, ...), so ``eyeBlinkLeft`` never drags the right eye along even when the
   person always blinks with both; vertices outside every region get no named delta.
3. **Residuals**: PCA of what the named part leaves; components up to ``energy`` of the residual
   variance (at most ``max_residual``), named ``residual_00``..; their coefficients are scaled
   to [-1, 1] over the clip. With them the rig reproduces the tracked shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from backend.face.appearance import APPEARANCE, fuse_by_jitter
from backend.face.canonical import load_canonical_mesh
from backend.face.rig import FaceRig, canonical_uvs_v_up
from backend.face.shape68 import MEASURES68
from protocol.expressions import FACE_MODEL_NAMES, residual_name

Shapes = np.ndarray  # (T, 468, 3)


def _y(s: Shapes, *ids: int) -> np.ndarray:
    return s[:, list(ids), 1].mean(axis=1)


def _dist(s: Shapes, a: int, b: int) -> np.ndarray:
    return np.linalg.norm(s[:, a] - s[:, b], axis=1)


# Landmark ids (MediaPipe FaceMesh). "L" = subject's left = +x in mesh axes.
_EYE_L = ((386, 374), (385, 380), (387, 373)), (263, 362)
_EYE_R = ((159, 145), (158, 153), (160, 144)), (33, 133)
_BROW_L, _BROW_R = (336, 296, 334, 293, 300), (107, 66, 105, 63, 70)


def _eye_open(s: Shapes, eye: tuple) -> np.ndarray:
    pairs, (outer, inner) = eye
    lid = np.mean([_dist(s, a, b) for a, b in pairs], axis=0)
    return lid / np.maximum(_dist(s, outer, inner), 1e-6)


def _lip_gap(s: Shapes) -> np.ndarray:
    return _y(s, 13) - _y(s, 14)  # upper inner lip above lower inner lip (cm)


def _chin_drop(s: Shapes) -> np.ndarray:
    """Chin height below the nose bridge (cm): the jaw's opening without the lips."""
    return _y(s, _NOSE_BRIDGE) - s[:, _CHIN, 1]


def _jaw(s: Shapes) -> np.ndarray:
    return _chin_drop(s) + _lip_gap(s)


def _corner(s: Shapes, corner: int) -> np.ndarray:
    # Corner height below the nose bridge (a rigid point). Measured against the lip centre
    # instead, every jaw opening would read as a smile (the lower lip drops more than the corner).
    return s[:, corner, 1] - s[:, 6, 1]


def _mouth_width(s: Shapes) -> np.ndarray:
    return _dist(s, 61, 291)


def _brow(s: Shapes, ids: tuple[int, ...], eye_corner: int) -> np.ndarray:
    return _y(s, *ids) - s[:, eye_corner, 1]


@dataclass(frozen=True)
class Measure:
    """How one named coefficient is measured.

    Attributes:
        fn: shapes (T, 468, 3) -> (T,) raw measure.
        sign: +1 when the expression increases the measure, -1 when it decreases it.
        base: "median" (neutral = clip median) or "low" (neutral = 2nd percentile of sign * m).
        min_range: smallest measure change that counts as a full (1.0) expression.
        region: canonical vertex (3,) cm -> bool, the vertices the coefficient may move.
        without: optional shapes -> (T,) measure of a confounder whose linear share (a robust line
            over the clip, ``without_share``) is taken out of ``fn`` before normalising.
    """

    fn: Callable[[Shapes], np.ndarray]
    sign: float
    base: str
    min_range: float
    region: Callable[[np.ndarray], np.ndarray]
    without: Callable[[Shapes], np.ndarray] | None = None


def without_share(m: np.ndarray, c: np.ndarray, valid: np.ndarray, rounds: int = 3) -> np.ndarray:
    """``m`` (T,) less its linear share of ``c`` (T,), the line fitted over the valid frames robustly.

    Least squares, then again over the frames within 2.5 robust sigmas of the line, ``rounds``
    times: the expression itself is rare and shows as outliers of ``m`` against ``c``, so it
    barely tilts the line, while the confounder (frequent, e.g. every syllable's jaw) sets it.
    """
    keep = valid.copy()
    slope = 0.0
    for _ in range(rounds):
        if keep.sum() < 3 or np.ptp(c[keep]) < 1e-9:
            break
        cc, mm = c[keep] - c[keep].mean(), m[keep] - m[keep].mean()
        slope = float((cc * mm).sum() / max((cc * cc).sum(), 1e-12))
        resid = m - slope * c
        resid = resid - np.median(resid[valid])
        sigma = 1.4826 * np.median(np.abs(resid[valid])) + 1e-9
        keep = valid & (np.abs(resid) <= 2.5 * sigma)
    return m - slope * c


def _side(v: np.ndarray, left: bool, margin: float = 0.6) -> np.ndarray:
    return v[:, 0] > -margin if left else v[:, 0] < margin


def _near(v: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    return (v[:, 0] - cx) ** 2 + (v[:, 1] - cy) ** 2 < r * r


def _mouth_region(v: np.ndarray) -> np.ndarray:
    return (v[:, 1] < -1.2) & (np.abs(v[:, 0]) < 5.5)


def _lower_face(v: np.ndarray) -> np.ndarray:
    return v[:, 1] < -1.2


def _eye_region(left: bool) -> Callable[[np.ndarray], np.ndarray]:
    return lambda v: _near(v, 3.2 if left else -3.2, 2.6, 2.4)


def _brow_region(left: bool) -> Callable[[np.ndarray], np.ndarray]:
    return lambda v: (v[:, 1] > 2.0) & _side(v, left)


def _pucker(s: Shapes) -> np.ndarray:
    return -_mouth_width(s)


# --- the rest of the observable ARKit face -----------------------------------------------------
_NOSE_BRIDGE, _NOSE_BASE, _CHIN = 6, 2, 152
_EYE_CORNERS = {True: (263, 362), False: (33, 133)}  # (outer, inner); True = subject's left (+x)
_IRIS_RINGS = (tuple(range(468, 473)), tuple(range(473, 478)))


def _eye_frame(s: Shapes, left: bool) -> tuple[np.ndarray, np.ndarray]:
    """Eye centre (T, 3) (corner midpoint) and eye width (T,) in cm."""
    outer, inner = _EYE_CORNERS[left]
    return 0.5 * (s[:, outer] + s[:, inner]), np.maximum(_dist(s, outer, inner), 1e-6)


def _iris(s: Shapes, left: bool) -> np.ndarray | None:
    """Iris centre (T, 3) of the subject's left / right eye, or None without iris points (468 only).

    MediaPipe's two iris rings are told apart by side (x > 0 is the subject's left)."""
    if s.shape[1] < 478:
        return None
    a, b = (s[:, list(r)].mean(1) for r in _IRIS_RINGS)
    a_left = np.median(a[:, 0]) > np.median(b[:, 0])
    return a if a_left == left else b


def _gaze(axis: int, left: bool) -> Callable[[Shapes], np.ndarray]:
    """Iris offset from the eye centre along x (axis 0) or y (axis 1), in eye widths."""
    def fn(s: Shapes) -> np.ndarray:
        iris = _iris(s, left)
        if iris is None:
            return np.zeros(s.shape[0])
        centre, width = _eye_frame(s, left)
        return (iris[:, axis] - centre[:, axis]) / width
    return fn


LID_COUPLING = 0.3
"""Share of the upper lid's fall that FaceMesh also gives its lower-lid points when an eye closes
(a blink), measured on the sample's blinks, whose true lower lid rises by only 0.04 of the lid
gap: FaceMesh raises its lower lid by 0.3-0.4 of the upper lid's fall at 61 to 120 px face heights."""


def _lid_heights(s: Shapes, left: bool) -> tuple[np.ndarray, np.ndarray]:
    """Upper- and lower-lid heights (T,) over the eye corners' midpoint, in eye widths (three lid
    points each; the upper one is positive, the lower one negative)."""
    pairs = (_EYE_L if left else _EYE_R)[0]
    centre, width = _eye_frame(s, left)
    upper = _y(s, *(a for a, _ in pairs)) - centre[:, 1]
    lower = _y(s, *(b for _, b in pairs)) - centre[:, 1]
    return upper / width, lower / width


def _squint(left: bool) -> Callable[[Shapes], np.ndarray]:
    """Lower-lid rise beyond what a closing upper lid drags along (eye widths).

    A squint closes the eye from below, a blink from above; FaceMesh couples the two lids, so a
    blink alone lifts its lower lid by ``LID_COUPLING`` of the upper lid's fall. Adding that share
    of the upper-lid height cancels it: a blink reads ~0, a squint (lower lid up, upper lid barely
    down) keeps most of its lower-lid rise."""
    def fn(s: Shapes) -> np.ndarray:
        upper, lower = _lid_heights(s, left)
        return lower + LID_COUPLING * upper
    return fn


def _rel(i: int, j: int, axis: int) -> Callable[[Shapes], np.ndarray]:
    """Coordinate ``axis`` of landmark i relative to landmark j (cm)."""
    return lambda s: s[:, i, axis] - s[:, j, axis]


def _off_midline(s: Shapes, i: int) -> np.ndarray:
    """Sideways offset (cm, +x = subject's left) of landmark i from the nose line (bridge 6 ->
    base 2) in the face plane: unchanged by a small roll error of the pose fit, which a one-sided
    expression causes and which a 10 cm lever (nose to chin) would turn into a sideways move."""
    a, b = s[:, _NOSE_BRIDGE, :2], s[:, _NOSE_BASE, :2]
    d = b - a
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    p = s[:, i, :2] - a
    return p[:, 0] * d[:, 1] * -1.0 + p[:, 1] * d[:, 0]


def _jaw_x(s: Shapes) -> np.ndarray:
    return _off_midline(s, _CHIN)


_NOSE_RIDGE = (6, 168, 197, 195, 5, 4, 1)  # bridge to tip: rigid, on the face's midline


def _lips_x(s: Shapes) -> np.ndarray:
    """Upper lip's centre (outer and inner contour, 0 and 13) off the nose ridge, sideways (cm,
    +x = the subject's left). The upper lip rides on the skull: a sideways jaw carries the lower
    lip but not the upper one, and a smile moves a corner but not the centre, so only the lips
    themselves moving sideways move it."""
    return s[:, [0, 13], 0].mean(1) - s[:, list(_NOSE_RIDGE), 0].mean(1)


# lip sides (three points each, half-way between the lip centre and its corner)
_UPPER_SIDE = {True: (267, 269, 270), False: (37, 39, 40)}
_LOWER_SIDE = {True: (314, 405, 321), False: (84, 181, 91)}
_CORNER = {True: 291, False: 61}


def _upper_lip_raise(left: bool) -> Callable[[Shapes], np.ndarray]:
    """How far one side of the upper lip bulges above its chord (cm), less the other side's bulge.

    The chord runs from the lip's centre (0) to that side's corner: a smile or frown moves the
    corner and a jaw opening or shrug the centre, and the chord moves with them; a raised lip side
    bulges above it. FaceMesh lifts the whole upper lip when one side rises (the centre about as
    much as the raised side), so the other side's bulge is the reference that cancels that
    lift; a raise of both sides at once reads as none."""
    def bulge(s: Shapes, side: bool) -> np.ndarray:
        return _y(s, *_UPPER_SIDE[side]) - 0.5 * (s[:, 0, 1] + s[:, _CORNER[side], 1])
    return lambda s: bulge(s, left) - bulge(s, not left)


def _lower_lip_drop(left: bool) -> Callable[[Shapes], np.ndarray]:
    """Height of one side of the lower lip over the chin (cm; lowering the lip side decreases
    it): a jaw opening moves the chin with the lip, a lip pulled down moves the lip alone."""
    return lambda s: _y(s, *_LOWER_SIDE[left]) - s[:, _CHIN, 1]


def _lip_thickness(outer_up: int, inner_up: int, inner_lo: int, outer_lo: int
                   ) -> Callable[[Shapes], np.ndarray]:
    """Upper plus lower lip height at one place (cm): pressing or rolling the lips thins them."""
    return lambda s: (s[:, outer_up, 1] - s[:, inner_up, 1]) + (s[:, inner_lo, 1] - s[:, outer_lo, 1])


def _corner_out(corner: int) -> Callable[[Shapes], np.ndarray]:
    """Mouth-corner distance from the face's midline (cm), without its rise (a smile also widens)."""
    return lambda s: np.abs(s[:, corner, 0] - s[:, _NOSE_BRIDGE, 0]) - np.maximum(
        s[:, corner, 1] - np.median(s[:, corner, 1]), 0.0)


def _cheek_region(left: bool) -> Callable[[np.ndarray], np.ndarray]:
    return lambda v: _near(v, 3.8 if left else -3.8, 0.3, 2.2)


def _nose_region(left: bool) -> Callable[[np.ndarray], np.ndarray]:
    return lambda v: _near(v, 1.4 if left else -1.4, -0.8, 1.6)


def _mouth_side(left: bool) -> Callable[[np.ndarray], np.ndarray]:
    return lambda v: _mouth_region(v) & _side(v, left)


MEASURES: dict[str, Measure] = {
    "jawOpen": Measure(_jaw, +1, "low", 1.0, _lower_face),
    # mouthClose / mouthFunnel / mouthPucker are derived from others in measure_named()
    "mouthClose": Measure(_lip_gap, -1, "low", 0.4, _mouth_region),
    "mouthFunnel": Measure(_pucker, +1, "median", 0.4, _mouth_region),
    "mouthPucker": Measure(_pucker, +1, "median", 0.4, _mouth_region),
    "mouthSmileLeft": Measure(lambda s: _corner(s, 291), +1, "median", 0.3,
                              lambda v: _mouth_region(v) & _side(v, True)),
    "mouthSmileRight": Measure(lambda s: _corner(s, 61), +1, "median", 0.3,
                               lambda v: _mouth_region(v) & _side(v, False)),
    "mouthFrownLeft": Measure(lambda s: _corner(s, 291), -1, "median", 0.3,
                              lambda v: _mouth_region(v) & _side(v, True)),
    "mouthFrownRight": Measure(lambda s: _corner(s, 61), -1, "median", 0.3,
                               lambda v: _mouth_region(v) & _side(v, False)),
    "eyeBlinkLeft": Measure(lambda s: _eye_open(s, _EYE_L), -1, "median", 0.12, _eye_region(True)),
    "eyeBlinkRight": Measure(lambda s: _eye_open(s, _EYE_R), -1, "median", 0.12, _eye_region(False)),
    "eyeWideLeft": Measure(lambda s: _eye_open(s, _EYE_L), +1, "median", 0.06, _eye_region(True)),
    "eyeWideRight": Measure(lambda s: _eye_open(s, _EYE_R), +1, "median", 0.06, _eye_region(False)),
    "browInnerUp": Measure(lambda s: 0.5 * (_brow(s, (336, 296), 362) + _brow(s, (107, 66), 133)), +1,
                           "median", 0.3, lambda v: (v[:, 1] > 2.0) & (np.abs(v[:, 0]) < 3.8)),
    "browDownLeft": Measure(lambda s: _brow(s, _BROW_L, 362), -1, "median", 0.3, _brow_region(True)),
    "browDownRight": Measure(lambda s: _brow(s, _BROW_R, 133), -1, "median", 0.3, _brow_region(False)),
    "browOuterUpLeft": Measure(lambda s: _brow(s, (300, 276), 263), +1, "median", 0.3,
                               lambda v: (v[:, 1] > 2.0) & (v[:, 0] > 2.5)),
    "browOuterUpRight": Measure(lambda s: _brow(s, (70, 46), 33), +1, "median", 0.3,
                                lambda v: (v[:, 1] > 2.0) & (v[:, 0] < -2.5)),
    "cheekPuff": Measure(lambda s: _dist(s, 205, 425), +1, "median", 0.3,
                         lambda v: (v[:, 1] < 0.5) & (v[:, 1] > -6.5) & (np.abs(v[:, 0]) > 2.0)),
}
for _left, _side_name in ((True, "Left"), (False, "Right")):
    _out = 1.0 if _left else -1.0  # +x is the subject's left: looking "out" of the left eye is +x
    MEASURES.update({
        # gaze from the iris (refine_landmarks); the lids follow a little, so the shape is small
        f"eyeLookOut{_side_name}": Measure(_gaze(0, _left), _out, "median", 0.06, _eye_region(_left)),
        f"eyeLookIn{_side_name}": Measure(_gaze(0, _left), -_out, "median", 0.06, _eye_region(_left)),
        f"eyeLookUp{_side_name}": Measure(_gaze(1, _left), +1, "median", 0.04, _eye_region(_left)),
        f"eyeLookDown{_side_name}": Measure(_gaze(1, _left), -1, "median", 0.04, _eye_region(_left)),
        f"eyeSquint{_side_name}": Measure(_squint(_left), +1, "median", 0.04, _eye_region(_left)),
        f"mouthPress{_side_name}": Measure(
            _lip_thickness(*((269, 311, 318, 405) if _left else (39, 81, 88, 181))), -1, "median", 0.15,
            _mouth_side(_left)),
        f"mouthStretch{_side_name}": Measure(_corner_out(291 if _left else 61), +1, "median", 0.3,
                                             _mouth_side(_left)),
        f"mouthDimple{_side_name}": Measure(_rel(291 if _left else 61, _NOSE_BRIDGE, 2), -1, "median", 0.3,
                                            _mouth_side(_left)),
        f"mouthLowerDown{_side_name}": Measure(_lower_lip_drop(_left), -1, "median", 0.2, _mouth_side(_left),
                                               without=_chin_drop),
        f"mouthUpperUp{_side_name}": Measure(_upper_lip_raise(_left), +1, "median", 0.08, _mouth_side(_left)),
        f"cheekSquint{_side_name}": Measure(_rel(330 if _left else 101, _NOSE_BRIDGE, 1), +1, "median", 0.2,
                                            _cheek_region(_left)),
        f"noseSneer{_side_name}": Measure(_rel(327 if _left else 98, 1, 1), +1, "median", 0.15,
                                          _nose_region(_left)),
    })
MEASURES.update({
    "jawLeft": Measure(_jaw_x, +1, "median", 0.3, _lower_face),
    "jawRight": Measure(_jaw_x, -1, "median", 0.3, _lower_face),
    "jawForward": Measure(_rel(_CHIN, _NOSE_BRIDGE, 2), +1, "median", 0.3, _lower_face),
    # the upper lip moves sideways against the nose (a sideways jaw carries only the lower lip)
    "mouthLeft": Measure(_lips_x, +1, "median", 0.25, _mouth_region),
    "mouthRight": Measure(_lips_x, -1, "median", 0.25, _mouth_region),
    "mouthRollUpper": Measure(_lip_thickness(0, 13, 13, 13), -1, "median", 0.12, _mouth_region),
    "mouthRollLower": Measure(_lip_thickness(14, 14, 14, 17), -1, "median", 0.12, _mouth_region),
    "mouthShrugUpper": Measure(_rel(0, _NOSE_BASE, 1), +1, "median", 0.2, _mouth_region),
    "mouthShrugLower": Measure(_rel(17, _CHIN, 1), +1, "median", 0.2, _mouth_region),
})
MEASURES = {n: MEASURES[n] for n in FACE_MODEL_NAMES}
assert tuple(MEASURES) == FACE_MODEL_NAMES, "MEASURES must cover protocol.expressions.FACE_MODEL_NAMES"


def _scaled(m: np.ndarray, meas: Measure, valid: np.ndarray) -> np.ndarray:
    """``(sign * m - base) / span`` (``_normalise`` before clipping to [0, 1])."""
    x = meas.sign * m
    ref = x[valid] if valid.any() else x
    base = float(np.median(ref)) if meas.base == "median" else float(np.percentile(ref, 2))
    span = max(float(np.percentile(ref - base, 99)), meas.min_range)
    return (x - base) / span


def _normalise(m: np.ndarray, meas: Measure, valid: np.ndarray) -> np.ndarray:
    return np.clip(_scaled(m, meas, valid), 0.0, 1.0)


def measure_named(shapes: Shapes, valid: np.ndarray | None = None,
                  shapes68: np.ndarray | None = None,
                  appearance: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Named coefficients of every frame.

    Args:
        shapes: (T, 468 or 478, 3) pose-free face shapes, canonical cm, mesh axes (the 10 iris
            points of ``refine_landmarks`` give the eyeLook* names; without them those are 0).
        valid: (T,) bool, frames with a real detection (the others do not set the normalisation).
        shapes68: (T, 68, 3) pose-free dlib points of the same frames, canonical cm, mesh axes
            (``backend.face.shape68.with_depth``, lifted by ``backend.face.track.fit_poses``):
            the names of ``shape68.MEASURES68`` are read from them (with their FaceMesh measure's
            sign, base and range); None: from FaceMesh.
        appearance: {name: (T,) cm} raw appearance measures of the same frames
            (``backend.face.appearance.measure_appearance``): each name of
            ``appearance.APPEARANCE`` is read from it (``mode="replace"``) or from it and the
            landmark measure, both normalised, weighted by the inverse square of each one's
            frame-to-frame jitter (``mode="fuse"``, ``appearance.fuse_by_jitter``); None:
            landmarks only.
    Returns:
        (T, len(FACE_MODEL_NAMES)) float32 in [0, 1], columns in FACE_MODEL_NAMES order.
    """
    s = np.asarray(shapes, dtype=np.float64)
    v = np.ones(s.shape[0], dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    s68 = None if shapes68 is None else np.asarray(shapes68, dtype=np.float64)
    out = {}
    for name, meas in MEASURES.items():
        am = APPEARANCE.get(name) if appearance is not None else None
        a = None
        if am is not None:
            a = _scaled(appearance[name], Measure(meas.fn, am.sign, "median", am.min_range, meas.region), v)
            if am.mode == "replace":  # the landmarks are not read for this name
                out[name] = np.clip(a, 0.0, 1.0)
                continue
        m = MEASURES68[name](s68) if s68 is not None and name in MEASURES68 else meas.fn(s)
        if meas.without is not None:
            m = without_share(m, meas.without(s), v)
        x = _scaled(m, meas, v)
        if a is not None:  # both readers, each weighted by its own frame-to-frame jitter
            x = fuse_by_jitter(x, a, v)
        out[name] = np.clip(x, 0.0, 1.0)
    # Lips: narrowing with lips apart is a funnel, with lips together a pucker;
    # mouthClose (ARKit) is "lips closed although the jaw is open".
    lips_open = np.clip(_normalise(_lip_gap(s), Measure(_lip_gap, +1, "low", 0.4, _mouth_region), v), 0, 1)
    narrowing = out["mouthPucker"]
    out["mouthFunnel"] = narrowing * lips_open
    out["mouthPucker"] = narrowing * (1.0 - lips_open)
    out["mouthClose"] = np.clip(out["jawOpen"] - lips_open, 0.0, 1.0)
    return np.stack([out[n] for n in FACE_MODEL_NAMES], axis=1).astype(np.float32)


def region_masks(vertices: np.ndarray | None = None) -> np.ndarray:
    """(K_named, 468) bool: which vertices each named coefficient may move (canonical geometry)."""
    v = load_canonical_mesh().vertices if vertices is None else vertices
    return np.stack([MEASURES[n].region(v) for n in FACE_MODEL_NAMES])


@dataclass
class FitResult:
    """Output of ``fit_face_model``.

    Attributes:
        rig: the FaceRig (names = FACE_MODEL_NAMES + residual names).
        coefficients: (T, K) float32 raw (unsmoothed) coefficients of every frame.
        residual_rms: RMS (cm) of shapes - rig.shape(coefficients) over the valid frames.
        shape_rms: RMS (cm) of shapes - mean shape (the variation to explain), for scale.
    """

    rig: FaceRig
    coefficients: np.ndarray
    residual_rms: float
    shape_rms: float


def _solve_named_basis(S: np.ndarray, E: np.ndarray, masks: np.ndarray, ridge: float) -> np.ndarray:
    """Per-vertex ridge least squares restricted to each vertex's active coefficients.

    S: (T, N, 3) centred shapes; E: (T, K) centred coefficients; masks (K, N). Returns (K, N, 3).
    """
    K, N = masks.shape
    B = np.zeros((K, N, 3))
    G = E.T @ E
    lam = ridge * (np.trace(G) / max(K, 1) + 1e-9)
    groups: dict[bytes, list[int]] = {}
    for j in range(N):
        groups.setdefault(masks[:, j].tobytes(), []).append(j)
    for key, verts in groups.items():
        active = np.frombuffer(key, dtype=bool)
        if not active.any():
            continue
        idx = np.nonzero(active)[0]
        A = G[np.ix_(idx, idx)] + lam * np.eye(len(idx))
        rhs = E[:, idx].T @ S[:, verts].reshape(S.shape[0], -1)
        B[np.ix_(idx, verts)] = np.linalg.solve(A, rhs).reshape(len(idx), len(verts), 3)
    return B


def fit_face_model(shapes: Shapes, named: np.ndarray, valid: np.ndarray | None = None,
                   max_residual: int = 12, energy: float = 0.95, ridge: float = 1e-3) -> FitResult:
    """Solve the person-specific blendshape rig over a clip.

    Args:
        shapes: (T, 468, 3) pose-free shapes (cm, mesh axes).
        named: (T, K_named) named coefficients from ``measure_named``.
        valid: (T,) bool frames used for the fit (default all).
        max_residual: most residual components kept.
        energy: share of the residual variance the residual components must explain.
        ridge: ridge strength relative to the mean coefficient variance.
    Returns:
        FitResult with the rig and per-frame coefficients (named then residual).
    """
    S = np.asarray(shapes, dtype=np.float64)
    E = np.asarray(named, dtype=np.float64)
    T, N, _ = S.shape
    v = np.ones(T, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    Sv, Ev = S[v], E[v]
    mean_S, mean_E = Sv.mean(0), Ev.mean(0)
    B = _solve_named_basis(Sv - mean_S, Ev - mean_E, region_masks(), ridge)
    neutral = mean_S - np.tensordot(mean_E, B, axes=1)
    R = (S - neutral - np.tensordot(E, B, axes=1)).reshape(T, -1)  # residual of every frame
    Rv = R[v]
    mean_R = Rv.mean(0)
    neutral = neutral + mean_R.reshape(N, 3)
    R = R - mean_R
    _, sv, Vt = np.linalg.svd(R[v], full_matrices=False)
    var = sv**2
    n_res = 0
    if var.sum() > 1e-12:
        n_res = int(np.searchsorted(np.cumsum(var) / var.sum(), energy) + 1)
        n_res = min(n_res, max_residual, len(sv))
    scores = R @ Vt[:n_res].T  # (T, n_res)
    m = np.maximum(np.abs(scores[v]).max(0), 1e-9) if n_res else np.zeros(0)
    res_deltas = (Vt[:n_res] * m[:, None]).reshape(n_res, N, 3)
    coeffs = np.concatenate([E, scores / m], axis=1).astype(np.float32)
    names = list(FACE_MODEL_NAMES) + [residual_name(i) for i in range(n_res)]
    mesh = load_canonical_mesh()
    rig = FaceRig(names=names, neutral=neutral, deltas=np.concatenate([B, res_deltas], axis=0),
                  uvs=canonical_uvs_v_up(), triangles=mesh.triangles)
    recon = rig.shape(coeffs[v])
    residual_rms = float(np.sqrt(((recon - Sv) ** 2).sum(-1).mean()))
    shape_rms = float(np.sqrt(((Sv - mean_S) ** 2).sum(-1).mean()))
    return FitResult(rig=rig, coefficients=coeffs, residual_rms=residual_rms, shape_rms=shape_rms)


def fit_linear_rig(shapes: Shapes, coefficients: np.ndarray, names: list[str],
                   valid: np.ndarray | None = None, ridge: float = 1e-3) -> FaceRig:
    """Rig for coefficients that come from elsewhere (e.g. an external tracker).

    Solves ``shapes_t ~ neutral + sum_k c_tk B_k`` by ridge least squares over the valid frames,
    every coefficient free to move every vertex (no regions, no residual components).

    Args:
        shapes: (T, 468, 3) pose-free shapes (cm, mesh axes); coefficients: (T, K); names: K names.
    """
    S = np.asarray(shapes, dtype=np.float64)
    C = np.asarray(coefficients, dtype=np.float64)
    v = np.ones(S.shape[0], dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    mean_S, mean_C = S[v].mean(0), C[v].mean(0)
    masks = np.ones((C.shape[1], S.shape[1]), dtype=bool)
    B = _solve_named_basis(S[v] - mean_S, C[v] - mean_C, masks, ridge)
    neutral = mean_S - np.tensordot(mean_C, B, axes=1)
    mesh = load_canonical_mesh()
    return FaceRig(names=names, neutral=neutral, deltas=B, uvs=canonical_uvs_v_up(), triangles=mesh.triangles)
