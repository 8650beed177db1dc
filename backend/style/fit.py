"""Fitting the style translator on keyframe pairs: random patches, L1 + gradient L1, Adam.

Each keyframe pair is (input, target): the avatar's unstyled render of a frame and the artist's
reference for that frame (pixel-aligned). The real video frame of the same keyframe can be added
as a second input for the same target: the translator then learns the look from both the sharp
photograph and the avatar's render, which makes it less sensitive to how sharp a render is.

Training on small random patches (with flips) rather than whole frames is what makes one or a
few keyframes enough (Texler et al. 2020): the network cannot memorise where things are, only
how local appearance maps to the look.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F

from backend.imaging.coords import position_channels
from backend.optim import adam
from backend.progress import EtaClock, ProgressFn, ProgressUpdate, StopFn, check_cancel
from backend.style.cell_grade import find_cell_grade
from backend.style.critic import PatchCritic, adversarial_loss, critic_step
from backend.style.frame_jitter import find_frame_jitter
from backend.style.frame_partition import LATTICE_MAX_WITHIN, FramePartition, find_partition
from backend.style.frame_texture import (
    MIN_STILL_FRAMES,
    TextureEvidence,
    flatness,
    frame_texture,
    still_pixels,
    texture_evidence,
)
from backend.style.inference_plan import bf16_native
from backend.style.lattice import (
    CELL_RECOLOUR,
    CellMap,
    Lattice,
    cell_recolour_share,
    lattice_of_keyframes,
    patch_cells,
    within_cell_share,
)
from backend.style.learned_texture import AUX_CHANNELS, TextureLayer, aux_channels, busy_fill
from backend.style.palette_dither import find_palette
from backend.style.position_grade import POSITION_SHARE, position_share
from backend.style.screen import SCREEN_CHANNELS, screen_of_keyframes
from backend.style.stability import FramePairs, amplification, stability_loss
from backend.style.steady import SteadyFilter
from backend.style.steady_choice import SteadyChoice
from backend.style.translator import StyleTranslator, TranslatorConfig, screen_inputs

log = logging.getLogger(__name__)


GRADE_LR = 10.0
"""The position grade's learning rate over the network's: its 60 numbers are global and each
moves the whole frame's colour, so at the network's rate the grade was still far from a
left-to-right palette after 800 steps (``tests/edit/test_position_grade.py``)."""
CRITIC_LR = 2e-4
"""The patch critic's Adam learning rate (betas 0.5, 0.99, as pix2pix's discriminator)."""


@dataclass(frozen=True)
class FitSettings:
    """Hyper-parameters of ``fit_translator``.

    Attributes:
        steps: Adam steps.
        batch: patches per step.
        patch: patch side in pixels (clamped to the image size).
        lr: Adam learning rate (cosine-decayed to lr/20).
        w_grad: weight of the L1 between image gradients (keeps lines crisp).
        screen: look for a frame-locked periodic pattern in the targets (``backend.style.screen``);
            when every target has one, it is taken out of the targets, and the fitted translator
            adds it to every frame.
        lattice: look for frame-locked flat cells in the targets (``backend.style.lattice``);
            when every target shows the same lattice, the translator's output is averaged over
            its cells, in fitting (each patch's cells, cut and flipped with it; no warped
            patches, whose cells would not be the frame's) and in rendering.
        cell_input: where a lattice is found and its references recolour the cells rather than
            grade them (``lattice.cell_recolour_share`` >= ``CELL_RECOLOUR``), the network reads its
            input averaged over the cells (``TranslatorConfig.cell_input``).
        dither: look for a dispersed-dot palette in the targets where they have neither a screen
            nor a lattice (``backend.style.palette_dither``): when found, the renderer dots the
            network's output with it (``StyleTranslator.dither``); the fit is the same.
        partition: look for frame-locked flat cells of any shape (``backend.style.frame_partition``:
            a crystallised, hexagonal or low-poly mosaic); when every target is such a mosaic,
            their cells are used as a lattice's are, in place of a lattice whose cells are not
            flat in the targets.
        cell_grade: where cells are found (a lattice or a mosaic), read the affine colour grade of
            each cell's mean in the references (``backend.style.cell_grade``): when it explains
            them, the renderer gives each graded cell the grade of the render's own mean under it,
            each inked cell the ink, and keeps the network's output on the rest
            (``StyleTranslator.cell_grade``); a screen found in the same references is then the
            cells' own pattern (a tile's grout) and is dropped. The fit is otherwise the same.
        frame_jitter: look for rows or columns that the references move sideways by their own
            fixed amounts (``backend.style.frame_jitter``): when found, the fit takes the shifts
            out of the references and the translator puts them back on every frame it renders
            (``StyleTranslator.frame_jitter``).
        warp: share of patches cut along a random similarity transform (rotation up to
            ``warp_deg`` degrees, scale within 1 +- ``warp_scale``) instead of an axis-aligned crop,
            so the network sees the keyframe's structures at other angles and sizes, as the
            head shows them at other poses. Input and target are resampled together (bilinear).
        ema: decay of an exponential moving average of the weights; the fitted translator holds
            the average (0 = the last weights).
        render_pairs: the edit also teaches the translator renders: it passes ``pseudo_frames``
            unlabeled (render, photograph) pairs and, with ``keyframe_renders``, pairs each
            reference with the avatar's render of its frame (``backend.train.translator_edit``
            reads it): the translator learns to give a render what the look gives the photograph,
            so it also corrects the render towards the photograph. False: the references are paired with
            the video frames only and no unlabeled pairs are passed; the translator learns the
            look alone and applies it to the render as a filter would (docs/editing.md, "Fitted
            on the photographs only"). The stability term's render pairs are kept either way.
        keyframe_renders: with ``render_pairs``, each reference is also paired with the avatar's
            render of its frame (``backend.train.translator_edit.train_on``; on here, off in the
            edit's ``cpu``, ``studio`` and ``paper`` settings). False: the references
            are paired with the video frames only, and the renders are taught by the unlabeled
            pairs alone, at ``pseudo_frames`` poses instead of the keyframes' own (docs/editing.md,
            "Without the keyframes' render pairs").
        pseudo_frames: video frames without a reference that the edit passes as ``unlabeled``
            (render, real frame) pairs (``backend.train.translator_edit`` picks them).
        pseudo_from: share of the steps after which the unlabeled pairs join the training.
        pseudo_share: share of the patches then drawn from them.
        texture_steps: steps of a first, short fit whose residual on the keyframes tells whether
            the look prints on a frame-locked texture without a period (paper grain;
            ``backend.style.frame_texture``); when it does, the texture is taken out of the
            targets and added to every output as a fixed layer. Only tried where no screen and no
            lattice is found. 0: not tried.
        texture_warm_start: the fit goes on from the first fit's weights where its targets stay
            the same: no texture, or a ``learned_texture`` layer (which starts from the first fit's
            residual, so the network and the layer go on together). The first fit is then its
            first ``texture_steps`` steps (the learning rate starts again and decays over the
            steps left): the same ``steps`` in all, and the first fit's time is not spent twice.
            A fixed layer taken out of the targets starts again from new weights.
        learned_texture: where a texture is found, learn its layer together with the network
            (``backend.style.learned_texture``), starting from the first fit's estimate, instead
            of keeping that estimate fixed.
        learned_texture_from: share of the steps for which the learned layer stays at the
            estimate while the network learns the look's content; the layer learns after it.
            From the start, the layer learned the keyframe's edges before the network did and
            showed them on every frame (charcoal -3.6 -> -6.3 dB in the face, docs/editing.md).
        busy_fill: with ``learned_texture``, complete the layer where the keyframe is busy with
            its residual after the fit, shrunk by the texture's share of its local power
            (``backend.style.learned_texture.busy_fill``).
        temporal: weight of the stability term (``backend.style.stability``): on pairs of
            consecutive training-frame renders aligned by their optical flow (``pairs`` of
            ``fit_translator``), how much more the styled outputs differ than the renders do.
            0: off.
        temporal_batch / temporal_patch: aligned pairs per step and their patch side (px).
        temporal_from: share of the steps after which the stability term may join, once the
            look is learned (with the unlabeled frames, at the default shares).
        temporal_above: the term joins only if the translator then changes more than this many
            times as much as the renders between the pairs' frames (``stability.amplification``);
            where it does not, the term only cost fidelity.
        steady: the temporal filter the style's translator carries, run by the renderer over
            consecutive styled frames where the unstyled render holds still
            (``backend.style.steady``); None: none. ``fit_translator`` does not read it: the edit
            attaches it to the fitted translator (``TranslatorEditJob.run``).
        steady_bound: 0: the style carries ``steady`` as it is. Above 0 (and with ``steady``), the
            edit measures after the fit how much the styled training frames flicker and keeps the
            weakest of ``steady`` and the stronger filters of ``steady_choice.STEADY_LADDER`` that
            brings the styled change to at most this many times the unstyled, or past the ladder
            the ``steady_choice.LAST_RESORT`` where its end predicts a miss
            (``backend.style.steady_choice``). Not read by ``fit_translator`` either.
        adversarial: weight of the patch critic's reward (``backend.style.critic``): from
            ``adversarial_from`` of the steps on, a small critic learns to tell each step's target
            patches (the references', and the unlabeled frames' once they join) from the
            translator's outputs, and the translator is also rewarded for outputs it takes for
            targets (the lines and texture L1 alone leaves out where their place is uncertain).
            0: no critic.
        adversarial_from: share of the steps after which the critic joins, once the look's
            colours and shapes are learned.
        critic_width: channels of the critic's first layer.
        bf16: run the translator's forward in bfloat16 autocast while fitting, where the CPU
            computes bfloat16 natively (``backend.style.inference_plan.bf16_native``; float32
            elsewhere): a step costs about 0.7 of a float32 one. Weights, optimiser and loss stay
            float32.
        net: translator size.
    """

    steps: int = 600
    batch: int = 8
    patch: int = 64
    lr: float = 3e-3
    w_grad: float = 1.0
    screen: bool = True
    lattice: bool = True
    cell_input: bool = False
    dither: bool = False
    partition: bool = False
    cell_grade: bool = False
    frame_jitter: bool = False
    warp: float = 0.0
    warp_deg: float = 15.0
    warp_scale: float = 0.1
    ema: float = 0.0
    render_pairs: bool = True
    keyframe_renders: bool = True
    pseudo_frames: int = 0
    pseudo_from: float = 0.5
    pseudo_share: float = 0.5
    texture_steps: int = 0
    texture_warm_start: bool = False
    learned_texture: bool = False
    learned_texture_from: float = 0.5
    busy_fill: bool = False
    temporal: float = 0.0
    temporal_batch: int = 2
    temporal_patch: int = 64
    temporal_from: float = 0.5
    temporal_above: float = 1.2
    steady: SteadyFilter | None = None
    steady_bound: float = 0.0
    adversarial: float = 0.0
    adversarial_from: float = 0.25
    critic_width: int = 16
    bf16: bool = False
    net: TranslatorConfig = field(default_factory=TranslatorConfig)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FitResult:
    """The fitted translator (eval mode, no grad), its loss history, the wall time (s) and the
    keyframes' mean ``position_share`` (None when the settings have no grade to decide on), the
    frame-locked texture's evidence (None when none was looked for) and the translator's
    ``amplification`` of the frame pairs' change when the stability term was considered (None
    when not; the term joined if it was above ``FitSettings.temporal_above``). ``steady_choice``:
    how the edit chose the translator's steady filter (``FitSettings.steady_bound``), else None.
    ``cell_recolour``: the keyframes' ``cell_recolour_share`` where a lattice was found with
    ``FitSettings.cell_input``, else None. ``dot_share``: ``find_palette``'s measure where a dispersed-dot
    palette was looked for (``FitSettings.dither``; 0.0 where no palette of few colours holds
    the references), else None. ``jitter``: the evidence of a frame-locked jitter along rows and
    columns (``JitterEvidence.to_dict`` each) where one was looked for (``FitSettings.frame_jitter``),
    else None. ``partition``: each reference's ``PartitionEvidence.to_dict`` where frame-locked cells
    of any shape were looked for (``FitSettings.partition``), else None. ``cell_grade``: the
    ``CellGradeEvidence.to_dict`` where a cell grade was looked for (``FitSettings.cell_grade``
    and cells found), else None."""

    translator: StyleTranslator
    history: list[dict[str, float]]
    seconds: float
    steps_done: int
    position_share: float | None = None
    texture: TextureEvidence | None = None
    amplification: float | None = None
    steady_choice: SteadyChoice | None = None
    cell_recolour: float | None = None
    dot_share: float | None = None
    jitter: dict | None = None
    partition: list[dict] | None = None
    cell_grade: dict | None = None


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences along x and y of (B, C, H, W): (B, C, H, W-1), (B, C, H-1, W)."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def patch_loss(out: torch.Tensor, target: torch.Tensor,
               w_grad: float) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 + ``w_grad`` x L1 of the image gradients; returns (loss, {"l1", "grad"})."""
    l1 = F.l1_loss(out, target)
    (ox, oy), (tx, ty) = image_gradients(out), image_gradients(target)
    grad = F.l1_loss(ox, tx) + F.l1_loss(oy, ty)
    return l1 + w_grad * grad, {"l1": l1.item(), "grad": grad.item()}


