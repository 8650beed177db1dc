"""Metrics of a stage-2 style and its contact sheet.

Written next to the style as ``<name>.metrics.json`` and ``<name>.contact.png``:

* ``style_distance``: how far the render of the reference's frame is from the reference, on the
  face region, before (unstyled) and after (styled) the edit: colour-histogram (Hellinger) and
  Gram-matrix distance of a fixed filter bank (RGB + gradients + Laplacian at two scales).
  Lower after than before = the style moved towards the reference.
* ``identity``: F-LMD (mean landmark distance in pixels, ``backend.metrics.landmarks``) between styled and
  unstyled renders of the same held-out frames (motion and expression kept = small).
* ``temporal``: mean absolute frame-to-frame change over a run of consecutive held-out frames,
  styled vs unstyled (ratio near 1 = the edit adds no flicker); the styled run goes through the
  style's steady filter when it has one (``backend.style.steady``, within the run).
* ``warped_temporal_change``: the same after motion compensation (each frame compared with the
  previous one warped onto it by the optical flow of a guide shot), so lines that move with the
  head do not count, and only change that the motion does not explain (flicker proper) does.
* ``clip_direction`` (only with a CLIP encoder): cosine between the CLIP change the edit made to a
  frame (styled - unstyled) and the change the reference makes to its frame (reference - real
  frame), averaged over held-out frames, plus the value on the reference frame itself.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from backend.imaging.convert import to_uint8
from backend.imaging.flow import backward_flow, warp
from backend.style.steady import steady_frames
from protocol.fileio import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

HIST_BINS = 8


def color_histogram_distance(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Hellinger distance in [0, 1] between 8x8x8 RGB histograms of two (H, W, 3) uint8 images."""
    m = None if mask is None else mask.astype(np.uint8)
    ha = cv2.calcHist([a], [0, 1, 2], m, [HIST_BINS] * 3, [0, 256] * 3).ravel()
    hb = cv2.calcHist([b], [0, 1, 2], m, [HIST_BINS] * 3, [0, 256] * 3).ravel()
    if ha.sum() == 0 or hb.sum() == 0:
        return float("nan")
    ha, hb = ha / ha.sum(), hb / hb.sum()
    return float(np.sqrt(max(0.0, 1.0 - np.sum(np.sqrt(ha * hb)))))


def _filter_bank(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W, 12) float32: RGB, |grad| x/y and Laplacian of grey, at 1x and 2x blur."""
    x = rgb.astype(np.float32) / 255.0
    chans = []
    for sigma in (0.0, 2.0):
        y = cv2.GaussianBlur(x, (0, 0), sigma) if sigma else x
        g = cv2.cvtColor(y, cv2.COLOR_RGB2GRAY)
        chans += [
            y[..., 0],
            y[..., 1],
            y[..., 2],
            cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3),
            cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3),
            cv2.Laplacian(g, cv2.CV_32F),
        ][:6]
    return np.stack(chans, axis=-1)


def gram_distance(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Relative Frobenius distance of the Gram matrices of ``_filter_bank`` features inside ``mask``."""
    sel = np.ones(a.shape[:2], bool) if mask is None else mask.astype(bool)
    if sel.sum() < 4:
        return float("nan")
    fa, fb = _filter_bank(a)[sel], _filter_bank(b)[sel]
    ga, gb = fa.T @ fa / len(fa), fb.T @ fb / len(fb)
    return float(np.linalg.norm(ga - gb) / (np.linalg.norm(ga) + 1e-8))


def temporal_change(frames: np.ndarray) -> float:
    """Mean absolute change between consecutive (T, H, W, 3) uint8 frames, in [0, 1]."""
    if len(frames) < 2:
        return float("nan")
    f = frames.astype(np.float32) / 255.0
    return float(np.abs(np.diff(f, axis=0)).mean())


ShotMotion = list[tuple[np.ndarray, np.ndarray]]
"""Per consecutive frame pair (t-1, t) of a shot: the backward flow (H, W, 2) px, frame t's
pixel x coming from x + flow(x) in frame t-1, and the (H, W) bool mask where it is trusted."""


def shot_motion(guide: np.ndarray) -> ShotMotion:
    """The motion of (T, H, W, 3) uint8 ``guide`` frames: per pair, the backward Farneback flow and
    where it is trusted (``backend.imaging.flow.backward_flow``)."""
    return [backward_flow(guide[t], guide[t - 1]) for t in range(1, len(guide))]


