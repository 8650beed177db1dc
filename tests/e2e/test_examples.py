"""The Python-API quickstart and the farm-task example run as a user would run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.processes import run_side_by_side

ROOT = Path(__file__).resolve().parents[2]
PERFORMANCE = ROOT / "examples" / "curves" / "performance_livelinkface.csv"


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def _run_all(*commands: list[str], timeout: float = 600) -> None:
    """Run ``python ARGS`` for each of ``commands`` at the same time (as a farm runs its tasks);
    every one must succeed."""
    run_side_by_side([[sys.executable, *args] for args in commands], cwd=ROOT, timeout=timeout)


def test_farm_tasks_cover_the_shot_once() -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    from farm_render import task_frames

    ranges = [task_frames(10, 23, t, 4) for t in range(4)]
    assert ranges == [(10, 16), (16, 22), (22, 28), (28, 33)]
    assert task_frames(0, 3, 3, 4) == (3, 3)
    with pytest.raises(ValueError, match="--task"):
        task_frames(0, 10, 4, 4)


def test_farm_tasks_render_disjoint_ranges_that_add_up(tiny_avatar_subject: Path, tmp_path: Path) -> None:
    curves = tmp_path / "shot.json"
    from protocol.curves import read_curves, write_curves

    perf = read_curves(PERFORMANCE)
    perf.values, perf.head_pose = perf.values[:7], perf.head_pose[:7]
    write_curves(perf, curves)
    out = tmp_path / "frames"
    _run_all(*(["examples/farm_render.py", str(tiny_avatar_subject), "--curves", str(curves),  # side by side
                "--task", str(task), "--tasks", "3", "-o", str(out)] for task in range(3)))
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == [f"{i:06d}.png" for i in range(7)]
    again = _run("examples/farm_render.py", str(tiny_avatar_subject), "--curves", str(curves), "--task", "0",
                 "--tasks", "3", "-o", str(out))
    assert "already exist" in again.stderr


def test_farm_task_reads_every_curves_format_and_reports_bad_files(tiny_avatar_subject: Path,
                                                                  tmp_path: Path) -> None:
    from protocol.curves import read_curves

    perf = read_curves(PERFORMANCE)
    npz = tmp_path / "shot.npz"
    np.savez(npz, names=np.array(perf.names), values=perf.values[:4], frame_start=100)
    out = tmp_path / "frames"
    _run("examples/farm_render.py", str(tiny_avatar_subject), "--curves", str(npz), "--task", "1",
         "--tasks", "2", "-o", str(out))
    assert sorted(p.name for p in out.glob("*.png")) == ["000102.png", "000103.png"]
    (tmp_path / "empty.csv").write_text("")
    for curves in (tmp_path / "empty.csv", tmp_path / "missing.json"):
        argv = ["examples/farm_render.py", str(tiny_avatar_subject), "--curves", str(curves),
                "--task", "0", "--tasks", "2", "-o", str(out)]
        proc = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and proc.stderr.startswith("error:"), proc.stderr


def test_quickstart_frames_match_the_render_cli(tiny_avatar_subject: Path, tmp_path: Path) -> None:
    """Same curves (frame_start 5, a turning head): the quickstart writes what `emo-avatar render` does."""
    import shutil

    from protocol.curves import read_curves, write_curves

    perf = read_curves(PERFORMANCE)
    perf.values, perf.frame_start = perf.values[:3], 5
    perf.head_pose = np.zeros((3, 6), np.float32)
    perf.head_pose[:, 0] = [0.0, 0.3, 0.6]  # yaw, rad
    curves = tmp_path / "turn.json"
    write_curves(perf, curves)
    out = tmp_path / "qs"
    shutil.copytree(tiny_avatar_subject, out / "subject")  # trained already: the quickstart only renders
    cli = tmp_path / "cli"
    # side by side; the CLI renders the original subject, which the quickstart's copy must still equal
    _run_all(["examples/quickstart.py", "--out", str(out), "--preset", "tiny", "--curves", str(curves)],
             ["-m", "backend.cli", "render", str(tiny_avatar_subject), "--curves", str(curves),
              "-o", str(cli)])
    names = [f"{f:06d}.png" for f in (5, 6, 7)]
    assert sorted(p.name for p in (out / "frames").glob("*.png")) == names
    for name in names:
        np.testing.assert_array_equal(cv2.imread(str(out / "frames" / name)),
                                      cv2.imread(str(cli / name)))


@pytest.mark.slow
def test_quickstart_runs_end_to_end_with_the_tiny_preset(tmp_path: Path) -> None:
    proc = _run("examples/quickstart.py", "--out", str(tmp_path), "--preset", "tiny", "--frames", "12")
    assert "wrote 12 frames" in proc.stdout
    frames = [cv2.imread(str(p)) for p in sorted((tmp_path / "frames").glob("*.png"))]
    assert len(frames) == 12 and frames[0].shape == (32, 32, 3)
    assert np.stack(frames).std() > 10
