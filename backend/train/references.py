"""Reference runs for ``emo-avatar eval SUBJECT --references`` (issue 4, item 8).

Trained in the same run, with the same step budget, batch, seed, training frames and preset as
the subject's avatar, and scored on the same held-out frames with the same metrics:

* ``dnr baseline``: deferred neural rendering (``backend.model.dnr_baseline``: the neural texture
  + a small U-Net, no StyleGAN, no flow), losses L1(texture RGB | UV mask) + L1 + perceptual;
* ``no PTI init``: stage 1 without the few-shot PTI warm start (0 pivot and 0 G steps);
* ``no flow``: ``AvatarConfig.use_flow=False`` (texture sampled at the raw UVs).

Everything goes to ``SUBJECT/avatar/references/<name>/``; the subject's own checkpoint is only
read. When ``budget_steps`` differs from the step of the subject's checkpoint, the full Emo-Avatar
is retrained at that budget too (``references/emo_avatar/``), so every row has the same budget.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.optim import adam
from backend.paths import avatar_dir, checkpoint_path

log = logging.getLogger(__name__)

REFERENCES_DIRNAME = "references"
ROWS = ("emo-avatar", "dnr baseline", "no PTI init", "no flow")
DNR_UNET = {"tiny": dict(base=8, depth=3, channel_max=32), "cpu": dict(base=16, depth=4, channel_max=64),
            "paper": dict(base=32, depth=5, channel_max=256)}


def train_dnr(subject_dir: Path, preset: str, steps: int, seed: int, device: torch.device,
              out_dir: Path) -> tuple[torch.nn.Module, float]:
    """Train the DNR baseline with the preset's batch, learning rates and loss weights.

    Returns (model in eval mode, training seconds); writes ``out_dir/dnr.pt`` (state dict).
    """
    from backend.metrics.perceptual import build_perceptual
    from backend.model.dnr_baseline import DNRBaseline
    from backend.train import losses as L
    from backend.train.data import TrainSampler, load_subject_tensors
    from backend.train.presets import get_preset
    from backend.train.stage1 import seed_everything
    from protocol.fileio import atomic_path

    p = get_preset(preset)
    cfg = p.avatar_config(1)
    seed_everything(seed)
    data = load_subject_tensors(subject_dir, p.size)
    model = DNRBaseline(p.size, cfg.tex_channels, cfg.tex_size, cfg.pyramid_levels,
                        **DNR_UNET.get(preset, DNR_UNET["cpu"])).to(device)
    perceptual = build_perceptual(device=device)
    tex = [q for n, q in model.named_parameters() if n.startswith("texture.")]
    rest = [q for n, q in model.named_parameters() if not n.startswith("texture.")]
    groups = [{"params": tex, "lr": p.lr_tex}, {"params": rest, "lr": p.lr_g}]
    opt = adam(groups, betas=(0.5, 0.99))
    sampler = TrainSampler(data.train_ids, p.batch, seed)
    t0 = time.monotonic()
    for step in range(steps):
        frames, uv, _ = data.batch(sampler.next(), device)
        out = model(uv)
        loss = (p.w_tex * L.masked_l1(out.tex_rgb, frames, out.mask)
                + p.w_l1 * torch.abs(out.image - frames).mean()
                + p.w_perc * perceptual(out.image, frames).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"DNR baseline: non-finite loss at step {step}")
    seconds = time.monotonic() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "dnr.pt") as tmp:
        torch.save(model.state_dict(), tmp)
    return model.eval(), seconds


@torch.no_grad()
def render_dnr(model: torch.nn.Module, subject_dir: Path, size: int, ids: np.ndarray,
               device: torch.device) -> np.ndarray:
    """Held-out renders of the DNR baseline: (N, size, size, 3) uint8."""
    from backend.imaging.convert import to_uint8
    from backend.train.data import load_subject_tensors

    data = load_subject_tensors(subject_dir, size)
    outs = []
    for i in range(0, len(ids), 8):
        _, uv, _ = data.batch(ids[i:i + 8], device)
        outs.append(to_uint8(model(uv).image.clamp(-1, 1)))
    return np.concatenate(outs)


def run_references(subject_dir: Path, budget_steps: int | None = None, device: str | None = None,
                   max_frames: int | None = None, landmarks: bool = True,
                   identity: bool = True) -> list[dict[str, Any]]:
    """Train the three references and score all four rows on the avatar's held-out frames.

    Args:
        subject_dir: subject with a trained ``avatar/checkpoint.pt`` (its preset, seed and step are used).
        budget_steps: stage-1 steps of every row (default: the subject checkpoint's step).
        device, max_frames, landmarks, identity: as ``backend.metrics.evaluate.evaluate``.
    Returns:
        One dict per row of ``ROWS``: name, steps, train_seconds, checkpoint and the metrics.
    """
    from backend.device import pick_device
    from backend.imaging.convert import frame_to_tensor, to_uint8
    from backend.metrics.evaluate import evaluate, score_frames
    from backend.metrics.regions import subject_regions
    from backend.train.checkpoint import read_checkpoint
    from backend.train.presets import get_preset
    from backend.train.stage1 import train_avatar

    subject_dir = Path(subject_dir)
    ckpt = checkpoint_path(subject_dir)
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt} not found: train the avatar first (emo-avatar train {subject_dir})")
    meta = read_checkpoint(ckpt)["meta"]
    preset, seed, own_steps = str(meta["preset"]), int(meta.get("seed", 0)), int(meta["step"])
    steps = int(budget_steps) if budget_steps else own_steps
    if steps < 1:
        raise ValueError(f"--budget-steps must be >= 1, got {steps}")
    dev = pick_device(device)
    root = avatar_dir(subject_dir) / REFERENCES_DIRNAME
    stylegan = None
    init = meta.get("stylegan_init") or {}
    if init.get("kind") == "pretrained" and Path(init.get("path", "")).is_file():
        stylegan = Path(init["path"])
    log.info("references for %s: preset %s, %d steps each, seed %d", subject_dir, preset, steps, seed)

    def evaluated(name: str, path: Path, seconds: float) -> dict[str, Any]:
        r = evaluate(subject_dir, checkpoint=path, device=device, max_frames=max_frames, landmarks=landmarks,
                     out_dir=path.parent, identity=identity)
        return {"name": name, "steps": r["step"], "train_seconds": seconds, "checkpoint": str(path), **r}

    def train(name: str, folder: str, **overrides: Any) -> dict[str, Any]:
        t0 = time.monotonic()
        path = train_avatar(subject_dir, preset=preset, steps=steps, seed=seed, device=device,
                            out_dir=root / folder, preview_every=0, stylegan=stylegan,
                            preset_overrides=overrides or None)
        return evaluated(name, path, round(time.monotonic() - t0, 1))

    rows: list[dict[str, Any]] = []
    if steps == own_steps:
        rows.append(evaluated("emo-avatar", ckpt, float(meta.get("train_seconds", 0.0))))
    else:
        rows.append(train("emo-avatar", "emo_avatar"))
    ids = np.asarray(meta.get("heldout_ids") or [], dtype=np.int64)
    if max_frames is not None and len(ids) > max_frames:
        ids = ids[np.linspace(0, len(ids) - 1, max_frames).round().astype(int)]
    p = get_preset(preset)
    model, seconds = train_dnr(subject_dir, preset, steps, seed, dev, root / "dnr")
    from backend.data.subject import Subject

    subject = Subject.open(subject_dir)
    renders = render_dnr(model, subject_dir, p.size, ids, dev)
    gts = np.stack([to_uint8(frame_to_tensor(subject.frame(int(i)), p.size)[None])[0] for i in ids])
    scores = score_frames(renders, gts, dev, landmarks, subject_regions(subject, ids, p.size), identity)
    scores.pop("per_frame_psnr")
    rows.append({"name": "dnr baseline", "steps": steps, "train_seconds": round(seconds, 1),
                 "checkpoint": str(root / "dnr" / "dnr.pt"), "frames": len(ids), **scores})
    rows.append(train("no PTI init", "no_pti", pti_w_steps=0, pti_g_steps=0))
    rows.append(train("no flow", "no_flow", model={**p.model, "use_flow": False}))
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The reference table as GitHub markdown (LPIPS '-' when not computed)."""
    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    lines = ["| model | steps | PSNR dB | SSIM | face PSNR dB | face SSIM | mouth L1 | eyes L1 | lap L1 "
             "| LPIPS | identity | SD | F-LMD px | train s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        cells = [r["name"], str(r.get("steps")), f(r.get("psnr_db"), ".2f"), f(r.get("ssim"), ".3f"),
                 f(r.get("face_psnr_db"), ".2f"), f(r.get("face_ssim"), ".3f"), f(r.get("mouth_l1"), ".1f"),
                 f(r.get("eyes_l1"), ".1f"), f(r.get("lap_l1"), ".4f"), f(r.get("lpips"), ".3f"),
                 f(r.get("identity_distance"), ".3f"), f(r.get("sd"), ".2f"), f(r.get("f_lmd_px"), ".2f"),
                 f(r.get("train_seconds"), ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
