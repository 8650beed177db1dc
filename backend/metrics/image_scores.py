"""The per-image scores every evaluation reports, of (N, S, S, 3) uint8 renders against ground truth.

* ``psnr_db``, ``ssim``: whole frame (``backend.metrics.psnr``, ``backend.metrics.ssim``);
* ``face_psnr_db``, ``face_ssim``, ``face_l1``, ``mouth_psnr_db``, ``mouth_l1``, ``eyes_psnr_db``,
  ``eyes_l1``: inside the landmark boxes (``backend.metrics.regions``);
* ``lap_l1``, ``face_lap_l1``: the weight-free perceptual distance, Laplacian-pyramid L1
  (``backend.metrics.pyramid``), of the whole frame and of the face box's crop;
* ``lpips``: LPIPS (``backend.metrics.perceptual``) when a backbone file is present, else None and
  ``lpips_note`` says why;
* ``edge_f1`` (+ precision / recall): Canny edges in the face box (``backend.metrics.edges``);
* ``face_detail`` (grey levels per pixel) and ``face_detail_ratio``: how much detail the renders
  draw in the face box, ``backend.metrics.sharpness.sharpness`` of each face crop (mean gradient
  magnitude of the luma), and the renders' mean over the ground truth's: 1 draws as much line and
  texture as the truth, under 1 is smoother, over 1 busier. PSNR favours a smooth guess over a
  misplaced line, so a style can beat the post-filter's PSNR while drawing a fraction of the
  look's lines and texture; this ratio shows it.

PSNR of identical images is counted as 100 dB. Every value is a mean over frames.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from backend.metrics.edges import edge_f1
from backend.metrics.psnr import psnr
from backend.metrics.pyramid import lap_l1
from backend.metrics.regions import FrameRegions, region_scores, ssim_map_uint8
from backend.metrics.sharpness import sharpness


def lpips_metric(device: torch.device | str) -> tuple[Any, str]:
    """(LPIPS module or None, note): only a real backbone counts (the fallback is a training loss)."""
    from backend.metrics.perceptual import build_perceptual

    try:
        p = build_perceptual(device=device, allow_fallback=False)
    except FileNotFoundError as exc:
        return None, f"not computed: {exc}"
    return p, p.description


def lpips_value(lp: Any, renders: np.ndarray, gts: np.ndarray, device: torch.device | str) -> float:
    """Mean LPIPS of (N, S, S, 3) uint8 pairs, in batches of 16."""
    def to_t(a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float()
        return t.div(127.5).sub(1).to(device)

    vals = []
    with torch.no_grad():
        for i in range(0, len(renders), 16):
            vals.append(lp(to_t(renders[i:i + 16]), to_t(gts[i:i + 16])).reshape(-1).cpu())
    return float(torch.cat(vals).mean())


def _crop(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return img[y0:y1, x0:x1]


def face_detail(images: np.ndarray, regions: list[FrameRegions]) -> float:
    """Mean over (N, S, S, 3) uint8 images of the detail in each one's face box: the luma's mean
    gradient magnitude there (``sharpness``, grey levels per pixel)."""
    return float(np.mean([sharpness(_crop(x, reg.face)) for x, reg in zip(images, regions, strict=True)]))


def image_scores(renders: np.ndarray, gts: np.ndarray, regions: list[FrameRegions] | None,
                 lpips: tuple[Any, str] | None = None, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Scores of renders vs ground truth, both (N, S, S, 3) uint8 RGB.

    Args:
        regions: per-frame landmark boxes; None leaves the region scores out.
        lpips: ``lpips_metric(device)``'s result, or None to leave LPIPS out.
    Returns:
        The module docstring's keys (region keys only with ``regions``).
    """
    if renders.shape != gts.shape or renders.ndim != 4 or len(renders) == 0:
        raise ValueError(f"renders {renders.shape} and ground truth {gts.shape} must share one "
                         f"(N, S, S, 3) shape")
    maps = [ssim_map_uint8(r, g) for r, g in zip(renders, gts, strict=True)]  # mean = ssim_uint8
    out: dict[str, Any] = {
        "psnr_db": float(np.mean([min(psnr(r, g), 100.0) for r, g in zip(renders, gts, strict=True)])),
        "ssim": float(np.mean([m.mean() for m in maps])),
        "lap_l1": float(np.mean([lap_l1(r, g) for r, g in zip(renders, gts, strict=True)])),
    }
    if regions is not None:
        out.update(region_scores(renders, gts, regions, maps))
        out["face_lap_l1"] = float(np.mean([lap_l1(_crop(r, reg.face), _crop(g, reg.face))
                                            for r, g, reg in zip(renders, gts, regions, strict=True)]))
        masks = [reg.mask("face", r.shape[:2]) for r, reg in zip(renders, regions, strict=True)]
        e = edge_f1(list(renders), list(gts), masks)
        out.update({"edge_f1": e["f1"], "edge_precision": e["precision"], "edge_recall": e["recall"]})
        detail = face_detail(renders, regions)
        truth = face_detail(gts, regions)
        out["face_detail"] = detail
        out["face_detail_ratio"] = detail / truth if truth > 0 else None
    if lpips is not None:
        lp, note = lpips
        out["lpips"] = None if lp is None else lpips_value(lp, renders, gts, device)
        out["lpips_note"] = note
    return out
