"""A patch critic for the style translator's fit: it rewards lines and texture the look draws.

The translator is fitted with L1 losses, whose best answer where a thin line may or may not be
is no line: on frames the edit never saw, a cartoon's outlines and an oil look's strokes come out
as a smooth guess (``face_detail_ratio`` 0.48-0.80 of the truth's on the measured subjects). A
small convolutional critic learns, from the fit's random patches, to tell the target patches
(the references', and the unlabeled frames' pseudo-targets once they join) from the translator's
outputs; the translator is then also rewarded for outputs the critic takes for targets (pix2pix's
patch GAN without the input as a condition, Isola et al. 2017, with the non-saturating logistic
loss). It only judges local appearance (about 26 px of receptive field): line width,
flat fills, stroke texture; where things go stays with the L1 terms.

Shapes: patches (B, 3, P, P) in [-1, 1]; logits (B, 1, P/4, P/4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchCritic(nn.Module):
    """Four convolutions (two of stride 2), LeakyReLU between them: one logit per 4x4 pixels."""

    def __init__(self, width: int) -> None:
        """``width``: channels of the first layer (``FitSettings.critic_width``), twice that after."""
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 2 * width, 3, 1, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 1, 3, 1, 1),
        )

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, 3, P, P) -> (B, 1, P/4, P/4) logits: high where a patch looks like a target."""
        return self.net(patches)


def critic_step(critic: PatchCritic, opt: torch.optim.Optimizer, real: torch.Tensor,
                fake: torch.Tensor, bf16: bool = False) -> float:
    """One Adam step of the critic on (B, 3, P, P) target patches and translator outputs (detached
    here); returns its logistic loss (2 ln 2 = 1.386 at chance). ``bf16``: its forward in bfloat16
    autocast (weights, loss and step stay float32)."""
    with torch.autocast(real.device.type, dtype=torch.bfloat16, enabled=bf16):
        on_real, on_fake = critic(real), critic(fake.detach())
    loss = F.softplus(-on_real.float()).mean() + F.softplus(on_fake.float()).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.item())


def adversarial_loss(critic: PatchCritic, out: torch.Tensor, bf16: bool = False) -> torch.Tensor:
    """The translator's non-saturating loss on its (B, 3, P, P) outputs, softplus(-logit) averaged;
    the gradient reaches ``out`` only (the critic's weights are left untouched)."""
    critic.requires_grad_(False)
    try:
        with torch.autocast(out.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = critic(out)
        return F.softplus(-logits.float()).mean()
    finally:
        critic.requires_grad_(True)
