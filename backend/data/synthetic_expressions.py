"""Ground-truth expression deformations of the sample video's face (468 FaceMesh vertices).

The synthesiser lifts the FaceMesh landmarks of a still photo to 3-D (pixels; x right, y down,
z towards the viewer) and deforms them with a few named coefficients (ARKit names from
``protocol.expressions.FACE_MODEL_NAMES``; "Left" is the *subject's* left = image right, as in
ARKit and MediaPipe's landmark naming):

- ``jawOpen``: the lower face rotates about a jaw pivot behind the cheeks (up to ``JAW_MAX_RAD``),
  with a per-vertex weight that is 1 below the mouth line, 0 above it and blends across the
  cheeks beside the mouth.
- ``mouthSmileLeft/Right``: the mouth corner moves up and out, lips and cheek follow smoothly.
- ``eyeBlinkLeft/Right``: the upper lid closes onto the lower lid (which rises a little).
- ``browInnerUp``, ``browOuterUpLeft/Right``: the brow points rise, the forehead follows; the
  eyes stay put.
- ``mouthLeft/Right``: the lips slide sideways (the chin stays); ``jawLeft``: the lower face
  slides sideways with the jaw weight (the lower lip fully, the corners half-way).
- ``eyeSquintLeft/Right``: the lower lid rises, the cheek under it follows a little.
- ``noseSneerLeft/Right``: the nose wing and the skin beside it rise.
- ``mouthUpperUpLeft``, ``mouthLowerDownRight``: one side of the upper lip rises / of the lower
  lip drops.

All but ``jawOpen`` are linear displacement fields (468, 3); the jaw is a weighted rotation, so
``deform`` is exact and ``jawOpen`` is only approximately linear (as on a real face).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protocol.expressions import FACE_MODEL_NAMES

# FaceMesh landmark ids (MediaPipe topology). Contours are ordered from one corner to the other;
# upper and lower contours of a feature share their corners and pair up index by index.
INNER_LIP_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
INNER_LIP_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
OUTER_LIP_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
OUTER_LIP_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
RIGHT_EYE_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)  # subject's right = image left
RIGHT_EYE_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_EYE_UPPER = (263, 466, 388, 387, 386, 385, 384, 398, 362)  # subject's left = image right
LEFT_EYE_LOWER = (263, 249, 390, 373, 374, 380, 381, 382, 362)
RIGHT_BROW_INNER = (107, 66, 55, 65)
RIGHT_BROW_MID = (105, 52)
RIGHT_BROW_OUTER = (70, 63, 46, 53)
LEFT_BROW_INNER = (336, 296, 285, 295)
LEFT_BROW_MID = (334, 282)
LEFT_BROW_OUTER = (300, 293, 276, 283)
RIGHT_MOUTH_CORNER = (61, 78)  # outer, inner
LEFT_MOUTH_CORNER = (291, 308)
RIGHT_FACE_SIDE, LEFT_FACE_SIDE = 234, 454
RIGHT_NOSE_WING = (98, 64, 129, 49, 48, 102)
LEFT_NOSE_WING = (327, 294, 358, 279, 278, 331)
NOSE_TIP_AND_BRIDGE = (1, 2, 4, 5, 6, 168, 195, 197)
CHIN = 152
N_VERTICES = 468

ANIMATED_NAMES: tuple[str, ...] = (
    "jawOpen", "mouthSmileLeft", "mouthSmileRight", "eyeBlinkLeft", "eyeBlinkRight",
    "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "mouthLeft", "mouthRight", "jawLeft", "eyeSquintLeft", "eyeSquintRight",
    "noseSneerLeft", "noseSneerRight", "mouthUpperUpLeft", "mouthLowerDownRight",
)
"""The coefficients the sample animates, in ground-truth column order."""
assert set(ANIMATED_NAMES) <= set(FACE_MODEL_NAMES)

JAW_MAX_RAD = 0.30
"""Jaw rotation at ``jawOpen = 1`` (about 17 degrees)."""


@dataclass(frozen=True)
class ExpressionModel:
    """Neutral 3-D shape and the ground-truth deformations of the named coefficients.

    Attributes:
        neutral: (468, 3) float64 neutral vertices, pixels (x right, y down, z towards viewer).
        scale: inter-ocular distance (outer eye corners) in pixels; displacement sizes use it.
        deltas: name -> (468, 3) float64 displacement at coefficient 1 (all names but jawOpen).
        jaw_weight: (468,) float64 in [0, 1], how much each vertex follows the jaw.
        jaw_pivot: (3,) float64 point on the jaw rotation axis (the axis is parallel to x).
        head_centre: (3,) float64 centre of head rotations.
    """

    neutral: np.ndarray
    scale: float
    deltas: dict[str, np.ndarray]
    jaw_weight: np.ndarray
    jaw_pivot: np.ndarray
    head_centre: np.ndarray

    def deform(self, coeffs: dict[str, float] | np.ndarray) -> np.ndarray:
        """Expression shape (468, 3) for coefficients (name -> value, or (K,) in ANIMATED_NAMES order)."""
        if not isinstance(coeffs, dict):
            values = np.asarray(coeffs, dtype=np.float64)
            if values.shape != (len(ANIMATED_NAMES),):
                raise ValueError(f"expected {len(ANIMATED_NAMES)} coefficients, got shape {values.shape}")
            coeffs = dict(zip(ANIMATED_NAMES, values.tolist(), strict=True))
        unknown = set(coeffs) - set(ANIMATED_NAMES)
        if unknown:
            raise ValueError(f"unknown expression names {sorted(unknown)}; known: {ANIMATED_NAMES}")
        shape = self.neutral.copy()
        for name, value in coeffs.items():
            if name != "jawOpen" and value:
                shape += float(value) * self.deltas[name]
        angle = JAW_MAX_RAD * float(coeffs.get("jawOpen", 0.0))
        return rotate_jaw(shape, self.jaw_weight, self.jaw_pivot, angle)


def rotate_jaw(shape: np.ndarray, weight: np.ndarray, pivot: np.ndarray, angle: float) -> np.ndarray:
    """Rotate the weighted part of ``shape`` (N, 3) about the x-parallel axis through ``pivot``.

    Positive angles open the mouth: points in front of and below the pivot move down and back.
    Each vertex moves ``weight`` of the way from its position to its rotated position.
    """
    if angle == 0.0:
        return shape
    c, s = np.cos(angle), np.sin(angle)
    d = shape - pivot
    rotated = np.column_stack([d[:, 0], c * d[:, 1] + s * d[:, 2], -s * d[:, 1] + c * d[:, 2]]) + pivot
    return shape + weight[:, None] * (rotated - shape)


def _smoothstep(edge0: np.ndarray | float, edge1: np.ndarray | float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (np.asarray(edge1) - edge0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _soft_field(
    points: np.ndarray, handles: np.ndarray, values: np.ndarray, sigma: float, power: float = 3.0
) -> np.ndarray:
    """Smooth displacement at ``points`` (N, 3) from handle points (H, 3) with displacements (H, 3).

    Direction: inverse-distance (Shepard) blend of the handle values, exact at the handles.
    Magnitude: fades with the distance to the nearest handle, ``exp(-d^2 / (2 sigma^2))``.
    Distances are measured in the image plane (x, y). Zero-valued handles pin vertices.
    """
    d = np.linalg.norm(points[:, None, :2] - handles[None, :, :2], axis=-1)  # (N, H)
    w = 1.0 / np.maximum(d, 1e-6) ** power
    blended = (w[..., None] * values[None]).sum(1) / w.sum(1, keepdims=True)
    fade = np.exp(-(d.min(1) ** 2) / (2 * sigma**2))
    return blended * fade[:, None]


def _mouth_line_weight(v: np.ndarray) -> np.ndarray:
    """Jaw weight (468,): 1 below the line through the inner-lip midpoints, 0 above, soft on the cheeks."""
    mids = (v[list(INNER_LIP_UPPER), :2] + v[list(INNER_LIP_LOWER), :2]) / 2
    mids = mids[np.argsort(mids[:, 0])]
    x = v[:, 0]
    line_y = np.interp(x, mids[:, 0], mids[:, 1])  # constant beyond the corners
    left, right = mids[0, 0], mids[-1, 0]
    lateral = np.maximum(0.0, np.maximum(left - x, x - right))
    half_band = 0.6 + 0.7 * lateral  # sharp between the lips, soft across the cheeks
    return _smoothstep(-half_band, half_band, v[:, 1] - line_y)


def build_expression_model(landmarks: np.ndarray) -> ExpressionModel:
    """Ground-truth deformations for one face.

    Args:
        landmarks: (>=468, 3) FaceMesh landmarks of a roughly frontal neutral-ish face, in pixels
            (x right, y down, z towards the viewer, same scale as x).
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] < N_VERTICES or lm.shape[1] != 3:
        raise ValueError(f"landmarks must have shape (>=468, 3), got {lm.shape}")
    v = lm[:N_VERTICES].copy()
    s = float(np.linalg.norm(v[33, :2] - v[263, :2]))
    if not np.isfinite(s) or s < 4.0:
        raise ValueError(f"face too small or degenerate (inter-ocular distance {s:.2f} px)")
    side_mid = (v[RIGHT_FACE_SIDE] + v[LEFT_FACE_SIDE]) / 2
    jaw_pivot = np.array([side_mid[0], side_mid[1], side_mid[2] - 0.15 * s])
    head_centre = np.array([side_mid[0], side_mid[1], side_mid[2] - 0.25 * s])
    deltas = {
        "mouthSmileLeft": _smile(v, s, LEFT_MOUTH_CORNER, +1.0),
        "mouthSmileRight": _smile(v, s, RIGHT_MOUTH_CORNER, -1.0),
        "eyeBlinkLeft": _blink(v, s, LEFT_EYE_UPPER, LEFT_EYE_LOWER),
        "eyeBlinkRight": _blink(v, s, RIGHT_EYE_UPPER, RIGHT_EYE_LOWER),
        "browInnerUp": _brow(v, s, RIGHT_BROW_INNER + LEFT_BROW_INNER, RIGHT_BROW_MID + LEFT_BROW_MID),
        "browOuterUpLeft": _brow(v, s, LEFT_BROW_OUTER, LEFT_BROW_MID),
        "browOuterUpRight": _brow(v, s, RIGHT_BROW_OUTER, RIGHT_BROW_MID),
        "mouthLeft": _lips_sideways(v, s, +1.0),
        "mouthRight": _lips_sideways(v, s, -1.0),
        "eyeSquintLeft": _squint(v, s, LEFT_EYE_UPPER, LEFT_EYE_LOWER),
        "eyeSquintRight": _squint(v, s, RIGHT_EYE_UPPER, RIGHT_EYE_LOWER),
        "noseSneerLeft": _sneer(v, s, LEFT_NOSE_WING),
        "noseSneerRight": _sneer(v, s, RIGHT_NOSE_WING),
        "mouthUpperUpLeft": _lip_side(v, s, True, +1.0, 0.09),
        "mouthLowerDownRight": _lip_side(v, s, False, -1.0, 0.09),
    }
    jaw_weight = _mouth_line_weight(v)
    deltas["jawLeft"] = jaw_weight[:, None] * np.array([0.12 * s, 0.0, 0.0])
    return ExpressionModel(
        neutral=v, scale=s, deltas=deltas, jaw_weight=jaw_weight,
        jaw_pivot=jaw_pivot, head_centre=head_centre,
    )


