"""OpenCV looks for reference images, and the `emo-avatar stylize` command."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from backend.train.stylize import LOOKS, stylize_image

from .conftest import draw_frame


@pytest.mark.parametrize("size", [32, 128])
def test_every_look_makes_an_image(size: int) -> None:
    img, _ = draw_frame(3, size)
    outs = {}
    for look in LOOKS:
        out = stylize_image(img, look)
        assert out.shape == img.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - img.astype(int)).mean() > 3, look  # visibly changed
        outs[look] = out
    pencil = outs["pencil"].astype(int)
    assert np.abs(pencil[..., 0] - pencil[..., 1]).max() == 0  # greyscale
    assert not np.array_equal(outs["cartoon"], outs["oil"])


def test_bad_input() -> None:
    img, _ = draw_frame(0)
    with pytest.raises(ValueError, match="unknown look 'sepia'"):
        stylize_image(img, "sepia")
    with pytest.raises(ValueError, match="uint8 RGB"):
        stylize_image(img.astype(np.float32), "oil")


def test_stylize_cli(synthetic_edit_subject: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from backend.cli import main

    out = tmp_path / "ref.png"
    assert (
        main(["stylize", str(synthetic_edit_subject), "--frame", "2", "--look", "watercolor", "-o", str(out)])
        == 0
    )
    ref = cv2.imread(str(out))
    assert ref is not None and ref.shape == (32, 32, 3)
    assert (
        main(["stylize", str(synthetic_edit_subject), "--frame", "999", "--look", "oil", "-o", str(out)]) == 2
    )
    assert "out of range" in capsys.readouterr().err
