"""The tonal share (``backend.style.tonal``) and the edit's choice of the source flag from it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from backend.style.fit import FitSettings
from backend.style.tonal import TONAL_SHARE, tonal_share
from backend.style.translator import TranslatorConfig
from backend.train.translator_edit import settings_for_look
from tests.edit.conftest import draw_frame, tone_map
from tests.edit.unseen_looks import posterised_ink


def _t(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 127.5 - 1


def test_a_tone_map_is_explained_by_the_colour_and_a_line_look_is_not() -> None:
    frame = draw_frame(3, 64)[0]
    assert tonal_share(_t(frame), _t(tone_map(frame))) > 0.99
    lines = tonal_share(_t(frame), _t(posterised_ink(frame)))  # Sobel ink over posterised colour
    assert lines < TONAL_SHARE - 0.2
    shifted = np.roll(tone_map(frame), 9, axis=1)  # the right colours in the wrong places
    assert tonal_share(_t(frame), _t(shifted)) < lines


def test_a_flat_reference_and_bad_shapes() -> None:
    frame = _t(draw_frame(3, 64)[0])
    assert tonal_share(frame, torch.zeros_like(frame)) == 0.0
    with pytest.raises(ValueError, match="alike"):
        tonal_share(frame, frame[:, :32])
    with pytest.raises(ValueError, match="alike"):
        tonal_share(frame[None], frame[None])


def test_the_edit_keeps_the_source_flag_for_tone_maps_only() -> None:
    settings = FitSettings(net=TranslatorConfig(width=8, blocks=1, source_flag=1))
    frames = [draw_frame(t, 64)[0] for t in (3, 9)]
    photos = torch.stack([_t(f) for f in frames])
    kept, share = settings_for_look(settings, photos, torch.stack([_t(tone_map(f)) for f in frames]))
    assert kept == settings and share > 0.99
    dropped, share = settings_for_look(settings, photos, torch.stack([_t(posterised_ink(f)) for f in frames]))
    assert dropped == replace(settings, net=replace(settings.net, source_flag=0)) and share < TONAL_SHARE
