"""The 5-frame expression windows stay within a shot."""

from __future__ import annotations

import numpy as np
import pytest

from backend.data.windows import expression_windows


def test_windows_repeat_the_clip_ends() -> None:
    expr = np.arange(6, dtype=np.float32)[:, None]
    win = expression_windows(expr)[..., 0]
    assert win.shape == (6, 5)
    assert win[0].tolist() == [0, 0, 0, 1, 2]
    assert win[3].tolist() == [1, 2, 3, 4, 5]
    assert win[5].tolist() == [3, 4, 5, 5, 5]


def test_no_window_reaches_across_a_cut() -> None:
    expr = np.arange(10, dtype=np.float32)[:, None]
    win = expression_windows(expr, cuts=[4, 0, 99])[..., 0]  # 0 and 99 are no cuts
    assert win[3].tolist() == [1, 2, 3, 3, 3]
    assert win[4].tolist() == [4, 4, 4, 5, 6]
    assert win[5].tolist() == [4, 4, 5, 6, 7]
    # each shot's windows are those of the shot as a clip of its own
    assert np.array_equal(expression_windows(expr, cuts=[4])[4:], expression_windows(expr[4:]))
    assert np.array_equal(expression_windows(expr, cuts=[4])[:4], expression_windows(expr[:4]))


def test_a_one_frame_shot_repeats_its_frame() -> None:
    expr = np.arange(5, dtype=np.float32)[:, None]
    win = expression_windows(expr, cuts=[2, 3])[..., 0]
    assert win[2].tolist() == [2, 2, 2, 2, 2]


def test_windows_refuse_a_flat_vector() -> None:
    with pytest.raises(ValueError, match=r"\(T, K\)"):
        expression_windows(np.zeros(5, np.float32))