def similarity_thetas(n: int, size: int, height: int, width: int, max_deg: float, max_scale: float,
                      gen: torch.Generator) -> torch.Tensor:
    """(n, 2, 3) ``affine_grid`` matrices of random ``size``-pixel crops of an (height, width) image:
    each crop is rotated by up to ``max_deg`` degrees and scaled within 1 +- ``max_scale`` about its
    centre, which is placed where an axis-aligned crop would fit (corners may leave the image)."""
    angle = (torch.rand(n, generator=gen) * 2 - 1) * (max_deg * torch.pi / 180)
    scale = 1 + (torch.rand(n, generator=gen) * 2 - 1) * max_scale
    cx = size / 2 + torch.rand(n, generator=gen) * (width - size)
    cy = size / 2 + torch.rand(n, generator=gen) * (height - size)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * size / width, -sin * size / width
    theta[:, 1, 0], theta[:, 1, 1] = sin * size / height, cos * size / height
    theta[:, 0, 2], theta[:, 1, 2] = 2 * cx / width - 1, 2 * cy / height - 1
    return theta


def sample_patches(inputs: torch.Tensor, targets: torch.Tensor, n: int, size: int,
                   gen: torch.Generator, warp: float = 0.0, max_deg: float = 0.0,
                   max_scale: float = 0.0, weights: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random aligned crops (with random horizontal flips) of the pairs.

    Args:
        inputs: (P, Cin, H, W) network inputs (RGB + guides).
        targets: (P, Ct, H, W) (RGB, and the lattice's cell numbers when the fit has one).
        size: crop side (<= H, W).
        warp: share of the crops cut along a random similarity transform (``similarity_thetas``),
            resampled bilinearly with mirrored borders; the rest are axis-aligned pixel crops.
        weights: (P,) relative chance of each pair (None: all equal).
    Returns:
        (n, Cin, size, size), (n, Ct, size, size).
    """
    p, _, h, w = inputs.shape
    which = (torch.randint(p, (n,), generator=gen) if weights is None
             else torch.multinomial(weights, n, replacement=True, generator=gen))
    ys = torch.randint(h - size + 1, (n,), generator=gen)
    xs = torch.randint(w - size + 1, (n,), generator=gen)
    flips = torch.rand(n, generator=gen) < 0.5
    xin, xt = [], []
    for i in range(n):
        k, y, x = int(which[i]), int(ys[i]), int(xs[i])
        xin.append(inputs[k, :, y:y + size, x:x + size])
        xt.append(targets[k, :, y:y + size, x:x + size])
    xin, xt = torch.stack(xin), torch.stack(xt)
    if warp > 0:
        warped = torch.rand(n, generator=gen) < warp
        theta = similarity_thetas(n, size, h, w, max_deg, max_scale, gen)
        idx = warped.nonzero().flatten()
        if idx.numel():
            grid = F.affine_grid(theta[idx].to(inputs), [idx.numel(), 1, size, size], align_corners=False)
            both = torch.cat([inputs[which[idx]], targets[which[idx]]], 1)
            out = F.grid_sample(both, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
            xin[idx], xt[idx] = out[:, :inputs.shape[1]], out[:, inputs.shape[1]:]
    xin[flips], xt[flips] = xin[flips].flip(-1), xt[flips].flip(-1)
    return xin, xt


def _forward(net: StyleTranslator, x: torch.Tensor, cells: CellMap | None = None) -> torch.Tensor:
    """``net`` on (B, 3 + guides_in + screen channels [+ 2 positions], H, W) packed inputs (the
    positions when the net has a position grade; ``cells``: the crops' lattice cells; None:
    whole frames, the stored lattice's)."""
    cfg = net.cfg
    positions = None
    if cfg.grade:
        x, positions = x[:, :-2], x[:, -2:]
    g = 3 + cfg.guides_in
    return net(x[:, :3], x[:, 3:g] if cfg.guides_in else None, x[:, g:] if cfg.screen_input else None, cells,
               positions)


@torch.no_grad()
def pseudo_targets(net: StyleTranslator, real: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """The translator's output on real video frames (Q, Cin, H, W) -> (Q, 3, H, W), clamped to [-1, 1]."""
    was_training = net.training
    net.eval()
    out = torch.cat([_forward(net, real[i:i + batch]) for i in range(0, real.shape[0], batch)])
    net.train(was_training)
    return out.clamp(-1, 1)


def fit_translator(inputs: torch.Tensor, targets: torch.Tensor, settings: FitSettings | None = None,
                   seed: int = 0, progress: ProgressFn | None = None,
                   should_stop: StopFn | None = None,
                   unlabeled: tuple[torch.Tensor, torch.Tensor] | None = None,
                   texture_from: list[int] | None = None,
                   pairs: FramePairs | None = None, share: float | None = None) -> FitResult:
    """Train a ``StyleTranslator`` that maps ``inputs`` to ``targets``.

    Args:
        inputs: (P, 3 + guides_in, H, W) in [-1, 1] (RGB first, then the ``settings.net.guides_in``
            guides: the UV guides and the source flag's plane, ``backend.style.translator.with_source``).
        targets: (P, 3, H, W) in [-1, 1], pixel-aligned with ``inputs``.
        settings: see ``FitSettings``.
        seed: patch sampling and initialisation.
        progress / should_stop: ``backend.progress`` callbacks; a stop raises ``Cancelled``.
        unlabeled: (renders, real frames), each (Q, 3 + guides_in, H, W), of video frames that have
            no reference. After ``settings.pseudo_from`` of the steps, the translator's own output
            on each real frame becomes the target of that frame's render, and
            ``settings.pseudo_share`` of the patches come from these pairs: the look has been
            learned on sharp photographs by then, and this teaches it to give a render, at many
            poses, what it gives the photograph of the same frame.
        texture_from: indices of the pairs with a video frame as input (the real photographs):
            their residual after the first fit measures a frame-locked texture
            (``settings.texture_steps``; their fit is closest), and their references against
            those frames a frame-locked jitter (``settings.frame_jitter``); None: every pair.
        pairs: consecutive renders aligned by their flow (``backend.style.stability.frame_pairs``)
            for the stability term (``settings.temporal``); not used with a lattice, whose cells
            are fixed in the frame.
        share: the keyframes' ``position_share`` where the caller has measured it on these
            inputs and targets (the texture probe's fit gets its fit's); None: measured here
            when the settings have a grade.
    Returns:
        FitResult.
    Raises:
        ValueError: shapes that do not match.
    """
    s = settings or FitSettings()
    if inputs.ndim != 4 or targets.ndim != 4 or inputs.shape[0] != targets.shape[0]:
        raise ValueError(f"inputs {tuple(inputs.shape)} and targets {tuple(targets.shape)} must be "
                         "(P, C, H, W) with the same P")
    if inputs.shape[-2:] != targets.shape[-2:] or targets.shape[1] != 3:
        raise ValueError(f"targets must be (P, 3, H, W) like inputs, got {tuple(targets.shape)}")
    if inputs.shape[1] != 3 + s.net.guides_in:
        raise ValueError(f"inputs have {inputs.shape[1]} channels, the translator takes "
                         f"3 + {s.net.guides_in}")
    jitter, jitter_evidence = None, None
    if s.frame_jitter:  # read on the video frames' pairs; taken out of every reference (one frame grid)
        read_on = list(range(len(inputs))) if texture_from is None else list(texture_from)
        jitter, along_rows, along_cols = find_frame_jitter(inputs[read_on, :3].cpu(), targets[read_on].cpu())
        jitter_evidence = {"rows": along_rows.to_dict(), "cols": along_cols.to_dict()}
        if jitter is not None:
            targets = jitter.remove(targets.cpu()).to(targets)
            log.info("style translator: the references move %s by their own fixed amounts (frame-locked "
                     "jitter, halves agreeing %.2f / %.2f): taken out of them, put back on every frame",
                     " and ".join(n for n, e in (("rows", along_rows), ("columns", along_cols)) if e.found),
                     along_rows.agreement, along_cols.agreement)
    sources = [x[None, :3].cpu() for x in inputs]  # each target's source frame, for the look's structure
    screen = None
    if s.screen:
        screen = screen_of_keyframes(targets.cpu(), sources)
        if screen is not None:
            log.info("style translator: frame-locked screen found in the references (peak %.3f), "
                     "%s", float(screen.abs().amax()),
                     "gated per pixel" if s.net.screen_gates else "kept as a fixed layer")
    lattice: Lattice | FramePartition | None = (lattice_of_keyframes(targets.cpu(), sources) if s.lattice
                                                else None)
    partition_evidence = None
    if s.partition:  # a mosaic's own cells, unless a lattice found beside them holds the references
        partition, read = find_partition(targets.cpu(), sources)
        partition_evidence = [e.to_dict() for e in read]
        if partition is not None and (lattice is None
                                      or within_cell_share(targets.cpu(), lattice) > LATTICE_MAX_WITHIN):
            lattice = partition
    recolour = (cell_recolour_share(targets.cpu(), sources, lattice)
                if lattice is not None and s.cell_input else None)
    cell_grade, grade_evidence = None, None
    if s.cell_grade and lattice is not None:  # read on the video frames' pairs
        read_on = list(range(len(inputs))) if texture_from is None else list(texture_from)
        cells = CellMap.of(lattice.cell_index(*targets.shape[-2:]))
        cell_grade, evidence = find_cell_grade(targets[read_on].cpu(), inputs[read_on, :3].cpu(), cells)
        grade_evidence = evidence.to_dict()
        holds = cell_grade is not None
        log.info("style translator: one affine grade of each cell's mean colour %s (%.2f of the pixels "
                 "in cells it explains, %.2f distinct colours per cell, RMS %.4f, ink %.2f)%s",
                 "holds" if holds else "does not hold", evidence.graded, evidence.distinct, evidence.rms,
                 evidence.ink, ": the renderer grades those cells' render means" if holds else "")
        if holds and screen is not None:  # a tile's grout read as a periodic pattern: the cells hold it
            log.info("style translator: the frame-locked screen is the cells' own pattern; not kept")
            screen = None
    dither, dots = None, None
    if s.dither and screen is None and lattice is None:
        dither, dots = find_palette(targets)
        if dither is not None:
            log.info("style translator: the references mix %d flat colours dot by dot (%.3f of the pixels "
                     "on a colour boundary differ from all 4 neighbours): the renderer dots the "
                     "network's output with them", len(dither.colours), dots)
    texture, layer, learned, aux, still = None, None, None, None, None
    keep: float | torch.Tensor = 1.0  # where a layer may be: everywhere, or a drawn residual's still pixels
    t0 = time.monotonic()
    if s.texture_steps > 0 and screen is None and lattice is None:
        if s.net.grade and share is None:  # measured once, for the probe's fit and this one
            share = _keyframes_share(inputs, targets)
        texture = _texture_of_keyframes(inputs, targets, s, seed, texture_from, should_stop, progress, share)
        if texture.is_texture:
            still = _still_for(texture, inputs, unlabeled)
            keep = 1.0 if still is None else still
        if texture.is_texture and (still is None or float(still.amax()) > 0):
            # fitted on the references without it, added to every output
            layer = frame_texture((targets - texture.first_fit)[texture.pairs], inputs[texture.pairs, :3],
                                  still)
            if s.learned_texture:  # the layer goes on learning with the network
                learned = TextureLayer(layer).to(inputs.device)
                aux = aux_channels(flatness(inputs[:, :3]) * keep)
            else:
                targets = targets - layer.to(targets)
                share = None  # of other targets now: measured again below
    gated = screen is not None and s.net.screen_gates > 0
    net_cfg = replace(s.net, screen_input=SCREEN_CHANNELS if screen is not None else 0,
                      screen_gates=s.net.screen_gates if gated else 0,
                      screen_head=s.net.screen_head if gated else 0,
                      cell_input=int(recolour is not None and recolour >= CELL_RECOLOUR),
                      screen_colour=int(screen is not None))
    if screen is not None:
        if not gated:  # fitted on the references without it, added back unchanged
            targets = targets - screen.to(targets)
        ch = screen_inputs(screen, net_cfg).to(inputs)[None]
        inputs = torch.cat([inputs, ch.expand(inputs.shape[0], -1, -1, -1)], 1)
        if unlabeled is not None:
            unlabeled = tuple(torch.cat([u, ch.expand(u.shape[0], -1, -1, -1)], 1) for u in unlabeled)
        if pairs is not None:
            pairs = pairs.with_channels(ch)
    if net_cfg.grade:
        if share is None:
            share = _keyframes_share(inputs, targets)
        if share < POSITION_SHARE:
            net_cfg = replace(net_cfg, grade=0)
    if net_cfg.grade:  # each pixel's place in its frame, cut, flipped and warped with it
        pos = position_channels(*inputs.shape[-2:], inputs)
        inputs = torch.cat([inputs, pos.expand(inputs.shape[0], -1, -1, -1)], 1)
        if unlabeled is not None:
            unlabeled = tuple(torch.cat([u, pos.expand(u.shape[0], -1, -1, -1)], 1) for u in unlabeled)
        if pairs is not None:
            pairs = pairs.with_channels(pos)
    warp = s.warp
    if lattice is not None:
        reads = ""
        if recolour is not None and net_cfg.cell_input:
            reads = f"; they recolour the cells (share {recolour:.3f}): the network reads each cell's mean"
        elif recolour is not None:
            reads = f"; they grade the cells (share {recolour:.3f}): the network reads the pixels"
        if isinstance(lattice, FramePartition):
            log.info("style translator: the references are mosaics of %d frame-locked flat cells; "
                     "the output is averaged over each cell%s", lattice.cells, reads)
        else:
            log.info("style translator: frame-locked cells found in the references (%.2f x %.2f px); "
                     "the output is averaged over each cell%s", lattice.period[1], lattice.period[0], reads)
        warp = 0.0
    stable_step = (round(s.temporal_from * s.steps) if pairs is not None and len(pairs) and s.temporal > 0
                   and lattice is None else None)
    stable_size = min(s.temporal_patch, inputs.shape[-1], inputs.shape[-2])
    stable_size -= stable_size % 4  # as the keyframe patches: the U-Net halves it twice
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = StyleTranslator(net_cfg).to(inputs.device).train()
    net.set_lattice(lattice)
    start, history = 0, []  # steps already fitted, and their losses
    if s.texture_warm_start and texture is not None and (layer is None or learned is not None):
        net.load_state_dict(texture.net.state_dict())
        start, history = len(texture.history), list(texture.history)
        log.info("style translator: the fit goes on from the first fit's %d steps%s", start,
                 " with the texture layer" if learned is not None else "")
    shown = len(texture.history) if texture is not None and start == 0 else 0  # the first fit's, in progress
    frame_cells = None
    if lattice is not None:  # carried as a last target channel through crops and flips
        h, w = targets.shape[-2:]
        frame_cells = lattice.cell_index(h, w).reshape(1, 1, h, w).to(targets)
    average = (torch.optim.swa_utils.AveragedModel(
        net, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(s.ema)) if s.ema > 0 else None)
    grade = list(net.grade.parameters()) if net.grade is not None else []
    rest = [p for p in net.parameters() if all(p is not g for g in grade)]
    groups = [{"params": rest}] + ([{"params": grade, "lr": s.lr * GRADE_LR}] if grade else [])
    if learned is not None:
        groups.append({"params": list(learned.parameters())})
        learn_from = max(round(s.learned_texture_from * s.steps), start)
        learned_average = torch.optim.swa_utils.AveragedModel(
            learned, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(s.ema)) if s.ema > 0 else None
    opt = adam(groups, lr=s.lr, betas=(0.9, 0.99))
    critic, critic_opt, critic_from = None, None, None
    if s.adversarial > 0:
        critic = PatchCritic(s.critic_width).to(inputs.device)
        critic_opt = adam(critic.parameters(), lr=CRITIC_LR, betas=(0.5, 0.99))
        critic_from = max(round(s.adversarial_from * s.steps), start)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(s.steps - start, 1), eta_min=s.lr / 20)
    size = min(s.patch, inputs.shape[-1], inputs.shape[-2])
    size -= size % 4
    clock = EtaClock(s.steps, start_step=start)
    step = start
    def with_cells(t: torch.Tensor) -> torch.Tensor:
        return t if frame_cells is None else torch.cat([t, frame_cells.expand(t.shape[0], -1, -1, -1)], 1)

    def with_aux(t: torch.Tensor, labeled: bool) -> torch.Tensor:
        if aux is None:
            return t
        a = aux if labeled else aux_channels(torch.zeros_like(t[:, :1]))
        return torch.cat([t, a.to(t)], 1)

    pool_in, pool_t, weights = inputs, with_cells(with_aux(targets, True)), None
    pseudo_step = (max(round(s.pseudo_from * s.steps), start) if unlabeled is not None and s.pseudo_share > 0
                   else None)
    if stable_step is not None:
        stable_step = max(stable_step, start)
    low = s.bf16 and inputs.device.type == "cpu" and bf16_native()
    amplified, stable_pool = None, None
    for step in range(start, s.steps):
        check_cancel(should_stop)
        if step == stable_step:
            amplified = amplification(pseudo_targets(net, pairs.current), pseudo_targets(net, pairs.earlier),
                                      pairs)
            log.info("style translator: it changes %.2fx as much as the renders between %d pairs of "
                     "neighbouring frames; %s", amplified, len(pairs),
                     f"the stability term joins at step {step}" if amplified > s.temporal_above
                     else f"no more than {s.temporal_above}x: no stability term")
            if amplified <= s.temporal_above:
                stable_step = None
        if step == pseudo_step:
            renders, real = unlabeled
            pool_in = torch.cat([inputs, renders])
            pool_t = with_cells(torch.cat([with_aux(targets, True),
                                           with_aux(pseudo_targets(net, real), False)]))
            p, q = inputs.shape[0], renders.shape[0]
            weights = torch.cat([torch.full((p,), (1 - s.pseudo_share) / p),
                                 torch.full((q,), s.pseudo_share / q)])
            log.info("style translator: %d unlabeled frame(s) join at step %d (%.0f %% of patches)",
                     q, step, 100 * s.pseudo_share)
        xin, xt = sample_patches(pool_in, pool_t, s.batch, size, gen, warp, s.warp_deg, s.warp_scale,
                                 weights)
        cells, on_patch = None, None
        if frame_cells is not None:
            xt, cells = xt[:, :3], patch_cells(xt[:, 3])
        if learned is not None:
            xt, on_patch = xt[:, :3], learned.on_patches(xt[:, 3:3 + AUX_CHANNELS])
            if step < learn_from:  # held at the estimate while the network learns the content
                on_patch = on_patch.detach()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
            out = _forward(net, xin, cells)
        out = out.float() if on_patch is None else out.float() + on_patch
        loss, parts = patch_loss(out, xt, s.w_grad)
        if critic is not None and step >= critic_from:  # the patches' targets are the real ones
            parts["critic"] = critic_step(critic, critic_opt, xt, out, low)
            reward = adversarial_loss(critic, out, low)
            loss = loss + s.adversarial * reward
            parts["adv"] = reward.item()
        if stable_step is not None and step >= stable_step:
            if stable_pool is None:  # (N, 2C, H, W) once, not every step (4.8 ms at 32 RGB pairs of 128 px)
                stable_pool = torch.cat([pairs.current, pairs.earlier_warped], 1)
            both, trusted = sample_patches(stable_pool, pairs.trusted, s.temporal_batch, stable_size, gen)
            now, before = both.chunk(2, dim=1)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
                styled = _forward(net, torch.cat([now, before]))
            stable = stability_loss(*styled.float().chunk(2), now, before, trusted)
            loss = loss + s.temporal * stable
            parts["stable"] = stable.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if average is not None:
            average.update_parameters(net)
            if learned is not None and learned_average is not None:
                learned_average.update_parameters(learned)
        parts["total"] = loss.item()
        history.append(parts)
        if progress is not None:
            progress(ProgressUpdate("edit", shown + step + 1, shown + s.steps, parts, clock.eta(step + 1)))
        if step == start or (step + 1) % max(s.steps // 10, 1) == 0:
            log.info("translator step %d/%d  %s", step + 1, s.steps,
                     "  ".join(f"{k} {v:.4f}" for k, v in parts.items()))
    if average is not None:
        net.load_state_dict(average.module.state_dict())
    net.eval().requires_grad_(False)
    if learned is not None:
        if learned_average is not None:
            learned.load_state_dict(learned_average.module.state_dict())
        with torch.no_grad():
            weight = flatness(inputs[texture.pairs, :3]).amax(0) * keep
            layer = learned.field() * weight
            if s.busy_fill:
                out = torch.cat([_forward(net, inputs[i:i + 1]) for i in texture.pairs])
                layer = busy_fill(layer, targets[texture.pairs] - out - layer, weight)
                layer = layer * keep  # a drawn residual: the fill stays out where the video moves
            layer = layer.cpu()
    net.set_screen(screen if screen is not None else layer)
    net.dither = dither
    net.frame_jitter = jitter
    net.cell_grade = cell_grade
    return FitResult(translator=net, history=history, seconds=time.monotonic() - t0, steps_done=len(history),
                     position_share=share, texture=None if texture is None else texture.evidence,
                     amplification=amplified, cell_recolour=recolour, dot_share=dots, jitter=jitter_evidence,
                     partition=partition_evidence, cell_grade=grade_evidence)


def _keyframes_share(inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """The keyframes' mean ``position_share`` (inputs (P, >=3, H, W), targets (P, 3, H, W)), logged
    with the grade decision it makes."""
    share = sum(position_share(x[:3], t) for x, t in zip(inputs, targets, strict=True)) / len(inputs)
    log.info("style translator: %.2f of the references' colour depends on the frame position "
             "(position_share); %s", share, "a position grade is fitted" if share >= POSITION_SHARE
             else f"below {POSITION_SHARE}: no position grade")
    return share


def _still_for(texture: _TextureProbe, inputs: torch.Tensor,
               unlabeled: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor | None:
    """(1, H, W) where a drawn residual's layer may be kept (``frame_texture.still_pixels`` of the
    keyframes' and the unlabeled video frames); None for a texture (kept wherever the keyframe is
    flat). Too few video frames to tell still from moving: zeros (no layer)."""
    if not texture.evidence.drawn:
        return None
    frames = inputs[texture.pairs, :3] if unlabeled is None else torch.cat(
        [inputs[texture.pairs, :3], unlabeled[1][:, :3]])
    if frames.shape[0] < MIN_STILL_FRAMES:
        log.info("style translator: the keyframes' residual is drawn (RMS %.3f in the flattest pixels) "
                 "and %d video frames cannot tell where the video holds still: no layer",
                 texture.evidence.flat_rms, frames.shape[0])
        return torch.zeros_like(inputs[0, :1])
    still = still_pixels(frames)
    log.info("style translator: the keyframes' residual is drawn (RMS %.3f in the flattest pixels): the "
             "layer is kept where the video holds still (%.0f %% of the frame)", texture.evidence.flat_rms,
             100 * float(still.mean()))
    return still


@dataclass
class _TextureProbe:
    """The first fit's output on every keyframe pair, the pairs measured, their evidence, and the
    first fit's translator and loss history, whose weights and steps the fit may go on from."""

    first_fit: torch.Tensor
    pairs: list[int]
    evidence: TextureEvidence
    net: StyleTranslator
    history: list[dict[str, float]]

    @property
    def is_texture(self) -> bool:
        return self.evidence.is_texture


def _texture_of_keyframes(inputs: torch.Tensor, targets: torch.Tensor, s: FitSettings, seed: int,
                          pairs: list[int] | None, should_stop: StopFn | None,
                          progress: ProgressFn | None = None, share: float | None = None) -> _TextureProbe:
    """Fit ``s.texture_steps`` steps without unlabeled frames or weight average, and measure how
    texture-like the residual on the ``pairs`` is (``backend.style.frame_texture``). Only called
    where the keyframes have no screen and no cells, so the first fit does not look again.
    ``progress`` gets its steps as the first of the whole fit's. With ``s.texture_warm_start`` the
    first fit is part of the ``s.steps`` and takes at most as many."""
    steps = min(s.texture_steps, s.steps) if s.texture_warm_start else s.texture_steps  # within the whole
    first = replace(s, steps=steps, texture_steps=0, ema=0.0, pseudo_frames=0, screen=False, lattice=False,
                    partition=False, adversarial=0.0)
    total = s.steps if s.texture_warm_start else s.steps + steps
    clock = EtaClock(total)
    whole = None if progress is None else (
        lambda u: progress(replace(u, total=total, eta=clock.eta(u.step))))
    fitted = fit_translator(inputs, targets, first, seed=seed, should_stop=should_stop, progress=whole,
                            share=share)
    net = fitted.translator
    with torch.no_grad():
        out = torch.cat([net(x[None, :3], x[None, 3:] if s.net.guides_in else None) for x in inputs])
    pairs = list(range(len(inputs))) if pairs is None else list(pairs)
    evidence = texture_evidence((targets - out)[pairs], inputs[pairs, :3])
    log.info("style translator: frame-locked texture %s (residual of a %d-step fit: RMS %.4f in the "
             "flattest pixels, %.2f of the busiest, correlation %.3f with the source's fine detail)",
             "found" if evidence.is_texture else "not found", steps, evidence.flat_rms,
             evidence.flat_share, evidence.source_corr)
    return _TextureProbe(out, pairs, evidence, net, fitted.history)
