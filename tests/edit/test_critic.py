"""The patch critic of the translator's fit: it learns the references' patches, its reward reaches
only the translator, and with it a translator draws the thin lines L1 alone leaves soft."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from backend.metrics.sharpness import sharpness
from backend.style.critic import PatchCritic, adversarial_loss, critic_step
from backend.style.fit import FitSettings, fit_translator
from backend.style.translator import TranslatorConfig
from tests.edit.conftest import N_FRAMES, draw_frame


def _t(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1).float()[None] / 127.5 - 1


def _u8(t: torch.Tensor) -> np.ndarray:
    return ((t[0].clamp(-1, 1).permute(1, 2, 0).numpy() + 1) * 127.5 + 0.5).astype(np.uint8)


def _soft(rgb: np.ndarray) -> np.ndarray:
    """A render of the frame: softer, so where a thin line goes is a pixel uncertain."""
    return cv2.GaussianBlur(rgb, (0, 0), 1.2)


def _inked(rgb: np.ndarray) -> np.ndarray:
    """The look: the sharp frame with its edges drawn as thin dark lines."""
    out = rgb.copy()
    edges = cv2.Canny(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 40, 120) > 0
    out[edges] = (out[edges] * 0.15).astype(np.uint8)
    return out


def test_the_critic_learns_to_tell_lines_from_their_smooth_guess() -> None:
    torch.manual_seed(0)
    critic = PatchCritic(width=8)
    opt = torch.optim.Adam(critic.parameters(), lr=2e-3, betas=(0.5, 0.99))
    frames = [draw_frame(t, 32)[0] for t in range(8)]
    real = torch.cat([_t(_inked(f)) for f in frames])
    fake = torch.cat([_t(_soft(_inked(f))) for f in frames])
    assert critic(real).shape == (8, 1, 8, 8)  # one logit per 4 x 4 pixels
    losses = [critic_step(critic, opt, real, fake) for _ in range(60)]
    assert abs(losses[0] - 2 * np.log(2)) < 0.2  # at chance first
    assert losses[-1] < 0.5 * losses[0]


def test_the_reward_reaches_the_outputs_and_leaves_the_critic_alone() -> None:
    critic = PatchCritic(width=8)
    out = torch.zeros(2, 3, 16, 16, requires_grad=True)
    adversarial_loss(critic, out).backward()
    assert out.grad is not None and out.grad.abs().sum() > 0
    assert all(p.grad is None for p in critic.parameters())
    assert all(p.requires_grad for p in critic.parameters())  # trainable again for its own step


def test_with_the_critic_the_translator_draws_the_lines_on_frames_it_never_saw() -> None:
    """One keyframe pair (render -> look); on the other frames' renders, L1 alone draws the thin
    outlines soft (the chin's is lost); with the critic the outputs carry the truth's detail."""
    frames = [draw_frame(t, 64)[0] for t in range(N_FRAMES)]
    key, unseen = frames[0], frames[1::3]
    truth_detail = np.mean([sharpness(_inked(f)) for f in unseen])
    ratio, history = {}, {}
    for adversarial in (0.0, 0.3):
        settings = FitSettings(steps=400, batch=4, patch=32, net=TranslatorConfig(width=8, blocks=1),
                               adversarial=adversarial)
        res = fit_translator(_t(_soft(key)), _t(_inked(key)), settings, seed=0)
        with torch.no_grad():
            outs = [_u8(res.translator(_t(_soft(f)))) for f in unseen]
        ratio[adversarial] = np.mean([sharpness(o) for o in outs]) / truth_detail
        history[adversarial] = res.history
    assert ratio[0.3] >= ratio[0.0] + 0.05 and ratio[0.3] >= 0.97, ratio
    assert not any("critic" in h for h in history[0.0])  # off: the fit is the one without a critic
    joined = [i for i, h in enumerate(history[0.3]) if "critic" in h]
    assert joined[0] == 100 and len(joined) == 300  # from adversarial_from (a quarter) of the steps
