"""The default style edit: a style translator fitted on 1-4 keyframes, stored in the ``.style`` file.

For each keyframe (reference, frame) the translator learns video frame -> reference on random
patches (``backend.style.fit``), and, with ``FitSettings.keyframe_renders`` (on only in the tiny
preset, which passes no unlabeled frames), the avatar's unstyled render of the frame -> the same
reference too (``TRAIN_ON``, ``train_on``). With ``FitSettings.render_pairs`` it also sees
``pseudo_frames`` unlabeled (render, video frame) pairs, so it learns to give a render what the
look gives the photograph. With ``TranslatorConfig.source_flag`` (an option) and keyframes whose look
is a tone map (``settings_for_look``), each input also carries a flag, render or photograph, and
the renderer shows the render as a photograph. At render time it runs after the generator on every frame
(``Renderer``), so the look reaches face, hair, clothes and background alike, and lines follow
each frame's own edges. The stage-1 network is untouched. After the fit, with
``FitSettings.steady_bound``, the edit chooses how strongly the renderer steadies the style over
time from how much it makes the subject's training frames flicker (``choose_steady``).

The paper's skip-only fine-tune (``backend.train.stage2``, ``--method skips``) stays available.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.data.subject import runs_of
from backend.progress import ProgressFn, StopFn
from backend.style.fit import FitResult, FitSettings, fit_translator
from backend.style.guides import uv_guides
from backend.style.screen import PHASES
from backend.style.stability import FramePairs, frame_pairs
from backend.style.steady import SteadyFilter
from backend.style.steady_choice import LAST_RESORT, STEADY_AIM, STEADY_LADDER, SteadyChoice, choose_steady
from backend.style.tonal import TONAL_SHARE, tonal_share
from backend.style.translator import PHOTOGRAPH, RENDER, TranslatorConfig, source_plane, with_source
from backend.train.alignment import check_alignment
from backend.train.keyframes import Keyframe, LoadedKeyframe, load_keyframes

log = logging.getLogger(__name__)

PROBE_FRAMES = 96
"""At most this many training frames measure how much a style flickers (``steady_probe_frames``)."""
MIN_PROBE_FRAMES = 8
"""Fewer training frames in one shot than this: the settings' steady filter is kept unmeasured."""

CPU_FIT = FitSettings(steps=2000, batch=4, patch=96, warp=0.5, ema=0.995, pseudo_frames=32, texture_steps=400,
                      texture_warm_start=True, learned_texture=True, busy_fill=True, temporal=8.0,
                      temporal_batch=1, steady=SteadyFilter(), bf16=True, keyframe_renders=False,
                      steady_bound=STEADY_AIM, cell_input=True, frame_jitter=True, partition=True,
                      cell_grade=True,
                      net=TranslatorConfig(width=12, blocks=2, refine=8, low_merge=1, screen_gates=PHASES,
                                           screen_head=16, grade=5))
TRANSLATOR_SETTINGS: dict[str, FitSettings] = {
    "tiny": FitSettings(steps=80, batch=4, patch=32, steady=SteadyFilter(),
                        net=TranslatorConfig(width=8, blocks=1)),
    "cpu": CPU_FIT,
    "studio": CPU_FIT,  # not tuned at 256 px: its 96 px patches are 3/8 of a studio frame
    "paper": FitSettings(steps=3000, batch=16, patch=128, warp=0.5, ema=0.995, pseudo_frames=32,
                         steady=SteadyFilter(), keyframe_renders=False, steady_bound=STEADY_AIM,
                         frame_jitter=True, partition=True, cell_grade=True,
                         net=TranslatorConfig(width=16, blocks=4, refine=8, screen_gates=PHASES,
                                              screen_head=16)),
}
TRAIN_ON = ("render", "real")  # inputs paired with each reference: the avatar's render, the video frame
SOURCE_FLAG = {"render": RENDER, "real": PHOTOGRAPH}
"""The source flag each input of ``TRAIN_ON`` is shown with (``TranslatorConfig.source_flag``)."""


def train_on(settings: FitSettings) -> tuple[str, ...]:
    """The inputs paired with each reference: ``TRAIN_ON``, or the video frame alone when
    ``settings.render_pairs`` or ``settings.keyframe_renders`` is off."""
    return TRAIN_ON if settings.render_pairs and settings.keyframe_renders else ("real",)


