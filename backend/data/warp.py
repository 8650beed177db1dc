"""Image warp that moves a photo's face mesh to new vertex positions.

Backward mapping: for every output pixel we find the photo position it shows, then sample the
photo once with ``cv2.remap``.

- Face: piecewise-affine. The target mesh is rasterised with the *source* pixel positions as its
  per-vertex "uv" (``backend.face.uv_raster``), which gives the exact inverse affine map of every
  triangle, with a z-buffer for the parts a head turn hides.
- Mouth: the mesh's triangles across the mouth opening are replaced by two bands that carry the
  photo's upper / lower mouth interior (teeth) with the upper / lower lip, and a dark cavity
  between them that opens with the jaw.
- Eyes: the triangles across each eye opening show the eyeball fixed to the head, so a closing
  upper lid covers it (instead of squashing it).
- Skirt: a band around the face outline that moves rigidly with the head (hair, ears, neck
  next to the face), also piecewise affine and z-buffered.
- Outside: a thin-plate spline through the skirt's outer ring, a ring of points in the hair
  that follow the head rigidly, and fixed anchors further out (background, torso), faded to
  exactly zero far from the head - so the hair moves with the head and the torso and background
  stay put. The spline is one precomputed linear operator on a coarse grid, inverted by
  fixed-point iteration and upsampled (it is smooth).
"""

from __future__ import annotations

import cv2
import numpy as np

from backend.data.synthetic_expressions import (
    INNER_LIP_LOWER,
    INNER_LIP_UPPER,
    LEFT_EYE_LOWER,
    LEFT_EYE_UPPER,
    RIGHT_EYE_LOWER,
    RIGHT_EYE_UPPER,
)
from backend.face.uv_raster import rasterize_uv

_REPLICATE, _REFLECT = cv2.BORDER_REPLICATE, cv2.BORDER_REFLECT
_SKIRT_WIDTH = 0.3  # band around the face outline that moves rigidly, in inter-ocular distances
_TEETH_SPLIT = 0.72  # upper band = this share of the photo's mouth opening (the upper teeth)
_CAVITY_FLAG = -1.0e5  # "uv" of cavity triangles; real source positions are never this negative
_CAVITY_TOP = np.array([28.0, 10.0, 14.0])  # RGB, under the upper teeth
_CAVITY_BOTTOM = np.array([122.0, 48.0, 46.0])  # RGB, tongue


def boundary_loop(triangles: np.ndarray) -> np.ndarray:
    """Vertex ids of the mesh's outer boundary loop (edges used by one triangle), in order."""
    edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    edges = np.sort(edges, axis=1)
    uniq, counts = np.unique(edges, axis=0, return_counts=True)
    border = uniq[counts == 1]
    nxt: dict[int, list[int]] = {}
    for a, b in border.tolist():
        nxt.setdefault(a, []).append(b)
        nxt.setdefault(b, []).append(a)
    start = int(border[0, 0])
    loop, prev, cur = [start], -1, start
    while True:
        cand = [n for n in nxt[cur] if n != prev]
        if not cand or cand[0] == start:
            break
        prev, cur = cur, cand[0]
        loop.append(cur)
    return np.asarray(loop)


def _tps_operator(ctrl: np.ndarray, pts: np.ndarray, reg: float = 1e-3) -> np.ndarray:
    """Linear operator (P, n): values at the ``n`` control points -> spline values at ``P`` points.

    The thin-plate spline through fixed control points is linear in the values, so for a fixed
    set of control and evaluation points it is one matrix, computed once.
    """
    n = ctrl.shape[0]

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d2 = ((a[:, None] - b[None]) ** 2).sum(-1)
        return 0.5 * d2 * np.log(np.maximum(d2, 1e-12))

    A = np.zeros((n + 3, n + 3))
    A[:n, :n] = kernel(ctrl, ctrl) + reg * np.eye(n)
    A[:n, n:] = np.column_stack([np.ones(n), ctrl])
    A[n:, :n] = A[:n, n:].T
    inv = np.linalg.inv(A)[:, :n]  # (n + 3, n): right-hand side is [values; 0]
    G = np.concatenate([kernel(pts, ctrl), np.ones((len(pts), 1)), pts], axis=1)  # (P, n + 3)
    return G @ inv


