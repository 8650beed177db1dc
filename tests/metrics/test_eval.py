"""Sharpness, landmark distance and the held-out evaluation on the tiny synthetic avatar."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from backend.cli import main as cli_main
from backend.metrics.evaluate import evaluate
from backend.metrics.landmarks import f_lmd, landmark_distance
from backend.metrics.sharpness import sharpness, sharpness_difference


def test_sharpness_direction() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(64, 64, 3)).astype(np.uint8)
    blurred = cv2.GaussianBlur(img, (5, 5), 1.5)
    assert sharpness(np.full((8, 8, 3), 77, np.uint8)) == 0.0
    assert sharpness_difference(blurred, img) < 0 < sharpness_difference(img, blurred)
    # a horizontal ramp of slope 2 grey levels per pixel has sharpness exactly 2
    ramp = np.repeat((np.arange(32) * 2.0)[None, :, None], 32, 0).repeat(3, 2)
    assert abs(sharpness(ramp) - 2.0) < 1e-9


def test_landmark_distance_known_shift() -> None:
    pts = np.random.default_rng(1).uniform(0, 64, size=(478, 3))
    shifted = pts + np.array([3.0, 4.0, 10.0])  # z is ignored
    assert abs(landmark_distance(shifted, pts) - 5.0) < 1e-9


def test_f_lmd_counts_frames_without_faces() -> None:
    flat = [np.full((32, 32, 3), 128, np.uint8)] * 2
    r = f_lmd(flat, flat)
    assert r.value is None and r.failed_gt == 2 and r.failed_render == 2


def test_eval_writes_metrics_and_contact_sheet(writable_subject: Path) -> None:
    data = json.loads((writable_subject / "avatar" / "metrics.json").read_text())
    assert data["eval"]["face_psnr_db"] > 5  # training wrote the held-out report
    result = evaluate(writable_subject, device="cpu", landmarks=False)
    assert result["frames"] >= 2 and 10 < result["psnr_db"] < 60 and 0 < result["ssim"] <= 1
    assert result["lpips"] is None and "not computed" in result["lpips_note"]
    for k in ("face_psnr_db", "mouth_psnr_db", "eyes_psnr_db"):
        assert 5 < result[k] <= 100, (k, result[k])
    assert 0 < result["face_ssim"] <= 1 and result["mouth_l1"] >= 0 and result["eyes_l1"] >= 0
    assert result["lap_l1"] > 0 and result["face_lap_l1"] > 0 and 0 <= result["edge_f1"] <= 1
    assert result["identity_distance"] is not None and 0 <= result["identity_distance"] < 2
    assert "dlib" in result["identity_note"]
    data = json.loads((writable_subject / "avatar" / "metrics.json").read_text())
    assert set(data) >= {"train", "eval"} and data["eval"]["sd"] >= 0
    sheet = cv2.imread(str(writable_subject / "avatar" / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[1] % 3 == 0 and sheet.shape[1] >= 3 * 128
    assert cli_main(["eval", str(writable_subject), "--max-frames", "2"]) == 0
    data = json.loads((writable_subject / "avatar" / "metrics.json").read_text())
    ev = data["eval"]
    assert ev["frames"] == 2
    assert ev["f_lmd_frames"] + max(ev["f_lmd_failed_gt"], ev["f_lmd_failed_render"]) >= 2
    assert ev["f_lmd_px"] is None or ev["f_lmd_px"] >= 0