def translator_settings(preset: str | None, steps: int | None = None) -> FitSettings:
    """The translator's settings for a checkpoint's preset, optionally with ``steps``."""
    from backend.train.stage2 import settings_for_preset

    return settings_for_preset(TRANSLATOR_SETTINGS, preset, steps)


@dataclass
class TranslatorEditJob:
    """A prepared translator edit (``prepare_translator_edit``); ``run`` fits the translator.

    Attributes:
        inputs: (P, 3 + guides, S, S) in [-1, 1]; targets: (P, 3, S, S) in [-1, 1].
        unlabeled: (renders, real frames), each (Q, 3 + guides, S, S), of stage-1 training frames
            without a reference (``unlabeled_frames``), or None.
        pairs: renders of those frames and of a neighbouring training frame aligned on them
            (``neighbour_frames``, ``backend.style.stability``), or None.
        keyframes: the checked keyframes; alignments: their edge-match measurements (meta).
        shots_without_keyframe: the subject's runs, [a, b) frames, that hold no keyframe (meta).
        tonal_share: the keyframes' mean ``tonal_share`` where the settings asked for the source
            flag (``settings_for_look``; ``settings`` holds the outcome), else None (meta).
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    keyframes: list[LoadedKeyframe]
    alignments: list[dict[str, Any]]
    settings: FitSettings
    unlabeled: tuple[torch.Tensor, torch.Tensor] | None
    pairs: FramePairs | None
    meta: dict[str, Any]
    tensors: Any
    avatar: torch.nn.Module
    checkpoint_sha256: str
    device: torch.device
    shots_without_keyframe: list[tuple[int, int]]
    tonal_share: float | None = None

    def run(self, seed: int = 0, progress: ProgressFn | None = None,
            should_stop: StopFn | None = None) -> FitResult:
        result = fit_translator(self.inputs, self.targets, self.settings, seed=seed, progress=progress,
                                should_stop=should_stop, unlabeled=self.unlabeled,
                                texture_from=self.pairs_of("real"), pairs=self.pairs)
        result.translator.steady = self.settings.steady  # how the renderer shows the style over time
        if self.settings.steady is not None and self.settings.steady_bound > 0:
            result.steady_choice = self.choose_steady(result.translator)
            if result.steady_choice is not None:
                result.translator.steady = result.steady_choice.steady
        return result

    def choose_steady(self, translator: torch.nn.Module) -> SteadyChoice | None:
        """The steady filter for ``translator``, measured on the training frames of the subject's
        longest shot (``steady_probe_frames``) as ``FitSettings.steady_bound`` asks; None (the
        settings' filter stays) when that shot has fewer than ``MIN_PROBE_FRAMES`` of them."""
        ids = steady_probe_frames(self.tensors.train_ids, self.tensors.frames.shape[0], self.tensors.cuts)
        if len(ids) < MIN_PROBE_FRAMES:
            log.info("steady filter: %d training frames in one shot, fewer than %d: kept as set",
                     len(ids), MIN_PROBE_FRAMES)
            return None
        net = self.settings.net
        inputs = network_inputs(self.avatar, self.tensors, ids, net.guides, self.device)["render"]
        with torch.no_grad():
            styled = torch.cat([translator(x[:, :3], x[:, 3:] if x.shape[1] > 3 else None)
                                for x in inputs.split(16)])
        first = self.settings.steady

        def along(f: SteadyFilter) -> SteadyFilter:  # every step warps along the motion, or none
            return replace(f, motion=first.motion)

        ladder = (first, *(along(f) for f in STEADY_LADDER[1:] if along(f) != first))
        choice = choose_steady(styled, inputs[:, :3], ladder, self.settings.steady_bound,
                               tuple(along(f) for f in LAST_RESORT))
        log.info("steady filter: flicker %.2fx unstyled unfiltered, %s with the filters tried (%d training "
                 "frames): radius %d, sigma %.2f, tau %.1f%s", choice.raw,
                 ", ".join(f"{r:.2f}x" for r in choice.ratios), choice.frames, choice.steady.radius,
                 choice.steady.sigma, choice.steady.tau, ", along the motion" if choice.steady.motion else "")
        if not first.motion and choice.steady in (ladder[-1], *LAST_RESORT):
            log.info("steady filter: this look's strokes change a lot from frame to frame, and a filter this "
                     "strong averages them where the head moves (a faded second outline, greyer strokes); "
                     "an edit with --steady-motion (the add-on's 'Crisp moving strokes') keeps them crisp, "
                     "at more frame-to-frame change and render time (docs/editing.md, \"Steadying along "
                     "the motion\")")
        return choice

    def pairs_of(self, source: str) -> list[int]:
        """Indices into ``inputs`` of the pairs whose input is ``source`` (a name in ``train_on``)."""
        k = len(self.keyframes)
        start = train_on(self.settings).index(source) * k
        return list(range(start, start + k))


def _uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, S, S) in [-1, 1] -> (B, S, S, 3) uint8."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def face_box(coverage: np.ndarray, pad: float = 0.1) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) around every frame's face (coverage (T, S, S) > 0.5), padded; None if no face."""
    ys, xs = np.nonzero(coverage.max(axis=0) > 0.5)
    if ys.size == 0:
        return None
    side = coverage.shape[-1]
    py, px = round(pad * (ys.max() - ys.min() + 1)), round(pad * (xs.max() - xs.min() + 1))
    return (max(0, ys.min() - py), min(side, ys.max() + 1 + py), max(0, xs.min() - px),
            min(side, xs.max() + 1 + px))


