"""A style measured against ground truth: ``evaluate_style(subject, style, look=...)``.

Renders go through ``backend.render.Renderer`` (with and without the style file), so whatever a
style file holds is applied exactly as ``emo-avatar render --style`` applies it.

With a look (a built-in name from ``backend.looks.LOOKS`` or any function uint8 RGB -> uint8 RGB):

* ground truth = the look applied to the **real** held-out frames (resampled to the avatar's
  resolution as training sees them, then the look is applied at that resolution);
* ``styled``: the styled renders of the same frames, scored against it
  (``backend.metrics.image_scores``: whole-frame and face-region PSNR/SSIM, mouth/eye errors,
  edge F1 and the detail ratio in the face box, Laplacian-pyramid L1, LPIPS when present);
* ``post_filter``: the look applied to the *unstyled* renders, scored the same way in the same
  run (the bound a style edit should reach: it is what filtering the plain render gives);
* ``unstyled``: the unstyled renders themselves (no style at all), for scale.

With or without a look:

* ``expression``: re-tracked mouth/eye aperture against the driving jawOpen / eyeBlink curves
  (``backend.metrics.expression``), for the real frames, unstyled and styled renders of a shot;
* ``flicker``: mean absolute frame-to-frame change (``temporal_change``, [0, 1] units) on the
  same shot, styled vs unstyled (and post-filter with a look), and their ratio; ``warped``: the
  same after motion compensation (``warped_temporal_change``, the flow of the unstyled render for
  the renders, of the real frames for the real frames and the truth), and ``warped_ratio``;
* ``identity``: dlib descriptor distance of styled and unstyled renders to the real frames;
* ``reference``: when the reference image is known (``reference=`` or the style's meta), the
  styled and unstyled renders of its frame against it, colour-histogram / Gram distances of
  the held-out styled renders to it (pose-free style statistics), and ``heldout_detail_ratio``:
  the held-out faces' detail over the reference face's (``face_detail``; a hand-made reference
  needs no look function for it).

The shot: the longest run of consecutive held-out frames when it has at least ``MIN_SHOT``
frames and both driving curves vary (std >= ``MIN_CURVE_STD``); otherwise every frame of the
clip, or of its longest shot when the subject has cuts (most are stage-1 training frames, but none
was seen by the style edit except its keyframes). Neither crosses a cut (``Subject.cuts``),
and the renders are steadied shot by shot (``Renderer.render(cuts=...)``). ``shot.source`` says
which.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from backend.data.subject import Subject, runs_of
from backend.imaging.convert import frame_at, resize_square
from backend.looks import LookFn, apply_look, look_function
from backend.metrics.evaluate import heldout_ids
from backend.metrics.expression import driving_curves, expression_correlation
from backend.metrics.identity import identity_distance
from backend.metrics.image_scores import face_detail, image_scores, lpips_metric
from backend.metrics.metrics_file import update_metrics_json
from backend.metrics.regions import subject_regions
from backend.metrics.style_metrics import (
    color_histogram_distance,
    gram_distance,
    longest_run,
    shot_motion,
    temporal_change,
    warped_temporal_change,
)
from backend.paths import checkpoint_path

log = logging.getLogger(__name__)

MIN_SHOT = 48
"""Fewest consecutive held-out frames used as the shot; shorter runs use the whole clip."""
MIN_CURVE_STD = 0.05
"""Driving curves flatter than this over the held-out run make it useless for a correlation."""
EVAL_SUFFIX = ".eval.json"
SHEET_SUFFIX = ".eval.png"
NO_LOOK = "reference"
"""Key of a run without a look in ``<style>.eval.json``."""


EXPRESSION_ROWS = ("real", "unstyled", "styled", "post_filter", "truth")
"""The shots re-tracked for expression preservation (``post_filter`` and ``truth``, the look
applied to the real frames, only with a look: what the look itself does to the tracker)."""


def eval_json_path(style: Path) -> Path:
    """``<style stem>.eval.json`` beside the style file."""
    style = Path(style)
    return style.with_name(style.stem + EVAL_SUFFIX)


def style_meta(style: Path) -> dict[str, Any]:
    """The JSON meta of a style file (``meta_json`` of its torch dict), {} when it has none.

    Only the reference's path and frame are read from it; the style itself is applied by
    ``Renderer``.
    """
    import torch

    try:
        blob = torch.load(Path(style), map_location="cpu", weights_only=True)
        return dict(json.loads(blob.get("meta_json", "{}"))) if isinstance(blob, dict) else {}
    except Exception as exc:  # the Renderer reports unreadable styles; the meta is optional here
        log.warning("could not read the meta of %s: %s", style, exc)
        return {}


def keyframe_ids(meta: dict[str, Any]) -> set[int]:
    """The frames a style was fitted on (its keyframes; the single ``frame`` of older files)."""
    frames = {int(k["frame"]) for k in meta.get("keyframes") or [] if "frame" in k}
    if not frames and meta.get("frame") is not None:
        frames = {int(meta["frame"])}
    return frames


def choose_shot(heldout: np.ndarray, n_frames: int, curves: dict[str, np.ndarray | None],
                max_len: int | None = None, starts: Sequence[int] = ()) -> tuple[list[int], str]:
    """(frame ids of consecutive frames, "held-out run" | "whole clip" | "longest shot").

    ``starts``: the subject's ``cuts``; the frames chosen never cross one, so a cut is not
    counted as flicker."""
    run = longest_run(heldout, n_frames, starts)
    varied = all(c is not None and float(np.std(c[run])) >= MIN_CURVE_STD for c in curves.values())
    if len(run) >= MIN_SHOT and varied:
        ids, source = run, "held-out run"
    else:
        a, b = max(runs_of(n_frames, list(starts)), key=lambda r: r[1] - r[0])
        ids, source = list(range(a, b)), "longest shot" if starts else "whole clip"
    if max_len is not None and len(ids) > max_len:
        ids = ids[:max_len]
    return ids, source


def _resolve(subject: Path, style: Path, checkpoint: Path | None) -> tuple[Path, Path]:
    subject, style = Path(subject), Path(style)
    if not subject.is_dir():
        raise FileNotFoundError(f"subject folder {subject} not found")
    if not style.is_file():
        raise FileNotFoundError(f"style file {style} not found (make one with `emo-avatar edit`)")
    ckpt = Path(checkpoint) if checkpoint is not None else checkpoint_path(subject)
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt} not found: train the avatar first (emo-avatar train {subject})")
    return style, ckpt


def _render(renderer: Any, subject: Any, ids: list[int] | np.ndarray) -> np.ndarray:
    return np.stack(list(renderer.render(subject.expressions, uv_maps=subject.uv_maps, indices=list(ids),
                                         cuts=subject.cuts)))


def _reference_scores(ref_rgb: np.ndarray, frame: int, styled_r: Any, plain_r: Any, subject: Any,
                      size: int, held_styled: np.ndarray, held_plain: np.ndarray,
                      held_regions: list[Any]) -> dict[str, Any]:
    ref = resize_square(ref_rgb, size)
    s = _render(styled_r, subject, [frame])
    p = _render(plain_r, subject, [frame])
    regs = subject_regions(subject, [frame], size)
    face = regs[0].mask("face", (size, size))
    ref_detail = face_detail(ref[None], regs)
    def held(fn: Any, frames: np.ndarray) -> float:
        return float(np.mean([fn(ref, x) for x in frames]))

    return {
        "frame": frame,
        "styled": image_scores(s, ref[None], regs),
        "unstyled": image_scores(p, ref[None], regs),
        "histogram_face": {"unstyled": color_histogram_distance(ref, p[0], face),
                           "styled": color_histogram_distance(ref, s[0], face)},
        "gram_face": {"unstyled": gram_distance(ref, p[0], face), "styled": gram_distance(ref, s[0], face)},
        "heldout_histogram": {"unstyled": held(color_histogram_distance, held_plain),
                              "styled": held(color_histogram_distance, held_styled)},
        "heldout_gram": {"unstyled": held(gram_distance, held_plain),
                         "styled": held(gram_distance, held_styled)},
        # the held-out faces' detail over the reference's own: needs no look function
        "heldout_detail_ratio": None if ref_detail <= 0 else {
            "unstyled": face_detail(held_plain, held_regions) / ref_detail,
            "styled": face_detail(held_styled, held_regions) / ref_detail},
    }


def _load_reference(reference: Path | np.ndarray | None, meta: dict[str, Any]
                    ) -> tuple[np.ndarray | None, str]:
    import cv2

    if isinstance(reference, np.ndarray):
        return reference, "array"
    path = Path(reference) if reference is not None else (
        Path(meta["reference_source"]) if meta.get("reference_source") not in (None, "array") else None)
    if path is None:
        return None, "no reference: pass reference= (the style's meta names none)"
    if not path.is_file():
        if reference is not None:
            raise FileNotFoundError(f"reference image {path} not found")
        return None, f"the style's reference {path} is no longer on disk"
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"reference {path} is not an image OpenCV can read")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), str(path)


def evaluate_style(subject: Path, style: Path, look: str | LookFn | None = None, *,
                   checkpoint: Path | None = None, device: str | None = None, max_frames: int | None = None,
                   shot_frames: int | None = None, reference: Path | np.ndarray | None = None,
                   reference_frame: int | None = None, identity: bool = True, write: bool = True,
                   n_sheet: int = 4, frame_ids: list[int] | None = None) -> dict[str, Any]:
    """Score a style against ground truth on held-out frames (see the module docstring).

    Args:
        subject: subject folder with a trained ``avatar/checkpoint.pt``.
        style: the ``.style`` file to measure.
        look: a built-in look name, a function (H, W, 3) uint8 RGB -> same, or None (a hand-made
            reference: only what needs no ground-truth look is reported).
        checkpoint: default ``SUBJECT/avatar/checkpoint.pt``.
        device: torch device string, None = CUDA when present.
        max_frames: score at most this many held-out frames (evenly spaced).
        shot_frames: cap the expression/flicker shot at this many frames.
        reference / reference_frame: the style's reference image and its frame (default: from the
            style's meta when the file still exists).
        identity: compute the dlib identity distance (null with a note when dlib is missing).
        write: write ``<style>.eval.json`` (keyed by look name) and ``<style>.eval.png``, and the
            ``style_eval`` section of ``SUBJECT/avatar/metrics.json``.
        n_sheet: frames in the contact sheet.
        frame_ids: score these frames instead of every held-out one (each must be held out), e.g.
            the poses near a keyframe.
    Returns:
        The result dict (JSON-serialisable).
    Raises:
        FileNotFoundError: missing subject, style, checkpoint or reference.
        ValueError: unknown look, a style that does not fit the avatar, no held-out frames.
    """
    from backend.render import Renderer

    t0 = time.monotonic()
    look_name, look_fn = look_function(look) if look is not None else (None, None)
    style, ckpt = _resolve(Path(subject), Path(style), checkpoint)
    subject = Path(subject)
    plain_r = Renderer.from_checkpoint(ckpt, device=device, subject=subject)
    styled_r = Renderer.from_checkpoint(ckpt, device=device, style=style, subject=subject)
    subj = Subject.open(subject)
    if list(subj.expression_names) != plain_r.names:
        raise ValueError(f"{subject} has other expression curves than the avatar was trained on")
    size = plain_r.size
    held = heldout_ids(plain_r.meta, subj)
    meta = style_meta(style)
    seen = keyframe_ids(meta)  # the edit saw these frames' real pixels: never scored
    held = held[~np.isin(held, sorted(seen))]
    if len(held) == 0:
        raise ValueError(f"{subject}: no held-out frames to evaluate on (besides the style's keyframes)")
    ids = held
    if frame_ids is not None:
        not_held = sorted(set(map(int, frame_ids)) - set(held.tolist()))
        if not_held or not frame_ids:
            raise ValueError(f"frames to score must be held-out frames that are not the style's keyframes; "
                             f"{not_held or 'none given'} are not")
        ids = np.asarray(sorted(set(map(int, frame_ids))), dtype=np.int64)
    if max_frames is not None and len(ids) > max_frames:
        ids = ids[np.linspace(0, len(ids) - 1, max_frames).round().astype(int)]

    real = np.stack([frame_at(subj.frame(int(i)), size) for i in ids])
    plain = _render(plain_r, subj, ids)
    styled = _render(styled_r, subj, ids)
    regions = subject_regions(subj, ids, size)
    result: dict[str, Any] = {
        "style": str(style), "look": look_name, "subject": str(subject), "checkpoint": str(ckpt),
        "size": size, "frames": [int(i) for i in ids], "keyframes_not_scored": sorted(seen),
        "ground_truth": (f"look {look_name!r} applied to the real held-out frames at {size} px"
                         if look_fn else "none (no look: a hand-made reference)"),
    }
    post = None
    if look_fn is not None:
        lp = lpips_metric(plain_r.device)
        gt = np.stack([apply_look(f, look_fn) for f in real])
        post = np.stack([apply_look(f, look_fn) for f in plain])
        result["styled"] = image_scores(styled, gt, regions, lp, plain_r.device)
        result["post_filter"] = image_scores(post, gt, regions, lp, plain_r.device)
        result["unstyled"] = image_scores(plain, gt, regions, lp, plain_r.device)
        result["gap_db"] = {
            "face_psnr": result["styled"]["face_psnr_db"] - result["post_filter"]["face_psnr_db"],
            "psnr": result["styled"]["psnr_db"] - result["post_filter"]["psnr_db"],
            "ssim": result["styled"]["ssim"] - result["post_filter"]["ssim"],
        }

    # expression preservation and flicker on one shot of consecutive frames
    curves_all = driving_curves(np.asarray(subj.expressions, np.float64), subj.expression_names)
    shot, source = choose_shot(held, subj.n_frames, curves_all, shot_frames, subj.cuts)
    curves = {k: (None if v is None else v[shot]) for k, v in curves_all.items()}
    shot_real = np.stack([frame_at(subj.frame(i), size) for i in shot])
    shot_plain, shot_styled = _render(plain_r, subj, shot), _render(styled_r, subj, shot)
    result["shot"] = {"source": source, "first": shot[0], "last": shot[-1], "frames": len(shot)}
    result["expression"] = {
        "real": expression_correlation(shot_real, curves),
        "unstyled": expression_correlation(shot_plain, curves),
        "styled": expression_correlation(shot_styled, curves),
    }
    flick: dict[str, Any] = {"real": temporal_change(shot_real), "unstyled": temporal_change(shot_plain),
                             "styled": temporal_change(shot_styled)}
    if look_fn is not None:  # what the tracker and the look itself do, for comparison
        shot_post = np.stack([apply_look(f, look_fn) for f in shot_plain])
        shot_truth = np.stack([apply_look(f, look_fn) for f in shot_real])
        result["expression"]["post_filter"] = expression_correlation(shot_post, curves)
        result["expression"]["truth"] = expression_correlation(shot_truth, curves)
        flick["post_filter"] = temporal_change(shot_post)
        flick["truth"] = temporal_change(shot_truth)
    flick["ratio"] = flick["styled"] / flick["unstyled"] if flick["unstyled"] > 0 else None
    real_motion, plain_motion = shot_motion(shot_real), shot_motion(shot_plain)  # once per geometry
    warped = {"real": warped_temporal_change(shot_real, motion=real_motion),
              "unstyled": warped_temporal_change(shot_plain, motion=plain_motion),
              "styled": warped_temporal_change(shot_styled, motion=plain_motion)}
    if look_fn is not None:
        warped["post_filter"] = warped_temporal_change(shot_post, motion=plain_motion)
        warped["truth"] = warped_temporal_change(shot_truth, motion=real_motion)
    flick["warped"] = warped
    flick["warped_ratio"] = warped["styled"] / warped["unstyled"] if warped["unstyled"] > 0 else None
    result["flicker"] = flick

    if identity:
        faces = [r.face for r in regions]
        result["identity"] = {"styled": identity_distance(styled, real, faces),
                              "unstyled": identity_distance(plain, real, faces)}
    ref_rgb, ref_source = _load_reference(reference, meta)
    frame = reference_frame if reference_frame is not None else meta.get("frame")
    if ref_rgb is not None and frame is not None:
        result["reference"] = {"source": ref_source,
                               **_reference_scores(ref_rgb, int(frame), styled_r, plain_r, subj, size,
                                                   styled, plain, regions)}
    else:
        result["reference"] = {"note": ref_source if ref_rgb is None else "the reference's frame is unknown: "
                               "pass reference_frame="}
    result["seconds"] = round(time.monotonic() - t0, 1)
    if write:
        key = look_name or NO_LOOK
        update_metrics_json(eval_json_path(style), key, result)
        update_metrics_json(ckpt.parent / "metrics.json", "style_eval",
                            {f"{style.stem}/{key}": summary(result)})
        write_sheet(style.with_name(style.stem + SHEET_SUFFIX), ids, real, plain, styled,
                    None if post is None else (gt, post), look_name, n_sheet)
    return result


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of an ``evaluate_style`` result (a flat dict)."""
    out: dict[str, Any] = {"look": result.get("look"), "frames": len(result.get("frames", []))}
    for row in ("styled", "post_filter", "unstyled"):
        if row in result:
            for k in ("psnr_db", "ssim", "face_psnr_db", "face_ssim", "edge_f1", "face_detail_ratio",
                      "lap_l1"):
                out[f"{row}_{k}"] = result[row].get(k)
    for row in EXPRESSION_ROWS:
        if row in result["expression"]:
            out[f"{row}_jaw_open_r"] = result["expression"][row]["jaw_open_r"]
            out[f"{row}_eye_blink_r"] = result["expression"][row]["eye_blink_r"]
    out["flicker_ratio"] = result["flicker"]["ratio"]
    out["warped_flicker_ratio"] = result["flicker"]["warped_ratio"]
    out["shot"] = result["shot"]["source"]
    return out


