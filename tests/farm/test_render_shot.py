"""render-shot end to end: a bundle from `emo-avatar farm-bundle`, run by `openjd run` in 3 chunks,
equals a single-process `emo-avatar render` of the same range pixel for pixel, every frame written
by exactly one chunk; a re-run chunk replaces its frames atomically; bad input is refused before
any work (bundle writer and chunk alike)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from backend.farm.bundle import RenderJob, bundle_parameter_values, check_bundle, write_render_bundle
from backend.farm.chunk import DONE_PREFIX
from backend.farm.outputs import OutputFolderError
from backend.farm.ranges import parse_range
from backend.farm.templates import FarmError

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EMO = str(BIN / "emo-avatar")
PERFORMANCE = ROOT / "examples" / "curves" / "performance_livelinkface.csv"
FIRST, N = 100, 20


@pytest.fixture
def shot(tmp_path: Path) -> Path:
    """20 frames of the example performance, numbered 100..119."""
    from protocol.curves import read_curves, write_curves

    c = read_curves(PERFORMANCE)
    c.values, c.head_pose = c.values[:N], c.head_pose[:N]
    if c.head_scale is not None:
        c.head_scale = c.head_scale[:N]
    c.frame_start = FIRST
    path = tmp_path / "shot.json"
    write_curves(c, path)
    return path


def _emo(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([EMO, *args], capture_output=True, text=True, timeout=300, cwd=ROOT)
    if check:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def _pngs(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(folder.glob("*.png"))}


@contextlib.contextmanager
def unwritable(folder: Path) -> Iterator[None]:
    """``folder`` made unwritable for this process: mode 0o555, and immutable when running as root
    (root ignores modes; ``chattr`` comes with e2fsprogs). Fails when neither takes effect, since
    the test would then prove nothing."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    immutable = os.geteuid() == 0 and shutil.which("chattr") is not None and subprocess.run(
        ["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    try:
        assert immutable or not os.access(folder, os.W_OK), \
            "cannot make a folder unwritable here (root without a working chattr +i)"
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def test_render_shot_in_three_openjd_chunks_equals_one_render(tiny_avatar_subject: Path, shot: Path,
                                                              tmp_path: Path) -> None:
    job = RenderJob(subject=tiny_avatar_subject, curves=shot, output=tmp_path / "frames", batch=4,
                    batches_per_task=2, device="cpu", emo_avatar=EMO)
    bundle = write_render_bundle(job, tmp_path / "bundle")
    assert {p.name for p in bundle.iterdir()} == {"template.yaml", "parameter_values.yaml",
                                                  "asset_references.yaml"}
    values = check_bundle(bundle)
    assert values["Frames"] == f"{FIRST}-{FIRST + N - 1}"
    proc = subprocess.run([str(BIN / "openjd"), "run", str(bundle / "template.yaml"),
                           "-p", json.dumps(bundle_parameter_values(bundle))],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "Chunks run: 3" in proc.stdout  # 5 batches of 4 frames in tasks of at most 2 batches
    chunks = [parse_range(m) for m in re.findall(rf"{DONE_PREFIX} \d+ frames: (\S+) ->", proc.stdout)]
    assert len(chunks) == 3
    written = [f for c in chunks for f in c]
    assert sorted(written) == list(range(FIRST, FIRST + N))  # each frame by exactly one chunk
    assert len(set(written)) == len(written)

    _emo("render", str(tiny_avatar_subject), "--curves", str(shot), "--frames", f"{FIRST}:{FIRST + N}",
         "--batch", "4", "--device", "cpu", "-o", str(tmp_path / "single"))
    farm, single = _pngs(tmp_path / "frames"), _pngs(tmp_path / "single")
    assert list(farm) == [f"{f:06d}.png" for f in range(FIRST, FIRST + N)] and list(single) == list(farm)
    for name in farm:
        assert np.array_equal(farm[name], single[name]), name
    assert len({farm[n].tobytes() for n in farm}) > N // 2  # real, varying frames

    # a re-run chunk (say after a worker died mid-write) replaces its frames atomically
    victim = tmp_path / "frames" / f"{FIRST + 5:06d}.png"
    victim.write_bytes(b"half a png")
    rerun = _emo("farm-chunk", str(tiny_avatar_subject), "--curves", str(shot), "--shot", values["Frames"],
                 "--batches", f"{FIRST + 4}", "--batch", "4", "--device", "cpu",
                 "-o", str(tmp_path / "frames"))
    assert f"{DONE_PREFIX} 4 frames: {FIRST + 4}-{FIRST + 7}" in rerun.stdout
    assert np.array_equal(cv2.imread(str(victim), cv2.IMREAD_UNCHANGED), single[victim.name])
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == list(farm)  # no temp files left


def test_chunk_resolution_resamples(tiny_avatar_subject: Path, shot: Path, tmp_path: Path) -> None:
    _emo("farm-chunk", str(tiny_avatar_subject), "--curves", str(shot), "--shot", "100-103", "--batches",
         "100", "--batch", "4", "--resolution", "64", "--device", "cpu", "-o", str(tmp_path / "big"))
    frames = _pngs(tmp_path / "big")
    assert len(frames) == 4 and all(f.shape == (64, 64, 3) for f in frames.values())


def test_chunk_refuses_bad_input_before_any_work(tiny_avatar_subject: Path, shot: Path,
                                                 tmp_path: Path) -> None:
    out = tmp_path / "frames"
    base = [str(tiny_avatar_subject), "--curves", str(shot), "--shot", "100-119", "--batch", "4",
            "--device", "cpu", "-o", str(out)]
    cases = [
        (["--batches", "102"], "not first frames of batches of 4"),
        (["--batches", "100", "--shot", "100-139"], "outside the curves file"),
        (["--batches", "100", "--style", "nope"], "style file"),
        (["--batches", "100", "--uv", str(tmp_path / "no_uv")], "not a folder"),
        (["--batches", "1-x"], "is not N, A-B or A-B:STEP"),
    ]
    for extra, message in cases:
        proc = _emo("farm-chunk", *base, *extra, check=False)
        assert proc.returncode == 2 and message in proc.stderr, (extra, proc.stderr)
        assert "INFO backend.device" not in proc.stderr  # refused before the model was loaded
        assert not out.exists()
    missing = _emo("farm-chunk", str(tmp_path / "nobody"), *base[1:], "--batches", "100", check=False)
    assert missing.returncode == 2 and "subject folder" in missing.stderr

    # an output folder below a file, and one that cannot be written to
    blocked = _emo("farm-chunk", *base[:-1], str(shot / "frames"), "--batches", "100", check=False)
    assert blocked.returncode == 2 and "has a file in its path" in blocked.stderr
    assert "INFO backend.device" not in blocked.stderr
    locked = tmp_path / "locked"
    with unwritable(locked):
        proc = _emo("farm-chunk", *base[:-1], str(locked), "--batches", "100", check=False)
        assert proc.returncode == 2 and f"output folder {locked} is not writable" in proc.stderr
        assert "INFO backend.device" not in proc.stderr  # refused before the model was loaded
        assert not any(locked.iterdir())


def test_bundle_refuses_bad_input_before_writing(tiny_avatar_subject: Path, untrained_subject: Path,
                                                 shot: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"

    def job(**kw) -> RenderJob:
        return RenderJob(**{"subject": tiny_avatar_subject, "curves": shot, "output": tmp_path / "out", **kw})

    cases = [
        (job(subject=tmp_path / "nobody"), FileNotFoundError, "subject folder"),
        (job(subject=untrained_subject), FileNotFoundError, "has no trained avatar"),
        (job(curves=tmp_path / "none.json"), FileNotFoundError, "curves file"),
        (job(style="ink"), FileNotFoundError, "style file"),
        (job(uv_maps=tmp_path), FileNotFoundError, "has no map for frames 100-119"),
        (job(frames="90-110"), FarmError, "outside the curves file"),
        (job(batch=65), FarmError, "Batch must be at most 64"),
        (job(batches_per_task=0), FarmError, "BatchesPerTask must be at least 1"),
        (job(output=shot / "out"), OutputFolderError, "has a file in its path"),
    ]
    for bad, error, message in cases:
        with pytest.raises(error, match=message):
            write_render_bundle(bad, bundle)
        assert not bundle.exists()
    locked = tmp_path / "locked"
    with unwritable(locked), pytest.raises(OutputFolderError, match="is not writable"):
        write_render_bundle(job(output=locked / "frames"), bundle)
    assert not bundle.exists()

    # the CLI says the same in one line
    proc = _emo("farm-bundle", str(tiny_avatar_subject), "--curves", str(shot), "--batch", "0", "-o",
                str(bundle), check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")
    assert "Batch must be at least 1" in proc.stderr

    # a bundle whose assets went missing after it was written
    written = _emo("farm-bundle", str(tiny_avatar_subject), "--curves", str(shot), "-o", str(bundle))
    assert written.stdout.strip() == str(bundle)
    assert _emo("farm-bundle", "--check", str(bundle)).returncode == 0
    moved = tmp_path / "moved.json"
    shot.rename(moved)
    with pytest.raises(FileNotFoundError, match=f"input assets missing: {shot}"):
        check_bundle(bundle)
    proc = _emo("farm-bundle", "--check", str(bundle), check=False)
    assert proc.returncode == 2 and "input assets missing" in proc.stderr
