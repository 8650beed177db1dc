"""Networks: StyleGAN2 (pure torch), deformed neural texture, renderer, discriminators.

Public API (see docs/model.md)::

    from backend.model import AvatarConfig, EmoAvatar, AvatarOutput, Generator, Discriminator,
        PatchDiscriminator, load_stylegan2_checkpoint, CheckpointMismatchError
"""

from backend.model.avatar import AvatarOutput, EmoAvatar
from backend.model.checkpoint import CheckpointMismatchError, load_stylegan2_checkpoint
from backend.model.config import AvatarConfig
from backend.model.patch_discriminator import PatchDiscriminator
from backend.model.stylegan2 import Discriminator, Generator, channel_table

__all__ = [
    "AvatarConfig", "AvatarOutput", "CheckpointMismatchError", "Discriminator", "EmoAvatar", "Generator",
    "PatchDiscriminator", "channel_table", "load_stylegan2_checkpoint",
]
