"""Rigid head pose: weighted Procrustes (similarity) fit and the Euler-angle convention.

Axes (the canonical mesh's, "mesh axes"): x to the image right (the subject's left), y up, z
towards the viewer. Rotations are right-handed about those axes and compose as

    R = Ry(yaw) @ Rx(pitch) @ Rz(roll)

so that
- yaw > 0 turns the nose towards image right (the subject turns to *their* left),
- pitch > 0 turns the nose down (chin down, looking down),
- roll > 0 turns the face counter-clockwise as the viewer sees it.

A mesh vertex v (cm, mesh axes) lands in the image (x right, y down, pixels) as

    p = scale * R @ v;  x = p[0] + tx;  y = -p[1] + ty;  z = p[2] + tz   (z towards the viewer)

see ``backend.face.rig.project``. This module only deals with rotations and the fit.
"""

from __future__ import annotations

import numpy as np


def _rx(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def euler_to_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """(3, 3) float64 rotation ``Ry(yaw) @ Rx(pitch) @ Rz(roll)`` (radians, mesh axes)."""
    return _ry(yaw) @ _rx(pitch) @ _rz(roll)


def euler_to_matrices(angles: np.ndarray) -> np.ndarray:
    """Vectorised ``euler_to_matrix``: (T, 3) [yaw, pitch, roll] -> (T, 3, 3) float64."""
    a = np.asarray(angles, dtype=np.float64).reshape(-1, 3)
    cy, sy = np.cos(a[:, 0]), np.sin(a[:, 0])
    cp, sp = np.cos(a[:, 1]), np.sin(a[:, 1])
    cr, sr = np.cos(a[:, 2]), np.sin(a[:, 2])
    R = np.empty((a.shape[0], 3, 3))
    R[:, 0, 0] = cy * cr + sy * sp * sr
    R[:, 0, 1] = -cy * sr + sy * sp * cr
    R[:, 0, 2] = sy * cp
    R[:, 1, 0] = cp * sr
    R[:, 1, 1] = cp * cr
    R[:, 1, 2] = -sp
    R[:, 2, 0] = -sy * cr + cy * sp * sr
    R[:, 2, 1] = sy * sr + cy * sp * cr
    R[:, 2, 2] = cy * cp
    return R


def matrix_to_euler(R: np.ndarray) -> np.ndarray:
    """Inverse of ``euler_to_matrix``: (3, 3) or (T, 3, 3) -> (3,) or (T, 3) [yaw, pitch, roll]."""
    M = np.asarray(R, dtype=np.float64)
    single = M.ndim == 2
    M = M.reshape(-1, 3, 3)
    pitch = np.arcsin(np.clip(-M[:, 1, 2], -1.0, 1.0))
    yaw = np.arctan2(M[:, 0, 2], M[:, 2, 2])
    roll = np.arctan2(M[:, 1, 0], M[:, 1, 1])
    out = np.stack([yaw, pitch, roll], axis=1)
    return out[0] if single else out


def weighted_procrustes(
    source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None
) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity transform that best maps ``source`` onto ``target`` (weighted Umeyama).

    Minimises ``sum_i w_i |s R source_i + t - target_i|^2`` over scale s > 0, rotation R
    (det +1) and translation t.

    Args:
        source: (n, 3) points, e.g. canonical-mesh vertices in cm.
        target: (n, 3) points, e.g. landmarks in mesh axes (x, -y, z) pixels.
        weights: (n,) non-negative weights (default: all 1).
    Returns:
        (s, R (3, 3), t (3,)) as float / float64 arrays.
    """
    a = np.asarray(source, dtype=np.float64)
    b = np.asarray(target, dtype=np.float64)
    w = np.ones(len(a)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mu_a, mu_b = w @ a, w @ b
    a0, b0 = a - mu_a, b - mu_b
    cov = (b0 * w[:, None]).T @ a0
    U, S, Vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(U @ Vt)) or 1.0
    D = np.diag([1.0, 1.0, d])
    R = U @ D @ Vt
    var_a = float(w @ (a0**2).sum(1))
    s = float(np.trace(np.diag(S) @ D) / var_a)
    t = mu_b - s * R @ mu_a
    return s, R, t


def image_to_mesh_axes(points: np.ndarray) -> np.ndarray:
    """Image pixels (x right, y down, z towards viewer) -> mesh axes (x right, y up, z towards viewer)."""
    p = np.array(points, dtype=np.float64, copy=True)
    p[..., 1] *= -1.0
    return p
