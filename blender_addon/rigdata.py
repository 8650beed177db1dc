"""The subject rig as plain arrays, and the mapping between the backend's scaled-orthographic
projection and Blender object/camera transforms. No bpy here (testable anywhere).

Backend convention (``backend/face/rig.py``, ``FaceRig.project``): mesh axes x right, y up, z
towards the viewer, centimetres; pose [yaw, pitch, roll (rad), tx, ty (crop px), tz (px)], scale s
(crop px per cm)::

    p = s * Ry(yaw) Rx(pitch) Rz(roll) v;  x_px = p.x + tx;  y_px = -p.y + ty (down);  z = p.z + tz

Blender convention chosen by the add-on: the face looks at -Y (Blender's front view), so mesh
axes map to Blender axes by ``C``: x -> X, y -> Z, z -> -Y, and mesh centimetres become Blender
metres / 100. Then:

- head object: ``rotation_mode = 'YXZ'`` with ``rotation_euler = (pitch, -roll, yaw)`` (exactly
  ``C R C^T``), ``scale = s / s0`` uniformly, ``location = ((tx - size/2) / s0, -tz / s0,
  (size/2 - ty) / s0)`` cm, where ``s0`` is the subject's reference scale (median of its scale
  curve);
- camera: orthographic, at the crop centre in front of the face, looking along +Y with Z up,
  ``ortho_scale = size / s0`` cm, ``size`` x ``size`` pixels.

This reproduces ``FaceRig.project`` exactly (the tests compare a Cycles UV pass of the rig with
the backend's rasterised UV maps).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CM = 0.01
"""Blender metres per rig centimetre."""

ROTATION_MODE = "YXZ"
"""The head object's Euler order: ``rotation_euler = (pitch, -roll, yaw)`` is exactly ``C R C^T``."""

# Mesh axes -> Blender axes.
C = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


@dataclass
class RigData:
    """A subject rig + its tracked curves, as delivered by the backend (``Client.subject``).

    names: K expression names (shape keys); neutral (N, 3) cm mesh axes; deltas (K, N, 3) cm per
    unit coefficient; uvs (N, 2) v-up; triangles (F, 3) int; expressions (T, K); pose (T, 6);
    scale (T,) px/cm; size: crop side in px; fps: frames per second of the tracked clip.
    """

    names: list[str]
    neutral: np.ndarray
    deltas: np.ndarray
    uvs: np.ndarray
    triangles: np.ndarray
    expressions: np.ndarray | None = None
    pose: np.ndarray | None = None
    scale: np.ndarray | None = None
    size: int = 256
    fps: float = 25.0
    subject_id: str = "subject"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.neutral = np.asarray(self.neutral, dtype=np.float32)
        self.deltas = np.asarray(self.deltas, dtype=np.float32)
        self.uvs = np.asarray(self.uvs, dtype=np.float32)
        self.triangles = np.asarray(self.triangles, dtype=np.int32)
        n = self.neutral.shape[0]
        k = len(self.names)
        if self.neutral.shape != (n, 3) or self.deltas.shape != (k, n, 3):
            raise ValueError(
                f"rig arrays disagree: neutral {self.neutral.shape}, deltas {self.deltas.shape}, {k} names"
            )
        if self.uvs.shape != (n, 2):
            raise ValueError(f"rig uvs must be ({n}, 2), got {self.uvs.shape}")
        if self.triangles.ndim != 2 or self.triangles.shape[1] != 3 or self.triangles.max(initial=0) >= n:
            raise ValueError(f"rig triangles must be (F, 3) indices < {n}, got {self.triangles.shape}")
        if self.expressions is not None:
            self.expressions = np.asarray(self.expressions, dtype=np.float32).reshape(-1, k)
            t = self.expressions.shape[0]
            self.pose = (
                np.zeros((t, 6), np.float32)
                if self.pose is None
                else np.asarray(self.pose, dtype=np.float32).reshape(t, 6)
            )
            self.scale = (
                np.full(t, self.reference_scale, np.float32)
                if self.scale is None
                else np.asarray(self.scale, dtype=np.float32).reshape(t)
            )

    @property
    def reference_scale(self) -> float:
        """s0: median tracked scale (px per cm), or the scale that fits the neutral face in the crop."""
        if self.scale is not None and len(self.scale):
            return float(np.median(self.scale))
        extent = float(np.ptp(self.neutral[:, :2], axis=0).max()) or 1.0
        return 0.8 * self.size / extent

    @property
    def rest_pose(self) -> np.ndarray:
        """(6,) the pose a rig holds where no pose animation is keyed: the median tracked pose (as
        the backend's ``Renderer.default_pose``), else frontal at the crop centre."""
        if self.pose is not None and len(self.pose):
            return np.median(self.pose, axis=0).astype(np.float32)
        half = self.size / 2.0
        return np.array([0.0, 0.0, 0.0, half, half, 0.0], np.float32)


def blender_vertices(vertices_cm: np.ndarray) -> np.ndarray:
    """(..., 3) mesh-axes cm -> Blender metres."""
    return (np.asarray(vertices_cm, dtype=np.float64) @ C.T * CM).astype(np.float32)


