"""`emo-avatar eval --references`: DNR baseline + no-PTI / no-flow ablations at the same budget."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

from backend.cli import main as cli_main
from backend.model.dnr_baseline import DNRBaseline
from backend.paths import avatar_dir, checkpoint_path
from backend.train.references import ROWS


def test_dnr_baseline_shapes_and_gradients() -> None:
    model = DNRBaseline(32, tex_channels=6, tex_size=32, levels=2, base=4, depth=3, channel_max=16)
    uv = torch.rand(2, 3, 32, 32)
    out = model(uv)
    assert out.image.shape == (2, 3, 32, 32) and out.tex_rgb.shape == (2, 3, 32, 32)
    out.image.mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.slow  # four short trainings (~1 min on 2 cores)
def test_references_table_same_budget_and_own_checkpoint_untouched(writable_subject: Path,
                                                                     capsys) -> None:
    subject = writable_subject
    ckpt = checkpoint_path(subject)
    before = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    mtime = ckpt.stat().st_mtime_ns
    assert cli_main(["eval", str(subject), "--references", "--budget-steps", "3", "--no-landmarks",
                     "--no-identity", "--max-frames", "4", "--device", "cpu"]) == 0
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == before and ckpt.stat().st_mtime_ns == mtime
    refs = json.loads((avatar_dir(subject) / "metrics.json").read_text())["references"]
    rows = refs["rows"]
    assert [r["name"] for r in rows] == list(ROWS)
    assert all(r["steps"] == 3 for r in rows)  # same budget (the avatar itself is retrained at 3 steps)
    assert all(math.isfinite(r["psnr_db"]) and r["psnr_db"] > 5 for r in rows)
    assert all(math.isfinite(r["face_psnr_db"]) and math.isfinite(r["mouth_l1"]) for r in rows)  # DNR too
    assert {r["frames"] for r in rows} == {4}  # same held-out frames (--max-frames of them)
    assert all(r.get("identity_distance") is None for r in rows)  # --no-identity reaches every row
    for r in rows:
        assert Path(r["checkpoint"]).is_file() and Path(r["checkpoint"]) != ckpt
    table = (avatar_dir(subject) / "references.md").read_text()
    assert table == refs["table"] and all(f"| {name} |" in table for name in ROWS)
    assert "| dnr baseline |" in capsys.readouterr().out
    # the no-flow ablation really has no flow, the no-PTI one really skipped PTI
    no_flow = torch.load(Path(rows[3]["checkpoint"]), weights_only=True)["meta"]
    assert no_flow["config"]["use_flow"] is False
    no_pti = torch.load(Path(rows[2]["checkpoint"]), weights_only=True)["meta"]
    assert no_pti["pti"]["w_steps"] == 0 and no_pti["pti"]["g_steps"] == 0
