"""Training presets: the single source of truth for sizes, step counts and learning rates.

``tiny`` is for tests (seconds on 2 CPU cores), ``cpu`` is the demo (128 px, minutes on 2 cores),
``studio`` is 256 px for the sequencer (under half an hour on 2 cores), ``paper`` follows the
paper's scale (512 px, CUDA, mixed precision). Everything that differs
between them lives here; code reads a :class:`Preset` and never hard-codes a size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Preset:
    """One training preset.

    Attributes:
        name: preset name recorded in checkpoints.
        size: output resolution in pixels (square), also the resolution frames are trained at.
        model: ``AvatarConfig`` fields besides size and n_expr (field name -> value).
        steps: stage-1 optimisation steps.
        batch: frames per step.
        lr_g: Adam learning rate of the generator, skip encoder, deformer and motion MLP.
        lr_tex: Adam learning rate of the neural texture (higher: it is a free table).
        lr_d: Adam learning rate of the patch discriminator.
        adam_beta1: Adam's first-moment decay for the avatar (0.5, the GAN habit, by default).
        d_adam_beta1: Adam's first-moment decay for the patch discriminator (0.0, StyleGAN2's, by
            default). At 0 each step follows one batch's gradient alone; see docs/training.md,
            "The patch discriminator at chance".
        lr_final: the avatar's learning rates at the last step, as a fraction of ``lr_g`` /
            ``lr_tex``, reached by a cosine decay over all steps (1.0: constant rates).
        expr_noise: Gaussian noise added to the expression windows while training, as a fraction
            of each curve's standard deviation over the training frames (0: none); one offset per
            frame for its whole window.
        balance: draw training frames with weights that favour rare poses and expressions, the
            exponent of ``backend.train.balanced_sampling.balance_weights`` (0: uniform).
        pti_w_steps: PTI steps optimising the w pivots with G frozen.
        pti_g_steps: PTI steps tuning G at the fixed pivots.
        pti_lr_w: learning rate of the pivot optimisation.
        pti_lr_g: learning rate of the G tuning.
        w_tex: weight of the masked texture L1 (channels 1..3 vs the frame).
        w_l1: weight of the output L1.
        w_perc: weight of the perceptual (LPIPS or fallback) loss.
        w_face: weight of an extra L1 between output and frame inside the face mesh (its UV
            coverage), on top of the whole-frame L1.
        w_lap: weight of a Laplacian-pyramid L1 between output and frame
            (``backend.train.losses.laplacian_l1``, 5 bands; 0: none).
        w_ffl: weight of the focal frequency loss between output and frame
            (``backend.train.losses.focal_frequency_loss``; 0: none).
        w_fm: weight of discriminator feature matching (``backend.train.losses.feature_matching_l1``:
            the output's and its frame's patch-discriminator features; 0: none), while the
            discriminator is on (``adv_start``).
        lr_corr: Adam learning rate of the per-frame tracking corrections
            (``backend.train.frame_corrections``; 0: none).
        w_corr: weight of their L2 penalty.
        w_adv: weight of the non-saturating adversarial loss.
        adv_start: step from which the discriminator and adversarial loss are on.
        r1_gamma: R1 penalty weight on real patches.
        r1_every: lazy R1 interval in steps.
        ema_beta: EMA decay of the rendering copy per step.
        preview_every: steps between preview grids (0 disables).
        checkpoint_every: steps between checkpoints (the last step always writes one).
        mixed_precision: use autocast + GradScaler on CUDA (ignored on CPU).
        n_preview: frames per preview row group (train and held-out each).
        freeze_pretrained_generator: with a pretrained StyleGAN2 (``--stylegan``), keep the generator
            and the w pivot at their PTI values during stage 1 and train only the texture, motion
            encoder, deformer and skip encoder (the paper's frozen StyleGAN; its NE-Avatar ablation
            trains them). A randomly initialised generator is always trained.
    """

    name: str
    size: int
    model: dict[str, Any] = field(default_factory=dict)
    steps: int = 1000
    batch: int = 4
    lr_g: float = 2e-3
    lr_tex: float = 1e-2
    lr_d: float = 2e-3
    lr_final: float = 1.0
    adam_beta1: float = 0.5
    d_adam_beta1: float = 0.0
    balance: float = 0.0
    expr_noise: float = 0.0
    pti_w_steps: int = 50
    pti_g_steps: int = 50
    pti_lr_w: float = 2e-2
    pti_lr_g: float = 3e-3
    w_tex: float = 1.0
    w_l1: float = 1.0
    w_perc: float = 1.0
    w_face: float = 0.0
    w_lap: float = 0.0
    w_ffl: float = 0.0
    w_fm: float = 0.0
    lr_corr: float = 0.0
    w_corr: float = 1.0
    w_adv: float = 0.02
    adv_start: int = 0
    r1_gamma: float = 1.0
    r1_every: int = 16
    ema_beta: float = 0.99
    preview_every: int = 100
    checkpoint_every: int = 500
    mixed_precision: bool = False
    n_preview: int = 3
    freeze_pretrained_generator: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def avatar_config(self, n_expr: int) -> Any:
        """The ``backend.model.config.AvatarConfig`` of this preset for ``n_expr`` expression curves."""
        from backend.model.config import AvatarConfig

        return AvatarConfig(size=self.size, n_expr=n_expr, **self.model)


CPU_MODEL: dict[str, Any] = dict(
    tex_size=128, pyramid_levels=4, style_dim=256, n_mlp=4, channel_multiplier=0.125, channel_max=128,
    motion_dim=64, motion_hidden=128, deform_channels=16, deform_channel_max=64, deform_size=64,
    skip_min_res=8, skip_channel_max=64, patch_channels=32, patch_layers=3)
"""The ``cpu`` preset's widths (``AvatarConfig`` fields besides size and n_expr); ``cpu`` and
``studio`` add the background plate, ``studio`` a 256-texel texture. ``channel_max`` 128 gives
the generator's 4-32 px layers 128 channels (64 px: 32, 128 px: 16, 256 px: 8): held-out face
+0.45-0.69 dB and whole frame +0.54-1.00 dB over 64 on the sample and a real clip, two seeds
each, for about 1.2x the step's time (docs/training.md, "The generator's low-resolution width")."""

PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny", size=32,
        model=dict(tex_size=64, pyramid_levels=3, style_dim=32, n_mlp=2, channel_multiplier=0.25,
                   channel_max=32, motion_dim=16, motion_hidden=32, deform_channels=8, deform_channel_max=16,
                   deform_size=32, skip_min_res=4, skip_channel_max=16, patch_channels=16, patch_layers=2),
        steps=60, batch=4, lr_g=3e-3, lr_tex=2e-2, lr_d=2e-3,
        pti_w_steps=6, pti_g_steps=6, adv_start=20, ema_beta=0.9,
        preview_every=30, checkpoint_every=30, n_preview=2,
    ),
    "cpu": Preset(
        name="cpu", size=128,
        # the background plate, twice the learning rates of the other presets and Adam beta1 0.9:
        # held-out face +0.8-0.9 dB, whole frame +0.7-1.7 dB and a lower mouth error on the sample
        # and a real clip, four paired runs (docs/training.md, "Candidate quality gains")
        model={**CPU_MODEL, "plate": True},
        # 1600 steps (idle 2 cores: ~0.2-0.3 s/step) and a 30+30-step PTI warm start (half the PTI
        # time of 60+60) keep the whole run inside 10 minutes
        steps=1600, batch=4, lr_g=4e-3, lr_tex=2e-2, lr_d=2e-3, adam_beta1=0.9,
        pti_w_steps=30, pti_g_steps=30, adv_start=500, ema_beta=0.99,
        preview_every=250, checkpoint_every=500,
    ),
    "studio": Preset(
        name="studio", size=256,
        # the cpu preset's model and optimiser settings at 256 px with a 256-texel texture
        model={**CPU_MODEL, "plate": True, "tex_size": 256},
        # 3000 steps: training, PTI and its closing evaluation took 28.6 min on 2 idle cores with the
        # generator's 128 low-resolution channels (7 Dec; 26.6 min with 64 on 4 Dec's machine; 4000
        # steps did not fit in 30 minutes)
        steps=3000, batch=4, lr_g=4e-3, lr_tex=2e-2, lr_d=2e-3, adam_beta1=0.9,
        pti_w_steps=30, pti_g_steps=30, adv_start=1250, ema_beta=0.99,
        preview_every=500, checkpoint_every=1000,
    ),
    "paper": Preset(
        name="paper", size=512,
        model=dict(tex_size=512, pyramid_levels=4, style_dim=512, n_mlp=8, channel_multiplier=2,
                   channel_max=512, motion_dim=128, motion_hidden=256, deform_channels=32,
                   deform_channel_max=256,
                   deform_size=128, skip_min_res=8, skip_channel_max=256, patch_channels=64, patch_layers=3),
        steps=60000, batch=8, lr_g=2e-3, lr_tex=1e-2, lr_d=2e-3,
        pti_w_steps=500, pti_g_steps=350, adv_start=2000, ema_beta=0.999,
        preview_every=1000, checkpoint_every=2500, mixed_precision=True, n_preview=4,
    ),
}


def get_preset(name: str, **overrides: Any) -> Preset:
    """Return the preset called ``name`` with optional field overrides (e.g. ``steps=30``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    preset = PRESETS[name]
    clean = {k: v for k, v in overrides.items() if v is not None}
    return replace(preset, **clean) if clean else preset
