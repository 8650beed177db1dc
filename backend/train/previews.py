"""Loss curves (PNG), for people watching training.

Preview grids (ground truth | texture RGB | avatar output per frame) are drawn with
``backend.imaging.grid.preview_grid``. Loss curve: matplotlib (Agg backend, no display needed),
log-scale losses per step plus the held-out PSNR.
"""

from __future__ import annotations

import io
import logging

import numpy as np

log = logging.getLogger(__name__)


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
    # fixed margins: matplotlib's tight layout measured every label and took half of the drawing
    fig.subplots_adjust(left=0.16 / panels, right=1 - 0.04 / panels, bottom=0.13, top=0.86, wspace=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