def _smile(v: np.ndarray, s: float, corner: tuple[int, int], out_sign: float) -> np.ndarray:
    """Mouth corner up and out (``out_sign`` = +1 towards image right), cheek and lips follow."""
    c = v[corner[0]]
    move = np.array([out_sign * 0.10 * s, -0.13 * s, -0.03 * s])
    d = (v[:, :2] - c[:2]) / np.array([0.32 * s, 0.30 * s])
    fall = np.exp(-0.5 * (d**2).sum(1))
    # Vertices across the mouth's midline barely move: the other corner stays.
    mid_x = (v[RIGHT_MOUTH_CORNER[0], 0] + v[LEFT_MOUTH_CORNER[0], 0]) / 2
    fall *= _smoothstep(0.0, 0.5 * abs(c[0] - mid_x), out_sign * (v[:, 0] - mid_x))
    delta = fall[:, None] * move
    delta[list(corner)] = move  # corners move fully
    return delta


def _blink(v: np.ndarray, s: float, upper: tuple[int, ...], lower: tuple[int, ...]) -> np.ndarray:
    """Upper lid onto the lower lid (meeting 12% above it); lid skin above follows."""
    up, lo = np.array(upper[1:-1]), np.array(lower[1:-1])
    gap = v[lo] - v[up]  # (n, 3) from upper to lower lid
    handles = np.concatenate([v[up], v[lo], v[[upper[0], upper[-1]]]])
    values = np.concatenate([0.88 * gap, -0.04 * gap, np.zeros((2, 3))])
    # Pin the brow and the cheek so only the lids move.
    eye = v[list(upper) + list(lower)]
    ring = _ring(eye, pad=0.22 * s)
    handles = np.concatenate([handles, ring])
    values = np.concatenate([values, np.zeros_like(ring)])
    delta = _soft_field(v, handles, values, sigma=0.10 * s)
    delta[up] = values[: len(up)]
    delta[lo] = values[len(up): 2 * len(up)]
    return delta


