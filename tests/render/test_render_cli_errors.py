"""`emo-avatar render` with bad input: a one-line error, exit code 2, and nothing on disk."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from backend.cli import main as cli_main
from backend.data.subject import Subject
from protocol.curves import Curves, write_curves


@pytest.fixture(scope="module")
def subject(tiny_avatar_subject: Path) -> Subject:
    return Subject.open(tiny_avatar_subject)


def _shot_file(tmp_path: Path, subject: Subject, n: int = 3, start: int = 0) -> Path:
    """``tmp_path/shot.json``: the subject's first ``n`` tracked curve rows from frame ``start`` (no pose)."""
    cfile = tmp_path / "shot.json"
    write_curves(Curves(list(subject.expression_names), 25.0, start, subject.expressions[:n]), cfile)
    return cfile


def _fails_cleanly(capsys: pytest.CaptureFixture[str], argv: list[str], out: Path) -> str:
    """Run the CLI; it must return 2 with one ``error:`` line and leave ``out`` without frames."""
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not re.match(r"\d\d:\d\d:\d\d ", line)]
    assert len(lines) == 1 and lines[0].startswith("error:"), err  # log lines aside, one line
    assert not out.exists() or not list(out.glob("*.png"))
    return lines[0]


def test_bad_curve_files(tiny_avatar_subject: Path, subject: Subject, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    names = list(subject.expression_names)
    values = subject.expressions[:6]
    good = Curves(names, 25.0, 0, values)
    (tmp_path / "empty.csv").write_text("")
    write_curves(good, tmp_path / "shot.json")
    (tmp_path / "shot.txt").write_text((tmp_path / "shot.json").read_text())
    data = json.loads((tmp_path / "shot.json").read_text())
    data["values"][2][1] = float("nan")
    (tmp_path / "nan.json").write_text(json.dumps(data))
    bad = values.copy()
    bad[3, 0] = np.nan
    np.savez(tmp_path / "nan.npz", names=np.array(names), values=bad)
    np.savez(tmp_path / "pose.npz", names=np.array(names), values=values, head_pose=np.zeros((2, 6)))
    np.savez(tmp_path / "none.npz", names=np.array(names), values=values[:0])
    (tmp_path / "trunc.npz").write_bytes((tmp_path / "nan.npz").read_bytes()[:200])
    expect = {"empty.csv": "empty file", "shot.txt": ".npz", "nan.json": "NaN", "nan.npz": "NaN",
              "pose.npz": "head_pose", "none.npz": "no frames", "trunc.npz": "not a readable"}
    for name, words in expect.items():
        out = tmp_path / f"out_{name}"
        line = _fails_cleanly(capsys, ["render", str(tiny_avatar_subject), "--curves", str(tmp_path / name),
                                       "-o", str(out)], out)
        assert words in line and name in line, line
        assert not out.exists(), name


def test_bad_inputs_leave_no_output_folder(tiny_avatar_subject: Path, subject: Subject, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    names = list(subject.expression_names)
    cfile = tmp_path / "foo.npz"
    np.savez(cfile, names=np.array(["foo", *names[1:]]), values=subject.expressions[:3])
    out = tmp_path / "frames"
    assert "foo" in _fails_cleanly(capsys, ["render", str(tiny_avatar_subject), "--curves", str(cfile),
                                            "-o", str(out)], out)
    assert not out.exists()


def test_unwritable_output(tiny_avatar_subject: Path, subject: Subject, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    cfile = _shot_file(tmp_path, subject)
    base = ["render", str(tiny_avatar_subject), "--curves", str(cfile), "-o"]
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert "a_file" in _fails_cleanly(capsys, [*base, str(blocker)], blocker)
    assert "a_file" in _fails_cleanly(capsys, [*base, str(blocker / "frames")], blocker / "frames")
    if os.geteuid() != 0:  # root writes into 0500 folders anyway
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        try:
            _fails_cleanly(capsys, [*base, str(locked / "frames")], locked / "frames")
            _fails_cleanly(capsys, [*base, str(locked)], locked)
            assert not list(locked.iterdir())
        finally:
            locked.chmod(0o700)


def test_uv_maps_npz_one_per_curve_row(tiny_avatar_subject: Path, subject: Subject, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    n = 8
    cfile = _shot_file(tmp_path, subject, n=n)
    base = ["render", str(tiny_avatar_subject), "--curves", str(cfile), "--batch", "2"]
    # 3 maps for 8 curve rows: an error even when --frames selects 3 frames
    np.savez(tmp_path / "three.npz", uv=subject.uv_maps[:3])
    out = tmp_path / "a"
    three = str(tmp_path / "three.npz")
    _fails_cleanly(capsys, [*base, "--uv-maps", three, "--frames", "4:7", "-o", str(out)], out)
    # a NaN in a late map fails before any frame is written
    uv = subject.uv_maps[:n].astype(np.float32)
    uv[6, 3, 3, 0] = np.nan
    np.savez(tmp_path / "nan.npz", uv=uv)
    out = tmp_path / "b"
    line = _fails_cleanly(capsys, [*base, "--uv-maps", str(tmp_path / "nan.npz"), "-o", str(out)], out)
    assert "row 6" in line, line
    assert not out.exists()


def test_foreign_style_and_checkpoint_files(tiny_avatar_subject: Path, subject: Subject, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    cfile = _shot_file(tmp_path, subject)
    base = ["render", str(tiny_avatar_subject), "--curves", str(cfile)]
    out = tmp_path / "frames"
    assert "style" in _fails_cleanly(capsys, [*base, "--style", str(cfile), "-o", str(out)], out)
    assert "checkpoint" in _fails_cleanly(capsys, [*base, "--checkpoint", str(cfile), "-o", str(out)], out)
    assert "not found" in _fails_cleanly(capsys, ["render", str(tmp_path / "nobody"), "--curves", str(cfile),
                                                  "-o", str(out)], out)
    assert not out.exists()


def test_frames_outside_the_curves(tiny_avatar_subject: Path, subject: Subject, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A range reaching past the curves is an error, not silently fewer frames than asked for."""
    cfile = _shot_file(tmp_path, subject, n=4, start=100)
    base = ["render", str(tiny_avatar_subject), "--curves", str(cfile)]
    out = tmp_path / "frames"
    for spec in ("102:110", "98:102", "90:", "104:", "103:101", "102:102"):
        line = _fails_cleanly(capsys, [*base, f"--frames={spec}", "-o", str(out)], out)
        assert spec in line and "100..103" in line, line
    assert not out.exists()
    assert cli_main([*base, "--frames=102:", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["000102.png", "000103.png"]


def test_bad_options(tiny_avatar_subject: Path, subject: Subject, tmp_path: Path,
                     capsys: pytest.CaptureFixture[str]) -> None:
    """--batch below 1, a --device that is not one (or CUDA without CUDA), an unreadable --uv file."""
    import torch

    cfile = _shot_file(tmp_path, subject)
    base = ["render", str(tiny_avatar_subject), "--curves", str(cfile)]
    out = tmp_path / "frames"
    for batch in ("0", "-2"):
        with pytest.raises(SystemExit) as info:
            cli_main([*base, f"--batch={batch}", "-o", str(out)])
        assert info.value.code == 2 and "--batch" in capsys.readouterr().err
    assert "'tpu'" in _fails_cleanly(capsys, [*base, "--device", "tpu", "-o", str(out)], out)
    if not torch.cuda.is_available():
        assert "CUDA" in _fails_cleanly(capsys, [*base, "--device", "cuda", "-o", str(out)], out)
    uvdir = tmp_path / "uv"
    uvdir.mkdir()
    for f in range(3):
        np.save(uvdir / f"{f:06d}.npy", subject.uv_maps[f])
    good = tmp_path / "good"
    for _ in range(2):  # the re-run of a finished task with --uv DIR skips every frame
        assert cli_main([*base, "--uv", str(uvdir), "-o", str(good)]) == 0
    assert len(list(good.glob("*.png"))) == 3
    (uvdir / "000001.npy").write_bytes((uvdir / "000000.npy").read_bytes()[:300])
    assert "000001.npy" in _fails_cleanly(capsys, [*base, "--uv", str(uvdir), "-o", str(out)], out)
    assert not out.exists()


def test_checkpoint_with_no_subject_folder(tiny_avatar_subject: Path, subject: Subject,
                                        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--checkpoint with a SUBJECT that is not a subject folder: the rig cannot be rasterised."""
    from backend.paths import checkpoint_path

    cfile = _shot_file(tmp_path, subject)
    empty = tmp_path / "not_a_subject"
    empty.mkdir()
    out = tmp_path / "frames"
    ckpt = str(checkpoint_path(tiny_avatar_subject))
    line = _fails_cleanly(capsys, ["render", str(empty), "--checkpoint", ckpt, "--curves", str(cfile),
                                   "-o", str(out)], out)
    assert "not a subject folder" in line, line
    assert not out.exists()


def test_style_by_name_or_path(writable_subject: Path, tmp_path: Path) -> None:
    """``--style cartoon`` names one of the subject's styles, as Blender and the service do."""
    from backend.train.stage2 import EDIT_SETTINGS, edit_avatar

    subj = Subject.open(writable_subject)
    settings = replace(EDIT_SETTINGS["tiny"], steps=2, patches=32, clip_patches=8, id_pool=2)
    style = edit_avatar(writable_subject, subj.frame(0)[::-1].copy(), name="toon", settings=settings,
                        method="skips", write_metrics=False)
    cfile = _shot_file(tmp_path, subj, n=2)
    base = ["render", str(writable_subject), "--curves", str(cfile)]
    assert cli_main([*base, "--style", "toon", "-o", str(tmp_path / "by_name")]) == 0
    assert cli_main([*base, "--style", str(style), "-o", str(tmp_path / "by_path")]) == 0
    assert cli_main([*base, "-o", str(tmp_path / "plain")]) == 0
    for name in ("000000.png", "000001.png"):
        by_name, by_path, plain = ((tmp_path / d / name).read_bytes()
                                   for d in ("by_name", "by_path", "plain"))
        assert by_name == by_path and by_name != plain
    assert cli_main([*base, "--style", "nope", "-o", str(tmp_path / "x")]) == 2
