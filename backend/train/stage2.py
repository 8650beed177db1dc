"""Stage 2 of the paper (section 3.3): one-shot reference-based editing of a trained avatar.

Only the skip-connection modules are trained. Per step (one Adam step on the skips, one on the
discriminator):

* region-aware PatchNCE (tau 0.07, 256 patches, negatives from the same image and region)
  between the reference (query) and the render of frame N (positives/negatives), embedded by a
  CLIP image tower when a checkpoint is given, else by frozen discriminator features with
  learnable MLP heads (CUT recipe, see ``patch_encoders``);
* reconstruction of the reference, which is pixel-aligned with frame N: L1 + the project's
  perceptual distance (LPIPS, or its SSIM+gradient fallback) between the render of frame N and
  the reference (``w_rec``, ``w_perc``), and L1 on the face of another training frame against the
  reference re-posed to it through the UV maps (``w_transfer``, ``uv_transfer``). These carry the
  look (colours, flat shading, outlines) and keep it consistent across poses; without them the
  short CPU budget gave noisy, camouflage-like blotches (see docs/editing.md);
* a region-wise feature-statistics term (mean/std of the frozen features under the embeddings,
  per region, frame N vs reference), off by default (``w_stats=0``): it added texture noise;
* the non-saturating adversarial loss of the UV-conditioned patch discriminator, which is
  fine-tuned on the reference (real) vs. renders (fake) with small joint shifts of image + UV;
* identity preservation against over-fitting to one pose: the render of another training frame
  is contrasted (PatchNCE, same regions) with its own unstyled render, so structure stays where
  it was while appearance is free to change; the discriminator also judges that frame.

Texture lookups are frozen in stage 2, so each frame's skip input is computed once and the
loop runs only the skip encoder + synthesis (``render_from_skip_input``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backend.optim import adam
from backend.paths import checkpoint_path, style_path
from backend.progress import EtaClock, ProgressFn, ProgressUpdate, StopFn, check_cancel
from backend.train.keyframes import Keyframe
from backend.train.patchnce import region_patch_nce, sample_region_positions
from backend.train.reference import Reference, load_reference
from backend.train.regions import region_fractions, region_map
from backend.train.style import save_style

log = logging.getLogger(__name__)

FALLBACK_ENCODER = "stage-1 patch-discriminator features + MLP heads (CUT fallback)"


@dataclass(frozen=True)
class EditSettings:
    """Stage-2 hyper-parameters (per training preset; see ``EDIT_SETTINGS``).

    Attributes:
        steps: optimisation steps.
        lr: Adam learning rate of the skip modules (and MLP heads).
        lr_d: Adam learning rate of the discriminator.
        patches: PatchNCE patches per feature layer (shared over the regions).
        clip_patches: crops per step when CLIP embeds (each crop is one CLIP forward).
        clip_image_size: CLIP input size for crops (None = the model's own), smaller is cheaper.
        w_nce, w_stats, w_adv, w_id: loss weights (PatchNCE vs reference, feature statistics,
            adversarial, identity PatchNCE on another frame).
        w_rec, w_perc: pixel L1 and perceptual distance (``backend.train.perceptual``) between the
            render of frame N and the reference, which is pixel-aligned with it.
        w_transfer: L1 on the face of the identity frame against the reference re-posed to it
            through the UV maps (``uv_transfer``), where that surface point is visible at frame N.
        shift: max joint shift (fraction of the size) of reference + UV for the discriminator.
        id_pool: training frames whose unstyled renders anchor the identity term.
        id_every: the identity frame is rendered every this many steps (1 = every step); the
            "id" loss in the history is the last computed value.
    """

    steps: int
    lr: float = 4e-3
    lr_d: float = 1e-3
    patches: int = 256
    clip_patches: int = 64
    clip_image_size: int | None = None
    w_nce: float = 0.1
    w_stats: float = 0.0
    w_adv: float = 0.02
    w_id: float = 0.1
    w_rec: float = 1.0
    w_perc: float = 2.0
    w_transfer: float = 2.0
    shift: float = 0.06
    id_pool: int = 8
    id_every: int = 1


CPU_EDIT = EditSettings(steps=150, clip_patches=32, clip_image_size=112)
EDIT_SETTINGS: dict[str, EditSettings] = {
    "tiny": EditSettings(steps=20, patches=64, clip_patches=16, id_pool=4, id_every=1),
    "cpu": CPU_EDIT,
    "studio": CPU_EDIT,  # not tuned at 256 px
    "paper": EditSettings(steps=600, clip_patches=256),
}


def settings_for_preset(table: dict[str, Any], preset: str | None, steps: int | None = None) -> Any:
    """``table``'s settings dataclass for a checkpoint's preset (unknown presets use ``cpu``),
    optionally with ``steps`` (>= 1) replaced."""
    if preset is not None and preset not in table:
        log.warning("no stage-2 settings for preset %r: using the cpu preset's", preset)
    s = table.get(preset or "cpu", table["cpu"])
    if steps is not None:
        if steps < 1:
            raise ValueError(f"--steps must be >= 1, got {steps}")
        s = replace(s, steps=int(steps))
    return s


def edit_settings(preset: str | None, steps: int | None = None) -> EditSettings:
    """The skips method's settings for a checkpoint's preset, optionally with ``steps``."""
    return settings_for_preset(EDIT_SETTINGS, preset, steps)


def skip_input(avatar: nn.Module, uv: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """The (frozen in stage 2) skip-encoder input: (B, tex_channels + 3, H, W)."""
    with torch.no_grad():
        feats, mask, _ = avatar.sample_features(uv, windows)
        return avatar.skip_input(feats, uv, mask)


def render_from_skip_input(avatar: nn.Module, skip_in: torch.Tensor) -> torch.Tensor:
    """Render (B, 3, H, W) from a precomputed skip input: exactly ``avatar(uv, window).image``."""
    w = avatar.w_pivot.expand(skip_in.shape[0], -1, -1)
    return avatar.generator.synthesis(w, avatar.skips(skip_in), noise_mode="const")


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(module.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def build_discriminator(avatar: nn.Module, state: dict[str, torch.Tensor] | None) -> tuple[nn.Module, str]:
    """Stage 1's patch discriminator with its trained weights when the checkpoint carries them, else fresh.

    Returns:
        (discriminator, "stage-1" | "fresh").
    """
    from backend.train.checkpoint import load_state_strict
    from backend.train.stage1 import make_discriminator

    disc = make_discriminator(avatar.cfg)
    if state:
        try:
            load_state_strict(disc, state, "stage-1 discriminator")
            return disc, "stage-1"
        except ValueError as e:
            log.warning("stage-1 discriminator not usable (%s); starting a fresh one", e)
    else:
        log.warning("checkpoint carries no discriminator (render-only file); fine-tuning a fresh one")
    return disc, "fresh"


def _shift_pair(
    image: torch.Tensor, uv: torch.Tensor, max_frac: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift image and UV map together by the same random integer offset (replicate padding)."""
    s = image.shape[-1]
    m = round(max_frac * s)
    if m < 1:
        return image, uv
    dx, dy = (int(v) for v in torch.randint(-m, m + 1, (2,), generator=gen))
    both = F.pad(torch.cat([image, uv], 1), (m, m, m, m), mode="replicate")
    both = both[..., m + dy : m + dy + s, m + dx : m + dx + s]
    return both[:, :3], both[:, 3:]


def _region_stats_loss(
    ref_feats: list[dict[int, torch.Tensor]], out_feats: list[dict[int, torch.Tensor]]
) -> torch.Tensor:
    """Mean/std of the frozen patch features per region and layer, output vs reference (L1).

    Features are divided by the reference's mean magnitude so every layer weighs alike.
    """
    total, n = 0.0, 0
    for q_layer, k_layer in zip(ref_feats, out_feats, strict=True):
        for r, q in q_layer.items():
            k = k_layer[r]
            scale = q.abs().mean().clamp_min(1e-3)  # one scalar per layer and region
            q, k = q / scale, k / scale
            total = total + F.l1_loss(k.mean(1), q.mean(1)) + F.l1_loss(k.std(1), q.std(1))
            n += 1
    return total / max(n, 1)


@dataclass
class EditResult:
    """What the loop produced (the style file is written by ``edit_avatar``)."""

    losses: dict[str, float]
    history: list[dict[str, float]]
    seconds: float
    steps_done: int


def _make_encoder(
    clip_checkpoint: Path | None,
    clip_arch: str | None,
    disc: nn.Module,
    probe_image: torch.Tensor,
    probe_uv: torch.Tensor,
    settings: EditSettings,
    device: torch.device,
) -> nn.Module:
    from backend.train.patch_encoders import ClipPatchEncoder, FeaturePatchEncoder

    if clip_checkpoint is not None:
        from backend.train.clip_encoder import load_clip

        clip = load_clip(clip_checkpoint, clip_arch, device=device, image_size=settings.clip_image_size)
        return ClipPatchEncoder(clip)
    if clip_arch:
        log.warning("--clip-arch %s given without --clip CHECKPOINT: ignored", clip_arch)
    log.warning(
        "no CLIP checkpoint given (--clip): PatchNCE uses %s: the stage-1 discriminator's conv "
        "features with learnable 2-layer MLP heads",
        FALLBACK_ENCODER,
    )
    return FeaturePatchEncoder(
        disc, lambda net, img, uv: net(img, uv), probe_image, probe_uv, description=FALLBACK_ENCODER
    ).to(device)


def run_edit(
    avatar: nn.Module,
    disc: nn.Module,
    encoder: nn.Module,
    ref: torch.Tensor,
    uv_ref: torch.Tensor,
    skip_ref: torch.Tensor,
    pool_uv: torch.Tensor,
    pool_skip: torch.Tensor,
    settings: EditSettings,
    seed: int = 0,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> EditResult:
    """The stage-2 optimisation loop (in place on ``avatar.skips``, ``disc`` and the encoder heads).

    Args:
        avatar: EmoAvatar with only the skip parameters requiring grad.
        disc: patch discriminator to fine-tune on the reference.
        encoder: patch embedder (``grids()`` + ``embed(image, uv, positions)``).
        ref: (1, 3, S, S) reference in [-1, 1]; uv_ref (1, 3, S, S) UV map of the frame it stylises;
            skip_ref (1, C, S, S) that frame's skip input.
        pool_uv / pool_skip: (P, 3, S, S) / (P, C, S, S) other training frames for the identity term.
    """
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in avatar.parameters() if p.requires_grad]
    head_params = [p for p in encoder.parameters() if p.requires_grad]
    opt_g = adam([{"params": params}, {"params": head_params}], lr=settings.lr, betas=(0.5, 0.99))
    opt_d = adam(disc.parameters(), lr=settings.lr_d, betas=(0.5, 0.99))
    disc.train().requires_grad_(True)
    n_patches = settings.clip_patches if hasattr(encoder, "clip") else settings.patches
    regions_ref = region_map(uv_ref[0].cpu())
    regions_pool = [region_map(u.cpu()) for u in pool_uv]
    with torch.no_grad():
        pool_plain = torch.cat([render_from_skip_input(avatar, s[None]) for s in pool_skip])
    pool_target, pool_valid = None, None
    if settings.w_transfer > 0:
        from backend.train.uv_transfer import transfer_reference

        moved = [transfer_reference(ref[0], uv_ref[0], u) for u in pool_uv]
        pool_target = torch.stack([m[0] for m in moved])
        pool_valid = torch.stack([m[1] for m in moved])
    log.info(
        "regions of the reference frame: %s",
        ", ".join(f"{k} {v:.0%}" for k, v in region_fractions(regions_ref).items()),
    )

    def positions(regions: torch.Tensor) -> list[dict[int, torch.Tensor]]:
        return [sample_region_positions(regions, g, n_patches, gen) for g in encoder.grids()]

    perceptual = None
    if settings.w_perc > 0:
        from backend.train.perceptual import build_perceptual

        perceptual = build_perceptual(device=ref.device, quiet=True)
        log.info("stage-2 reconstruction on frame N: L1 + %s", perceptual.description)
    clock = EtaClock(settings.steps)
    history: list[dict[str, float]] = []
    losses: dict[str, float] = {}
    t0 = time.monotonic()
    step = 0
    last_id = 0.0
    last_tr = 0.0
    for step in range(settings.steps):
        check_cancel(should_stop)
        k = int(torch.randint(len(pool_skip), (1,), generator=gen))
        use_id = (settings.w_id > 0 or settings.w_transfer > 0) and step % settings.id_every == 0
        # -- generator (skips) step ---------------------------------------------------------
        batch_skip = torch.cat([skip_ref, pool_skip[k : k + 1]]) if use_id else skip_ref
        batch_uv = torch.cat([uv_ref, pool_uv[k : k + 1]]) if use_id else uv_ref
        out = render_from_skip_input(avatar, batch_skip)
        out_ref = out[:1]
        pos = positions(regions_ref)
        if head_params:  # learnable heads: the query path trains the heads too
            q, q_raw = encoder.embed(ref, uv_ref, pos, return_raw=True)
        else:
            with torch.no_grad():
                q, q_raw = encoder.embed(ref, uv_ref, pos, return_raw=True)
        kf, k_raw = encoder.embed(out_ref, uv_ref, pos, return_raw=True)
        loss_nce = torch.stack([region_patch_nce(ql, kl) for ql, kl in zip(q, kf, strict=True)]).mean()
        loss_stats = (
            _region_stats_loss([{r: v.detach() for r, v in layer.items()} for layer in q_raw], k_raw)
            if settings.w_stats > 0
            else out.new_zeros(())
        )
        loss_g = settings.w_nce * loss_nce + settings.w_stats * loss_stats
        loss_rec = F.l1_loss(out_ref, ref) if settings.w_rec > 0 else out.new_zeros(())
        loss_perc = perceptual(out_ref, ref).mean() if perceptual is not None else out.new_zeros(())
        loss_g = loss_g + settings.w_rec * loss_rec + settings.w_perc * loss_perc
        if use_id and settings.w_id > 0:
            pos_k = positions(regions_pool[k])
            q_id = encoder.embed(pool_plain[k : k + 1], pool_uv[k : k + 1], pos_k)
            k_id = encoder.embed(out[1:], pool_uv[k : k + 1], pos_k)
            loss_id = torch.stack(
                [region_patch_nce(ql, kl) for ql, kl in zip(q_id, k_id, strict=True)]
            ).mean()
            loss_g = loss_g + settings.w_id * loss_id
            last_id = loss_id.item()
        if use_id and pool_target is not None:
            valid = pool_valid[k : k + 1]
            err = (out[1:] - pool_target[k : k + 1]).abs() * valid
            loss_tr = err.sum() / (3 * valid.sum()).clamp_min(1.0)
            loss_g = loss_g + settings.w_transfer * loss_tr
            last_tr = loss_tr.item()
        disc.requires_grad_(False)
        loss_adv = F.softplus(-disc(out, batch_uv)).mean()
        loss_g = loss_g + settings.w_adv * loss_adv
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        # -- discriminator step: reference (real) vs renders (fake) ------------------------------
        disc.requires_grad_(True)
        real_img, real_uv = _shift_pair(ref, uv_ref, settings.shift, gen)
        d_real = disc(real_img, real_uv)
        d_fake = disc(out.detach(), batch_uv)
        loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        losses = {
            "nce": loss_nce.item(),
            "stats": loss_stats.item(),
            "rec": loss_rec.item(),
            "perc": loss_perc.item(),
            "adv": loss_adv.item(),
            "id": last_id,
            "transfer": last_tr,
            "d": loss_d.item(),
            "total": loss_g.item(),
        }
        history.append(dict(losses))
        if progress is not None:
            progress(ProgressUpdate("edit", step + 1, settings.steps, losses, clock.eta(step + 1)))
        if step == 0 or (step + 1) % max(settings.steps // 10, 1) == 0:
            log.info(
                "edit step %d/%d  %s",
                step + 1,
                settings.steps,
                "  ".join(f"{n} {v:.4f}" for n, v in losses.items()),
            )
    disc.eval().requires_grad_(False)
    return EditResult(losses=losses, history=history, seconds=time.monotonic() - t0, steps_done=step + 1)


def _pick_pool(train_ids: np.ndarray, frame: int, n: int) -> list[int]:
    ids = [int(i) for i in train_ids if int(i) != frame]
    if not ids:
        return [frame]
    pick = np.linspace(0, len(ids) - 1, num=min(n, len(ids))).round().astype(int)
    return [ids[i] for i in pick]


@dataclass
class EditJob:
    """Everything a stage-2 run needs, prepared by ``prepare_edit`` (tensors on ``device``)."""

    avatar: nn.Module
    disc: nn.Module
    disc_source: str
    encoder: nn.Module
    tensors: Any
    ref: Reference
    frame: int
    uv_ref: torch.Tensor
    skip_ref: torch.Tensor
    pool_uv: torch.Tensor
    pool_skip: torch.Tensor
    base_skips: dict[str, torch.Tensor]
    settings: EditSettings
    meta: dict[str, Any]
    checkpoint_sha256: str
    trainable: int
    total: int
    device: torch.device

    def run(
        self, seed: int = 0, progress: ProgressFn | None = None, should_stop: StopFn | None = None
    ) -> EditResult:
        return run_edit(
            self.avatar,
            self.disc,
            self.encoder,
            self.ref.image.to(self.device),
            self.uv_ref,
            self.skip_ref,
            self.pool_uv,
            self.pool_skip,
            self.settings,
            seed=seed,
            progress=progress,
            should_stop=should_stop,
        )


def prepare_edit(
    subject_dir: Path,
    reference: Path | np.ndarray,
    frame: int = 0,
    steps: int | None = None,
    clip_checkpoint: Path | None = None,
    clip_arch: str | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    settings: EditSettings | None = None,
) -> EditJob:
    """Load checkpoint, subject and reference, freeze all but the skips, build discriminator and encoder."""
    from backend.device import pick_device
    from backend.train.checkpoint import build_avatar, checkpoint_sha256, load_state_strict, read_checkpoint
    from backend.train.data import load_subject_tensors

    subject_dir = Path(subject_dir)
    dev = pick_device(None if device is None else str(device))
    torch.manual_seed(seed)
    ckpt = checkpoint_path(subject_dir)
    data = read_checkpoint(ckpt)
    meta = data["meta"]
    avatar = build_avatar(meta["config"])
    size = int(avatar.cfg.size)
    ref = load_reference(reference, size)
    load_state_strict(avatar, data["avatar"], f"checkpoint {ckpt}")
    tensors = load_subject_tensors(subject_dir, size)
    n_frames = tensors.frames.shape[0]
    if not 0 <= frame < n_frames:
        raise IndexError(f"--frame {frame} out of range (subject has {n_frames} frames)")
    if settings is None:
        settings = edit_settings(meta.get("preset"), steps)
    elif steps is not None:
        settings = replace(settings, steps=steps)

    if avatar.cfg.skip_film:
        raise ValueError("this avatar's skips are modulated by the expression (skip_film), which the "
                         "paper's skips edit does not carry; use the default translator edit")
    avatar.to(dev).eval()
    avatar.set_stage2_trainable()
    trainable, total = count_parameters(avatar)
    log.info("stage 2 trains %s of %s parameters (skips)", f"{trainable:,}", f"{total:,}")
    disc, disc_source = build_discriminator(avatar, (data.get("train") or {}).get("disc"))
    disc.to(dev)
    _, uv_ref, win_ref = tensors.batch([frame], dev)
    encoder = _make_encoder(clip_checkpoint, clip_arch, disc, ref.image.to(dev), uv_ref, settings, dev)
    log.info("PatchNCE embeddings: %s", encoder.description)
    pool = _pick_pool(tensors.train_ids, frame, settings.id_pool)
    _, pool_uv, pool_win = tensors.batch(pool, dev)
    return EditJob(
        avatar=avatar,
        disc=disc,
        disc_source=disc_source,
        encoder=encoder,
        tensors=tensors,
        ref=ref,
        frame=frame,
        uv_ref=uv_ref,
        skip_ref=skip_input(avatar, uv_ref, win_ref),
        pool_uv=pool_uv,
        pool_skip=skip_input(avatar, pool_uv, pool_win),
        base_skips={k: v.detach().clone() for k, v in avatar.skips.state_dict().items()},
        settings=settings,
        meta=meta,
        checkpoint_sha256=checkpoint_sha256(ckpt),
        trainable=trainable,
        total=total,
        device=dev,
    )


METHODS = ("translator", "skips")


def edit_avatar(
    subject_dir: Path,
    reference: Path | np.ndarray | None = None,
    frame: int = 0,
    steps: int | None = None,
    out_path: Path | None = None,
    name: str = "style",
    clip_checkpoint: Path | None = None,
    clip_arch: str | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    settings: EditSettings | None = None,
    write_metrics: bool = True,
    method: str = "translator",
    keyframes: list[Keyframe] | None = None,
    steady_motion: bool = False,
    dither: bool = False,
) -> Path:
    """Restyle the subject's trained avatar from reference image(s); write a style file.

    Args:
        subject_dir: subject folder with a stage-1 checkpoint (``SUBJECT/avatar/checkpoint.pt``).
        reference: image file, or (H, W, 3) uint8 RGB array: a stylised version of ``frame``.
        frame: the subject frame the reference stylises.
        steps: optimisation steps (default: per preset and method).
        out_path: style file (default ``SUBJECT/styles/<name>.style``).
        name: style name (default path and meta).
        clip_checkpoint / clip_arch: local open_clip checkpoint and its architecture (``skips`` only).
        device: "cpu", "cuda", None = auto.
        seed: RNG seed.
        progress / should_stop: see ``backend.progress``; a stop raises ``Cancelled`` and writes nothing.
        settings: full hyper-parameter override of the ``skips`` method (tests, benchmarks).
        write_metrics: also write ``<style>.metrics.json`` and ``<style>.contact.png``.
        method: "translator" (default: a style translator fitted on the keyframes,
            ``backend.train.translator_edit``) or "skips" (the paper's skip-only fine-tune with
            region-aware PatchNCE, one keyframe).
        keyframes: 1-4 (reference, frame) pairs instead of ``reference`` / ``frame``.
        steady_motion: steady the style along the motion (``SteadyFilter.motion``; translator only):
            crisper moving strokes, at a higher render cost (docs/editing.md, "Steadying along the
            motion").
        dither: where the references are a dither of a few inks (an error-diffused or stippled
            print), dot every rendered frame with the references' inks (the network is fitted
            as without it; ``FitSettings.dither``; translator only; docs/editing.md, "Dots").
    Returns:
        Path of the style file.
    Raises:
        FileNotFoundError, ReferenceError (incl. AlignmentError), ClipLoadError, CheckpointError,
        IndexError, ValueError, Cancelled.
    """
    if method not in METHODS:
        raise ValueError(f"unknown edit method {method!r}; choose one of {', '.join(METHODS)}")
    if keyframes is None:
        if reference is None:
            raise ValueError("give a reference (or keyframes)")
        keyframes = [Keyframe(reference, int(frame))]
    subject_dir = Path(subject_dir)
    out_path = Path(out_path) if out_path is not None else style_path(subject_dir, name)
    if method == "translator":
        if clip_checkpoint is not None:
            log.warning("--clip is used by the skips method only; the translator edit ignores it")
        return _edit_translator(subject_dir, keyframes, steps, out_path, name, device, seed, progress,
                                should_stop, write_metrics, steady_motion, dither)
    if steady_motion or dither:
        raise ValueError(f"{'steadying along the motion' if steady_motion else 'dotting a dither'} is an "
                         "option of the translator method only")
    if len(keyframes) != 1:
        raise ValueError("the skips method (the paper's edit) takes one reference; use the translator "
                         "method for several keyframes")
    return _edit_skips(subject_dir, keyframes[0], steps, out_path, name, clip_checkpoint, clip_arch, device,
                       seed, progress, should_stop, settings, write_metrics)


def _edit_translator(subject_dir: Path, keyframes: list[Keyframe], steps: int | None, out_path: Path,
                     name: str, device: str | torch.device | None, seed: int, progress: ProgressFn | None,
                     should_stop: StopFn | None, write_metrics: bool, steady_motion: bool = False,
                     dither: bool = False) -> Path:
    from backend.train.translator_edit import prepare_translator_edit, translator_style_meta

    job = prepare_translator_edit(subject_dir, keyframes, steps, device, steady_motion=steady_motion,
                                  dither=dither)
    result = job.run(seed=seed, progress=progress, should_stop=should_stop)
    log.info("edit took %.1f s for %d translator steps", result.seconds, result.steps_done)
    style_meta = translator_style_meta(job, result, name, seed)
    save_style(out_path, None, style_meta, translator=result.translator)
    if write_metrics:
        from backend.metrics.style_metrics import write_style_report

        first = job.keyframes[0]
        write_style_report(
            out_path, job.avatar, job.tensors, first.reference, first.frame, style_meta,
            base_skips={k: v.detach().clone() for k, v in job.avatar.skips.state_dict().items()},
            history=result.history, device=job.device, translator=result.translator,
        )
    return out_path


def _edit_skips(subject_dir: Path, keyframe: Keyframe, steps: int | None, out_path: Path, name: str,
                clip_checkpoint: Path | None, clip_arch: str | None, device: str | torch.device | None,
                seed: int, progress: ProgressFn | None, should_stop: StopFn | None,
                settings: EditSettings | None, write_metrics: bool) -> Path:
    reference, frame = keyframe.reference, keyframe.frame
    job = prepare_edit(
        subject_dir, reference, frame, steps, clip_checkpoint, clip_arch, device, seed, settings
    )
    result = job.run(seed=seed, progress=progress, should_stop=should_stop)
    log.info("edit took %.1f s for %d steps", result.seconds, result.steps_done)
    style_meta = {
        "name": name,
        "method": "skips",
        "subject_id": str(job.meta.get("subject_id") or job.tensors.subject_id),
        "checkpoint_sha256": job.checkpoint_sha256,
        "checkpoint_preset": job.meta.get("preset"),
        "reference_sha256": job.ref.sha256,
        "reference_source": job.ref.source,
        "reference_size": list(job.ref.original_size),
        "reference_resized": job.ref.resized,
        "frame": int(frame),
        "encoder": job.encoder.description,
        "encoder_kind": "clip" if hasattr(job.encoder, "clip") else "fallback",
        "discriminator": job.disc_source,
        "steps": result.steps_done,
        "seconds": round(result.seconds, 2),
        "trainable_parameters": job.trainable,
        "total_parameters": job.total,
        "settings": asdict(job.settings),
        "final_losses": result.losses,
        "seed": seed,
        "device": str(job.device),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    clip = getattr(job.encoder, "clip", None)
    if clip is not None:
        style_meta["clip"] = {
            "arch": clip.info.arch,
            "file": clip.info.path,
            "sha256": clip.info.sha256,
            "image_size": clip.info.image_size,
        }
    job.avatar.eval().requires_grad_(False)
    save_style(out_path, job.avatar, style_meta)
    if write_metrics:
        from backend.metrics.style_metrics import write_style_report

        write_style_report(
            out_path,
            job.avatar,
            job.tensors,
            job.ref,
            frame,
            style_meta,
            clip=getattr(job.encoder, "clip", None),
            base_skips=job.base_skips,
            history=result.history,
            device=job.device,
        )
    return out_path