def _brow(v: np.ndarray, s: float, main: tuple[int, ...], mid: tuple[int, ...]) -> np.ndarray:
    """Brow points up (``main`` fully, ``mid`` half-way); forehead follows, eyes stay put."""
    eyes = list(RIGHT_EYE_UPPER + RIGHT_EYE_LOWER + LEFT_EYE_UPPER + LEFT_EYE_LOWER)
    up = np.array([0.0, -0.13 * s, 0.0])
    handles = np.concatenate([v[list(main)], v[list(mid)], v[eyes]])
    values = np.concatenate(
        [np.tile(up, (len(main), 1)), np.tile(0.5 * up, (len(mid), 1)), np.zeros((len(eyes), 3))]
    )
    delta = _soft_field(v, handles, values, sigma=0.30 * s, power=2.0)
    delta[eyes] = 0.0
    return delta


def _pinned_field(v: np.ndarray, s: float, moved: list[int], move: np.ndarray, pins: list[int],
                  sigma: float) -> np.ndarray:
    """``moved`` vertices move by ``move`` (3,) fully, ``pins`` stay, the skin between follows."""
    handles = np.concatenate([v[moved], v[pins]])
    values = np.concatenate([np.tile(move, (len(moved), 1)), np.zeros((len(pins), 3))])
    delta = _soft_field(v, handles, values, sigma=sigma * s)
    delta[moved] = move
    delta[pins] = 0.0
    return delta


