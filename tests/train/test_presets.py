"""Presets: every preset builds a valid architecture; overrides and unknown names."""

from __future__ import annotations

import pytest

from backend.train.presets import PRESETS, get_preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_a_valid_config(name: str) -> None:
    p = get_preset(name)
    cfg = p.avatar_config(n_expr=12)
    assert cfg.size == p.size and cfg.n_expr == 12
    assert p.preview_every >= 0 and p.checkpoint_every > 0 and p.steps > p.adv_start


def test_sizes_and_overrides() -> None:
    assert get_preset("tiny").size <= 64 and get_preset("cpu").size == 128 and get_preset("paper").size == 512
    assert get_preset("paper").mixed_precision and not get_preset("cpu").mixed_precision
    assert get_preset("tiny", steps=7, preview_every=None).steps == 7
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        get_preset("huge")
