"""Style files: round trip, apply, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from backend.train.style import StyleError, StyleMismatchError, apply_style, load_style, save_style


class _Toy(nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.skips = nn.Sequential(nn.Conv2d(3, width, 1), nn.Conv2d(width, 2, 1))
        self.other = nn.Linear(3, 3)


META = {"subject_id": "alice", "checkpoint_sha256": "ab" * 32, "encoder": "test"}


def test_round_trip_and_apply(tmp_path: Path) -> None:
    torch.manual_seed(0)
    a, b = _Toy(), _Toy()
    path = save_style(tmp_path / "styles" / "ink.style", a, {**META, "name": "ink"})
    style = load_style(path)
    assert style.meta["subject_id"] == "alice" and style.name == "ink"
    assert set(style.skips) == set(a.skips.state_dict())  # only the skip modules are stored
    other_before = b.other.weight.clone()
    apply_style(b, style, subject_id="alice", checkpoint_sha256="ab" * 32)
    for k, v in a.skips.state_dict().items():
        assert torch.equal(b.skips.state_dict()[k], v)
    assert torch.equal(b.other.weight, other_before)
    assert not list(tmp_path.glob("styles/.*tmp"))  # atomic write leaves no temp file


def test_refuses_other_subject_checkpoint_or_shape(tmp_path: Path) -> None:
    path = save_style(tmp_path / "s.style", _Toy(), META)
    style = load_style(path)
    with pytest.raises(StyleMismatchError, match="belongs to subject 'alice', not 'bob'"):
        apply_style(_Toy(), style, subject_id="bob", checkpoint_sha256="ab" * 32)
    with pytest.raises(StyleMismatchError, match="base checkpoint"):
        apply_style(_Toy(), style, subject_id="alice", checkpoint_sha256="cd" * 32)
    with pytest.raises(StyleMismatchError, match="does not fit"):
        apply_style(_Toy(width=5), style, subject_id="alice", checkpoint_sha256="ab" * 32)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_style(tmp_path / "none.style")
    (tmp_path / "text.style").write_text("hello")
    with pytest.raises(StyleError, match="not a readable style file"):
        load_style(tmp_path / "text.style")
    # torch's own refusal runs to several paragraphs; the error names the file in one line
    (tmp_path / "curves.style").write_text('{"format": "emo-avatar-curves", "values": [[0.5]]}\n')
    for name in ("text.style", "curves.style"):
        with pytest.raises(StyleError, match="not a readable style file") as info:
            load_style(tmp_path / name)
        assert "\n" not in str(info.value) and name in str(info.value)
    torch.save({"format": "something-else"}, tmp_path / "other.style")
    with pytest.raises(StyleError, match="not an Emo-Avatar style file"):
        load_style(tmp_path / "other.style")
    with pytest.raises(StyleError, match="subject_id"):
        save_style(tmp_path / "x.style", _Toy(), {"checkpoint_sha256": "ab"})
