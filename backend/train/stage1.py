"""Stage-1 training of an Emo-Avatar on one subject (paper 3.2).

Order: load the subject -> build the avatar (StyleGAN2 from ``--stylegan`` or random init) ->
few-shot PTI on the 4 extreme-pose frames -> stage 1:

    L_G = w_tex * L1(tex_rgb, frame | UV mask) + w_l1 * L1(out, frame)
          + w_perc * Perceptual(out, frame) + w_adv * softplus(-D(out, uv))
    L_D = softplus(-D(frame, uv)) + softplus(D(out, uv)) + lazy R1 on real patches

Adam for both; an EMA copy of the avatar is what checkpoints, previews and metrics use. Held-out
frames (``Subject.split()``) are never drawn. Ctrl-C or ``should_stop`` writes a checkpoint of
the current step, then raises ``Cancelled``; ``resume=True`` continues from it.

Launched by ``torchrun`` (``backend.train.ddp``), the same code trains one avatar in several
processes: each trains its slice of every global batch, DDP averages the gradients, and only
rank 0 writes checkpoints, previews and metrics. A checkpoint resumes with any process count.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.device import pick_device
from backend.images import write_png
from backend.imaging.convert import to_uint8
from backend.imaging.grid import preview_grid
from backend.metrics.metrics_file import update_metrics_json
from backend.metrics.perceptual import Perceptual, build_perceptual, file_sha256
from backend.metrics.psnr import psnr
from backend.optim import adam
from backend.paths import CHECKPOINT_NAME, avatar_dir
from backend.progress import Cancelled, EtaClock, ProgressFn, ProgressUpdate, StopFn, check_cancel
from backend.train import ddp, preflight
from backend.train import losses as L
from backend.train.balanced_sampling import sampling_weights
from backend.train.checkpoint import (
    CheckpointError,
    config_differences,
    load_state_strict,
    read_checkpoint,
    save_checkpoint,
)
from backend.train.data import SubjectTensors, TrainSampler, load_subject_tensors
from backend.train.presets import Preset, get_preset
from backend.train.previews import loss_curve_png
from protocol.fileio import atomic_write_bytes

log = logging.getLogger(__name__)

RANDOM_INIT = "random-init warm start"
METRICS_NAME = "metrics.json"
LOSS_CURVE_NAME = "loss_curve.png"
PREVIEW_DIRNAME = "previews"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_discriminator(cfg: Any) -> torch.nn.Module:
    """The UV-conditioned patch discriminator of ``cfg`` (image 3 + uv 3 channels in)."""
    from backend.model.patch_discriminator import PatchDiscriminator

    return PatchDiscriminator(in_channels=6, channels=cfg.patch_channels, n_layers=cfg.patch_layers)


def stylegan_init(avatar: torch.nn.Module, stylegan: Path | None) -> dict[str, Any]:
    """Load a pretrained StyleGAN2 into ``avatar.generator`` when given; return the meta record."""
    if stylegan is None:
        log.warning("no pretrained StyleGAN2 given (--stylegan CKPT): the generator starts from random "
                    "weights and PTI acts as a warm start (%s)", RANDOM_INIT)
        return {"kind": RANDOM_INIT}
    from backend.model.checkpoint import load_stylegan2_checkpoint

    path = Path(stylegan)
    if not path.is_file():
        raise FileNotFoundError(f"--stylegan {path}: no such file")
    load_stylegan2_checkpoint(path, avatar.generator)
    digest = file_sha256(path)
    log.info("generator initialised from pretrained StyleGAN2 %s (sha256 %s)", path, digest[:16])
    return {"kind": "pretrained", "path": str(path.resolve()), "sha256": digest}


@dataclass
class TrainState:
    """Mutable bookkeeping saved with every checkpoint."""

    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    psnr: list[tuple[int, float]] = field(default_factory=list)
    pti: dict[str, Any] = field(default_factory=dict)
    pti_curve: list[tuple[str, int, float]] = field(default_factory=list)
    stylegan_init: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    frozen: list[str] = field(default_factory=list)


class Stage1Trainer:
    """Holds the avatar, its EMA copy, the discriminator and both optimisers for one run."""

    def __init__(self, preset: Preset, data: SubjectTensors, device: torch.device, perceptual: Perceptual,
                 seed: int, out_dir: Path, ranks: ddp.Ranks = ddp.SINGLE) -> None:
        from backend.model.avatar import EmoAvatar

        self.preset = preset
        self.data = data
        self.device = device
        self.perceptual = perceptual
        self.seed = seed
        self.out_dir = out_dir
        self.cfg = preset.avatar_config(len(data.expression_names))
        self.avatar = EmoAvatar(self.cfg).to(device)
        if self.cfg.plate:
            from backend.model.plate import background_plate

            ids = torch.as_tensor(data.train_ids)
            with torch.no_grad():
                self.avatar.plate.copy_(background_plate(data.frames[ids], data.uv[ids, 2:3])[None])
        self.ema = copy.deepcopy(self.avatar).eval().requires_grad_(False)
        self.disc = make_discriminator(self.cfg).to(device)
        is_tex = [n.startswith(("texture.", "head_texture.")) for n, _ in self.avatar.named_parameters()]
        tex = [p for p, t in zip(self.avatar.parameters(), is_tex, strict=True) if t]
        rest = [p for p, t in zip(self.avatar.parameters(), is_tex, strict=True) if not t]
        groups = [{"params": tex, "lr": preset.lr_tex}, {"params": rest, "lr": preset.lr_g}]
        self.corrections = None
        if preset.lr_corr > 0 and ranks.distributed:
            raise ValueError("per-frame corrections (lr_corr > 0) train in one process only: each rank "
                             "would keep its own copy")
        if preset.lr_corr > 0:
            from backend.train.frame_corrections import FrameCorrections

            self.corrections = FrameCorrections(data.frames.shape[0], len(data.expression_names)).to(device)
            groups.append({"params": list(self.corrections.parameters()), "lr": preset.lr_corr})
        self.opt_g = adam(groups, betas=(preset.adam_beta1, 0.99))
        self.base_lrs = [g["lr"] for g in self.opt_g.param_groups]
        self.opt_d = adam(self.disc.parameters(), lr=preset.lr_d, betas=(preset.d_adam_beta1, 0.99))
        self.ranks = ranks
        self.sampler = TrainSampler(data.train_ids, preset.batch, seed, ranks.rank, ranks.world,
                                    weights=sampling_weights(data, preset.balance))
        # (K,) each curve's spread over the training frames: the scale of the input noise
        self.expr_std = data.windows[torch.as_tensor(data.train_ids), 2].std(dim=0).to(device)
        self.avatar_forward: torch.nn.Module = self.avatar  # the DDP wrapper once distribute() ran
        self.amp = preset.mixed_precision and device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if (self.amp and torch.cuda.is_bf16_supported()) else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)
        if preset.mixed_precision and not self.amp:
            log.warning("preset %s asks for mixed precision, which runs on CUDA only: this run on %s is "
                        "float32 (slower, more memory)", preset.name, device)
        self.state = TrainState()
        self.total = preset.steps
        self.subject_resample: dict[str, Any] | None = None
        self.memory: dict[str, Any] | None = None
        if len(data.heldout_ids):
            self.psnr_frames = f"held-out ({len(data.heldout_ids)} frames)"
        else:
            self.psnr_frames = "training frames (fallback: the subject has no held-out frames)"
            log.warning("%s has no held-out frames: the 'held-out' PSNR during training is measured on up "
                        "to 8 training frames and says nothing about unseen poses", data.subject_id)
        if self.amp:
            log.info("mixed precision: %s autocast%s", str(self.amp_dtype).replace("torch.", ""),
                     " with GradScaler (this GPU has no bfloat16)" if self.amp_dtype == torch.float16 else "")

    # -- what stage 1 trains ---------------------------------------------------------------------
    FROZEN_PARTS = ("generator", "w_pivot")

    def freeze_stylegan(self) -> None:
        """Keep the StyleGAN2 generator and the w pivot at their PTI values for the rest of stage 1.

        Their ``requires_grad`` goes off, so they get no gradients and Adam skips them (they stay
        in the optimiser, whose state then resumes either way); gradients still flow through the
        generator to the skip encoder, texture, deformer and motion encoder.
        """
        self.avatar.generator.requires_grad_(False)
        self.avatar.w_pivot.requires_grad_(False)
        self.state.frozen = list(self.FROZEN_PARTS)
        n = sum(p.numel() for p in self.avatar.parameters() if p.requires_grad)
        log.info("stage 1 trains %.2f M parameters (texture, motion, deformer, skips); the pretrained "
                 "generator and w pivot stay frozen at their PTI values (paper: frozen StyleGAN)", n / 1e6)

    def generator_stage1(self) -> str:
        """What stage 1 does with the generator, for meta and the report."""
        kind = self.state.stylegan_init.get("kind")
        if self.state.frozen:
            return "frozen (pretrained StyleGAN2, tuned by PTI only)"
        if kind == "pretrained":
            return (f"trained (pretrained StyleGAN2; preset {self.preset.name} has "
                    "freeze_pretrained_generator off)")
        return f"trained ({RANDOM_INIT}: a random generator must learn the portrait)"

    def precision(self) -> str:
        """The precision this run uses, naming the fallback when the preset asked for more."""
        if self.amp:
            return str(self.amp_dtype).replace("torch.", "")
        if self.preset.mixed_precision:
            return (f"off (preset asks for mixed precision; CUDA only, this run is on {self.device.type}: "
                    "float32)")
        return "off"

    # -- meta and checkpoints --------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        s = self.state
        return {
            "config": self.cfg.to_dict(), "preset": self.preset.name, "preset_params": self.preset.to_dict(),
            "subject_id": self.data.subject_id, "expression_names": list(self.data.expression_names),
            "fps": self.data.fps, "size": self.cfg.size, "step": s.step, "total_steps": self.total,
            "seed": self.seed, "stylegan_init": dict(s.stylegan_init),
            "perceptual": self.perceptual.description,
            "pti": dict(s.pti), "heldout_psnr": s.psnr[-1][1] if s.psnr else None,
            "heldout_psnr_frames": self.psnr_frames,
            "heldout_ids": [int(i) for i in self.data.heldout_ids], "train_seconds": round(s.seconds, 2),
            "history": [dict(h) for h in s.history], "psnr_history": [[int(a), float(b)] for a, b in s.psnr],
            "pti_curve": [[a, int(b), float(c)] for a, b, c in s.pti_curve],
            "mixed_precision": self.precision(), "processes": self.ranks.world,
            "stage1_frozen": list(s.frozen), "generator_stage1": self.generator_stage1(),
            "subject_resample": None if self.subject_resample is None else dict(self.subject_resample),
            "memory": None if self.memory is None else dict(self.memory),
        }

    def save(self, path: Path) -> Path:
        train = {
            "avatar": self.avatar.state_dict(), "disc": self.disc.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "scaler": self.scaler.state_dict(), "sampler_rng": self.sampler.state(),
            "torch_rng": torch.get_rng_state(),
        }
        if self.corrections is not None:
            train["corrections"] = self.corrections.state_dict()
        save_checkpoint(path, self.ema.state_dict(), self.meta(), train)
        log.info("checkpoint step %d -> %s", self.state.step, path)
        return path

    def load(self, path: Path, data: dict[str, Any] | None = None) -> None:
        """Restore everything from a checkpoint written by :meth:`save` (for ``--resume``).

        ``data``: the checkpoint as ``read_checkpoint(path)`` returned it, when already read.
        """
        data = read_checkpoint(path) if data is None else data
        meta = data["meta"]
        preflight.check_resume_preset(meta, self.preset, path)
        diff = config_differences(meta.get("config", {}), self.cfg.to_dict())
        if diff:
            raise CheckpointError(f"{path} has a different architecture: {'; '.join(diff)}")
        if list(meta.get("expression_names", [])) != list(self.data.expression_names):
            raise CheckpointError(f"{path} was trained on other expression curves than this subject has")
        if data.get("train") is None:
            raise CheckpointError(f"{path} holds no training state (render-only file); cannot resume")
        tr = data["train"]
        load_state_strict(self.avatar, tr["avatar"], f"{path} (avatar)")
        load_state_strict(self.ema, data["avatar"], f"{path} (EMA avatar)")
        load_state_strict(self.disc, tr["disc"], f"{path} (discriminator)")
        if self.corrections is not None:
            if "corrections" not in tr:
                raise CheckpointError(f"{path} was trained without per-frame corrections")
            self.corrections.load_state_dict(tr["corrections"])
        self.opt_g.load_state_dict(tr["opt_g"])
        self.opt_d.load_state_dict(tr["opt_d"])
        self.scaler.load_state_dict(tr["scaler"])
        self.sampler.set_state(tr["sampler_rng"])
        torch.set_rng_state(tr["torch_rng"])
        s = self.state
        s.step = int(meta["step"])
        s.history = [dict(h) for h in meta.get("history", [])]
        s.psnr = [(int(a), float(b)) for a, b in meta.get("psnr_history", [])]
        s.pti = dict(meta.get("pti", {}))
        s.pti_curve = [(a, int(b), float(c)) for a, b, c in meta.get("pti_curve", [])]
        s.stylegan_init = dict(meta.get("stylegan_init", {}))
        s.seconds = float(meta.get("train_seconds", 0.0))
        if meta.get("stage1_frozen"):
            self.freeze_stylegan()
        log.info("resuming %s at step %d of %d", path, s.step, self.total)

    def distribute(self) -> None:
        """With several ranks: start every rank from rank 0's weights and wrap the avatar in DDP.

        Called once the weights are final for the start (after PTI or a resume). The EMA copy and
        the discriminator are broadcast too; from here on identical gradients keep them equal.
        """
        if not self.ranks.distributed:
            return
        from torch.nn.parallel import DistributedDataParallel

        ddp.broadcast_module(self.ema)
        ddp.broadcast_module(self.disc)
        ids = [self.device.index] if self.device.type == "cuda" else None
        # the mapping network (generator.style) is bypassed by the w pivot, so some parameters get
        # no gradient. find_unused_parameters handles that; static_graph=True would too, but gave
        # gradients 1.5e-3 (relative) off the single-process ones here, against 2e-7 this way
        self.avatar_forward = DistributedDataParallel(self.avatar, device_ids=ids, broadcast_buffers=False,
                                                      find_unused_parameters=True)

    def _sync_disc(self) -> None:
        if self.ranks.distributed:
            ddp.average_gradients(self.disc, self.ranks.world)

    # -- one optimisation step -------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp:
            return torch.autocast("cuda", dtype=self.amp_dtype)
        return contextlib.nullcontext()

    def step(self) -> dict[str, float]:
        p = self.preset
        step = self.state.step
        ids = self.sampler.next()
        frames, uv, win = self.data.batch(ids, self.device)
        if p.expr_noise > 0:  # the same offset on the whole 5-frame window: a different expression
            noise = torch.randn(win.shape[0], 1, win.shape[2], device=self.device)  # torch_rng: resumable
            win = win + p.expr_noise * self.expr_std * noise
        corr_ids = None
        if self.corrections is not None:
            corr_ids = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=self.device)
            uv, win = self.corrections(corr_ids, uv, win)
        uv_d = uv.detach()  # the discriminator's condition: corrections learn from the image losses only
        use_adv = p.w_adv > 0 and step >= p.adv_start

        # one avatar forward serves both the discriminator update (detached) and the generator loss
        with self._autocast():
            out = self.avatar_forward(uv, win)
            img = out.image.float()

        d_logs: dict[str, float] = {}
        if use_adv:
            self.disc.requires_grad_(True)
            with self._autocast():
                d_loss = L.d_logistic_loss(self.disc(frames, uv_d), self.disc(img.detach(), uv_d))
            self.opt_d.zero_grad(set_to_none=True)
            self.scaler.scale(d_loss).backward()
            self._sync_disc()
            self.scaler.step(self.opt_d)
            d_logs["d"] = d_loss.item()
            if p.r1_every > 0 and step % p.r1_every == 0:
                r1_loss, d_logs["r1"] = L.lazy_r1(self.disc, frames, uv_d, p.r1_gamma, p.r1_every)
                self.opt_d.zero_grad(set_to_none=True)
                r1_loss.backward()
                self._sync_disc()
                self.opt_d.step()
            self.disc.requires_grad_(False)

        with self._autocast():
            mask = out.mask.float()
            l_tex = L.masked_l1(out.tex_rgb.float(), frames, mask)
            l_face = L.masked_l1(img, frames, mask) if p.w_face > 0 else None
            if self.ranks.distributed:  # normalise by the whole batch's mask, as one process would
                share = ddp.global_share(mask.expand_as(frames).sum().detach(), self.ranks.world)
                l_tex = l_tex * share
                l_face = None if l_face is None else l_face * share
            l_l1 = torch.abs(img - frames).mean()
            l_perc = self.perceptual(img, frames).mean()
            loss = p.w_tex * l_tex + p.w_l1 * l_l1 + p.w_perc * l_perc
            if l_face is not None:
                loss = loss + p.w_face * l_face
            l_lap = L.laplacian_l1(img, frames) if p.w_lap > 0 else None
            if l_lap is not None:
                loss = loss + p.w_lap * l_lap
            l_ffl = L.focal_frequency_loss(img, frames) if p.w_ffl > 0 else None
            if l_ffl is not None:
                loss = loss + p.w_ffl * l_ffl
            l_corr = None if corr_ids is None else self.corrections.penalty(corr_ids)
            if l_corr is not None:
                loss = loss + p.w_corr * l_corr
            l_adv = l_fm = None
            if use_adv:  # one discriminator pass gives the logits and the features
                feats = self.disc.features(img, uv_d)
                l_adv = L.g_nonsaturating_loss(self.disc.out(feats[-1]))
                loss = loss + p.w_adv * l_adv
                if p.w_fm > 0:
                    with torch.no_grad():
                        real_feats = self.disc.features(frames, uv_d)
                    l_fm = L.feature_matching_l1(feats, real_feats)
                    loss = loss + p.w_fm * l_fm
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self._set_learning_rates(step)
        self.scaler.step(self.opt_g)
        self.scaler.update()
        self._update_ema()
        logs = {"total": loss.item(), "tex": l_tex.item(), "l1": l_l1.item(), "perc": l_perc.item()}
        if l_face is not None:
            logs["face"] = l_face.item()
        if l_lap is not None:
            logs["lap"] = l_lap.item()
        if l_ffl is not None:
            logs["ffl"] = l_ffl.item()
        if l_adv is not None:
            logs["adv"] = l_adv.item()
        if l_fm is not None:
            logs["fm"] = l_fm.item()
        logs.update(d_logs)
        if self.ranks.distributed:  # the global batch's losses, the same on every rank
            logs = ddp.mean_logs(logs, self.ranks.world, self.device)
        if not all(math.isfinite(v) for v in logs.values()):
            raise FloatingPointError(f"non-finite loss at step {step}: {logs}; lower the learning rates "
                                     f"or resume from the last checkpoint")
        self.state.step = step + 1
        return logs

    def _set_learning_rates(self, step: int) -> None:
        """The avatar's rates at ``step``: a cosine from the preset's rates to ``lr_final`` of them
        at the last step (a function of the step alone, so a resumed run continues the curve)."""
        final = self.preset.lr_final
        if final == 1.0:
            return
        scale = final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(step / max(self.total - 1, 1), 1.0)))
        for group, base in zip(self.opt_g.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * scale

    @torch.no_grad()
    def _update_ema(self) -> None:
        # warm-up so the EMA follows closely at the start of short runs
        beta = min(self.preset.ema_beta, (1 + self.state.step) / (10 + self.state.step))
        for pe, pa in zip(self.ema.parameters(), self.avatar.parameters(), strict=True):
            pe.lerp_(pa.detach(), 1 - beta)
        for be, ba in zip(self.ema.buffers(), self.avatar.buffers(), strict=True):
            be.copy_(ba)

    # -- evaluation, previews ------------------------------------------------------------------------
    @torch.no_grad()
    def render_ids(self, ids: np.ndarray, batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """EMA renders of frame ids: (output uint8 (N,S,S,3), texture RGB uint8 (N,S,S,3))."""
        outs, texs = [], []
        for i in range(0, len(ids), batch):
            _, uv, win = self.data.batch(ids[i:i + batch], self.device)
            o = self.ema(uv, win)
            outs.append(to_uint8(o.image))
            texs.append(to_uint8(o.tex_rgb * o.mask + (o.mask - 1)))  # black outside the UV mask
        return np.concatenate(outs), np.concatenate(texs)

    def heldout_psnr(self) -> float:
        ids = self.data.heldout_ids if len(self.data.heldout_ids) else self.data.train_ids[:8]
        out, _ = self.render_ids(ids)
        gt = to_uint8(self.data.frames[torch.as_tensor(ids)])
        value = float(np.mean([min(psnr(a, b), 100.0) for a, b in zip(out, gt, strict=True)]))
        self.state.psnr.append((self.state.step, value))
        return value

    def write_preview(self) -> Path:
        n = self.preset.n_preview
        tr = self.data.train_ids[np.linspace(0, len(self.data.train_ids) - 1, n).round().astype(int)]
        ho = self.data.heldout_ids
        ho = ho[np.linspace(0, len(ho) - 1, n).round().astype(int)] if len(ho) else ho[:0]
        ids = np.concatenate([tr, ho])
        out, tex = self.render_ids(ids)
        gt = to_uint8(self.data.frames[torch.as_tensor(ids)])
        rows = [f"train #{i}" for i in tr] + [f"held-out #{i}" for i in ho]
        title = f"{self.data.subject_id}  step {self.state.step}/{self.total}  ({self.preset.name})"
        grid = preview_grid([gt, tex, out], ["ground truth", "texture rgb", "avatar"], rows, title)
        path = self.out_dir / PREVIEW_DIRNAME / f"step_{self.state.step:06d}.png"
        write_png(path, grid)
        write_png(self.out_dir / "preview.png", grid)
        return path

    def write_report(self, curve: bool = True) -> None:
        """metrics.json (held-out PSNR and what weights were used) and, with ``curve``, the
        loss-curve PNG (drawing it takes 0.3-0.8 s of matplotlib)."""
        s = self.state
        if curve:
            title = (f"{self.data.subject_id} - preset {self.preset.name} - perceptual: "
                     f"{self.perceptual.description[:40]} - G init: {s.stylegan_init.get('kind')}")
            png = loss_curve_png(s.history, s.psnr, title, s.pti_curve)
            atomic_write_bytes(self.out_dir / LOSS_CURVE_NAME, png)
        update_metrics_json(self.out_dir / METRICS_NAME, "train", {
            "step": s.step, "total_steps": self.total, "preset": self.preset.name,
            "heldout_psnr_db": s.psnr[-1][1] if s.psnr else None, "heldout_psnr_frames": self.psnr_frames,
            "heldout_frames": len(self.data.heldout_ids),
            "train_frames": len(self.data.train_ids), "psnr_history": [[a, b] for a, b in s.psnr],
            "train_seconds": round(s.seconds, 2), "perceptual": self.perceptual.description,
            "stylegan_init": s.stylegan_init, "pti": s.pti, "device": str(self.device),
            "generator_stage1": self.generator_stage1(), "mixed_precision": self.precision(),
            "subject_resample": self.subject_resample, "memory": self.memory,
        })


def _fmt_losses(losses: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in losses.items())


def train_avatar(subject_dir: Path, preset: str = "cpu", steps: int | None = None, seed: int = 0,
                 device: str | None = None, resume: bool = False, out_dir: Path | None = None,
                 progress: ProgressFn | None = None, should_stop: StopFn | None = None,
                 stylegan: Path | None = None, preview_every: int | None = None,
                 preset_overrides: dict[str, Any] | None = None, check_memory: bool = True) -> Path:
    """Train (or continue training) an Emo-Avatar on a subject; return the checkpoint path.

    Args:
        subject_dir: subject folder written by ``emo-avatar track``.
        preset: a name in ``backend.train.presets.PRESETS``.
        steps: total stage-1 steps (default: the preset's). With ``resume`` this is the new total.
        seed: seeds weights, batches and noise (same seed + same device -> same result).
        device: "cpu", "cuda", "cuda:N" or None for CUDA when present.
        resume: continue from ``out_dir/checkpoint.pt`` (step count, optimisers, RNG state).
        out_dir: where checkpoint, previews, loss curve and metrics go (default ``SUBJECT/avatar``).
        progress: called with ``ProgressUpdate`` (stages "pti" then "train").
        should_stop: polled every step; when true a checkpoint is saved and ``Cancelled`` raised.
        stylegan: a pretrained StyleGAN2 checkpoint for PTI proper (else random init, warm start).
        preview_every: override the preset's preview interval (0 disables previews).
        preset_overrides: other ``Preset`` fields to override (e.g. ``{"pti_w_steps": 10}``; benchmarks).
        check_memory: refuse a run whose memory estimate exceeds what the device has available
            (the estimate is logged either way).
    Raises:
        Cancelled: after saving, when stopped by ``should_stop`` or Ctrl-C.
        SubjectSizeError, MemoryBudgetError, PresetMismatchError (ValueErrors, ``backend.train.preflight``):
            refused before anything is written.
    """
    subject_dir = Path(subject_dir)
    if not subject_dir.is_dir():
        raise FileNotFoundError(f"subject folder {subject_dir} does not exist (run emo-avatar track first)")
    p = get_preset(preset, steps=steps, preview_every=preview_every, **(preset_overrides or {}))
    ranks = ddp.ranks_from_env()
    if not ranks.distributed:
        return _train(subject_dir, p, seed, pick_device(device), resume, out_dir, progress, should_stop,
                      stylegan, ranks, check_memory)
    try:
        dev = ddp.init(ranks, device)
        # every rank must be doing the same job before any of them starts working
        fields = {f"preset.{k}": v for k, v in p.to_dict().items() if k != "name"}
        ddp.agree(ranks, {"preset": p.name, "seed": seed, "resume": resume, "subject": subject_dir.name,
                          "stylegan": None if stylegan is None else Path(stylegan).name,
                          "out": None if out_dir is None else Path(out_dir).name, **fields})
        result = _train(subject_dir, p, seed, dev, resume, out_dir, progress if ranks.main else None,
                        should_stop, stylegan, ranks, check_memory)
        ddp.barrier()  # every rank leaves the group together (ddp.barrier)
        return result
    except Cancelled as exc:
        if not isinstance(exc.__cause__, KeyboardInterrupt):  # Ctrl-C reaches each rank anywhere
            ddp.barrier()  # an agreed stop (ddp.any_rank): wait while rank 0 saves, then leave together
        raise
    finally:
        ddp.shutdown()


def _preflight(subject_dir: Path, p: Preset, dev: torch.device, resume_data: dict[str, Any] | None,
               stylegan: Path | None, perceptual: Perceptual, ranks: ddp.Ranks, check_mem: bool
               ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Checks before anything is allocated or written: the subject's size against the preset's,
    a stylegan file that exists, and the memory estimate. Returns (subject_resample, memory) records."""
    from backend.data.subject import Subject

    subject = Subject.open(subject_dir)
    resample = preflight.subject_resample(subject.size, p, subject.subject_id)
    if stylegan is not None and resume_data is None and not Path(stylegan).is_file():
        raise FileNotFoundError(f"--stylegan {stylegan}: no such file")
    if resume_data is not None:
        frozen = bool(resume_data["meta"].get("stage1_frozen"))
    else:
        frozen = stylegan is not None and p.freeze_pretrained_generator
    # ranks on one host share its RAM; each GPU has its own memory
    sharing = 1 if dev.type == "cuda" else int(os.environ.get("LOCAL_WORLD_SIZE", ranks.world))
    est = preflight.estimate_memory(p, len(subject.expression_names), subject.n_frames, world=ranks.world,
                                    sharing=sharing, perceptual=perceptual, frozen_generator=frozen,
                                    device_type=dev.type,
                                    half_activations=p.mixed_precision and dev.type == "cuda")
    if check_mem:
        memory = preflight.check_memory(est, dev, p)
    else:
        log.warning("memory: %s; the check against the device is off (--no-memory-check)", est.describe())
        memory = {**est.to_meta(), "available": None, "available_source": "not checked (--no-memory-check)",
                  "device": str(dev)}
    return resample, memory


def _train(subject_dir: Path, p: Preset, seed: int, dev: torch.device, resume: bool, out_dir: Path | None,
           progress: ProgressFn | None, should_stop: StopFn | None, stylegan: Path | None,
           ranks: ddp.Ranks, check_mem: bool = True) -> Path:
    """``train_avatar`` once the preset, device and ranks are settled."""
    seed_everything(seed)
    out_dir = Path(out_dir) if out_dir is not None else avatar_dir(subject_dir)
    ckpt = out_dir / CHECKPOINT_NAME
    resume_data = None
    if resume and ckpt.is_file():
        resume_data = read_checkpoint(ckpt)
        preflight.check_resume_preset(resume_data["meta"], p, ckpt)
    perceptual = build_perceptual(device=dev)
    resample, memory = _preflight(subject_dir, p, dev, resume_data, stylegan, perceptual, ranks, check_mem)
    data = load_subject_tensors(subject_dir, p.size)
    if ranks.distributed:
        per_rank = ddp.check_world(ranks, p.batch, len(data.train_ids))
        ddp.agree(ranks, {"subject_id": data.subject_id, "train_ids": data.train_ids.tolist(),
                          "expression_names": list(data.expression_names)})
        log.info("rank %d of %d trains %d of every %d frames", ranks.rank, ranks.world, per_rank, p.batch)
    trainer = Stage1Trainer(p, data, dev, perceptual, seed, out_dir, ranks)
    trainer.subject_resample, trainer.memory = resample, memory
    log.info("training %s: preset %s, %d px, %d train / %d held-out frames, %d steps, batch %d, device %s%s",
             data.subject_id, p.name, p.size, len(data.train_ids), len(data.heldout_ids), p.steps, p.batch,
             dev, f", {ranks.world} processes" if ranks.distributed else "")

    if resume_data is not None:
        trainer.load(ckpt, resume_data)
        del resume_data
        if stylegan is not None:
            log.warning("--stylegan %s is not used when resuming: the checkpoint's generator continues "
                        "(initialised from %s)", stylegan, trainer.state.stylegan_init.get("path")
                        or trainer.state.stylegan_init.get("kind"))
        if trainer.state.step >= p.steps:
            log.info("%s is already at step %d >= %d; nothing to do (pass a larger --steps to continue)",
                     ckpt, trainer.state.step, p.steps)
            return ckpt
    else:
        if resume:
            log.warning("--resume: no checkpoint at %s, starting from scratch", ckpt)
        elif ckpt.is_file():
            log.info("overwriting the existing checkpoint %s when this run saves", ckpt)
        trainer.state.stylegan_init = stylegan_init(trainer.avatar, stylegan)
        from backend.train.pti import run_pti

        targets = data.frames[torch.as_tensor(data.extreme_ids)].to(dev)
        w_steps, g_steps = pti_steps(p)
        pti = run_pti(trainer.avatar, targets, perceptual, w_steps, g_steps, p.pti_lr_w,
                      p.pti_lr_g, pretrained=stylegan is not None, progress=progress, should_stop=should_stop,
                      seed=seed)
        trainer.state.pti = pti.to_meta()
        trainer.state.pti_curve = pti.losses
        trainer.ema.load_state_dict(trainer.avatar.state_dict())
        if stylegan is not None and p.freeze_pretrained_generator:
            trainer.freeze_stylegan()

    trainer.distribute()
    run_loop(trainer, ckpt, progress, should_stop)
    if ranks.main:
        heldout_report(subject_dir, ckpt, str(dev))
    return ckpt


def run_loop(trainer: Stage1Trainer, ckpt: Path, progress: ProgressFn | None,
             should_stop: StopFn | None) -> None:
    """The stage-1 loop with periodic previews/checkpoints and clean stop on Ctrl-C / ``should_stop``.

    With several ranks every rank steps; only rank 0 scores, previews, saves and reports.
    """
    p, s = trainer.preset, trainer.state
    main = trainer.ranks.main
    clock = EtaClock(trainer.total, start_step=s.step)
    t_start = time.monotonic()
    seconds0 = s.seconds
    log_every = max(1, trainer.total // 2000)
    try:
        while s.step < trainer.total:
            check_cancel(should_stop)
            logs = trainer.step()
            s.seconds = seconds0 + time.monotonic() - t_start
            if s.step % log_every == 0 or s.step == trainer.total:
                s.history.append({"step": float(s.step), **logs})
            if progress is not None:
                progress(ProgressUpdate("train", s.step, trainer.total, logs, clock.eta(s.step)))
            if main and p.preview_every and s.step % p.preview_every == 0 and s.step < trainer.total:
                value = trainer.heldout_psnr()
                trainer.write_preview()
                if progress is not None:
                    losses = {**logs, "heldout_psnr_db": value}
                    progress(ProgressUpdate("train", s.step, trainer.total, losses, clock.eta(s.step),
                                            message="held-out PSNR, preview written"))
            if main and p.checkpoint_every and s.step % p.checkpoint_every == 0 and s.step < trainer.total:
                trainer.save(ckpt)
                trainer.write_report()
    except (KeyboardInterrupt, Cancelled) as exc:
        s.seconds = seconds0 + time.monotonic() - t_start
        if main:  # a service cancel must end within a second: its loss curve is the last checkpoint's
            trainer.save(ckpt)
            trainer.write_report(curve=isinstance(exc, KeyboardInterrupt))
        why = "Ctrl-C" if isinstance(exc, KeyboardInterrupt) else "stop request"
        log.warning("%s at step %d: checkpoint saved to %s (continue with --resume)", why, s.step, ckpt)
        raise Cancelled(f"training stopped at step {s.step} ({why}); checkpoint saved to {ckpt}") from exc
    if not main:
        log.info("rank %d done at step %d", trainer.ranks.rank, s.step)
        return
    value = trainer.heldout_psnr()
    if p.preview_every:
        trainer.write_preview()
    trainer.save(ckpt)
    trainer.write_report()
    log.info("done: step %d, held-out PSNR %.2f dB, %.1f s", s.step, value, s.seconds)


def pti_steps(preset: Preset) -> tuple[int, int]:
    """(pivot steps, generator steps) of PTI: the preset's, each at most the run's ``steps``, so a
    short run (a smoke test, ``--steps 2``) is not outlasted by its warm start."""
    return min(preset.pti_w_steps, preset.steps), min(preset.pti_g_steps, preset.steps)


def heldout_report(subject_dir: Path, ckpt: Path, device: str | None) -> None:
    """The training report's held-out scores (face region, mouth/eyes, perceptual, identity): the
    ``eval`` section of metrics.json and the contact sheet, by ``backend.metrics.evaluate`` without
    F-LMD. A failure here is logged; the checkpoint is already saved."""
    from backend.metrics.evaluate import evaluate

    try:
        r = evaluate(subject_dir, checkpoint=ckpt, device=device, landmarks=False, out_dir=ckpt.parent)
    except (OSError, ValueError, RuntimeError) as exc:
        log.error("held-out report failed (run `emo-avatar eval %s` again): %s", subject_dir, exc)
        return
    log.info("held-out: PSNR %.2f dB, face PSNR %.2f dB / SSIM %.3f, mouth L1 %.1f, identity %s",
             r["psnr_db"], r["face_psnr_db"], r["face_ssim"], r["mouth_l1"], r["identity_distance"])