def pose_to_transforms(pose: np.ndarray, scale: np.ndarray, size: int, s0: float) -> dict[str, np.ndarray]:
    """(T, 6) pose + (T,) scale -> Blender object channels, each (T, 3): location (m),
    rotation_euler (rad, mode YXZ), scale."""
    pose = np.asarray(pose, dtype=np.float64).reshape(-1, 6)
    scale = np.asarray(scale, dtype=np.float64).reshape(-1)
    yaw, pitch, roll, tx, ty, tz = pose.T
    half = size / 2.0
    loc = np.stack([(tx - half) / s0, -tz / s0, (half - ty) / s0], axis=1) * CM
    rot = np.stack([pitch, -roll, yaw], axis=1)
    scl = np.repeat((scale / s0)[:, None], 3, axis=1)
    return {
        "location": loc.astype(np.float32),
        "rotation_euler": rot.astype(np.float32),
        "scale": scl.astype(np.float32),
    }


def transforms_to_pose(
    location: np.ndarray, rotation: np.ndarray, scale: np.ndarray, size: int, s0: float
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``pose_to_transforms``: (T, 3) each -> pose (T, 6), scale (T,).

    Object scale is taken as the mean of its three axes (the projection is uniformly scaled).
    """
    loc = np.asarray(location, dtype=np.float64).reshape(-1, 3) / CM
    rot = np.asarray(rotation, dtype=np.float64).reshape(-1, 3)
    scl = np.asarray(scale, dtype=np.float64).reshape(-1, 3).mean(axis=1)
    half = size / 2.0
    pose = np.stack(
        [rot[:, 2], rot[:, 0], -rot[:, 1], loc[:, 0] * s0 + half, half - loc[:, 2] * s0, -loc[:, 1] * s0],
        axis=1,
    )
    return pose.astype(np.float32), (scl * s0).astype(np.float32)


CAMERA_ROTATION = (np.pi / 2, 0.0, 0.0)
"""The rig camera's Euler rotation (mode ``CAMERA_ROTATION_MODE``): looking along +Y at the face
(Blender's front view)."""
CAMERA_ROTATION_MODE = "XYZ"


def camera_settings(size: int, s0: float) -> dict[str, float]:
    """Orthographic camera reproducing the crop: ortho_scale (m), distance in front of the face (m);
    the camera sits at ``camera_location`` with rotation ``CAMERA_ROTATION``."""
    ortho = size / s0 * CM
    return {"ortho_scale": ortho, "distance": 10.0 * ortho, "clip_end": 20.0 * ortho}


def camera_location(size: int, s0: float) -> tuple[float, float, float]:
    """(3,) m: the rig camera in front of the crop centre."""
    return (0.0, -camera_settings(size, s0)["distance"], 0.0)


def load_subject_folder(folder) -> RigData:
    """A subject folder on disk (layout of ``backend/data/subject.py``) -> RigData, no backend needed.

    Reads ``rig/blendshapes.npz`` (names, neutral, deltas, uvs, triangles), ``expressions.npz``
    (values (T, K)), ``pose.npy`` (T, 6), ``scale.npy`` (T,) and ``meta.json`` (subject_id, size, fps);
    every file with ``allow_pickle=False``.
    """
    import json
    from pathlib import Path

    folder = Path(folder)
    rig_file = folder / "rig" / "blendshapes.npz"
    if not rig_file.is_file():
        raise FileNotFoundError(f"{folder} is not a subject folder: {rig_file} is missing")
    with np.load(rig_file, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta: dict = {}
    if (folder / "meta.json").is_file():
        meta = json.loads((folder / "meta.json").read_text())
    expressions = pose = scale = None
    if (folder / "expressions.npz").is_file():
        with np.load(folder / "expressions.npz", allow_pickle=False) as z:
            if [str(n) for n in z["names"]] == [str(n) for n in arrays["names"]]:
                expressions = z["values"]
    if expressions is not None and (folder / "pose.npy").is_file():
        pose = np.load(folder / "pose.npy", allow_pickle=False)
    if expressions is not None and (folder / "scale.npy").is_file():
        scale = np.load(folder / "scale.npy", allow_pickle=False)
    return RigData(
        names=[str(n) for n in arrays["names"]],
        neutral=arrays["neutral"],
        deltas=arrays["deltas"],
        uvs=arrays["uvs"],
        triangles=arrays["triangles"],
        expressions=expressions,
        pose=pose,
        scale=scale,
        size=int(meta.get("size", 256)),
        fps=float(meta.get("fps", 25.0)),
        subject_id=folder.name,
        meta=meta,  # the backend knows a subject by its folder name
    )


def from_subject_reply(reply: dict) -> RigData:
    """``Client.subject(id)`` (content + buffers) -> RigData."""
    meta = dict(reply.get("meta") or {})
    size = reply.get("size") or meta.get("size") or 256
    return RigData(
        names=list(reply["names"]),
        neutral=reply["neutral"],
        deltas=reply["deltas"],
        uvs=reply["uvs"],
        triangles=reply["triangles"],
        expressions=reply.get("expressions"),
        pose=reply.get("pose"),
        scale=reply.get("scale"),
        size=int(size),
        fps=float(reply.get("fps") or meta.get("fps") or 25.0),
        subject_id=str(reply["subject_id"]),
        meta=meta,
    )
