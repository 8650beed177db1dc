"""Face / hair+background / torso regions from a UV map."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.train.regions import FACE, HAIR_BACKGROUND, TORSO, face_mask, region_fractions, region_map


def _uv(h: int = 16, w: int = 16) -> np.ndarray:
    uv = np.zeros((h, w, 3), np.float32)
    uv[3:9, 5:11, 2] = 1.0  # face rows 3..8
    return uv


def test_regions_from_uv_layout() -> None:
    regions = region_map(_uv())
    assert bool((regions[3:9, 5:11] == FACE).all())
    assert bool((regions[9:] == TORSO).all())  # below the chin row (8), outside the face
    assert bool((regions[:3] == HAIR_BACKGROUND).all())
    assert int(regions[5, 0]) == HAIR_BACKGROUND  # beside the face, above the chin
    fr = region_fractions(regions)
    assert abs(sum(fr.values()) - 1) < 1e-6 and fr["face"] == 36 / 256


def test_channel_first_and_no_face() -> None:
    uv = torch.from_numpy(_uv()).permute(2, 0, 1)
    assert torch.equal(region_map(uv), region_map(_uv()))
    assert bool((region_map(np.zeros((8, 8, 3), np.float32)) == HAIR_BACKGROUND).all())
    with pytest.raises(ValueError, match="UV map"):
        face_mask(np.zeros((8, 8), np.float32))