class FaceWarper:
    """Warps one photo to posed/deformed versions of its face mesh.

    Args:
        photo: (H, W, 3) uint8 image.
        vertices: (468, 3) float source vertices in photo pixels (x right, y down, z to viewer).
        triangles: (F, 3) int mesh triangles (FaceMesh topology).
        head_centre: (3,) centre of head rotations (the hair ring follows it rigidly).
        scale: face size in pixels (inter-ocular distance); sets the warp's spatial extents.
    """

    def __init__(
        self,
        photo: np.ndarray,
        vertices: np.ndarray,
        triangles: np.ndarray,
        head_centre: np.ndarray,
        scale: float,
    ) -> None:
        self.photo = np.ascontiguousarray(photo)
        self.h, self.w = photo.shape[:2]
        self.src = np.asarray(vertices, dtype=np.float64)
        self.scale = float(scale)
        self.head_centre = np.asarray(head_centre, dtype=np.float64)
        tri = np.asarray(triangles)
        inner = set(INNER_LIP_UPPER) | set(INNER_LIP_LOWER)
        in_mouth = np.isin(tri, list(inner)).all(axis=1)
        self.face_triangles = tri[~in_mouth]
        self.outline = boundary_loop(tri)
        self.upper = np.array(INNER_LIP_UPPER[1:-1])
        self.lower = np.array(INNER_LIP_LOWER[1:-1])
        self.corners = (INNER_LIP_UPPER[0], INNER_LIP_UPPER[-1])
        self._build_mouth_topology()
        self._build_eye_topology()
        self._build_skirt()
        self._build_anchors()
        self.all_triangles = np.concatenate(
            [self.face_triangles, self.band_triangles, self.cavity_triangles, self.skirt_triangles]
        )
        # Coarse grid (pixel-centre aligned with cv2.resize) for the outer spline.
        step = 8
        gw, gh = -(-self.w // step), -(-self.h // step)
        gx = (np.arange(gw) + 0.5) * self.w / gw
        gy = (np.arange(gh) + 0.5) * self.h / gh
        self.grid_shape = (gh, gw)
        self.grid = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)
        ctrl = np.concatenate([self.skirt_src[:, :2], self.hair, self.fixed])
        self.spline = _tps_operator(ctrl, self.grid)  # (G, n) forward displacement operator
        ex, ey, ehx, ehy = self._falloff_ellipse
        r = np.hypot((self.grid[:, 0] - ex) / ehx, (self.grid[:, 1] - ey) / ehy).reshape(gh, gw)
        fade = np.clip((2.7 - r) / 1.0, 0.0, 1.0)
        self.falloff = (fade * fade * (3 - 2 * fade)).astype(np.float32)
        xs, ys = np.meshgrid(np.arange(self.w, dtype=np.float32), np.arange(self.h, dtype=np.float32))
        self.pixel_index = np.stack([xs, ys], -1)  # (H, W, 2) pixel-index coordinates

    def _build_mouth_topology(self) -> None:
        """Extra vertices and triangles: the upper and lower teeth bands and the cavity.

        Vertex blocks after the 468 mesh vertices: band rims Mu (n), Ml (n), then the cavity's own
        copies [corner0, Mu..., corner1, Ml...] (2n + 2); n = inner-lip pairs without corners.
        """
        n = len(self.upper)
        base = self.src.shape[0]
        # Extra vertex blocks (each n): upper band mid (Mu), lower band mid (Ml).
        self.mu_ids = base + np.arange(n)
        self.ml_ids = base + n + np.arange(n)
        c0, c1 = self.corners
        up_chain = [c0, *self.upper.tolist(), c1]
        lo_chain = [c0, *self.lower.tolist(), c1]
        mu_chain = [c0, *self.mu_ids.tolist(), c1]
        ml_chain = [c0, *self.ml_ids.tolist(), c1]
        tris: list[tuple[int, int, int]] = []
        cavity: list[tuple[int, int, int]] = []

        def band(a: list[int], b: list[int], out: list[tuple[int, int, int]]) -> None:
            for i in range(len(a) - 1):
                if a[i] != b[i]:
                    out.append((a[i], a[i + 1], b[i]))
                if a[i + 1] != b[i + 1]:
                    out.append((a[i + 1], b[i + 1], b[i]))

        band(up_chain, mu_chain, tris)
        band(ml_chain, lo_chain, tris)
        # The cavity has its own copies of its vertices (so its "uv" can carry a flag):
        # block [corner0, Mu..., corner1, Ml...] after the two band blocks.
        cb = base + 2 * n
        cav_mu = [cb, *(cb + 1 + np.arange(n)).tolist(), cb + n + 1]
        cav_ml = [cb, *(cb + n + 2 + np.arange(n)).tolist(), cb + n + 1]
        band(cav_mu, cav_ml, cavity)
        self.band_triangles = np.asarray(tris)
        self.cavity_triangles = np.asarray(cavity)
        # Photo positions of the band edges: where the upper teeth end in the photo's mouth.
        self.src_mid = self.src[self.upper] + _TEETH_SPLIT * (self.src[self.lower] - self.src[self.upper])
        # Photo positions of the cavity's own vertex copies [corner0, Mu..., corner1, Ml...].
        c0_src, c1_src = self.src[[c0], :2], self.src[[c1], :2]
        self._cavity_src = np.concatenate([c0_src, self.src_mid[:, :2], c1_src, self.src_mid[:, :2]])

    def _build_eye_topology(self) -> None:
        """Eye openings show the eyeball fixed to the head, uncovered by the (moving) upper lid.

        The mesh's triangles across each eye opening get their own copies of the upper-lid
        vertices; a copy's photo position is the eyeball point that now lies under the lid
        (lower-lid point + current lid opening), so a closing lid covers the eye instead of
        squashing it.
        """
        first = self.src.shape[0] + 2 * len(self.upper) + 2 * len(self.upper) + 2
        tris = self.face_triangles.copy()
        lids, lowers, copies = [], [], []
        for upper, lower in ((LEFT_EYE_UPPER, LEFT_EYE_LOWER), (RIGHT_EYE_UPPER, RIGHT_EYE_LOWER)):
            inside = np.isin(tris, list(upper) + list(lower)).all(axis=1)
            for u, lo in zip(upper[1:-1], lower[1:-1], strict=True):
                copy = first + len(copies)
                tris[inside] = np.where(tris[inside] == u, copy, tris[inside])
                lids.append(u)
                lowers.append(lo)
                copies.append(copy)
        self.face_triangles = tris
        self.lid_ids, self.lid_lower_ids = np.array(lids), np.array(lowers)
        self.n_extra = first + len(copies) - self.src.shape[0]

    def _build_skirt(self) -> None:
        """A band of triangles around the face outline that moves rigidly with the head.

        It carries the hair / ears / neck next to the face with an exact piecewise-affine map
        (z-buffered, so a turned cheek correctly hides part of it); the smooth outer spline
        starts at its outer ring, where the motion is rigid and gentle.
        """
        s = self.scale
        face = self.src[self.outline]
        centre = (face[:, :2].max(0) + face[:, :2].min(0)) / 2
        radial = face[:, :2] - centre
        radial /= np.linalg.norm(radial, axis=1, keepdims=True)
        ring = face.copy()
        ring[:, :2] += _SKIRT_WIDTH * s * radial
        ring[:, 2] -= 0.3 * s
        ring[:, 0] = np.clip(ring[:, 0], 0.0, self.w)
        ring[:, 1] = np.clip(ring[:, 1], 0.0, self.h)
        self.skirt_src = ring
        first = self.src.shape[0] + self.n_extra
        k = len(self.outline)
        ring_ids = first + np.arange(k)
        o, o1 = self.outline, np.roll(self.outline, -1)
        r, r1 = ring_ids, np.roll(ring_ids, -1)
        self.skirt_triangles = np.concatenate([np.stack([o, o1, r], 1), np.stack([o1, r1, r], 1)])

    def _eye_copies(self, target: np.ndarray, rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Target positions (k, 3) and photo positions (k, 2) of the upper-lid copies."""
        opening = (target[self.lid_ids] - target[self.lid_lower_ids]) @ rotation  # head frame
        return target[self.lid_ids], self.src[self.lid_lower_ids, :2] + opening[:, :2]

    def _build_anchors(self) -> None:
        """Hair ring (moves rigidly with the head) and fixed anchors (background, torso)."""
        s = self.scale
        face = self.src[self.outline]
        cx, cy = (face[:, 0].max() + face[:, 0].min()) / 2, (face[:, 1].max() + face[:, 1].min()) / 2
        hx, hy = np.ptp(face[:, 0]) / 2, np.ptp(face[:, 1]) / 2
        eye_y = self.head_centre[1]
        a = np.linspace(0, 2 * np.pi, 28, endpoint=False)
        ring = np.column_stack([cx + (hx + 0.8 * s) * np.cos(a), cy + (hy + 0.8 * s) * np.sin(a)])
        self.hair = ring[ring[:, 1] < eye_y]  # only above the ears: below is neck/collar
        far = np.column_stack([cx + (hx + 1.3 * s) * np.cos(a), cy + (hy + 1.1 * s) * np.sin(a)])
        chin_y = face[:, 1].max()
        torso = np.column_stack([np.linspace(cx - 2.2 * s, cx + 2.2 * s, 9), np.full(9, chin_y + 0.8 * s)])
        bx = np.linspace(0, self.w, 9)
        by = np.linspace(0, self.h, 9)[1:-1]
        border = np.concatenate([
            np.column_stack([bx, np.zeros(9)]), np.column_stack([bx, np.full(9, self.h)]),
            np.column_stack([np.zeros(7), by]), np.column_stack([np.full(7, self.w), by]),
        ])
        fixed = np.concatenate([far, torso, border])
        # Drop fixed anchors that crowd the moving points (they would fold the spline).
        moving = np.concatenate([self.skirt_src[:, :2], self.hair])
        dmin = np.sqrt(((fixed[:, None] - moving[None]) ** 2).sum(-1)).min(1)
        self.fixed = fixed[dmin > 0.4 * s]
        # Far from the head the spline's residual drift is cut to exactly zero (on the coarse
        # grid, see __init__): elliptic distance 1.7 -> 2.7 face half-extents fades 1 -> 0.
        self._falloff_ellipse = (cx, cy, hx, hy)

    def mouth_targets(self, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Target positions (n, 3) of the upper and lower band edges (the cavity's rim), and the
        cavity's opacity (n,) at each of them (a hair-thin cavity stays invisible).

        While the opening is wider than in the photo, the bands keep their photo thickness and
        the cavity takes the rest; when it is narrower, both bands shrink proportionally.
        """
        U, L = target[self.upper], target[self.lower]
        gap_src = np.linalg.norm(self.src[self.lower, :2] - self.src[self.upper, :2], axis=1)
        gap = L - U
        gap_len = np.maximum(np.linalg.norm(gap[:, :2], axis=1), 1e-9)
        unit = gap / gap_len[:, None]
        # The cavity opens softly: an opening that grows by e opens the cavity by e^2 / (e + m),
        # so a barely wider mouth shows no hair-thin dark line.
        excess = np.maximum(gap_len - gap_src, 0.0)
        m = 0.06 * self.scale
        cavity = excess**2 / (excess + m)
        bands = (gap_len - cavity)[:, None]
        back = np.array([0.0, 0.0, -0.08 * self.scale])  # mouth interior sits behind the lips
        upper_rim = U + unit * bands * _TEETH_SPLIT + back
        lower_rim = L - unit * bands * (1 - _TEETH_SPLIT) + back
        fade = np.clip((cavity - 0.6) / 1.4, 0.0, 1.0)  # invisible below 0.6 px, opaque from 2 px
        return upper_rim, lower_rim, fade * fade * (3 - 2 * fade)

    def map_for(
        self, target: np.ndarray, rotation: np.ndarray, translation: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Backward map for one frame.

        Args:
            target: (468, 3) target vertices in output pixels.
            rotation: (3, 3) head rotation in image axes (x right, y down, z to viewer).
            translation: (3,) head translation in pixels.

        Returns:
            map_xy: (H, W, 2) float32 photo position (pixel-centre coordinates, for cv2.remap).
            cavity: (H, W, 2) float32 (opacity, depth) of the mouth cavity: opacity 0 outside it;
                depth runs from 0 (under the upper teeth) to 1 (at the tongue); see ``render``.
        """
        mu, ml, opacity = self.mouth_targets(target)
        n = len(self.upper)
        c0, c1 = target[[self.corners[0]]], target[[self.corners[1]]]
        eye_xyz, eye_src = self._eye_copies(target, rotation)
        skirt = self._rigid(self.skirt_src, rotation, translation)
        verts = np.concatenate([target, mu, ml, c0, mu, c1, ml, eye_xyz, skirt])
        src_xy = np.concatenate([self.src[:, :2], self.src_mid[:, :2], self.src_mid[:, :2]])
        # Cavity "uv": u = flag + (1 - opacity) * 100 (decoded below), v = depth (0 under the upper
        # teeth, 1 at the tongue); both interpolate linearly across the cavity triangles.
        depth = np.r_[0.5, np.zeros(n), 0.5, np.ones(n)]
        transparency = np.r_[1.0, 1 - opacity, 1.0, 1 - opacity]
        cav_uv = np.column_stack([_CAVITY_FLAG + 100 * transparency, depth])
        uvs = np.concatenate([src_xy, cav_uv, eye_src, self.skirt_src[:, :2]])
        # Rasterise only the window around the head (everything else is the outer spline).
        win = self._window(verts)
        local = verts - np.array([win[1].start, win[0].start, 0.0])
        wh, ww = win[0].stop - win[0].start, win[1].stop - win[1].start
        face = rasterize_uv(local, uvs, self.all_triangles, wh, ww)
        covered = face[..., 2] > 0
        is_cavity = covered & (face[..., 0] < _CAVITY_FLAG / 2)
        face_px = covered & ~is_cavity
        disp = self._outer_backward_displacement(target, rotation, translation)
        map_xy = self.pixel_index + disp
        # remap wants pixel-index coordinates: photo position - 0.5
        np.copyto(map_xy[win], face[..., :2] - 0.5, where=face_px[..., None])
        cavity = np.zeros((self.h, self.w, 2), dtype=np.float32)
        if is_cavity.any():
            cavity[win][is_cavity, 0] = 1 - (face[is_cavity, 0] - _CAVITY_FLAG) / 100
            cavity[win][is_cavity, 1] = face[is_cavity, 1]
            # Behind a (partly) transparent cavity: the teeth edge, i.e. the photo's band line.
            behind_uv = np.concatenate([src_xy, self._cavity_src, eye_src, self.skirt_src[:, :2]])
            behind = rasterize_uv(local, behind_uv, self.cavity_triangles, wh, ww)
            np.copyto(map_xy[win], behind[..., :2] - 0.5, where=is_cavity[..., None])
        return map_xy, cavity

    def _window(self, verts: np.ndarray) -> tuple[slice, slice]:
        """(rows, cols) slices of the image around ``verts`` (n, 3), 2 px margin, never empty."""
        lo = np.clip(np.floor(verts[:, :2].min(0)) - 2, 0, [self.w - 1, self.h - 1]).astype(int)
        hi = np.clip(np.ceil(verts[:, :2].max(0)) + 2, 0, [self.w, self.h]).astype(int)
        hi = np.maximum(hi, lo + 1)
        return slice(int(lo[1]), int(hi[1])), slice(int(lo[0]), int(hi[0]))

    def _rigid(self, points: np.ndarray, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
        """Points (n, 3) moved with the head: rotation about the head centre, then translation."""
        return (points - self.head_centre) @ rotation.T + self.head_centre + translation

    def _outer_backward_displacement(
        self, target: np.ndarray, rotation: np.ndarray, translation: np.ndarray, iterations: int = 6
    ) -> np.ndarray:
        """Photo position minus output position (H, W, 2) float32 outside the face.

        The spline is fitted in *photo* space (fixed control points: face outline, hair ring,
        anchors) to the forward displacement f(s) = output - photo, then inverted on the coarse
        grid by fixed-point iteration s = p - f(s) (f is smooth and its gradient small).
        """
        hair_src = np.column_stack([self.hair, np.full(len(self.hair), self.head_centre[2])])
        hair_dst = self._rigid(hair_src, rotation, translation)
        skirt_dst = self._rigid(self.skirt_src, rotation, translation)
        values = np.concatenate([
            skirt_dst[:, :2] - self.skirt_src[:, :2],
            hair_dst[:, :2] - self.hair,
            np.zeros_like(self.fixed),
        ])
        gh, gw = self.grid_shape
        forward = (self.spline @ values).reshape(gh, gw, 2).astype(np.float32)
        grid = self.grid.reshape(gh, gw, 2).astype(np.float32)
        to_index = np.array([gw / self.w, gh / self.h], dtype=np.float32)
        src = grid - forward
        for _ in range(iterations):
            idx = src * to_index - 0.5
            f = cv2.remap(forward, idx[..., 0], idx[..., 1], cv2.INTER_LINEAR, borderMode=_REPLICATE)
            src = grid - f
        backward = (src - grid) * self.falloff[..., None]
        return cv2.resize(backward, (self.w, self.h), interpolation=cv2.INTER_LINEAR)

    def render(self, target: np.ndarray, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
        """Warped photo (H, W, 3) uint8 for target vertices (468, 3) and the head pose."""
        map_xy, cavity = self.map_for(target, rotation, translation)
        out = cv2.remap(self.photo, map_xy[..., 0], map_xy[..., 1], cv2.INTER_LINEAR, borderMode=_REFLECT)
        win = self._window(np.concatenate([target, self._rigid(self.skirt_src, rotation, translation)]))
        _smooth_occlusion_edges(out[win], map_xy[win])
        if (cavity[..., 0] > 0).any():
            _paint_cavity(out, cavity)
        return out


def _smooth_occlusion_edges(image: np.ndarray, map_xy: np.ndarray, jump: float = 2.0) -> None:
    """Soften the aliased steps where the backward map jumps (occlusion: a turned cheek in front
    of the background, a lid over the eye), in place: those pixels and their neighbours take a
    sub-pixel blur of the image. Elsewhere the map is continuous and nothing changes.

    ``image`` (h, w, 3) and ``map_xy`` (h, w, 2) may be views of a window of the frame."""
    jx = np.abs(np.diff(map_xy, axis=1)).max(-1) > jump
    jy = np.abs(np.diff(map_xy, axis=0)).max(-1) > jump
    edge = np.zeros(image.shape[:2], dtype=np.uint8)
    edge[:, 1:] |= jx
    edge[:, :-1] |= jx
    edge[1:] |= jy
    edge[:-1] |= jy
    if not edge.any():
        return
    ys, xs = np.nonzero(edge)
    y0, y1 = max(ys.min() - 2, 0), min(ys.max() + 3, image.shape[0])
    x0, x1 = max(xs.min() - 2, 0), min(xs.max() + 3, image.shape[1])
    patch = image[y0:y1, x0:x1]
    blurred = cv2.GaussianBlur(patch, (0, 0), 0.7)
    mask = edge[y0:y1, x0:x1].astype(bool)
    patch[mask] = blurred[mask]


def _paint_cavity(image: np.ndarray, cavity: np.ndarray) -> None:
    """Paint the mouth cavity into ``image`` (H, W, 3) uint8 in place, with soft edges.

    ``cavity`` (H, W, 2): opacity (0 outside) and depth (0 under the upper teeth, 1 at the
    tongue). The opacity is feathered by a sub-pixel blur so the rim is anti-aliased.
    """
    ys, xs = np.nonzero(cavity[..., 0] > 0)
    y0, y1 = max(ys.min() - 3, 0), min(ys.max() + 4, cavity.shape[0])
    x0, x1 = max(xs.min() - 3, 0), min(xs.max() + 4, cavity.shape[1])
    alpha = np.ascontiguousarray(cavity[y0:y1, x0:x1, 0])
    depth = np.clip(cavity[y0:y1, x0:x1, 1], 0.0, 1.0)[..., None]
    colour = ((1 - depth) * _CAVITY_TOP + depth * _CAVITY_BOTTOM).astype(np.float32) * alpha[..., None]
    soft = cv2.GaussianBlur(alpha, (0, 0), 0.6)
    colour = cv2.GaussianBlur(colour, (0, 0), 0.6) / np.maximum(soft, 1e-6)[..., None]
    patch = image[y0:y1, x0:x1].astype(np.float32)
    blended = patch * (1 - soft[..., None]) + colour * soft[..., None]
    image[y0:y1, x0:x1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