def warped_temporal_change(frames: np.ndarray, guide: np.ndarray | None = None,
                           motion: ShotMotion | None = None) -> float:
    """Mean absolute change between each of (T, H, W, 3) uint8 frames and the previous frame warped
    onto it, in [0, 1]: frame-to-frame change that the motion does not explain.

    The motion is measured on ``guide`` (T, H, W, 3) uint8 (default: ``frames`` themselves), so
    several renderings of one shot (unstyled, styled, filtered) can be compensated by the same
    motion; ``motion``: the guide's ``shot_motion`` when the caller has it already. Pixels where
    the guide's forward and backward flows disagree (occlusions) are left out.
    """
    if len(frames) < 2:
        return float("nan")
    if motion is None:
        guide = frames if guide is None else guide
        if guide.shape != frames.shape:
            raise ValueError(f"guide {guide.shape} and frames {frames.shape} differ")
        motion = shot_motion(guide)
    if len(motion) != len(frames) - 1:
        raise ValueError(f"motion of {len(motion) + 1} frames and {len(frames)} frames differ")
    f = frames.astype(np.float32) / 255.0
    total, count = 0.0, 0
    for t, (back, ok) in enumerate(motion, start=1):
        diff = np.abs(f[t] - warp(f[t - 1], back))[ok]
        total += float(diff.sum())
        count += diff.size
    return total / count if count else float("nan")


def clip_direction(
    clip: Any, styled: torch.Tensor, plain: torch.Tensor, ref: torch.Tensor, real: torch.Tensor
) -> list[float]:
    """Per-frame cosine between CLIP(styled) - CLIP(plain) and CLIP(ref) - CLIP(real); images in [-1, 1]."""
    with torch.no_grad():
        d_edit = clip.encode_images(styled) - clip.encode_images(plain)
        d_ref = clip.encode_images(ref) - clip.encode_images(real)
        return F.cosine_similarity(d_edit, d_ref.expand_as(d_edit), dim=-1).cpu().tolist()