def settings_for_look(settings: FitSettings, photos: torch.Tensor, references: torch.Tensor
                      ) -> tuple[FitSettings, float]:
    """``settings`` with the source flag kept where the keyframes' look is a tone map (mean
    ``tonal_share`` of the (K, 3, S, S) photographs and references >= ``TONAL_SHARE``), and off
    where it redraws; and that mean share."""
    share = sum(tonal_share(p, r) for p, r in zip(photos, references, strict=True)) / len(references)
    tone_map = share >= TONAL_SHARE
    log.info("style translator: %.2f of the references is a function of the photograph's colour "
             "(tonal_share); %s", share, "a tone map: the render is shown as a photograph" if tone_map
             else f"below {TONAL_SHARE}: the render is translated as a render (no source flag)")
    if not tone_map:
        settings = replace(settings, net=replace(settings.net, source_flag=0))
    return settings, share


def network_inputs(avatar: torch.nn.Module, tensors: Any, ids: list[int], guides: int,
                   device: torch.device, batch: int = 16) -> dict[str, torch.Tensor]:
    """The translator's inputs for subject frames ``ids``: {"render": the avatar's unstyled
    renders, "real": the video frames}, each (N, 3 + guides, S, S) in [-1, 1] with the UV guide
    channels (``uv_guides``) appended (without the source flag: ``with_source``)."""
    real, uv, win = tensors.batch(ids, device)
    with torch.no_grad():
        render = torch.cat([avatar(uv[i:i + batch], win[i:i + batch]).image
                            for i in range(0, len(ids), batch)])
    g = uv_guides(uv, guides)
    return {"render": render if g is None else torch.cat([render, g], 1),
            "real": real if g is None else torch.cat([real, g], 1)}


def steady_probe_frames(train_ids: np.ndarray, n_frames: int, cuts: tuple[int, ...] | list[int],
                        limit: int = PROBE_FRAMES) -> list[int]:
    """The training frames of the subject's longest shot (the run between cuts with most of them),
    in order, at most ``limit`` from its start: where the edit measures how much a style flickers.
    Held-out frames in between are skipped (they stay unseen), so the run has gaps of a frame."""
    train = [int(i) for i in train_ids]
    best: list[int] = []
    for a, b in runs_of(n_frames, list(cuts)):
        inside = [i for i in train if a <= i < b]
        if len(inside) > len(best):
            best = inside
    return best[:limit]


def unlabeled_frames(train_ids: np.ndarray, keyframes: list[int], count: int) -> list[int]:
    """Up to ``count`` stage-1 training frames, evenly spread, that are not keyframes.

    Only training frames: the held-out frames stay unseen by the edit as by stage 1."""
    free = [int(i) for i in train_ids if int(i) not in set(keyframes)]
    if count <= 0 or not free:
        return []
    pick = np.linspace(0, len(free) - 1, min(count, len(free))).round().astype(int)
    return [free[i] for i in sorted(set(pick.tolist()))]


