"""Small shared helpers for the add-on tests (no bpy at import)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def pump(runtime, until: Callable[[], bool], timeout: float = 180.0) -> None:
    """Drive the add-on's timer callback until ``until()`` (what Blender's timer does in the UI)."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out pumping apply_pending"
        runtime.apply_pending()
        time.sleep(0.005)


def render_sequencer(bpy, scene, frame: int, path: Path) -> bytes:
    """Render the scene's sequencer output at ``frame`` to the PNG ``path``; returns its bytes
    (decode with the add-on's ``png.decode_png``: (H, W, 3) uint8, H x W the scene's resolution)."""
    r = scene.render
    r.use_sequencer = True
    r.image_settings.file_format = "PNG"
    r.image_settings.color_mode = "RGB"
    r.image_settings.color_depth = "8"
    r.filepath = str(path)
    scene.frame_set(frame)
    bpy.ops.render.render(write_still=True, scene=scene.name)
    return path.read_bytes()


def backend_job_state(runtime, job_id: str) -> str:
    """The backend's state of ``job_id`` as the add-on's job list shows it ("" while unlisted)."""
    job = runtime.job_item(runtime.wm_state(), job_id)
    return job.state if job is not None else ""


def assert_uv_maps_agree(got: dict[int, np.ndarray], want: np.ndarray, label: str = "") -> None:
    """Blender's UV pass ``{frame: (H, W, 3)}`` equals the backend's maps ``want`` (T, H, W, 3)
    (frame 1 = row 0): coverage agrees on 99% of pixels, and where both cover, the 99th
    percentile of the u, v error is under 2e-3."""
    for frame, uv in got.items():
        ref = want[frame - 1]
        where = f"{label} frame {frame}".strip()
        cover_agree = (uv[..., 2] > 0.5) == (ref[..., 2] > 0.5)
        assert cover_agree.mean() > 0.99, f"{where}: coverage agrees on {cover_agree.mean():.3f}"
        both = (uv[..., 2] > 0.5) & (ref[..., 2] > 0.5)
        assert both.sum() > 200
        err = np.abs(uv[..., :2] - ref[..., :2])[both]
        assert np.percentile(err, 99) < 2e-3, f"{where}: 99th percentile UV error {np.percentile(err, 99)}"


def euler_to_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Ry(yaw) @ Rx(pitch) @ Rz(roll), the backend's convention (backend/face/rig.py docstring)."""
    cy, sy, cp, sp, cr, sr = (
        np.cos(yaw),
        np.sin(yaw),
        np.cos(pitch),
        np.sin(pitch),
        np.cos(roll),
        np.sin(roll),
    )
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    Rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return Ry @ Rx @ Rz


def grid_rig_arrays(n: int = 9, names: tuple[str, ...] = ("jawOpen", "mouthSmileLeft")) -> dict:
    """A flat n x n vertex square [-1, 1]^2 cm (z = 0) with uv = ((x+1)/2, (y+1)/2) and simple deltas."""
    xs = np.linspace(-1.0, 1.0, n)
    gx, gy = np.meshgrid(xs, xs)
    neutral = np.stack([gx.ravel(), gy.ravel(), np.zeros(n * n)], axis=1).astype(np.float32)
    uvs = ((neutral[:, :2] + 1.0) / 2.0).astype(np.float32)
    tris = []
    for r in range(n - 1):
        for c in range(n - 1):
            a, b, d, e = r * n + c, r * n + c + 1, (r + 1) * n + c, (r + 1) * n + c + 1
            tris += [(a, b, e), (a, e, d)]
    deltas = np.zeros((len(names), n * n, 3), np.float32)
    deltas[0, :, 2] = 0.3  # pushes the face towards the viewer
    if len(names) > 1:
        deltas[1, :, 1] = 0.1 * neutral[:, 0]
    return {
        "names": list(names),
        "neutral": neutral,
        "deltas": deltas,
        "uvs": uvs,
        "triangles": np.asarray(tris, np.int32),
    }


def analytic_uv_map(
    pose: np.ndarray, scale: float, size: int, dz: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Expected (u, v, coverage) map of the flat grid rig + a mask of pixels far from its edges.

    Inverts x_px = s (R v).x + tx, y_px = -s (R v).y + ty for v = (a, b, dz) at each pixel centre
    (``dz``: the grid moved towards the viewer, e.g. by its 'jawOpen' shape key).
    """
    R = euler_to_matrix(*pose[:3])
    A = scale * np.array([[R[0, 0], R[0, 1]], [-R[1, 0], -R[1, 1]]])
    offset = scale * dz * np.array([R[0, 2], -R[1, 2]])
    rows, cols = np.mgrid[0:size, 0:size]
    p = np.stack([cols + 0.5 - pose[3] - offset[0], rows + 0.5 - pose[4] - offset[1]], axis=-1)
    ab = p @ np.linalg.inv(A).T
    inside = (np.abs(ab) <= 1.0).all(-1)
    margin = 1.5 / scale  # 1.5 px
    clear = (np.abs(ab) < 1.0 - margin).all(-1) | (np.abs(ab) > 1.0 + margin).any(-1)
    uv = (ab + 1.0) / 2.0
    out = np.zeros((size, size, 3), np.float32)
    out[inside, :2] = uv[inside]
    out[inside, 2] = 1.0
    return out, clear
