"""Fixtures of the stage-2 tests: a small synthetic subject with a tiny (untrained) avatar checkpoint.

The subject is drawn with OpenCV (a face ellipse that moves and opens its mouth over a coloured
background and torso) and written with ``backend.data.subject``'s writers; the UV maps are the
ellipse's normalised coordinates. The checkpoint is a real ``save_checkpoint`` file of a freshly
initialised tiny ``EmoAvatar`` plus its patch discriminator: stage 2 only needs the frozen network
and its skips, so training stage 1 first would cost time without testing anything more here.
The end-to-end test on a stage-1-trained subject uses the shared ``writable_subject`` fixture.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

SIZE = 32
N_FRAMES = 24
NAMES = ["jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft"]


def draw_frame(t: int, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Frame t: (size, size, 3) uint8 RGB portrait and its (size, size, 3) float32 UV map."""
    s = size / 32.0
    cx, cy = 16 * s + 2 * s * np.sin(t / 4), 13 * s + s * np.cos(t / 5)
    rx, ry = 7 * s, 9 * s
    img = np.zeros((size, size, 3), np.uint8)
    img[:] = (70, 110, 170)
    cv2.ellipse(img, (int(16 * s), int(34 * s)), (int(14 * s), int(10 * s)), 0, 0, 360, (150, 40, 40), -1)
    cv2.ellipse(img, (int(cx), int(cy - 2 * s)), (int(rx + s), int(ry)), 0, 180, 360, (60, 40, 20), -1)
    cv2.ellipse(img, (int(cx), int(cy)), (int(rx), int(ry)), 0, 0, 360, (225, 180, 150), -1)
    for ex in (-3, 3):
        cv2.circle(img, (int(cx + ex * s), int(cy - 2 * s)), max(1, int(s)), (30, 30, 30), -1)
    mouth = 1 + int(2 * s * (0.5 + 0.5 * np.sin(t / 3)))
    cv2.ellipse(img, (int(cx), int(cy + 4 * s)), (int(3 * s), mouth), 0, 0, 360, (170, 50, 60), -1)
    yy, xx = np.mgrid[:size, :size].astype(np.float32) + 0.5
    nx, ny = (xx - cx) / rx, (yy - cy) / ry
    inside = nx**2 + ny**2 <= 1.0
    uv = np.zeros((size, size, 3), np.float32)
    uv[..., 0] = np.where(inside, 0.5 + 0.5 * nx, 0)
    uv[..., 1] = np.where(inside, 0.5 - 0.5 * ny, 0)
    uv[..., 2] = inside.astype(np.float32)
    return img, uv


def tone_map(rgb: np.ndarray) -> np.ndarray:
    """A duotone look: the grey of each pixel mapped from navy to peach (a function of its colour only)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)[..., None] / 255
    return (np.array([40, 30, 90]) * (1 - grey) + np.array([250, 200, 150]) * grey).round().astype(np.uint8)


def make_subject(
    root: Path, size: int = SIZE, n_frames: int = N_FRAMES, subject_id: str = "synthetic"
) -> Path:
    """Write a synthetic subject folder at ``root`` (format of backend.data.subject)."""
    from backend.data import subject as sj

    root.mkdir(parents=True)
    uvw = sj.open_uv_writer(root, n_frames, size)
    for t in range(n_frames):
        img, uv = draw_frame(t, size)
        sj.write_frame(root, t, img)
        uvw[t] = uv
    uvw.flush()
    del uvw
    t = np.arange(n_frames, dtype=np.float32)
    expr = np.stack([0.5 + 0.5 * np.sin(t / 3), 0.1 * np.cos(t), 0.1 * np.sin(t), 0.2 + 0 * t], 1)
    pose = np.zeros((n_frames, 6), np.float32)
    pose[:, 0], pose[:, 1] = 0.2 * np.sin(t / 4), 0.1 * np.cos(t / 5)
    valid = np.ones(n_frames, bool)
    sj.write_arrays(
        root,
        landmarks=np.zeros((n_frames, 478, 3), np.float32),
        pose=pose,
        scale=np.ones(n_frames, np.float32),
        valid=valid,
        names=NAMES,
        expressions=expr,
    )
    (root / "rig").mkdir()
    sj.write_meta(
        root,
        {
            "subject_id": subject_id,
            "fps": 25.0,
            "size": size,
            "n_frames": n_frames,
            "crop": {"x0": 0, "y0": 0, "side": size},
            "source": "synthetic test subject",
            "extreme_frames": sj.extreme_frames(pose, valid),
        },
    )
    return root


def make_checkpoint(subject: Path, size: int = SIZE, seed: int = 0, with_disc: bool = True) -> Path:
    """Save a freshly initialised tiny avatar (+ discriminator) as the subject's stage-1 checkpoint."""
    from backend.model.avatar import EmoAvatar
    from backend.model.config import AvatarConfig
    from backend.paths import checkpoint_path
    from backend.train.checkpoint import save_checkpoint
    from backend.train.stage1 import make_discriminator

    torch.manual_seed(seed)
    cfg = AvatarConfig.tiny(n_expr=len(NAMES), size=size)
    avatar = EmoAvatar(cfg)
    meta = {
        "config": cfg.to_dict(),
        "preset": "tiny",
        "subject_id": subject.name,
        "size": size,
        "expression_names": NAMES,
    }
    train = {"disc": make_discriminator(cfg).state_dict()} if with_disc else None
    return save_checkpoint(checkpoint_path(subject), avatar.state_dict(), meta, train)


@pytest.fixture(scope="session")
def synthetic_edit_subject(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Read-only synthetic subject with a tiny avatar checkpoint."""
    root = tmp_path_factory.mktemp("edit") / "subject"
    make_subject(root)
    make_checkpoint(root)
    return root


@pytest.fixture
def edit_subject(synthetic_edit_subject: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the synthetic subject."""
    dst = tmp_path / "subject"
    shutil.copytree(synthetic_edit_subject, dst)
    return dst


@pytest.fixture(scope="session")
def tiny_clip_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model-config JSON, checkpoint) of a tiny open_clip ViT written by the test (random weights)."""
    import json

    import open_clip

    d = tmp_path_factory.mktemp("clip")
    cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
    }
    cfg_path = d / "EmoTestTinyCLIP.json"
    cfg_path.write_text(json.dumps(cfg))
    open_clip.add_model_config(cfg_path)
    torch.manual_seed(0)
    model = open_clip.create_model("EmoTestTinyCLIP", pretrained_text=False)
    ckpt = d / "tiny_clip.pt"
    torch.save({"state_dict": model.state_dict()}, ckpt)
    return cfg_path, ckpt
