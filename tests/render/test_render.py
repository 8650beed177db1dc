"""Renderer API and `emo-avatar render` on the tiny synthetic avatar: inputs, bad inputs, frame ranges."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from backend.cli import main as cli_main
from backend.data.subject import Subject
from backend.paths import checkpoint_path
from backend.render import Renderer, RenderInputError
from protocol.curves import Curves, write_curves


@pytest.fixture(scope="module")
def renderer(tiny_avatar_subject: Path) -> Renderer:
    return Renderer.from_checkpoint(checkpoint_path(tiny_avatar_subject), device="cpu")


@pytest.fixture(scope="module")
def subject(tiny_avatar_subject: Path) -> Subject:
    return Subject.open(tiny_avatar_subject)


def _render(r: Renderer, *args, **kw) -> np.ndarray:
    return np.stack(list(r.render(*args, **kw)))


def test_rig_rasterisation_matches_the_subject_uv_maps(renderer: Renderer, subject: Subject) -> None:
    ids = [3, 4, 5]
    expr = subject.expressions
    from_uv = _render(renderer, expr, uv_maps=subject.uv_maps, indices=ids)
    from_rig = _render(renderer, expr, pose=subject.pose, scale=subject.scale, indices=ids)
    assert from_uv.shape == (3, renderer.size, renderer.size, 3)
    # same rig and rasteriser; the stored maps are float16 at the subject's size (resampled here)
    assert np.abs(from_uv.astype(int) - from_rig.astype(int)).mean() < 6.0
    # default pose (median) also renders
    assert _render(renderer, expr[:2]).shape == (2, renderer.size, renderer.size, 3)


def test_subrange_equals_full_render(renderer: Renderer, subject: Subject) -> None:
    expr, uv = subject.expressions[:10], subject.uv_maps[:10]
    full = _render(renderer, expr, uv_maps=uv, batch=4)
    part = _render(renderer, expr, uv_maps=uv, indices=range(4, 8), batch=4)
    assert np.array_equal(full[4:8], part)


def test_names_are_conformed(renderer: Renderer, subject: Subject) -> None:
    expr, uv = subject.expressions[:4], subject.uv_maps[:4]
    ref = _render(renderer, expr, uv_maps=uv)
    order = list(reversed(range(len(renderer.names))))
    shuffled = _render(renderer, expr[:, order], uv_maps=uv, names=[renderer.names[i] for i in order])
    assert np.array_equal(ref, shuffled)
    with pytest.raises(RenderInputError, match="notACurve"):
        list(renderer.render(expr, uv_maps=uv, names=[*renderer.names[:-1], "notACurve"]))
    # a missing rig curve is named (missing residual_NN curves are zeros by Curves.conform's rule)
    j = next(i for i, n in enumerate(renderer.names) if not n.startswith("residual"))
    keep = [i for i in range(len(renderer.names)) if i != j]
    with pytest.raises(RenderInputError, match=renderer.names[j]):
        list(renderer.render(expr[:, keep], uv_maps=uv, names=[renderer.names[i] for i in keep]))


def test_bad_inputs(renderer: Renderer, subject: Subject, caplog: pytest.LogCaptureFixture) -> None:
    expr = subject.expressions[:4].copy()
    uv = np.stack([cv2.resize(m, (renderer.size,) * 2, interpolation=cv2.INTER_LINEAR)
                   for m in subject.uv_maps[:4].astype(np.float32)])
    k = len(renderer.names)
    with pytest.raises(RenderInputError, match=rf"must be \(T, {k}\)"):
        list(renderer.render(expr[:, :2], uv_maps=uv))
    bad = expr.copy()
    bad[2, 1] = np.nan
    with pytest.raises(RenderInputError, match=r"NaN.*rows \[2\]"):
        list(renderer.render(bad, uv_maps=uv))
    with pytest.raises(RenderInputError, match="3 channels"):
        list(renderer.render(expr, uv_maps=uv[..., :2]))
    with pytest.raises(RenderInputError, match="3 UV maps for 4 frames"):
        list(renderer.render(expr, uv_maps=uv[:3]))
    big = np.stack([cv2.resize(m, (2 * renderer.size,) * 2, interpolation=cv2.INTER_LINEAR) for m in uv])
    with caplog.at_level(logging.WARNING):
        out = _render(renderer, expr, uv_maps=big)
    assert "resampling" in caplog.text
    assert out.shape == (4, renderer.size, renderer.size, 3)
    ref = _render(renderer, expr, uv_maps=uv)
    assert np.abs(out.astype(int) - ref.astype(int)).mean() < 6.0


def test_render_cli_frame_ranges_skip_existing(tiny_avatar_subject: Path, subject: Subject,
                                               renderer: Renderer, tmp_path: Path) -> None:
    curves = Curves(list(subject.expression_names), 25.0, 100, subject.expressions[:8])
    cfile = tmp_path / "shot.json"
    write_curves(curves, cfile)
    out = tmp_path / "frames"
    args = ["render", str(tiny_avatar_subject), "--curves", str(cfile), "-o", str(out)]
    assert cli_main([*args, "--frames", "102:105"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["000102.png", "000103.png", "000104.png"]
    first = (out / "000103.png").stat().st_mtime_ns
    assert cli_main(args) == 0
    assert len(list(out.glob("*.png"))) == 8
    assert (out / "000103.png").stat().st_mtime_ns == first  # existing frames are not re-rendered
    img = cv2.imread(str(out / "000100.png"))
    assert img.shape == (renderer.size, renderer.size, 3)
    # bad range and a curves file with an unknown name: clear errors, exit code 2
    assert cli_main(["render", str(tiny_avatar_subject), "--curves", str(cfile), "--frames", "200:300",
                     "-o", str(out)]) == 2
    np.savez(tmp_path / "bad.npz", names=np.array(["foo", *subject.expression_names[1:]]),
             values=subject.expressions[:3])
    assert cli_main(["render", str(tiny_avatar_subject), "--curves", str(tmp_path / "bad.npz"),
                     "-o", str(tmp_path / "f2")]) == 2


def test_avatar_load_render_is_batched_renderer(tiny_avatar_subject: Path, subject: Subject,
                                                renderer: Renderer) -> None:
    from backend.render import Avatar

    av = Avatar.load(checkpoint_path(tiny_avatar_subject), device="cpu")
    expr, uv = subject.expressions[:5], subject.uv_maps[:5]
    frames = av.render(expr, uv, batch=2)
    assert isinstance(frames, np.ndarray) and frames.dtype == np.uint8
    assert frames.shape == (5, av.size, av.size, 3)
    # another batch size groups frames differently: equal up to float rounding (at most 1 level on CPU)
    other = _render(renderer, expr, uv_maps=uv)
    assert np.abs(frames.astype(int) - other.astype(int)).max() <= 1
    # per-rendered-row UV maps with indices give the same pixels as full-length maps
    np.testing.assert_array_equal(av.render(expr, uv[2:4], indices=[2, 3]), frames[2:4])
    assert av.render(expr, uv, indices=[]).shape == (0, av.size, av.size, 3)


def test_render_cli_uv_dir_and_rasterize(tiny_avatar_subject: Path, subject: Subject, renderer: Renderer,
                                         tmp_path: Path) -> None:
    n, start = 6, 10
    curves = Curves(list(subject.expression_names), 25.0, start, subject.expressions[:n])
    cfile = tmp_path / "shot.json"
    write_curves(curves, cfile)
    uvdir = tmp_path / "uv"
    uvdir.mkdir()
    for r in range(n):
        np.save(uvdir / f"{start + r:06d}.npy", subject.uv_maps[r].astype(np.float16))
    base = ["render", str(tiny_avatar_subject), "--curves", str(cfile)]
    assert cli_main([*base, "--uv", str(uvdir), "--frames", "12:15", "-o", str(tmp_path / "a")]) == 0
    got = np.stack([cv2.imread(str(tmp_path / "a" / f"{f:06d}.png"))[..., ::-1] for f in (12, 13, 14)])
    want = _render(renderer, subject.expressions[:n], uv_maps=subject.uv_maps[:n], indices=[2, 3, 4])
    np.testing.assert_array_equal(got, want)
    # --rasterize is the explicit default: same frames as no UV option
    assert cli_main([*base, "--rasterize", "-o", str(tmp_path / "r")]) == 0
    assert cli_main([*base, "-o", str(tmp_path / "d")]) == 0
    for f in range(start, start + n):
        np.testing.assert_array_equal(cv2.imread(str(tmp_path / "r" / f"{f:06d}.png")),
                                      cv2.imread(str(tmp_path / "d" / f"{f:06d}.png")))
    # a missing frame file and a wrong channel count: exit code 2, nothing written
    (uvdir / f"{start + 5:06d}.npy").unlink()
    assert cli_main([*base, "--uv", str(uvdir), "-o", str(tmp_path / "m")]) == 2
    assert not (tmp_path / "m").exists() or not list((tmp_path / "m").glob("*.png"))
    np.save(uvdir / f"{start + 5:06d}.npy", subject.uv_maps[5][..., :2])
    assert cli_main([*base, "--uv", str(uvdir), "--frames", "15:16", "-o", str(tmp_path / "c")]) == 2
    # the UV sources exclude each other
    with pytest.raises(SystemExit):
        cli_main([*base, "--uv", str(uvdir), "--rasterize", "-o", str(tmp_path / "x")])


def test_curves_head_scale_sizes_the_face(tiny_avatar_subject: Path, subject: Subject, renderer: Renderer,
                                          tmp_path: Path) -> None:
    """A curves file's head_scale (relative size) scales the rasterised face around the rest pose,
    in the API and in `emo-avatar render`; a non-positive scale is a clear error."""
    pose, scale = renderer.curves_pose(None, np.array([1.0, 1.3], np.float32))
    np.testing.assert_array_equal(pose[0], pose[1])
    coverage = renderer.rig_uv_maps(subject.expressions[:2], pose, scale)[..., 2].sum(axis=(1, 2))
    assert 1.5 < coverage[1] / coverage[0] < 1.9  # area grows with the square of the size
    names = list(subject.expression_names)
    out = {}
    for label, head_scale in (("plain", None), ("scaled", np.full(3, 1.3, np.float32))):
        cfile = tmp_path / f"{label}.json"
        write_curves(Curves(names, 25.0, 1, subject.expressions[:3], None, head_scale), cfile)
        assert cli_main(["render", str(tiny_avatar_subject), "--curves", str(cfile), "-o",
                         str(tmp_path / label)]) == 0
        out[label] = cv2.imread(str(tmp_path / label / "000001.png")).astype(int)
    assert np.abs(out["plain"] - out["scaled"]).mean() > 2.0
    bad = tmp_path / "bad.json"
    data = json.loads((tmp_path / "scaled.json").read_text())
    data["head_scale"] = [1.0, 0.0, 1.0]
    bad.write_text(json.dumps(data))
    args = ["render", str(tiny_avatar_subject), "--curves", str(bad), "-o", str(tmp_path / "b")]
    assert cli_main(args) == 2
    assert not (tmp_path / "b").exists()
