"""Preview grids and loss curves (PNG), for people watching training.

Preview grid: one row per frame, columns ground truth | texture RGB (channels 1..3 sampled by the
UV map) | avatar output; training frames first, then held-out frames, each row labelled. Small
tiles are enlarged with nearest-neighbour so 32 px tests still produce a readable image.
Loss curve: matplotlib (Agg backend, no display needed), log-scale losses per step plus the
held-out PSNR.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence

import cv2
import numpy as np
import torch

log = logging.getLogger(__name__)

MIN_TILE = 128
"""Tiles are enlarged to at least this many pixels per side."""


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) tensor in [-1, 1] -> (B, H, W, 3) uint8 RGB (clamped, rounded)."""
    x = ((img.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    out = tile.copy()
    scale = max(0.35, tile.shape[0] / 320)
    th = max(1, round(scale * 2))
    cv2.putText(out, text, (4, int(14 * scale / 0.45)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), th + 2,
                cv2.LINE_AA)
    cv2.putText(out, text, (4, int(14 * scale / 0.45)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), th,
                cv2.LINE_AA)
    return out


def preview_grid(columns: Sequence[np.ndarray], column_names: Sequence[str], row_names: Sequence[str],
                 title: str = "") -> np.ndarray:
    """Assemble a labelled grid.

    Args:
        columns: per column a (R, H, W, 3) uint8 stack (same R, H, W for all).
        column_names: label of each column (drawn in a header strip).
        row_names: label of each row (drawn in the first column).
        title: drawn in a strip above the grid.
    Returns:
        (H_total, W_total, 3) uint8 RGB.
    """
    r, h = columns[0].shape[:2]
    f = max(1, int(np.ceil(MIN_TILE / h)))
    rows = []
    for i in range(r):
        tiles = [np.repeat(np.repeat(col[i], f, axis=0), f, axis=1) for col in columns]
        tiles[0] = _label(tiles[0], row_names[i])
        rows.append(np.concatenate(tiles, axis=1))
    grid = np.concatenate(rows, axis=0)
    tile_w = grid.shape[1] // len(columns)
    header = np.full((22, grid.shape[1], 3), 48, np.uint8)
    for j, name in enumerate(column_names):
        cv2.putText(header, name, (j * tile_w + 5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                    cv2.LINE_AA)
    grid = np.concatenate([header, grid], axis=0)
    if title:
        strip = np.full((28, grid.shape[1], 3), 32, np.uint8)
        cv2.putText(strip, title, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        grid = np.concatenate([strip, grid], axis=0)
    return grid


def loss_curve_png(history: list[dict[str, float]], psnr: list[tuple[int, float]], title: str,
                   pti: list[tuple[str, int, float]] | None = None) -> bytes:
    """Render the loss curves as PNG bytes.

    Args:
        history: per logged step a dict with "step" and loss values by name.
        psnr: (step, held-out PSNR dB) samples.
        title: figure title.
        pti: (phase, step, loss) samples of the PTI initialisation (own panel).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    panels = 3 if pti else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.8), dpi=100)
    ax = axes[0]
    if history:
        steps = np.array([h["step"] for h in history])
        names = [k for k in history[-1] if k != "step"]
        k = max(1, len(steps) // 50)
        for name in names:
            vals = np.array([h.get(name, np.nan) for h in history], dtype=float)
            if k > 1:  # moving average for readability, raw in a faint line
                ax.plot(steps, vals, alpha=0.15, lw=0.8)
                kern = np.ones(k) / k
                vals_s = np.convolve(np.nan_to_num(vals, nan=np.nanmean(vals)), kern, mode="valid")
                ax.plot(steps[k - 1:], vals_s, label=name, lw=1.4, color=ax.lines[-1].get_color())
            else:
                ax.plot(steps, vals, label=name, lw=1.4)
        if all(h.get(n, 1.0) > 0 for h in history for n in names):
            ax.set_yscale("log")
        ax.legend(fontsize=8)
    ax.set_title("stage-1 losses")
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax = axes[1]
    if psnr:
        s, v = zip(*psnr, strict=True)
        ax.plot(s, v, "o-", color="C3")
    ax.set_title("held-out PSNR (dB, EMA avatar)")
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if pti:
        ax = axes[2]
        for phase in ("pivot", "generator"):
            pts = [(s, v) for ph, s, v in pti if ph == phase]
            if pts:
                s, v = zip(*pts, strict=True)
                ax.plot(s, v, label=phase)
        ax.set_yscale("log")
        ax.set_title("PTI initialisation")
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
