"""The face rig: a person-specific linear face model on the MediaPipe canonical topology.

    shape(e) = neutral + sum_k e[k] * deltas[k]           (468, 3) cm, mesh axes

Mesh axes: x to the image right (the subject's left), y up, z towards the viewer; centimetres
(the canonical mesh's units; the person's face is brought to canonical size by the pose scale).

Projection (scaled orthographic) of a vertex v with pose [yaw, pitch, roll, tx, ty, tz] and
scale s (crop pixels per cm)::

    R = Ry(yaw) @ Rx(pitch) @ Rz(roll)           (backend.face.pose.euler_to_matrix)
    p = s * R @ v
    x_px = p[0] + tx        (image x, right; pixel centres at i + 0.5)
    y_px = -p[1] + ty       (image y, DOWN: mesh y up is flipped)
    z    = p[2] + tz        (towards the viewer, pixels)

In Blender terms: an orthographic camera looking along the mesh's -z, ``ortho_scale`` =
``size / s`` cm, the head object rotated by R and moved by ((tx - size/2) / s, (size/2 - ty) / s)
cm in the camera plane; the crop is ``size`` x ``size`` pixels.

UVs: per-vertex, **OBJ / Blender convention (v up, origin at the texture's bottom-left)**, i.e.
``(u, 1 - v_canonical)`` of the MediaPipe file. The same values are in ``neutral.obj`` (vt), in
``blendshapes.npz`` and in every UV map, so a Blender UV pass of the rig equals the backend's maps.

On disk (``save``): ``rig/neutral.obj`` (v + per-vertex vt, faces ``a/a b/b c/c``; trimesh reads
it with ``process=False`` in vertex order) and ``rig/blendshapes.npz`` (names (K,) str, deltas
(K, 468, 3) float32, neutral (468, 3), uvs (468, 2), triangles (F, 3) int32; no pickle).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.face.pose import euler_to_matrices, euler_to_matrix
from protocol.fileio import atomic_path, atomic_write_text

RIG_DIRNAME = "rig"
OBJ_NAME = "neutral.obj"
BLENDSHAPES_NAME = "blendshapes.npz"


class RigError(ValueError):
    """A rig folder is missing, incomplete or inconsistent."""


@dataclass
class FaceRig:
    """Linear blendshape rig.

    Attributes:
        names: K coefficient names (FACE_MODEL_NAMES then residual_NN, see protocol.expressions).
        neutral: (468, 3) float32 cm, mesh axes (x right, y up, z towards viewer).
        deltas: (K, 468, 3) float32 cm per unit coefficient.
        uvs: (468, 2) float32 per-vertex UVs, v up (OBJ/Blender convention).
        triangles: (F, 3) int32 vertex indices.
    """

    names: list[str]
    neutral: np.ndarray
    deltas: np.ndarray
    uvs: np.ndarray
    triangles: np.ndarray

    def __post_init__(self) -> None:
        self.names = [str(n) for n in self.names]
        self.neutral = np.asarray(self.neutral, dtype=np.float32)
        self.deltas = np.asarray(self.deltas, dtype=np.float32)
        self.uvs = np.asarray(self.uvs, dtype=np.float32)
        self.triangles = np.asarray(self.triangles, dtype=np.int32)
        n = self.neutral.shape[0]
        if self.neutral.shape != (n, 3):
            raise RigError(f"neutral must be (N, 3), got {self.neutral.shape}")
        if self.deltas.shape != (len(self.names), n, 3):
            raise RigError(f"deltas must be ({len(self.names)}, {n}, 3), got {self.deltas.shape}")
        if self.uvs.shape != (n, 2):
            raise RigError(f"uvs must be ({n}, 2), got {self.uvs.shape}")
        if self.triangles.ndim != 2 or self.triangles.shape[1] != 3:
            raise RigError(f"triangles must be (F, 3), got {self.triangles.shape}")

    @property
    def n_vertices(self) -> int:
        return int(self.neutral.shape[0])

    def shape(self, expr: np.ndarray) -> np.ndarray:
        """(K,) coefficients -> (N, 3) float32 vertices (cm); (T, K) -> (T, N, 3)."""
        e = np.asarray(expr, dtype=np.float32)
        if e.shape[-1] != len(self.names):
            raise RigError(f"expected {len(self.names)} coefficients, got {e.shape[-1]}")
        return self.neutral + np.tensordot(e, self.deltas, axes=([-1], [0])).astype(np.float32)

    @staticmethod
    def project(vertices: np.ndarray, pose: np.ndarray, scale: float) -> np.ndarray:
        """Scaled-orthographic projection (formula in the module docstring).

        Args:
            vertices: (N, 3) cm, mesh axes.
            pose: (6,) [yaw, pitch, roll (rad), tx, ty (crop px), tz (px)].
            scale: crop pixels per cm.
        Returns:
            (N, 3) float32: x, y crop pixels (y down), z towards the viewer (pixels).
        """
        pose = np.asarray(pose, dtype=np.float64)
        p = float(scale) * np.asarray(vertices, dtype=np.float64) @ euler_to_matrix(*pose[:3]).T
        out = np.empty_like(p)
        out[:, 0] = p[:, 0] + pose[3]
        out[:, 1] = -p[:, 1] + pose[4]
        out[:, 2] = p[:, 2] + pose[5]
        return out.astype(np.float32)

    @staticmethod
    def project_batch(vertices: np.ndarray, pose: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """``project`` for (T, N, 3) vertices, (T, 6) pose, (T,) scale -> (T, N, 3) float32."""
        pose = np.asarray(pose, dtype=np.float64)
        R = euler_to_matrices(pose[:, :3])
        p = np.einsum("tnj,tij->tni", np.asarray(vertices, dtype=np.float64), R)
        p *= np.asarray(scale, dtype=np.float64)[:, None, None]
        p[..., 0] += pose[:, None, 3]
        p[..., 1] = -p[..., 1] + pose[:, None, 4]
        p[..., 2] += pose[:, None, 5]
        return p.astype(np.float32)

    def posed(self, expressions: np.ndarray, pose: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """(T, K), (T, 6), (T,) -> (T, N, 3) projected vertices in crop pixels."""
        return self.project_batch(self.shape(np.atleast_2d(expressions)), np.atleast_2d(pose),
                                  np.atleast_1d(scale))

    def uv_maps(self, expressions: np.ndarray, pose: np.ndarray, scale: np.ndarray, size: int,
                chunk: int = 16) -> np.ndarray:
        """UV maps of the posed rig.

        Args:
            expressions: (T, K) coefficients; pose: (T, 6); scale: (T,) px per cm.
            size: output side in pixels (the crop size).
            chunk: frames rasterised per call.
        Returns:
            (T, size, size, 3) float32 (u, v, coverage), via ``backend.face.uv_raster``.
        """
        from backend.face.uv_raster import rasterize_uv_batch

        verts = self.posed(expressions, pose, scale)
        out = np.empty((verts.shape[0], size, size, 3), dtype=np.float32)
        for a in range(0, verts.shape[0], chunk):
            out[a:a + chunk] = rasterize_uv_batch(verts[a:a + chunk], self.uvs, self.triangles, size, size)
        return out

    # --- files ---------------------------------------------------------------------------------

    def to_obj(self) -> str:
        """Neutral mesh as OBJ text with one ``vt`` per vertex (same index as ``v``)."""
        lines = ["# Emo-Avatar face rig: neutral shape, cm, y up, z towards the viewer",
                 "# MediaPipe canonical topology (Apache-2.0); vertex i = FaceMesh landmark i"]
        lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in self.neutral]
        lines += [f"vt {u:.6f} {v:.6f}" for u, v in self.uvs]
        lines += [f"f {a}/{a} {b}/{b} {c}/{c}" for a, b, c in (self.triangles + 1)]
        return "\n".join(lines) + "\n"

    def save(self, directory: str | Path) -> Path:
        """Write ``directory/neutral.obj`` and ``directory/blendshapes.npz`` (each atomically)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_text(d / OBJ_NAME, self.to_obj())
        with atomic_path(d / BLENDSHAPES_NAME) as tmp, open(tmp, "wb") as f:
            np.savez(f, names=np.asarray(self.names, dtype=str), neutral=self.neutral,
                     deltas=self.deltas, uvs=self.uvs, triangles=self.triangles)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> FaceRig:
        """Read a rig written by ``save``.

        Raises:
            RigError: missing folder/file, missing keys or inconsistent shapes.
        """
        d = Path(directory)
        path = d / BLENDSHAPES_NAME
        if not path.is_file():
            raise RigError(f"{d}: no {BLENDSHAPES_NAME} (not a face-rig folder)")
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = {"names", "neutral", "deltas", "uvs", "triangles"} - set(z.files)
                if missing:
                    raise RigError(f"{path}: missing arrays {sorted(missing)}")
                data = {k: z[k] for k in ("names", "neutral", "deltas", "uvs", "triangles")}
        except (OSError, ValueError) as exc:
            if isinstance(exc, RigError):
                raise
            raise RigError(f"{path}: unreadable ({exc})") from exc
        return cls(names=[str(n) for n in data["names"]], neutral=data["neutral"], deltas=data["deltas"],
                   uvs=data["uvs"], triangles=data["triangles"])


def canonical_uvs_v_up() -> np.ndarray:
    """(468, 2) float32 canonical UVs in the rig's convention (u, 1 - v)."""
    from backend.face.canonical import load_canonical_mesh

    uv = load_canonical_mesh().uvs.astype(np.float32).copy()
    uv[:, 1] = 1.0 - uv[:, 1]
    return uv
