"""Held-out evaluation of a trained avatar: whole-frame and face-region scores, identity, F-LMD.

Renders the subject's held-out frames (the ids recorded in the checkpoint, never trained on)
from their own expression windows and UV maps at the avatar's resolution, compares them with the
frames resampled to that resolution, writes the ``eval`` section of ``SUBJECT/avatar/metrics.json``
and a contact sheet PNG (ground truth | render | error heat map x4).

Scores (``backend.metrics.image_scores``): PSNR/SSIM of the whole frame and of the face box,
mouth and eye errors, the Laplacian-pyramid L1 (weight-free perceptual distance), LPIPS (only
with a real backbone file, see ``backend.metrics.perceptual``; else null with ``lpips_note``:
the SSIM+gradient fallback is a training loss, not a comparable metric), edge F1 in the face box,
sharpness difference, F-LMD, and the dlib identity distance (null with a note without dlib).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from backend.images import write_png
from backend.imaging.convert import frame_at
from backend.imaging.grid import preview_grid
from backend.metrics.identity import identity_distance
from backend.metrics.image_scores import image_scores, lpips_metric
from backend.metrics.landmarks import f_lmd
from backend.metrics.metrics_file import update_metrics_json
from backend.metrics.psnr import psnr
from backend.metrics.regions import FrameRegions, subject_regions
from backend.metrics.sharpness import sharpness_difference
from backend.paths import avatar_dir, checkpoint_path

log = logging.getLogger(__name__)

CONTACT_SHEET_NAME = "contact_sheet.png"


def error_map(render: np.ndarray, gt: np.ndarray, gain: float = 4.0) -> np.ndarray:
    """Per-pixel mean absolute error x ``gain`` as a JET heat map, (H, W, 3) uint8 RGB."""
    err = np.abs(render.astype(np.int16) - gt.astype(np.int16)).mean(-1) * gain
    heat = cv2.applyColorMap(np.clip(err, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)


def score_frames(renders: np.ndarray, gts: np.ndarray, device: torch.device, landmarks: bool = True,
                 regions: list[FrameRegions] | None = None, identity: bool = True) -> dict[str, Any]:
    """The held-out metrics of renders vs ground truth, both (N, S, S, 3) uint8 RGB.

    Args:
        regions: per-frame landmark boxes (``backend.metrics.regions.subject_regions``); without
            them the face/mouth/eye scores, edge F1 and identity distance are left out.
        landmarks: compute F-LMD (MediaPipe; the slowest metric).
        identity: compute the dlib identity distance (needs ``regions``).
    Returns:
        ``image_scores``' keys plus sd, sharpness_signed, f_lmd_* (when ``landmarks``),
        identity_* (when ``regions`` and ``identity``) and per_frame_psnr (list).
    """
    psnrs = [psnr(r, g) for r, g in zip(renders, gts, strict=True)]
    sds = [sharpness_difference(r, g) for r, g in zip(renders, gts, strict=True)]
    out: dict[str, Any] = image_scores(renders, gts, regions, lpips_metric(device), device)
    out.update({"sd": float(np.mean(np.abs(sds))), "sharpness_signed": float(np.mean(sds))})
    if landmarks:
        out.update(f_lmd(renders, gts).to_dict())
    if regions is not None and identity:
        out.update(identity_distance(list(renders), list(gts), [r.face for r in regions]))
    if any(math.isinf(v) for v in psnrs):
        out["psnr_note"] = "identical frames counted as 100 dB"
    out["per_frame_psnr"] = psnrs
    return out


def heldout_ids(meta: dict, subject) -> np.ndarray:
    """(N,) int64 subject frames an avatar never trained on: the ones its checkpoint ``meta``
    recorded, else the subject's own held-out split (``Subject.split``)."""
    return np.asarray(meta.get("heldout_ids") or subject.split()[1], dtype=np.int64)