def write_sheet(path: Path, ids: np.ndarray, real: np.ndarray, plain: np.ndarray, styled: np.ndarray,
                look_pair: tuple[np.ndarray, np.ndarray] | None, look: str | None, n: int) -> None:
    """Contact sheet: real | look(real) | unstyled | post-filter | styled | |styled - look(real)| x4."""
    from backend.images import write_png
    from backend.imaging.grid import preview_grid
    from backend.metrics.evaluate import error_map

    pick = np.linspace(0, len(ids) - 1, min(n, len(ids))).round().astype(int)
    if look_pair is not None:
        gt, post = look_pair
        cols = [real[pick], gt[pick], plain[pick], post[pick], styled[pick],
                np.stack([error_map(styled[i], gt[i]) for i in pick])]
        names = ["real", "truth (look)", "unstyled", "post-filter", "styled", "|styled-truth| x4"]
    else:
        cols, names = [real[pick], plain[pick], styled[pick]], ["real", "unstyled", "styled"]
    title = f"style eval ({look or 'no look'}) on held-out frames"
    write_png(path, preview_grid(cols, names, [f"#{ids[i]}" for i in pick], title))


def _f(v: Any, fmt: str) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def format_table(result: dict[str, Any]) -> str:
    """The readable table ``emo-avatar eval --style`` prints."""
    lines = [f"style {result['style']}  look {result['look'] or '(none)'}  "
             f"{len(result['frames'])} held-out frames at {result['size']} px"]
    if "styled" in result:
        lines.append(f"{'':13}{'PSNR':>7}{'SSIM':>7}{'facePSNR':>9}{'faceSSIM':>9}{'mouthL1':>8}"
                     f"{'eyesL1':>7}{'edgeF1':>7}{'detail':>7}{'lapL1':>7}{'LPIPS':>7}")
        for row in ("styled", "post_filter", "unstyled"):
            r = result[row]
            lines.append(f"{row:13}{_f(r['psnr_db'], '7.2f')}{_f(r['ssim'], '7.3f')}"
                         f"{_f(r['face_psnr_db'], '9.2f')}{_f(r['face_ssim'], '9.3f')}"
                         f"{_f(r['mouth_l1'], '8.1f')}{_f(r['eyes_l1'], '7.1f')}"
                         f"{_f(r['edge_f1'], '7.3f')}{_f(r.get('face_detail_ratio'), '7.2f')}"
                         f"{_f(r['lap_l1'], '7.4f')}{_f(r.get('lpips'), '7.3f')}")
        g = result["gap_db"]
        lines.append(f"styled - post-filter: face PSNR {g['face_psnr']:+.2f} dB, PSNR {g['psnr']:+.2f} dB, "
                     f"SSIM {g['ssim']:+.3f}")
    sh = result["shot"]
    lines.append(f"shot: {sh['source']}, frames {sh['first']}-{sh['last']} ({sh['frames']})")
    lines.append(f"{'':13}{'jawOpen r':>10}{'eyeBlink r':>11}{'tracked':>9}{'flicker':>9}")
    for row in EXPRESSION_ROWS:
        if row not in result["expression"]:
            continue
        e = result["expression"][row]
        lines.append(f"{row:13}{_f(e['jaw_open_r'], '10.3f')}{_f(e['eye_blink_r'], '11.3f')}"
                     f"{e['tracked']:>5}/{e['frames']:<3}{_f(result['flicker'][row], '9.4f')}")
    fl = result["flicker"]
    extra = f", post-filter {fl['post_filter']:.4f}" if "post_filter" in fl else ""
    lines.append(f"flicker styled/unstyled: {_f(fl['ratio'], '.2f')}{extra}; motion-compensated "
                 f"{_f(fl['warped_ratio'], '.2f')}")
    if "identity" in result:
        i_s, i_p = result["identity"]["styled"], result["identity"]["unstyled"]
        if i_s["identity_distance"] is None:
            lines.append(f"identity: {i_s['identity_note']}")
        else:
            lines.append(f"identity distance to the real frames (dlib): styled "
                         f"{i_s['identity_distance']:.3f}, unstyled {i_p['identity_distance']:.3f}")
    ref = result.get("reference", {})
    if "styled" in ref:
        lines.append(f"reference frame {ref['frame']}: PSNR styled {ref['styled']['psnr_db']:.2f} / unstyled "
                     f"{ref['unstyled']['psnr_db']:.2f} dB; held-out Gram distance to the reference styled "
                     f"{ref['heldout_gram']['styled']:.3f} / unstyled {ref['heldout_gram']['unstyled']:.3f}")
        if ref.get("heldout_detail_ratio") is not None:
            d = ref["heldout_detail_ratio"]
            lines.append(f"held-out face detail x the reference's: styled {d['styled']:.2f} / unstyled "
                         f"{d['unstyled']:.2f}")
    elif "note" in ref:
        lines.append(f"reference: {ref['note']}")
    return "\n".join(lines)