def _lips_sideways(v: np.ndarray, s: float, sign: float) -> np.ndarray:
    """All lip points slide by 0.12 inter-ocular distances (about 11 mm) towards image right
    (``sign`` +1); the skin around follows, the chin and the nose stay."""
    lips = sorted(set(INNER_LIP_UPPER + INNER_LIP_LOWER + OUTER_LIP_UPPER + OUTER_LIP_LOWER))
    pins = [CHIN, *NOSE_TIP_AND_BRIDGE]
    return _pinned_field(v, s, lips, np.array([sign * 0.12 * s, 0.0, 0.0]), pins, 0.22)


def _squint(v: np.ndarray, s: float, upper: tuple[int, ...], lower: tuple[int, ...]) -> np.ndarray:
    """The muscle ring around one eye contracts: the lower lid rises by 0.6 of the lid gap (most
    in its middle), the upper lid drops by 0.05 of it, the cheek under the eye bunches up by 0.05
    inter-ocular distances; the brow, the nose and the other eye stay."""
    up, lo = np.array(upper[1:-1]), np.array(lower[1:-1])
    gap = float(np.mean(v[lo, 1] - v[up, 1]))
    width = abs(v[upper[0], 0] - v[upper[-1], 0])
    centre_x = 0.5 * (v[upper[0], 0] + v[upper[-1], 0])
    # 1 in the middle of the eye, about 0.5 next to the corners
    profile = lambda ids: 0.5 + 0.5 * np.cos(np.pi * np.clip((v[ids, 0] - centre_x) / (0.6 * width), -1, 1))  # noqa: E731
    lo_move = np.outer(profile(lo), [0.0, -0.6 * gap, 0.0])
    up_move = np.outer(profile(up), [0.0, 0.05 * gap, 0.0])
    cheek = v[lo].copy()
    cheek[:, 1] += 0.28 * s
    cheek_move = np.tile([0.0, -0.05 * s, 0.0], (len(cheek), 1))
    brows = (*RIGHT_BROW_INNER, *LEFT_BROW_INNER, *RIGHT_BROW_OUTER, *LEFT_BROW_OUTER, *RIGHT_BROW_MID,
             *LEFT_BROW_MID)
    pins = v[[*brows, *NOSE_TIP_AND_BRIDGE]]
    ring = _ring(v[list(upper) + list(lower)], pad=0.45 * s, n=16)
    still = np.zeros((2 + len(pins) + len(ring), 3))  # eye corners, brows, nose, outer ring
    handles = np.concatenate([v[lo], v[up], cheek, v[[upper[0], upper[-1]]], pins, ring])
    values = np.concatenate([lo_move, up_move, cheek_move, still])
    delta = _soft_field(v, handles, values, sigma=0.12 * s, power=2.0)
    delta[lo], delta[up] = lo_move, up_move
    delta[[upper[0], upper[-1]]] = 0.0
    delta[[*brows, *NOSE_TIP_AND_BRIDGE]] = 0.0
    return delta