def evaluate(subject_dir: Path, checkpoint: Path | None = None, device: str | None = None,
             style: Path | None = None, max_frames: int | None = None, landmarks: bool = True,
             out_dir: Path | None = None, n_sheet: int = 6, identity: bool = True) -> dict[str, Any]:
    """Evaluate on held-out frames; write metrics.json ("eval" section) and the contact sheet.

    Args:
        subject_dir: subject folder.
        checkpoint: default ``SUBJECT/avatar/checkpoint.pt``.
        device: torch device string or None (CUDA when present).
        style: evaluate a restyled avatar (metrics then measure distance from the real frames).
        max_frames: evaluate at most this many held-out frames (evenly spaced).
        landmarks: compute F-LMD (MediaPipe; the slowest metric).
        identity: compute the dlib identity distance (null with a note without dlib).
        out_dir: where metrics.json and the sheet go (default: the checkpoint's folder).
        n_sheet: rows in the contact sheet.
    Returns:
        The metrics dict that was written.
    """
    from backend.data.subject import Subject
    from backend.render import Renderer

    subject_dir = Path(subject_dir)
    ckpt = Path(checkpoint) if checkpoint is not None else checkpoint_path(subject_dir)
    if out_dir is None:
        out_dir = ckpt.parent if checkpoint is not None else avatar_dir(subject_dir)
    out_dir = Path(out_dir)
    renderer = Renderer.from_checkpoint(ckpt, device=device, style=style, subject=subject_dir)
    subject = Subject.open(subject_dir)
    ids = heldout_ids(renderer.meta, subject)
    if len(ids) == 0:
        raise ValueError(f"{subject_dir}: no held-out frames to evaluate on")
    if max_frames is not None and len(ids) > max_frames:
        ids = ids[np.linspace(0, len(ids) - 1, max_frames).round().astype(int)]
    size = renderer.size
    expr = subject.expressions
    if list(subject.expression_names) != renderer.names:
        raise ValueError(f"{subject_dir} has other expression curves than the avatar was trained on")
    renders = np.stack(list(renderer.render(expr, uv_maps=subject.uv_maps, indices=ids, cuts=subject.cuts)))
    gts = np.stack([frame_at(subject.frame(int(i)), size) for i in ids])

    scores = score_frames(renders, gts, renderer.device, landmarks, subject_regions(subject, ids, size),
                          identity)
    psnrs = scores.pop("per_frame_psnr")
    result: dict[str, Any] = {
        "frames": len(ids), "size": size, "checkpoint": str(ckpt), "style": str(style) if style else None,
        "step": renderer.meta.get("step"), "preset": renderer.meta.get("preset"), **scores,
        "stylegan_init": renderer.meta.get("stylegan_init"),
        "perceptual_in_training": renderer.meta.get("perceptual"),
    }
    update_metrics_json(out_dir / "metrics.json", "eval", result)
    title = f"{renderer.subject_id} held-out: PSNR {result['psnr_db']:.2f} dB, SSIM {result['ssim']:.3f}"
    write_contact_sheet(out_dir / CONTACT_SHEET_NAME, renders, gts, ids, psnrs, n_sheet, title)
    log.info("eval %s: %s", subject_dir,
             {k: result[k] for k in ("psnr_db", "ssim", "face_psnr_db", "face_ssim", "lpips", "sd")})
    return result


def write_contact_sheet(path: Path, renders: np.ndarray, gts: np.ndarray, ids: np.ndarray, psnrs: list[float],
                        n: int, title: str) -> None:
    """ground truth | render | error x4, for ``n`` evenly spaced frames."""
    pick = np.linspace(0, len(ids) - 1, min(n, len(ids))).round().astype(int)
    errs = np.stack([error_map(renders[i], gts[i]) for i in pick])
    rows = [f"#{ids[i]} {min(psnrs[i], 99.9):.1f} dB" for i in pick]
    columns = ["ground truth", "render", "|error| x4"]
    grid = preview_grid([gts[pick], renders[pick], errs], columns, rows, title)
    write_png(path, grid)
