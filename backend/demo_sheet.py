"""The demo's contact sheet: what went in, what the user asked for, what came out.

Rows (each a strip of the same time points):
  1. the training video (the subject's tracked crops);
  2. the shot rendered through Blender (cross-reenactment with the Live Link Face performance,
     styled), decoded from the final MP4 so the sheet shows exactly what was delivered;
plus, on the left, the stylised reference and the backend's own render of the shot's first frame
(UV maps rasterised from the rig, no Blender: the received frames should match it), and below,
the style's own contact sheet (reference | unstyled | styled on held-out poses) when the edit
wrote one.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from backend import paths
from backend.metrics.psnr import psnr
from protocol.fileio import atomic_write_bytes

TILE = 160
COLUMNS = 8


def _tile(rgb: np.ndarray, label: str = "") -> np.ndarray:
    interp = cv2.INTER_AREA if rgb.shape[0] > TILE else cv2.INTER_CUBIC
    img = cv2.resize(rgb, (TILE, TILE), interpolation=interp)
    if label:
        cv2.putText(img, label, (4, TILE - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def _video_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def _row_label(text: str, width: int) -> np.ndarray:
    bar = np.full((22, width, 3), 32, np.uint8)
    cv2.putText(bar, text, (6, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (230, 230, 230), 1, cv2.LINE_AA)
    return bar


def backend_render_of_shot(subject_dir: Path, style_name: str, curves: Path, n: int) -> list[np.ndarray]:
    """The first ``n`` frames of ``curves`` rendered by the backend alone (UV maps rasterised from the
    subject rig around its median pose): what Blender's UV pass should reproduce. (S, S, 3) uint8 each,
    S the avatar's size (its training preset's ``size``)."""
    from backend.render import Renderer
    from protocol.curves import read_curves

    c = read_curves(curves)
    renderer = Renderer.from_checkpoint(paths.checkpoint_path(subject_dir), subject=subject_dir,
                                        style=paths.style_path(subject_dir, style_name))
    pose, scale = renderer.curves_pose(c.head_pose, c.head_scale, n=c.n_frames)
    return list(renderer.render(c.values, pose=pose, scale=scale, names=c.names, indices=range(n)))


def write_demo_contact_sheet(out: Path, subject_dir: Path, style_name: str,
                             curves: Path) -> dict[str, object]:
    """Write ``out/contact_sheet.png``; returns facts: frame count, mean intensity of the shot, and the
    PSNR of the frames Blender received against the backend's own render of the same curves."""
    from backend.data.subject import Subject

    subject = Subject.open(subject_dir)
    shot = _video_frames(out / "shot.mp4")
    if not shot:
        raise RuntimeError(f"{out / 'shot.mp4'} has no readable frames")
    prefix = json.loads((out / "blender.json").read_text()).get("prefix")  # frames/ may hold older shots
    if not prefix:
        raise RuntimeError(f"{out / 'blender.json'} was written by an older demo; run it again with --force")
    received = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)
                for f in sorted((out / "frames").glob(f"{prefix}_*.png"))]
    if not received:
        raise RuntimeError(f"{out / 'frames'} has no frames of shot {prefix}")
    backend = backend_render_of_shot(subject_dir, style_name, curves, len(received))
    picks = np.linspace(0, len(shot) - 1, COLUMNS).round().astype(int)
    train_picks = np.linspace(0, subject.n_frames - 1, COLUMNS).round().astype(int)
    reference = cv2.cvtColor(cv2.imread(str(out / "reference.png")), cv2.COLOR_BGR2RGB)
    row_in = np.concatenate([_tile(reference, "reference")] + [
        _tile(subject.frame(int(i)), f"train {i}") for i in train_picks], axis=1)
    row_out = np.concatenate([_tile(backend[0], "backend alone, 0")] + [
        _tile(shot[int(i)], f"shot {i}") for i in picks], axis=1)
    width = row_in.shape[1]
    parts = [_row_label("training video (tracked crops) and the stylised reference", width), row_in,
             _row_label(f"Blender shot: Live Link Face performance, style '{style_name}' (shot.mp4)", width),
             row_out]
    style_sheet = paths.style_path(subject_dir, style_name).with_suffix(".contact.png")
    if style_sheet.exists():
        sheet = cv2.cvtColor(cv2.imread(str(style_sheet)), cv2.COLOR_BGR2RGB)
        scale = width / sheet.shape[1]
        height = max(1, round(sheet.shape[0] * scale))
        sheet = cv2.resize(sheet, (width, height), interpolation=cv2.INTER_AREA)
        parts += [_row_label("style check on held-out poses (reference | unstyled | styled)", width), sheet]
    image = np.concatenate(parts, axis=0)
    ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("could not encode the contact sheet")
    atomic_write_bytes(out / "contact_sheet.png", png.tobytes())
    shot_arr = np.stack(shot).astype(np.float32)
    return {"shot_frames": len(shot), "shot_mean_intensity": round(float(shot_arr.mean()), 2),
            "shot_frame_to_frame_change": round(float(np.abs(np.diff(shot_arr, axis=0)).mean()), 3),
            "shot_vs_backend_psnr_db": round(psnr(np.stack(received), np.stack(backend)), 2)}
