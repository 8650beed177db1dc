"""The Emo-Avatar renderer: deformed neural texture -> skip encoder -> StyleGAN2 synthesis at the w pivot.

Data flow for a batch of B frames at ``cfg.size`` px::

    expr_window (B, 5, K) --MotionEncoder--> motion (B, motion_dim)
    texture.collapse(deform_size) + motion --TextureDeformer--> flow (B, 2, S, S) [UV units]
    uv (B, 3, H, W) -> grid; grid' = grid + 2 * flow(grid)       (deformed lookup, see deform.py)
    features = texture.sample(grid') * coverage                  (B, tex_channels, H, W)
    skips([features, u * cov, v * cov, cov]) -> {res: (B, C_res, res, res)}
    image = generator.synthesis(w_pivot.expand(B), skips, noise_mode)     (B, 3, H, W)

The generator draws the whole portrait (hair, torso, background); the texture features exist only
inside the UV mask and steer it through the skip connections.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from backend.model.config import AvatarConfig
from backend.model.deform import MotionEncoder, TextureDeformer
from backend.model.head_coords import head_coordinates, head_texture_grid, head_texture_mask
from backend.model.neural_texture import NeuralTexture, sample, uv_to_grid
from backend.model.skips import SkipEncoder
from backend.model.stylegan2 import Generator

PIVOT_SEED = 1234


@dataclass
class AvatarOutput:
    """Result of ``EmoAvatar.forward``.

    Attributes:
        image: (B, 3, H, W) rendered portrait, nominally [-1, 1] (not clamped; clamp for display).
        tex_rgb: (B, 3, H, W) channels 0..2 of the sampled deformed texture (zero outside the mask);
            trained with L1 against the frame inside the mask.
        mask: (B, 1, H, W) UV coverage in [0, 1].
        flow: (B, 2, S, S) the UV-space flow field (du, dv in UV units, S = cfg.deform_size);
            zeros when ``cfg.use_flow`` is False.
        features: (B, tex_channels, H, W) all sampled texture channels (masked).
    """

    image: torch.Tensor
    tex_rgb: torch.Tensor
    mask: torch.Tensor
    flow: torch.Tensor
    features: torch.Tensor


class EmoAvatar(nn.Module):
    """Emo-Avatar renderer built from an ``AvatarConfig``.

    Submodules: ``texture`` (NeuralTexture), ``motion`` (MotionEncoder), ``deformer``
    (TextureDeformer), ``skips`` (SkipEncoder - the only stage-2-trainable part), ``generator``
    (StyleGAN2 Generator). Parameter ``w_pivot`` (1, n_latent, style_dim) is the PTI pivot
    (initialised to the generator's mean w, seeded).
    """

    def __init__(self, cfg: AvatarConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.texture = NeuralTexture(cfg.tex_channels, cfg.tex_size, cfg.pyramid_levels)
        self.motion = MotionEncoder(cfg.n_expr, cfg.window, cfg.motion_dim, cfg.motion_hidden)
        self.deformer = TextureDeformer(cfg.tex_channels, cfg.motion_dim, cfg.deform_channels,
                                        cfg.deform_channel_max, cfg.max_flow)
        self.generator = Generator(**cfg.generator_kwargs())
        if cfg.head_texture:
            self.head_texture = NeuralTexture(cfg.head_texture, cfg.tex_size, cfg.pyramid_levels)
        skip_in = (cfg.tex_channels + 3 + (3 if cfg.plate else 0) + (2 if cfg.head_coords else 0)
                   + cfg.head_texture)  # skip_input
        self.skips = SkipEncoder(skip_in, cfg.size, self.generator.channels, cfg.skip_min_res,
                                 cfg.skip_channel_max, motion_dim=cfg.motion_dim if cfg.skip_film else 0)
        self.w_pivot = nn.Parameter(torch.zeros(1, self.generator.n_latent, cfg.style_dim))
        self.reset_pivot()
        if cfg.plate:  # set from the training frames (backend.model.plate); saved with the weights
            self.register_buffer("plate", torch.zeros(1, 3, cfg.size, cfg.size))

    @torch.no_grad()
    def reset_pivot(self, n: int = 1024, seed: int = PIVOT_SEED) -> None:
        """Set ``w_pivot`` to the generator's mean w (over ``n`` seeded z), broadcast to all layers."""
        g = torch.Generator().manual_seed(seed)
        w = self.generator.mean_latent(n, generator=g)
        self.w_pivot.copy_(self.generator.broadcast(w))

    # -- stage 2 --------------------------------------------------------------------------------
    def stage2_parameters(self) -> list[nn.Parameter]:
        """The parameters trained in stage 2: exactly those of ``skips``."""
        return list(self.skips.parameters())

    def stage2_module_names(self) -> list[str]:
        """Qualified names of the modules that own stage-2 parameters (all under ``skips.``)."""
        return [f"skips.{name}" for name, m in self.skips.named_modules()
                if name and any(True for _ in m.parameters(recurse=False))]

    def set_stage2_trainable(self) -> list[nn.Parameter]:
        """``requires_grad`` True for the skip modules only, False elsewhere. Returns the trainable params."""
        for p in self.parameters():
            p.requires_grad_(False)
        params = self.stage2_parameters()
        for p in params:
            p.requires_grad_(True)
        return params

    # -- rendering ------------------------------------------------------------------------------
    def motion_code(self, expr_window: torch.Tensor) -> torch.Tensor | None:
        """(B, motion_dim) motion code of (B, window, n_expr) windows, or None when neither the flow
        nor the skips use it."""
        return self.motion(expr_window) if self.cfg.use_flow or self.cfg.skip_film else None

    def sample_features(
        self, uv: torch.Tensor, expr_window: torch.Tensor, motion: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The deformed texture lookup. Returns features (B, tex_channels, H, W) (masked),
        mask (B, 1, H, W), flow (B, 2, S, S). ``motion``: the windows' motion code when the caller
        already has it."""
        cfg = self.cfg
        if uv.shape[-2:] != (cfg.size, cfg.size):
            raise ValueError(f"uv map must be {cfg.size}x{cfg.size} for this avatar, got "
                             f"{tuple(uv.shape[-2:])} (resample it first)")
        if expr_window.shape[0] != uv.shape[0]:
            raise ValueError(f"batch mismatch: uv {uv.shape[0]} vs expressions {expr_window.shape[0]}")
        grid, mask = uv_to_grid(uv)
        B = uv.shape[0]
        if cfg.use_flow:
            motion = self.motion(expr_window) if motion is None else motion
            tex = self.texture.collapse(cfg.deform_size).contiguous(memory_format=torch.channels_last)
            flow = self.deformer(tex, motion)
            flow_px = sample(flow, grid)  # (B, 2, H, W)
            grid = grid + 2.0 * flow_px.permute(0, 2, 3, 1)
        else:
            flow = uv.new_zeros(B, 2, cfg.deform_size, cfg.deform_size)
        feats = self.texture.sample(grid) * mask
        return feats, mask, flow

    def skip_input(self, feats: torch.Tensor, uv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The skip encoder's input (B, tex_channels + 3 [+ 3 plate] [+ 2 head] [+ head_texture],
        H, W): texture features, the masked (u, v), the mask, with ``cfg.plate`` the background
        plate, with ``cfg.head_coords`` the UV map's affine extension over the frame
        (``head_coordinates``) and with ``cfg.head_texture`` the head texture sampled there."""
        parts = [feats, uv[:, :2] * mask, mask]
        if self.cfg.plate:
            parts.append(self.plate.to(feats.dtype).expand(feats.shape[0], -1, -1, -1))
        if self.cfg.head_coords or self.cfg.head_texture:
            head = head_coordinates(uv).to(feats.dtype)
            if self.cfg.head_coords:
                parts.append(head)
            if self.cfg.head_texture:
                grid = head_texture_grid(head)
                parts.append(self.head_texture.sample(grid) * head_texture_mask(grid))
        return torch.cat(parts, dim=1)

    def forward(self, uv: torch.Tensor, expr_window: torch.Tensor, noise_mode: str = "const") -> AvatarOutput:
        """Render frames.

        Args:
            uv: (B, 3, H, W) float [u, v, coverage], H = W = cfg.size (see neural_texture for the convention).
            expr_window: (B, cfg.window, cfg.n_expr) expression coefficients of frames t-2..t+2.
            noise_mode: generator noise: "const" (default, deterministic, flicker-free), "random", "none".
        Returns:
            AvatarOutput.
        """
        motion = self.motion_code(expr_window)
        feats, mask, flow = self.sample_features(uv, expr_window, motion)
        skip_in = self.skip_input(feats, uv, mask)
        skip_feats = self.skips(skip_in.contiguous(memory_format=torch.channels_last),
                                motion if self.cfg.skip_film else None)
        w = self.w_pivot.expand(uv.shape[0], -1, -1)
        image = self.generator.synthesis(w, skip_feats, noise_mode=noise_mode)
        return AvatarOutput(image=image, tex_rgb=feats[:, :3], mask=mask, flow=flow, features=feats)