def neighbour_frames(subject: Any, train_ids: np.ndarray, frames: list[int]) -> list[tuple[int, int]]:
    """(frame, neighbour) for each of ``frames`` that has a training frame next to it in the video
    and in the same crop (no cut, no crop change between them): the one before, else the one after.
    ``subject``: a ``backend.data.subject.Subject``."""
    train = set(int(i) for i in train_ids)
    out = []
    for f in frames:
        for n in (f - 1, f + 1):
            if (n in train and abs(subject.source_frame(n) - subject.source_frame(f)) == 1
                    and subject.crop_of(n) == subject.crop_of(f)):
                out.append((f, n))
                break
    return out


def shots_without_keyframe(n_frames: int, run_starts: list[int] | tuple[int, ...], frames: list[int]
                           ) -> list[tuple[int, int]]:
    """The [a, b) runs of a subject (``backend.data.subject.runs_of``) that hold none of the
    keyframes ``frames``: shots the style reaches only from other shots' references."""
    return [(a, b) for a, b in runs_of(n_frames, run_starts) if not any(a <= f < b for f in frames)]


def prepare_translator_edit(subject_dir: Path, keyframes: list[Keyframe], steps: int | None = None,
                            device: str | torch.device | None = None,
                            settings: FitSettings | None = None,
                            steady_motion: bool = False, dither: bool = False) -> TranslatorEditJob:
    """Load checkpoint and subject, check the keyframes, render their frames, build the pairs.

    ``steady_motion``: the style's steady filter warps its neighbours along the motion
    (``SteadyFilter.motion``, ``backend.style.steady_motion``), and so does every filter its choice
    tries. ``dither``: look for a dispersed-dot palette in the references (``FitSettings.dither``).

    Raises:
        FileNotFoundError, ReferenceError (incl. AlignmentError), IndexError, ValueError, CheckpointError.
    """
    from backend.data.subject import Subject
    from backend.device import pick_device
    from backend.paths import checkpoint_path
    from backend.train.checkpoint import build_avatar, checkpoint_sha256, load_state_strict, read_checkpoint
    from backend.train.data import load_subject_tensors

    subject_dir = Path(subject_dir)
    dev = pick_device(None if device is None else str(device))
    ckpt = checkpoint_path(subject_dir)
    data = read_checkpoint(ckpt)
    meta = data["meta"]
    avatar = build_avatar(meta["config"])
    load_state_strict(avatar, data["avatar"], f"checkpoint {ckpt}")
    avatar.to(dev).eval().requires_grad_(False)
    size = int(avatar.cfg.size)
    tensors = load_subject_tensors(subject_dir, size)
    loaded = load_keyframes(keyframes, size, tensors.frames.shape[0])
    real_u8 = _uint8(tensors.frames)
    box = face_box(tensors.uv[:, 2].numpy())
    alignments = []
    for k in loaded:
        a = check_alignment(k.reference.rgb, real_u8, k.frame, source=f"reference {k.reference.source}",
                            box=box)
        alignments.append({"frame": k.frame, "orientation_ncc": round(a.ncc_frame, 4),
                           "edge_ncc": round(a.edge_ncc_frame, 4), "best_frame": a.best_frame,
                           "shift_px": list(a.shift)})
    if settings is None:
        settings = translator_settings(meta.get("preset"), steps)
    elif steps is not None:
        settings = replace(settings, steps=steps)
    if steady_motion and settings.steady is not None:
        settings = replace(settings, steady=replace(settings.steady, motion=True))
    if dither:
        settings = replace(settings, dither=True)
    ids = [k.frame for k in loaded]
    sources = network_inputs(avatar, tensors, ids, settings.net.guides, dev)
    refs = torch.cat([k.reference.image for k in loaded]).to(dev)
    tonal = None
    if settings.net.source_flag:
        settings, tonal = settings_for_look(settings, sources["real"][:, :3], refs)
    net = settings.net
    names = train_on(settings)
    inputs = [with_source(sources[name], net, SOURCE_FLAG[name]) for name in names]
    targets = [refs] * len(names)
    pool = unlabeled_frames(tensors.train_ids, ids, settings.pseudo_frames)
    subject = Subject.open(subject_dir)
    unlabeled, pairs = None, None
    if pool and (settings.render_pairs or settings.temporal > 0):  # unlabeled pairs, stability pairs
        pool_inputs = network_inputs(avatar, tensors, pool, net.guides, dev)
        if settings.render_pairs:
            unlabeled = tuple(with_source(pool_inputs[name], net, SOURCE_FLAG[name]) for name in TRAIN_ON)
        near = neighbour_frames(subject, tensors.train_ids, pool) if settings.temporal > 0 else []
        if near:  # the frames are the pool's, rendered above; their neighbours are not
            now = pool_inputs["render"][[pool.index(f) for f, _ in near]]
            before = network_inputs(avatar, tensors, [n for _, n in near], net.guides, dev)["render"]
            pairs = frame_pairs(now, before)
            if net.source_flag:  # renders as the renderer shows them, whose stability matters
                pairs = pairs.with_channels(source_plane(now[:1], PHOTOGRAPH))
    log.info("style translator: %d keyframe(s) (frames %s), inputs %s, %s steps", len(loaded),
             ", ".join(map(str, ids)), " + ".join(names), settings.steps)
    bare = shots_without_keyframe(subject.n_frames, subject.run_starts, ids)
    if bare:
        log.warning("the subject has %d shots and frames %s are in shots without a keyframe: the style "
                    "reaches them from the other shots' references only. A reference of a frame in each "
                    "shot (up to 4 references in all) restyles them better "
                    "(docs/editing.md, \"Shots without a keyframe\")",
                    len(subject.run_starts) + 1, ", ".join(f"{a}-{b - 1}" for a, b in bare))
    return TranslatorEditJob(
        inputs=torch.cat(inputs), targets=torch.cat(targets), keyframes=loaded, alignments=alignments,
        settings=settings, unlabeled=unlabeled, pairs=pairs, meta=meta, tensors=tensors, avatar=avatar,
        checkpoint_sha256=checkpoint_sha256(ckpt), device=dev, shots_without_keyframe=bare, tonal_share=tonal,
    )


