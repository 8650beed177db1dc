"""A small synthetic subject folder for training/render tests, written with the subject writers.

Frames are a function of the rig's UV map (a smooth colour texture looked up at (u, v) on a grey
gradient background), so an avatar can learn them. Built from the real rig and UV rasteriser.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.data import subject as S
from backend.face.canonical import load_canonical_mesh
from backend.face.rig import RIG_DIRNAME, FaceRig, canonical_uvs_v_up
from protocol.expressions import FACE_MODEL_NAMES


def texture_colour(uv: np.ndarray) -> np.ndarray:
    """(..., 3) (u, v, coverage) -> (..., 3) float RGB in [0, 1]."""
    u, v = uv[..., 0], uv[..., 1]
    return np.stack([0.55 + 0.35 * np.sin(6 * u), 0.45 + 0.3 * np.cos(5 * v), 0.4 + 0.3 * u * v], -1)


def make_subject(root: Path, n_frames: int = 40, size: int = 32, k: int = 4, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    mesh = load_canonical_mesh()
    names = list(FACE_MODEL_NAMES[:k])
    neutral = mesh.vertices.astype(np.float32)
    deltas = (rng.normal(size=(k, neutral.shape[0], 3)) * 0.15).astype(np.float32)
    rig = FaceRig(names, neutral, deltas, canonical_uvs_v_up(), mesh.triangles)
    t = np.arange(n_frames) / 10.0
    expr = np.stack([0.5 + 0.5 * np.sin(t * (1 + i) + i) for i in range(k)], 1).astype(np.float32)
    span = np.ptp(neutral[:, :2], axis=0).max()
    scale = np.full(n_frames, 0.75 * size / span, np.float32)
    pose = np.zeros((n_frames, 6), np.float32)
    pose[:, 0] = 0.35 * np.sin(t * 1.3)
    pose[:, 1] = 0.25 * np.cos(t * 0.9)
    pose[:, 3] = size / 2
    pose[:, 4] = size / 2
    uv = rig.uv_maps(expr, pose, scale, size)
    root.mkdir(parents=True)
    w = S.open_uv_writer(root, n_frames, size)
    yy, xx = np.mgrid[0:size, 0:size] / size
    bg = np.stack([0.2 + 0.3 * xx, 0.25 + 0.2 * yy, 0.3 + 0 * xx], -1)
    for i in range(n_frames):
        w[i] = uv[i]
        cov = uv[i][..., 2:3]
        img = cov * texture_colour(uv[i]) + (1 - cov) * bg
        S.write_frame(root, i, (img * 255).round().clip(0, 255).astype(np.uint8))
    w.flush()
    del w
    valid = np.ones(n_frames, bool)
    S.write_arrays(root, landmarks=np.zeros((n_frames, 478, 3), np.float32), pose=pose, scale=scale,
                   valid=valid, names=names, expressions=expr)
    rig.save(root / RIG_DIRNAME)
    train, _ = S.split_ids(n_frames, valid)
    S.write_meta(root, {"subject_id": root.name, "fps": 25.0, "size": size, "n_frames": n_frames,
                        "crop": {"x0": 0, "y0": 0, "side": size},
                        "extreme_frames": S.extreme_frames(pose, valid)})
    del train
    return root


_TRAINED: dict[str, Path] = {}


def trained_synth_subject(steps: int = 40) -> Path:
    """A synthetic subject with a tiny-preset avatar trained into it, built once per process.

    Shared by the train, render and metrics tests (treat as read-only; copy to modify).
    """
    import tempfile

    from backend.train.stage1 import train_avatar

    key = f"steps{steps}"
    if key not in _TRAINED:
        root = Path(tempfile.mkdtemp(prefix="c2_synth_")) / "subject"
        make_subject(root)
        train_avatar(root, preset="tiny", steps=steps, seed=0)
        _TRAINED[key] = root
    return _TRAINED[key]
