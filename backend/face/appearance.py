"""Appearance measures: expressions the landmarks cannot see, read from the pixels.

FaceMesh moves its nose points rigidly (a 9 mm nose-wing rise moves them 0.3 mm), its chin by a
fifth of a sideways jaw, and it answers a squint with its upper lid as much as its lower one
(docs/tracking.md, "Face model"). The skin itself moves, though, so these names are read from
the image motion of small face regions:

1. **Canonical crop** (``CanonicalSampler``, per frame, in pass 2 of ``backend.face.track``): the
   frame is resampled onto a grid fixed to the face: canonical points (mesh axes, cm; x = the
   subject's left, y up) on the clip's pose-free neutral surface (depth interpolated from its
   468 points), projected with the frame's smoothed pose (``backend.face.rig`` projection). Head
   turns, tilts, scale and position are undone; what still moves in the crop is the skin.
   ``CANVAS`` at ``PX_PER_CM``: a (116, 96) grey uint8 crop, whatever the video's size.
2. **Motion against the neutral appearance** (``measure_appearance``, once per clip): the per-pixel
   median crop of each run (a shot's stretch of kept frames; lighting stays within it) is the
   neutral face; dense Farneback flow from it to every frame's crop, averaged over ``REGIONS``
   (boxes placed on the person's own neutral landmarks), gives each region's motion in cm.
3. **Measures** (``APPEARANCE``): noseSneer = the nose wing's rise less the outer cheek's rise
   (a smile lifts the whole cheek, nose wing included; a sneer lifts the wing and the skin beside
   it, not the outer cheek), less the wing's depth share of the nose tip's rise (the crop's pitch
   and depth errors lift the protruding nose as a whole, ``_sneer``); jawLeft/Right = the chin's
   sideways motion (its pixels weighted by how squarely they face the camera, ``Region.facing``);
   eyeSquint = the lower lid's rise above the skin just below it; mouthUpperUp / mouthLowerDown =
   the upper lip's rise above the skin over it / the lower lip's drop towards the skin under it.
   eyeSquint and the lips are fused with the landmark measure (``mode="fuse"``,
   ``fuse_by_jitter``). The tracker normalises them as the landmark measures
   (``backend.face.face_model``): clip median as the neutral level, the 99th percentile (at least
   ``min_range``) as a full expression.

When the measure cannot run (fewer than ``MIN_FRAMES`` frames in a run, a face under
``MIN_PX_PER_CM`` in the video, crops not sampled) ``measure_appearance`` logs why and returns
None, and the tracker reads every name from the landmarks as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.interpolate import LinearNDInterpolator, NearestNDInterpolator

from backend.face.pose import euler_to_matrices, euler_to_matrix

log = logging.getLogger(__name__)

PX_PER_CM = 8.0
"""Canonical crop resolution (px per canonical cm): 0.8 mm a pixel, finer than the face in most
videos (the tests' tiny sample: ~4 px/cm, the full one ~8), so the crop keeps what the video has."""
CANVAS = (-6.0, 6.0, -10.0, 4.5)
"""Canonical crop extent (x0, x1, y0, y1), canonical cm (mesh axes): brows to below the chin."""
FLOW_PARAMS = {"pyr_scale": 0.5, "levels": 3, "winsize": 9, "iterations": 3, "poly_n": 5, "poly_sigma": 1.1,
               "flags": 0}
"""cv2.calcOpticalFlowFarneback parameters (a 9 px = 1.1 cm window on the canonical crop)."""
MIN_FRAMES = 8
"""Fewest frames a run needs for its median to be a neutral reference."""
FACING_MIN = 0.5
"""A pixel of a ``Region.facing`` box counts in its motion in proportion to how far its surface
normal's component towards the camera exceeds this (cos 60 degrees; ``visibility``). Where the
surface is oblique to the camera a depth error of the neutral surface moves the sampled point
most (by the depth error times the sine of the angle), and towards the outline the crop samples
the face's edge and what lies behind it (neck, collar): at a 30 degree yaw the chin box's far
side turns away, and its image motion followed the head's roll (docs/tracking.md)."""
MIN_PX_PER_CM = 2.0
"""Smallest median face scale (video px per canonical cm, ~30 px face height) the measure runs at."""


@dataclass(frozen=True)
class Region:
    """A box on the face: ``box`` = (dx0, dx1, dy0, dy1) cm around landmark ``anchor`` of the
    clip's neutral shape (mesh axes, x = the subject's left, y up). ``facing``: its pixels are
    weighted by how squarely they face the camera in each frame (``visibility``), for a box that
    reaches surface turning towards the outline."""

    anchor: int
    box: tuple[float, float, float, float]
    facing: bool = False

    def mirrored(self, anchor: int) -> Region:
        """The same box on the other side of the face, around ``anchor`` (the mirrored landmark)."""
        dx0, dx1, dy0, dy1 = self.box
        return Region(anchor, (-dx1, -dx0, dy0, dy1), self.facing)


_WING = Region(327, (-0.51, 1.19, 0.01, 1.41))
"""Nose wing and the skin beside it (subject's left); on the canonical mesh x 0.9..2.6, y -1.7..-0.3."""
_OUTER_CHEEK = Region(330, (0.17, 1.67, -2.1, -0.1))
"""Cheek outside the nasolabial fold (left); canonical x 3.5..5.0, y -2.0..0.0."""
_LOWER_LID = Region(374, (-0.48, 0.52, -0.59, -0.04))
"""Middle of the lower lid and the skin just under it (left); canonical x 2.7..3.7, y 1.7..2.25."""
_UNDER_LID = Region(374, (-0.48, 0.52, -1.14, -0.59))
"""The same box directly below ``_LOWER_LID`` (left; canonical y 1.15..1.7): the skin the lid rises
away from when the eye closes from below."""
_NOSE_TIP = Region(1, (-0.35, 0.35, -0.5, 0.5))
"""The nose tip (pronasale): the face's most protruding skin, which a sneer barely lifts."""
_UPPER_LIP = Region(267, (-0.5, 0.5, -0.5, 0.0))
"""The upper lip's red near its centre, on the subject's left (below the outer contour at 267)."""
_ABOVE_LIP = Region(267, (-0.5, 0.5, 0.5, 1.0))
"""The skin 0.5-1.0 cm above it (left), between the lip and the nostril."""
_LOWER_LIP = Region(17, (0.0, 1.0, 0.0, 0.5))
"""The lower lip's red beside its centre, on the subject's left (above the outer contour at 17)."""
_BELOW_LIP = Region(17, (0.0, 1.0, -1.0, -0.5))
"""The skin 0.5-1.0 cm below it (left), towards the chin."""
REGIONS: dict[str, Region] = {
    "wingLeft": _WING, "wingRight": _WING.mirrored(98),
    "outerCheekLeft": _OUTER_CHEEK, "outerCheekRight": _OUTER_CHEEK.mirrored(101),
    "noseTip": _NOSE_TIP,
    "lowerLidLeft": _LOWER_LID, "lowerLidRight": _LOWER_LID.mirrored(145),
    "underLidLeft": _UNDER_LID, "underLidRight": _UNDER_LID.mirrored(145),
    "upperLipLeft": _UPPER_LIP, "upperLipRight": _UPPER_LIP.mirrored(37),
    "aboveLipLeft": _ABOVE_LIP, "aboveLipRight": _ABOVE_LIP.mirrored(37),
    "lowerLipLeft": _LOWER_LIP, "lowerLipRight": _LOWER_LIP.mirrored(17),
    "belowLipLeft": _BELOW_LIP, "belowLipRight": _BELOW_LIP.mirrored(17),
    # below the lower lip: canonical x -3..3, y -8.5..-6.0; its sides reach the jaw's outline
    "chin": Region(152, (-3.0, 3.0, 0.9, 3.4), facing=True),
}
"""The measures' boxes. Only the chin's is ``facing``: the wing box, for one, spans the nose's
flank, which faces sideways at any pose and is the sneer's own skin (weighted by ``visibility``,
noseSneerLeft reads 0.69 / 0.79 on the samples instead of 0.87 / 0.91; docs/tracking.md)."""


@dataclass(frozen=True)
class AppearanceMeasure:
    """How one name is read from region motion.

    Attributes:
        fn: (region motion {region: (T, 2) cm, (x right = the subject's left, y up)}, region depth
            {region: cm on the neutral surface, ``region_depths``}) -> (T,) cm.
        sign: +1 when the expression increases the measure.
        min_range: smallest change (cm) that counts as a full expression.
        mode: "replace" (the landmark measure is not used) or "fuse" (the two normalised measures
            weighted by their jitter, ``fuse_by_jitter``).
    """

    fn: Callable[[dict[str, np.ndarray], dict[str, float]], np.ndarray]
    sign: float
    min_range: float
    mode: str


SNEER_MIN_RANGE = 0.3
"""cm of wing-over-cheek rise read as a full sneer: the sample's 9 mm wing rise reads 0.37-0.45 cm
(99th percentile over each clip), a real clip without sneers 0.08-0.18 cm (Megamind.avi, frames
1:98, looked at); at the landmark measure's 0.15 cm that noise read as a sneer > 0.3 on 19-23 of
97 frames, at 0.3 cm on 0-14 (docs/tracking.md)."""


LIP_MIN_RANGE = 0.15
"""cm of a lip's motion against the skin beside it read as a full mouthUpperUp / mouthLowerDown:
the samples' 8 mm lip raise and drop read 0.15-0.20 cm at the 99th percentile of each clip."""


def _lid_rise(side: str):
    """The lower lid's rise above the skin just below it (cm). A squint closes the eye from below,
    lifting the lid more than the cheek under it; the canonical crop's own errors (the neutral
    surface's depth under the frame's pitch, the pose's roll over the 3 cm from the midline, a
    one-sided expression tilting the pose fit) move the lid and the skin 0.55 cm below it alike.
    Read alone (not fused), the lid's rise followed the samples' squints at r 0.74 / 0.83 (left)
    and 0.56 / 0.84 (right), the difference at 0.86 / 0.92 and 0.86 / 0.96 (docs/tracking.md)."""
    return lambda m, z: m[f"lowerLid{side}"][:, 1] - m[f"underLid{side}"][:, 1]


def _sneer(side: str):
    """The nose wing's rise above the outer cheek (cm), less the wing's depth share of the nose
    tip's rise above the cheek. A smile lifts the cheek with the wing; the crop's own errors (the
    frame's pitch, the neutral surface's depth on a face the mesh fits loosely) move each point
    in proportion to its depth, so they lift the protruding nose against the cheek, most at its
    tip: on a real clip without sneers (Megamind.avi) the false "sneers" rose most on the midline
    (the tip 0.67 cm, the wing box 0.42, the cheek 0.17 at frame 72) where the samples' sneers
    rise at the wing (0.6 cm) and barely at the tip (under 0.15). That error reaches the wing as
    (wing depth - cheek depth) / (tip depth - cheek depth) of the tip's (0.35-0.49 measured). Only the
    tip's rise is taken out: its drop is the upper lip pulling the columella down in a smile, skin
    motion that, taken out, would read every smile as a sneer (docs/tracking.md)."""
    def fn(m: dict[str, np.ndarray], z: dict[str, float]) -> np.ndarray:
        wing, cheek, tip = m[f"wing{side}"][:, 1], m[f"outerCheek{side}"][:, 1], m["noseTip"][:, 1]
        share = (z[f"wing{side}"] - z[f"outerCheek{side}"]) / max(z["noseTip"] - z[f"outerCheek{side}"], 1e-6)
        return wing - cheek - float(np.clip(share, 0.0, 1.0)) * np.maximum(tip - cheek, 0.0)
    return fn


def _lip_raise(side: str):
    """The upper lip's rise above the skin 0.5-1.0 cm over it (cm). A raised lip side moves the lip
    towards the nostril; the crop's own errors (pose, depth) and a jaw opening, which carries only
    the lower lip, move the two alike. FaceMesh lifts its whole upper lip when one side rises, so
    its landmarks read the raise only against the other side (``face_model``), and a sideways jaw
    leaks into that; the pixels see the lip move against the skin (docs/tracking.md)."""
    return lambda m, z: m[f"upperLip{side}"][:, 1] - m[f"aboveLip{side}"][:, 1]


def _lip_drop(side: str):
    """The lower lip's drop towards the skin 0.5-1.0 cm below it (cm): the same reading as
    ``_lip_raise`` for the lower lip. A jaw opening carries the lip and the chin's skin together;
    FaceMesh drops its whole lower lip for a one-sided drop, so its landmarks need the jaw's share
    taken out and still cannot keep the side (``face_model``)."""
    return lambda m, z: m[f"belowLip{side}"][:, 1] - m[f"lowerLip{side}"][:, 1]


def _chin_x(m: dict[str, np.ndarray], z: dict[str, float]) -> np.ndarray:
    return m["chin"][:, 0]


APPEARANCE: dict[str, AppearanceMeasure] = {
    "noseSneerLeft": AppearanceMeasure(_sneer("Left"), +1, SNEER_MIN_RANGE, "replace"),
    "noseSneerRight": AppearanceMeasure(_sneer("Right"), +1, SNEER_MIN_RANGE, "replace"),
    "jawLeft": AppearanceMeasure(_chin_x, +1, 0.3, "replace"),
    "jawRight": AppearanceMeasure(_chin_x, -1, 0.3, "replace"),
    "eyeSquintLeft": AppearanceMeasure(_lid_rise("Left"), +1, 0.06, "fuse"),
    "eyeSquintRight": AppearanceMeasure(_lid_rise("Right"), +1, 0.06, "fuse"),
    "mouthUpperUpLeft": AppearanceMeasure(_lip_raise("Left"), +1, LIP_MIN_RANGE, "fuse"),
    "mouthUpperUpRight": AppearanceMeasure(_lip_raise("Right"), +1, LIP_MIN_RANGE, "fuse"),
    "mouthLowerDownLeft": AppearanceMeasure(_lip_drop("Left"), +1, LIP_MIN_RANGE, "fuse"),
    "mouthLowerDownRight": AppearanceMeasure(_lip_drop("Right"), +1, LIP_MIN_RANGE, "fuse"),
}
"""Names read (or helped) from the pixels; every other name is read from the landmarks only."""
NAMES: tuple[str, ...] = tuple(APPEARANCE)


def jitter(x: np.ndarray) -> float:
    """Frame-to-frame noise of a curve (T,): robust sd of its first differences over sqrt(2)."""
    d = np.diff(np.asarray(x, dtype=np.float64))
    return float(1.4826 * np.median(np.abs(d)) / np.sqrt(2)) if len(d) else 0.0


def fuse_by_jitter(landmark: np.ndarray, appearance: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Two readings of one name, each normalised (unclipped, (T,)), averaged with weights
    1 / jitter^2 measured on the valid frames: the steadier reader of this clip leads. FaceMesh's
    lids are steady on some faces and sizes and couple a squint to a blink on others, the
    lid's image motion follows the head's pitch on others (docs/tracking.md), so neither a fixed
    choice nor a plain mean serves every clip. Returns (T,) unclipped."""
    v = np.asarray(valid, dtype=bool)
    w = [1.0 / max(jitter(c[v] if v.sum() > 2 else c), 1e-6) ** 2 for c in (landmark, appearance)]
    return (w[0] * landmark + w[1] * appearance) / (w[0] + w[1])


def canvas_shape() -> tuple[int, int]:
    """(rows, columns) of the canonical crop."""
    x0, x1, y0, y1 = CANVAS
    return round((y1 - y0) * PX_PER_CM), round((x1 - x0) * PX_PER_CM)


def canonical_grid(neutral: np.ndarray) -> np.ndarray:
    """(rows, cols, 3) canonical points (cm, mesh axes) of the crop's pixel centres on the clip's
    pose-free neutral surface: x, y on the grid, depth interpolated from its 468 points (linear
    inside their hull, nearest outside)."""
    x0, _, _, y1 = CANVAS
    rows, cols = canvas_shape()
    xs = x0 + (np.arange(cols) + 0.5) / PX_PER_CM
    ys = y1 - (np.arange(rows) + 0.5) / PX_PER_CM
    gx, gy = np.meshgrid(xs, ys)
    v = np.asarray(neutral, dtype=np.float64)[:468]
    gz = LinearNDInterpolator(v[:, :2], v[:, 2])(gx, gy)
    out = np.isnan(gz)
    gz[out] = NearestNDInterpolator(v[:, :2], v[:, 2])(gx[out], gy[out])
    return np.stack([gx, gy, gz], axis=-1)


def surface_normals(grid: np.ndarray) -> np.ndarray:
    """(rows, cols, 3) unit normals (mesh axes, towards the viewer at zero pose) of the surface
    ``grid`` (``canonical_grid``), from its depth gradient."""
    dzdx = np.gradient(grid[..., 2], axis=1) * PX_PER_CM
    dzdy = -np.gradient(grid[..., 2], axis=0) * PX_PER_CM  # rows go down, y up
    n = np.stack([-dzdx, -dzdy, np.ones_like(dzdx)], axis=-1)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


class CanonicalSampler:
    """Resamples a frame onto the canonical crop of the face (module doc, step 1)."""

    def __init__(self, neutral: np.ndarray) -> None:
        """neutral: (468, 3) pose-free neutral shape of the clip, canonical cm, mesh axes."""
        grid = canonical_grid(neutral)
        self.shape = grid.shape[:2]
        self.grid = grid.reshape(-1, 3)  # (rows * cols, 3) cm

    def __call__(self, rgb: np.ndarray, pose: np.ndarray, scale: float) -> np.ndarray:
        """(rows, cols) uint8 grey canonical crop of ``rgb``.

        Args:
            rgb: (H, W, 3) uint8 frame.
            pose: (6,) [yaw, pitch, roll, tx, ty, tz] in this frame's pixels (``backend.face.rig``).
            scale: frame px per cm.
        """
        R = euler_to_matrix(float(pose[0]), float(pose[1]), float(pose[2]))
        p = (scale * self.grid) @ R.T
        mx = (p[:, 0] + pose[3] - 0.5).astype(np.float32).reshape(self.shape)
        my = (-p[:, 1] + pose[4] - 0.5).astype(np.float32).reshape(self.shape)
        crop = cv2.remap(rgb, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)


def _region_slices(neutral: np.ndarray) -> dict[str, tuple[slice, slice]]:
    """Canonical-crop (rows, cols) of every region, placed on the clip's neutral landmarks."""
    x0, _, _, y1 = CANVAS
    rows, cols = canvas_shape()
    out = {}
    for name, reg in REGIONS.items():
        ax, ay = float(neutral[reg.anchor, 0]), float(neutral[reg.anchor, 1])
        dx0, dx1, dy0, dy1 = reg.box
        c0, c1 = round((ax + dx0 - x0) * PX_PER_CM), round((ax + dx1 - x0) * PX_PER_CM)
        r0, r1 = round((y1 - ay - dy1) * PX_PER_CM), round((y1 - ay - dy0) * PX_PER_CM)
        c0, c1, r0, r1 = max(c0, 0), min(c1, cols), max(r0, 0), min(r1, rows)
        out[name] = (slice(r0, max(r1, r0 + 1)), slice(c0, max(c1, c0 + 1)))
    return out


def region_depths(neutral: np.ndarray) -> dict[str, float]:
    """Mean depth (canonical cm, towards the viewer) of each region's pixels on the clip's neutral
    surface (``canonical_grid``)."""
    grid = canonical_grid(neutral)
    return {name: float(grid[rs, cs, 2].mean()) for name, (rs, cs) in _region_slices(neutral).items()}


def visibility(normals: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """How squarely each canonical pixel faces the camera in each frame, as a weight.

    Args:
        normals: (..., 3) unit surface normals, mesh axes (``surface_normals``).
        angles: (T, 3) [yaw, pitch, roll] radians (``backend.face.pose``).
    Returns:
        (T, ...) float64 ``max(n_z - FACING_MIN, 0)``, n_z the normal's component towards the
        viewer after the frame's rotation: 0 from ``FACING_MIN`` to the silhouette and beyond.
    """
    R = euler_to_matrices(angles)  # (T, 3, 3); the rotated normal's z is R[2] . n
    nz = np.einsum("tj,...j->t...", R[:, 2, :], np.asarray(normals, dtype=np.float64))
    return np.clip(nz - FACING_MIN, 0.0, None)


def region_motion(crops: np.ndarray, runs: list[tuple[int, int]], neutral: np.ndarray,
                  angles: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Each region's mean motion (cm; x = the subject's left, y up) against its run's median crop.

    Args:
        crops: (T, rows, cols) uint8 canonical crops (``CanonicalSampler``).
        runs: dense frame ranges (a, b) that share a neutral reference (a shot's run).
        neutral: (468, 3) the clip's pose-free neutral shape (places the regions).
        angles: (T, 3) [yaw, pitch, roll] radians of the frames' (smoothed) pose: in a
            ``Region.facing`` box each pixel's flow is weighted by how squarely its surface faces
            the camera (``visibility``); None: plain means.
    Returns:
        {region name: (T, 2) float64}.
    """
    slices = _region_slices(neutral)
    T = crops.shape[0]
    out = {name: np.zeros((T, 2)) for name in slices}
    weights: dict[str, np.ndarray] = {}
    if angles is not None:
        normals = surface_normals(canonical_grid(neutral))
        weights = {name: visibility(normals[rs, cs], angles).reshape(T, -1)
                   for name, (rs, cs) in slices.items() if REGIONS[name].facing}
    for a, b in runs:
        ref = np.median(crops[a:b], axis=0).astype(np.uint8)
        for t in range(a, b):
            flow = cv2.calcOpticalFlowFarneback(ref, crops[t], None, **FLOW_PARAMS)
            for name, (rs, cs) in slices.items():
                f = flow[rs, cs].reshape(-1, 2)
                if name not in weights:
                    dx, dy = f.mean(0)
                else:
                    w = weights[name][t]
                    dx, dy = (w @ f) / w.sum() if w.sum() > 1e-9 else (0.0, 0.0)
                out[name][t] = (dx / PX_PER_CM, -dy / PX_PER_CM)  # image y is down, mesh y up
    return out


def measure_appearance(crops: np.ndarray | None, runs: list[tuple[int, int]], neutral: np.ndarray,
                       px_per_cm: float, angles: np.ndarray | None = None) -> dict[str, np.ndarray] | None:
    """Raw appearance measures of ``APPEARANCE`` (cm, before sign and normalisation), or None
    (the reason logged) when they cannot be measured: the tracker then uses the landmarks.

    Args:
        crops: (T, rows, cols) uint8 canonical crops, or None when none were sampled.
        runs: dense frame ranges (a, b) covering the clip, each with its own neutral reference.
        neutral: (468, 3) pose-free neutral shape, canonical cm.
        px_per_cm: the face's median scale in the video (px per canonical cm).
        angles: (T, 3) [yaw, pitch, roll] radians of the frames' pose the crops were sampled
            with: pixels are weighted by how squarely they face the camera (``region_motion``).
    Returns:
        {name: (T,) float64 cm} for every name of ``APPEARANCE``, or None.
    """
    why = None
    if crops is None:
        why = "no canonical crops were sampled"
    elif min((b - a for a, b in runs), default=0) < MIN_FRAMES:
        why = f"a run has fewer than {MIN_FRAMES} frames for a neutral reference"
    elif px_per_cm < MIN_PX_PER_CM:
        why = (f"the face is too small in the video ({px_per_cm:.1f} px per cm, under {MIN_PX_PER_CM}; "
               "about a 30 px face)")
    if why is not None:
        log.warning("expressions: appearance measure skipped (%s); reading %s from the landmarks only",
                    why, ", ".join(NAMES))
        return None
    motion = region_motion(crops, runs, neutral, angles)
    depth = region_depths(neutral)
    return {name: np.asarray(m.fn(motion, depth), dtype=np.float64) for name, m in APPEARANCE.items()}