def longest_run(ids: np.ndarray, limit: int, starts: Sequence[int] = ()) -> list[int]:
    """The longest run of consecutive ids (at most ``limit`` long); an id in ``starts`` (a
    subject's ``cuts``) always begins a new run."""
    ids, starts = sorted(int(i) for i in ids), {int(i) for i in starts}
    best, cur = ids[:1], ids[:1]
    for a, b in itertools.pairwise(ids):
        cur = [*cur, b] if b == a + 1 and b not in starts else [b]
        if len(cur) > len(best):
            best = cur
    return best[:limit]


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    h, w = tile.shape[:2]
    bar = np.full((max(14, h // 10), w, 3), 255, np.uint8)
    scale = max(bar.shape[0] / 30, 0.3)
    cv2.putText(bar, text, (3, bar.shape[0] - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, tile], axis=0)


def contact_sheet(
    columns: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], min_tile: int = 128
) -> np.ndarray:
    """Grid with one column per pose: [top image, unstyled, styled] (uint8 RGB tiles of equal size).

    Args:
        columns: (title, top, unstyled, styled); the first column's top image is the reference, the
            others' the real held-out frame.
        min_tile: tiles are enlarged (nearest) to at least this many pixels.
    Returns:
        (H, W, 3) uint8 RGB sheet.
    """
    size = columns[0][1].shape[0]
    k = max(1, int(np.ceil(min_tile / size)))
    pad = 4
    cols = []
    for title, top, plain, styled in columns:
        tiles = []
        for name, img in ((title, top), ("unstyled", plain), ("styled", styled)):
            big = cv2.resize(img, (size * k, size * k), interpolation=cv2.INTER_NEAREST)
            tiles.append(_label(big, name))
            tiles.append(np.full((pad, size * k, 3), 255, np.uint8))
        cols.append(np.concatenate(tiles, axis=0))
        cols.append(np.full((cols[-1].shape[0], pad, 3), 255, np.uint8))
    return np.concatenate(cols, axis=1)


def _render(
    avatar: Any, uv: torch.Tensor, win: torch.Tensor, skips: dict[str, torch.Tensor] | None
) -> torch.Tensor:
    if skips is not None:
        avatar.skips.load_state_dict(skips)
    with torch.no_grad():
        return avatar(uv, win).image


def _flmd(styled: np.ndarray, plain: np.ndarray) -> dict[str, Any]:
    """F-LMD (``backend.metrics.landmarks``) of styled renders against the unstyled ones (pixels)."""
    try:
        from backend.metrics.landmarks import f_lmd
    except ImportError as e:
        return {"value": None, "note": f"F-LMD unavailable: {e}"}
    try:
        res = f_lmd(list(styled), list(plain))
    except Exception as e:  # landmark detection can fail outright on unusual renders
        return {"value": None, "note": f"F-LMD failed: {e}"}
    out: dict[str, Any] = {"value": res.value, "frames": sum(v is not None for v in res.per_frame),
                           "no_face_unstyled": res.failed_gt, "no_face_styled": res.failed_render}
    if res.value is None:
        out["note"] = "no face found by FaceMesh on both renders of any frame (tiny or untrained renders)"
    return out


def write_style_report(
    style_file: Path,
    avatar: Any,
    tensors: Any,
    ref: Any,
    frame: int,
    meta: dict[str, Any],
    *,
    base_skips: dict[str, torch.Tensor],
    clip: Any | None = None,
    history: list[dict[str, float]] | None = None,
    device: torch.device | str = "cpu",
    translator: Any | None = None,
    n_contact: int = 4,
    n_temporal: int = 8,
) -> dict[str, Any]:
    """Render styled and unstyled held-out frames, compute the metrics, write JSON + contact sheet.

    Args:
        style_file: the style path; outputs go to ``<stem>.metrics.json`` / ``<stem>.contact.png``.
        avatar: the avatar with the *styled* skips loaded (restored on return).
        tensors: ``backend.train.data.SubjectTensors`` at the avatar's size.
        ref: ``backend.train.reference.Reference``.
        frame: the frame the reference stylises.
        base_skips: the unstyled skip state (from the checkpoint).
        clip: optional ``ClipImageEncoder`` for the direction score.
        translator: the style's ``StyleTranslator`` (run on the styled renders), or None.
    Returns:
        The metrics dict.
    """
    style_file = Path(style_file)
    styled_skips = {k: v.detach().clone() for k, v in avatar.skips.state_dict().items()}
    held = np.asarray(tensors.heldout_ids, dtype=np.int64)
    if len(held) == 0:
        held = np.asarray([i for i in tensors.train_ids if int(i) != frame], dtype=np.int64)
    contact = [
        int(held[i]) for i in np.linspace(0, len(held) - 1, num=min(n_contact, len(held))).round().astype(int)
    ]
    run = longest_run(held, n_temporal, tensors.cuts)  # never across a cut
    ids = [frame, *contact, *run]
    _, uv, win = tensors.batch(ids, device)
    try:
        styled = _render(avatar, uv, win, None)
        if translator is not None:
            with torch.no_grad():
                styled = translator.on_render(styled, uv)
        plain = _render(avatar, uv, win, base_skips)
    finally:
        avatar.skips.load_state_dict(styled_skips)
    n_c = 1 + len(contact)
    if translator is not None and translator.steady is not None:  # as the renderer shows the run
        styled = torch.cat([styled[:n_c], steady_frames(styled[n_c:], plain[n_c:], translator.steady)])
    s8, p8 = to_uint8(styled), to_uint8(plain)
    if translator is not None and translator.dither is not None:  # dotted last, as the renderer does
        s8 = np.stack([translator.dither.apply(f) for f in s8])
    real8 = to_uint8(tensors.frames[torch.as_tensor(ids)])
    face = (uv[:, 2] > 0.5).cpu().numpy()
    metrics: dict[str, Any] = {
        "style": style_file.name,
        "frame": frame,
        "heldout_frames": contact,
        "temporal_frames": run,
        "encoder": meta.get("encoder"),
    }
    before_h = color_histogram_distance(ref.rgb, p8[0], face[0])
    after_h = color_histogram_distance(ref.rgb, s8[0], face[0])
    before_g = gram_distance(ref.rgb, p8[0], face[0])
    after_g = gram_distance(ref.rgb, s8[0], face[0])
    metrics["style_distance"] = {
        "region": "face",
        "histogram_before": before_h,
        "histogram_after": after_h,
        "gram_before": before_g,
        "gram_after": after_g,
        "histogram_whole_before": color_histogram_distance(ref.rgb, p8[0]),
        "histogram_whole_after": color_histogram_distance(ref.rgb, s8[0]),
    }
    flmd = _flmd(s8[1:n_c], p8[1:n_c])
    metrics["identity"] = {
        "f_lmd_styled_vs_unstyled": flmd.get("value"),
        **{k: v for k, v in flmd.items() if k != "value"},
    }
    t_s, t_p = temporal_change(s8[n_c:]), temporal_change(p8[n_c:])
    metrics["temporal"] = {
        "styled": t_s,
        "unstyled": t_p,
        "ratio": t_s / t_p if t_p and np.isfinite(t_p) and t_p > 0 else None,
    }
    if clip is not None:
        real = tensors.frames[torch.as_tensor([frame])].to(device)
        dirs = clip_direction(clip, styled[:n_c], plain[:n_c], ref.image.to(device), real)
        metrics["clip_direction"] = {
            "reference_frame": dirs[0],
            "heldout_mean": float(np.mean(dirs[1:])) if len(dirs) > 1 else None,
            "encoder": clip.description,
        }
    else:
        metrics["clip_direction"] = None
    if history:
        metrics["losses"] = {"first": history[0], "last": history[-1]}
        metrics["loss_curve"] = {k: [round(h[k], 5) for h in history] for k in history[0]}
    metrics_path = style_file.with_name(style_file.stem + ".metrics.json")
    atomic_write_text(metrics_path, json.dumps(metrics, indent=2, default=float))
    columns = [("reference", ref.rgb, p8[0], s8[0])]
    columns += [(f"frame {i}", real8[1 + j], p8[1 + j], s8[1 + j]) for j, i in enumerate(contact)]
    sheet = contact_sheet(columns)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if ok:
        atomic_write_bytes(style_file.with_name(style_file.stem + ".contact.png"), buf.tobytes())
    log.info(
        "style metrics: %s",
        json.dumps({k: metrics[k] for k in ("style_distance", "temporal")}, default=float),
    )
    return metrics
