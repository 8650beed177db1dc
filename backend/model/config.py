"""The architecture of an Emo-Avatar as one JSON-safe dataclass.

A checkpoint stores ``AvatarConfig.to_dict()``; loading compares it (``diff`` / ``fingerprint``)
with the config the caller expects, so a checkpoint of another architecture is rejected with the
list of differing fields instead of a half-loaded model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AvatarConfig:
    """Architecture hyper-parameters (all JSON scalars).

    Attributes:
        size: output image size in pixels (square, power of two).
        n_expr: K, expression coefficients per frame.
        window: frames in the motion window (t-2..t+2 -> 5).
        tex_channels: neural-texture channels (first 3 are compared with RGB).
        tex_size: finest texture resolution (texels per side).
        pyramid_levels: Laplacian-pyramid levels (level l has tex_size / 2**l texels per side).
        style_dim: width of z / w.
        n_mlp: mapping-network layers.
        channel_multiplier, channel_max: generator / discriminator widths (see stylegan2.channel_table).
        motion_dim: width of the motion code; motion_hidden: hidden width of the motion MLP.
        deform_channels: channels of the first deformer layer (doubles per level, capped by
            deform_channel_max); deform_size: side of the texture the deformer runs on.
        max_flow: bound of the flow in UV units (tanh-limited).
        skip_min_res: lowest generator resolution that receives skip features (4..size).
        skip_channel_max: width cap of the skip encoder (its outputs always match the generator).
        patch_channels, patch_layers: the UV-conditioned patch discriminator.
        use_flow: False builds the "no flow" ablation (texture sampled at the raw UVs).
        skip_film: the motion code also modulates the skip encoder's layers (FiLM), an expression
            path that does not go through the mesh.
        plate: the skip encoder also sees a background plate (``backend.model.plate``), the
            median of the training frames around the face.
        head_coords: the skip encoder also sees the UV map's affine extension over the whole
            frame (``backend.model.head_coords``), so hair and outline know where the head is.
        head_texture: channels of a second neural texture, sampled at those head coordinates
            around the face (``HEAD_TEXTURE_U`` x ``HEAD_TEXTURE_V``: the sides and above, hardly
            below the chin), so hair, ears and the outline get learned features that move with
            the head, as the face gets the face texture; zero elsewhere (0: none).
    """

    size: int = 128
    n_expr: int = 52
    window: int = 5
    tex_channels: int = 12
    tex_size: int = 128
    pyramid_levels: int = 4
    style_dim: int = 256
    n_mlp: int = 4
    channel_multiplier: float = 0.25
    channel_max: int = 128
    motion_dim: int = 64
    motion_hidden: int = 128
    deform_channels: int = 16
    deform_channel_max: int = 64
    deform_size: int = 64
    max_flow: float = 0.1
    skip_min_res: int = 8
    skip_channel_max: int = 64
    patch_channels: int = 32
    patch_layers: int = 3
    use_flow: bool = True
    skip_film: bool = False
    plate: bool = False
    head_coords: bool = False
    head_texture: int = 0

    def __post_init__(self) -> None:
        problems = []
        for name in ("size", "tex_size", "deform_size", "skip_min_res"):
            v = getattr(self, name)
            if v < 4 or v & (v - 1):
                problems.append(f"{name}={v} must be a power of two >= 4")
        if self.skip_min_res > self.size:
            problems.append(f"skip_min_res={self.skip_min_res} > size={self.size}")
        if self.deform_size < 32:
            problems.append(f"deform_size={self.deform_size} must be >= 32 (5-layer encoder)")
        if self.tex_channels < 3:
            problems.append("tex_channels must be >= 3 (the first 3 are RGB)")
        if self.pyramid_levels < 1 or self.tex_size >> (self.pyramid_levels - 1) < 1:
            problems.append(f"pyramid_levels={self.pyramid_levels} too many for tex_size={self.tex_size}")
        if self.head_texture < 0:
            problems.append(f"head_texture={self.head_texture} must be >= 0 (0: none)")
        if self.n_expr < 1 or self.window < 1:
            problems.append("n_expr and window must be >= 1")
        if problems:
            raise ValueError("invalid AvatarConfig: " + "; ".join(problems))

    # -- presets (constructor defaults; backend/train/presets.py decides what is used) ----------
    @classmethod
    def tiny(cls, n_expr: int, size: int = 32, **kw: Any) -> AvatarConfig:
        """Tests: 32-64 px, a few channels; forward+backward of batch 2 well under 0.5 s on CPU."""
        base = dict(size=size, n_expr=n_expr, tex_size=64, pyramid_levels=3, style_dim=32, n_mlp=2,
                    channel_multiplier=0.25, channel_max=32, motion_dim=16, motion_hidden=32,
                    deform_channels=8, deform_channel_max=16, deform_size=32, skip_min_res=4,
                    skip_channel_max=16, patch_channels=16, patch_layers=2)
        base.update(kw)
        return cls(**base)

    @classmethod
    def cpu(cls, n_expr: int, **kw: Any) -> AvatarConfig:
        """The CPU demo: 128 px, modest widths (>= 10 frames/s on 2 cores)."""
        base = dict(size=128, n_expr=n_expr)
        base.update(kw)
        return cls(**base)

    @classmethod
    def paper(cls, n_expr: int, **kw: Any) -> AvatarConfig:
        """The paper: 512 px, channel multiplier 2, 512 channels (loads FFHQ-512 StyleGAN2 checkpoints)."""
        base = dict(size=512, n_expr=n_expr, tex_size=512, pyramid_levels=4, style_dim=512, n_mlp=8,
                    channel_multiplier=2, channel_max=512, motion_dim=128, motion_hidden=256,
                    deform_channels=32, deform_channel_max=256, deform_size=128, skip_min_res=8,
                    skip_channel_max=256, patch_channels=64, patch_layers=3)
        base.update(kw)
        return cls(**base)

    # -- (de)serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of all fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AvatarConfig:
        """Inverse of ``to_dict``. Unknown keys raise ``ValueError``; missing keys take defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown AvatarConfig fields {unknown} (checkpoint from a newer version?)")
        return cls(**d)

    def fingerprint(self) -> str:
        """Short stable hash of the architecture (16 hex chars)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def diff(self, other: AvatarConfig) -> dict[str, tuple[Any, Any]]:
        """Fields that differ: {name: (self value, other value)}. Empty when the architectures match."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if a[k] != b[k]}

    def generator_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``stylegan2.Generator`` / ``Discriminator`` for this config."""
        return dict(size=self.size, style_dim=self.style_dim, n_mlp=self.n_mlp,
                    channel_multiplier=self.channel_multiplier, channel_max=self.channel_max)