def translator_style_meta(job: TranslatorEditJob, result: FitResult, name: str, seed: int) -> dict[str, Any]:
    """The style file's meta for a translator edit."""
    first = job.keyframes[0]
    return {
        "name": name,
        "method": "translator",
        "subject_id": str(job.meta.get("subject_id") or job.tensors.subject_id),
        "checkpoint_sha256": job.checkpoint_sha256,
        "checkpoint_preset": job.meta.get("preset"),
        "frame": first.frame,
        "reference_sha256": first.reference.sha256,
        "reference_source": first.reference.source,
        "reference_size": list(first.reference.original_size),
        "reference_resized": first.reference.resized,
        "keyframes": [
            {"frame": k.frame, "reference_sha256": k.reference.sha256, "reference_source": k.reference.source,
             "reference_size": list(k.reference.original_size), "reference_resized": k.reference.resized,
             "alignment": a}
            for k, a in zip(job.keyframes, job.alignments, strict=True)
        ],
        "shots_without_keyframe": [list(r) for r in job.shots_without_keyframe],
        "trained_on": list(train_on(job.settings)),
        "translator_parameters": sum(p.numel() for p in result.translator.parameters()),
        "position_share": result.position_share,
        "cell_recolour_share": result.cell_recolour,
        "dither_dot_share": result.dot_share,
        "dither_palette": None if (dots := result.translator.dither) is None else dots.colours.tolist(),
        "frame_jitter": result.jitter,
        "frame_partition": result.partition,
        "cell_grade": result.cell_grade,
        "tonal_share": job.tonal_share,
        "stability_amplification": result.amplification,
        "steady_choice": None if result.steady_choice is None else result.steady_choice.to_dict(),
        "frame_texture": None if result.texture is None else result.texture.to_dict(),
        "steps": result.steps_done,
        "seconds": round(result.seconds, 2),
        "settings": job.settings.to_dict(),
        "final_losses": result.history[-1] if result.history else {},
        "seed": seed,
        "device": str(job.device),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