def _sneer(v: np.ndarray, s: float, wing: tuple[int, ...]) -> np.ndarray:
    """The nose wing rises by 0.1 inter-ocular distances; nose tip, bridge and eyes stay."""
    eyes = list(RIGHT_EYE_UPPER + RIGHT_EYE_LOWER + LEFT_EYE_UPPER + LEFT_EYE_LOWER)
    pins = list(NOSE_TIP_AND_BRIDGE) + eyes + list(OUTER_LIP_UPPER)
    return _pinned_field(v, s, list(wing), np.array([0.0, -0.10 * s, 0.0]), pins, 0.10)


def _lip_side(v: np.ndarray, s: float, upper_lip: bool, side: float, amount: float) -> np.ndarray:
    """One side of one lip is pulled away from the other lip by ``amount`` inter-ocular distances
    (``side`` +1: image right = the subject's left): most half-way between the lip's centre and
    its corner, about half at the centre, little at the corner and nothing past the far side's
    middle - a smooth lip line, as when a lip is raised (or lowered) over the canine. The skin
    above (below) follows; the other lip, the nose and the chin stay."""
    outer, inner = (OUTER_LIP_UPPER, INNER_LIP_UPPER) if upper_lip else (OUTER_LIP_LOWER, INNER_LIP_LOWER)
    other = OUTER_LIP_LOWER + INNER_LIP_LOWER if upper_lip else OUTER_LIP_UPPER + INNER_LIP_UPPER
    lip = sorted(set(outer + inner) - {61, 291, 78, 308})
    mid_x = 0.5 * (v[RIGHT_MOUTH_CORNER[0], 0] + v[LEFT_MOUTH_CORNER[0], 0])
    half = 0.5 * abs(v[LEFT_MOUTH_CORNER[0], 0] - v[RIGHT_MOUTH_CORNER[0], 0])
    u = side * (v[lip, 0] - mid_x) / half  # 0 at the centre, 1 at this side's corner
    profile = np.exp(-0.5 * ((u - 0.5) / 0.42) ** 2) * (1.0 - 0.75 * _smoothstep(0.6, 1.0, u))
    move = np.outer(profile, [0.0, (-1.0 if upper_lip else 1.0) * amount * s, 0.0])
    beyond = v[lip].copy()  # the skin just above (below) the lip follows half-way
    beyond[:, 1] += (-1.0 if upper_lip else 1.0) * 0.12 * s
    pins = [*sorted(set(other) | {61, 291}), *NOSE_TIP_AND_BRIDGE, CHIN,
            *RIGHT_NOSE_WING, *LEFT_NOSE_WING]
    handles = np.concatenate([v[lip], beyond, v[pins]])
    values = np.concatenate([move, 0.5 * move, np.zeros((len(pins), 3))])
    delta = _soft_field(v, handles, values, sigma=0.10 * s, power=2.0)
    delta[lip] = move
    delta[pins] = 0.0
    return delta


def _ring(points: np.ndarray, pad: float, n: int = 12) -> np.ndarray:
    """``n`` points on the ellipse around ``points`` (P, 3): its half-extents plus ``pad`` pixels."""
    centre = (points.max(0) + points.min(0)) / 2
    half = (points.max(0) - points.min(0)) / 2 + pad
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x, y = centre[0] + half[0] * np.cos(a), centre[1] + half[1] * np.sin(a)
    return np.column_stack([x, y, np.full(n, centre[2])])
