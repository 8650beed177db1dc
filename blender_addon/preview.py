"""Live preview: the current frame rendered by the backend (its own rasteriser draws the UVs, so
only curves + head pose travel), shown in the image "Emo-Avatar Preview" (any Image Editor) and,
optionally, as the rig camera's background.

Latest wins: at most one preview job is in flight; a frame change meanwhile replaces the one
pending request (older pending requests are dropped, never queued), which is sent as soon as the
frame in flight arrived. Each request is a one-frame ``render`` job carrying the neighbouring
``WINDOW_RADIUS`` rows of curves, so the preview shows exactly the pixels a shot render gives
that frame. It is a preview job (``params["preview"]``): the backend keeps it in memory only (no
journal, no stored inputs, no frame file) and runs it ahead of shot renders; its pixels come back
in memory and preview jobs stay out of the job list. While a request is in flight a timer of its
own (``poll_results``, every 5 ms) applies the I/O thread's results, so the image updates as soon
as the frame arrived.

``PREVIEW.stages`` keeps, per preview job, when it passed each stage on this side (``time.monotonic``
seconds): ``change`` (the frame change), ``sent`` and ``accepted`` (the submission on the I/O
thread), ``received`` (the frame on the I/O thread) and ``shown``; ``bench/addon.py`` joins them
with the backend's stamps (``EMO_STAGE_LOG``).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field

import bpy
import numpy as np

from . import curves_bpy, rig, runtime
from .shot import WINDOW_RADIUS

log = logging.getLogger(__name__)

IMAGE_NAME = "Emo-Avatar Preview"
KEEP_STAGES = 256
"""Previews whose stage times ``PREVIEW.stages`` keeps (the newest)."""
POLL_INTERVAL = 0.005
"""Seconds between result checks while a preview is in flight. The add-on's own timer idles at
``runtime.TIMER_INTERVAL`` (0.1 s), which alone would add up to 100 ms to every preview."""


@dataclass
class PreviewState:
    """The preview's bookkeeping (names and numbers only)."""

    in_flight: str | None = None
    in_flight_frame: int | None = None
    pending: tuple[str, str, int] | None = None  # (scene, rig, frame)
    dropped: int = 0
    requested: dict[int, float] = field(default_factory=dict)  # frame -> time.perf_counter()
    shown_frame: int | None = None
    shown_at: float = 0.0
    latency: float | None = None
    error: str = ""
    sampling: bool = False
    stages: dict[str, dict[str, float]] = field(default_factory=dict)  # job id -> stage -> monotonic s


PREVIEW = PreviewState()


def request(
    scene: bpy.types.Scene, frame: int | None = None, rig_object: bpy.types.Object | None = None
) -> bool:
    """Ask for a preview of ``frame`` (default: the current frame) of the scene's rig. Returns False
    when it cannot be sent (not connected, no rig); the reason is in ``PREVIEW.error``."""
    frame = scene.frame_current if frame is None else int(frame)
    try:
        head = rig.find_rig(scene, rig_object)
    except ValueError as exc:
        PREVIEW.error = str(exc)
        return False
    if not runtime.is_connected():
        PREVIEW.error = "not connected to a backend"
        return False
    PREVIEW.requested[frame] = time.perf_counter()
    if PREVIEW.in_flight is not None:
        if PREVIEW.pending is not None:
            PREVIEW.dropped += 1  # a newer frame replaces it: stale requests are never sent
        PREVIEW.pending = (scene.name, head.name, frame)
        return True
    return _send(scene.name, head.name, frame)


def _send(scene_name: str, rig_name: str, frame: int) -> bool:
    from . import api

    scene, head = bpy.data.scenes.get(scene_name), bpy.data.objects.get(rig_name)
    if scene is None or head is None:
        PREVIEW.error = f"the rig '{rig_name}' is gone"
        return False
    lo, hi = frame - WINDOW_RADIUS, frame + WINDOW_RADIUS
    PREVIEW.sampling = True  # sampling may frame_set: those frame changes are not new requests
    try:
        s = curves_bpy.sample_rig(scene, head, lo, hi)
    finally:
        PREVIEW.sampling = False
    settings = api.shot_settings(head)
    size = scene.emo_avatar_preview.size or rig.rig_frame(head, scene)[0]
    job_id = uuid.uuid4().hex
    waited = time.perf_counter() - PREVIEW.requested.get(frame, time.perf_counter())
    PREVIEW.stages[job_id] = {"change": time.monotonic() - waited}
    for old in list(PREVIEW.stages)[:-KEEP_STAGES]:
        del PREVIEW.stages[old]
    params = {
        "subject_id": str(head[rig.PROP_SUBJECT]),
        "style": settings["style"],
        "names": s.names,
        "fps": s.fps,
        "frame_start": lo,
        "frame_range": [frame, frame],
        "encoding": "raw",
        "size": int(size),
        "preview": True,
    }
    buffers = {
        "curves": np.ascontiguousarray(s.expressions, np.float32),
        "pose": np.ascontiguousarray(s.pose, np.float32),
        "scale": np.ascontiguousarray(s.scale, np.float32),
    }
    PREVIEW.in_flight, PREVIEW.in_flight_frame = job_id, frame
    runtime.RUNTIME.preview_camera = rig_name if scene.emo_avatar_preview.camera_background else ""
    runtime.RUNTIME.hidden_jobs.add(job_id)
    runtime.RUNTIME.frame_listeners[job_id] = _on_result
    runtime.call(
        "submit",
        on_done=_submitted,
        kind="render",
        params=params,
        buffers=buffers,
        job_id=job_id,
        quiet=True,
        stream={"memory": True, "frame_start": lo, "total": 1},
    )
    if not bpy.app.timers.is_registered(poll_results):
        bpy.app.timers.register(poll_results, first_interval=POLL_INTERVAL)
    return True


def poll_results() -> float | None:
    """Timer while a preview is in flight: apply what the I/O thread received every
    ``POLL_INTERVAL`` seconds, so the frame shows as soon as it arrived; ends (returns None) once
    nothing is in flight."""
    if PREVIEW.in_flight is None:
        return None
    runtime.apply_pending()
    return POLL_INTERVAL if PREVIEW.in_flight is not None else None


def _submitted(result) -> None:
    if result.error:
        _finish(PREVIEW.in_flight, f"preview refused: {result.error}")
        return
    stages = PREVIEW.stages.get(str(result.data.get("job_id")))
    if stages is not None:
        for name in ("sent", "accepted"):
            if f"t_{name}" in result.data:
                stages[name] = float(result.data[f"t_{name}"])


def _on_result(result) -> None:
    d = result.data
    if result.kind == "frame":
        show(np.asarray(d["image"]), int(d["frame"]))
        stages = PREVIEW.stages.get(str(d["job_id"]))
        if stages is not None:
            stages["received"] = float(d.get("t_received") or 0.0)
            stages["shown"] = time.monotonic()
        return
    if result.kind == "stream_end":
        _finish(d["job_id"], (d.get("error") or "preview failed") if d.get("state") != "done" else "")


def _finish(job_id: str | None, error: str = "") -> None:
    if job_id is not None:
        runtime.RUNTIME.frame_listeners.pop(job_id, None)
    if error:
        PREVIEW.error = error
        runtime.report("WARNING", error)
    if job_id is None or job_id == PREVIEW.in_flight:
        PREVIEW.in_flight = PREVIEW.in_flight_frame = None
        pending, PREVIEW.pending = PREVIEW.pending, None
        if pending is not None and runtime.is_connected():
            _send(*pending)


def show(image: np.ndarray, frame: int) -> bpy.types.Image:
    """Put an (H, W, 3) uint8 frame (top row first) into the preview image."""
    h, w = image.shape[:2]
    img = bpy.data.images.get(IMAGE_NAME)
    if img is None:
        img = bpy.data.images.new(IMAGE_NAME, w, h, alpha=False)
    elif tuple(img.size) != (w, h):
        img.scale(w, h)
    rgba = np.ones((h, w, 4), np.float32)
    rgba[..., :3] = image[::-1, :, :3] * np.float32(1.0 / 255.0)
    img.pixels.foreach_set(rgba.reshape(-1))
    img.update()
    PREVIEW.shown_frame, PREVIEW.shown_at = frame, time.perf_counter()
    t0 = PREVIEW.requested.pop(frame, None)
    PREVIEW.latency = None if t0 is None else PREVIEW.shown_at - t0
    for old in [f for f in PREVIEW.requested if PREVIEW.requested[f] < PREVIEW.shown_at - 60]:
        del PREVIEW.requested[old]
    cam_rig = runtime.RUNTIME.preview_camera
    if cam_rig:
        _camera_background(cam_rig, img)
    runtime.RUNTIME.changed = True
    return img


def _camera_background(rig_name: str, img: bpy.types.Image) -> None:
    head = bpy.data.objects.get(rig_name)
    cam = rig.recorded_camera(head) if head is not None else None
    if cam is None:
        return
    data = cam.data
    data.show_background_images = True
    for bg in data.background_images:
        if bg.image is not None and bg.image.name == img.name:
            return
    bg = data.background_images.new()
    bg.image = img
    bg.alpha = 1.0


def stop() -> None:
    """Forget requests in flight (file load, disconnect): their results are ignored."""
    if PREVIEW.in_flight is not None:
        runtime.RUNTIME.frame_listeners.pop(PREVIEW.in_flight, None)
    PREVIEW.in_flight = PREVIEW.in_flight_frame = PREVIEW.pending = None
    PREVIEW.requested.clear()


@bpy.app.handlers.persistent
def _on_frame_change(scene, *_args) -> None:
    """frame_change_post: a new frame (playback, scrub, arrow keys) while Live preview is on."""
    settings = getattr(scene, "emo_avatar_preview", None)
    if settings is None or not settings.live or PREVIEW.sampling or runtime.RUNTIME.runners:
        return  # a shot's UV pass steps through frames too: those are not the animator's
    try:
        request(scene)
    except Exception as exc:  # a handler must never raise into Blender
        log.exception("live preview request failed")
        PREVIEW.error = f"{type(exc).__name__}: {exc}"


def live_toggled(scene: bpy.types.Scene | None) -> None:
    """The Live preview toggle: switching it on previews the current frame at once."""
    if scene is not None and scene.emo_avatar_preview.live:
        request(scene)


def register() -> None:
    bpy.app.handlers.frame_change_post.append(_on_frame_change)


def unregister() -> None:
    if _on_frame_change in bpy.app.handlers.frame_change_post:
        bpy.app.handlers.frame_change_post.remove(_on_frame_change)
    stop()
    if bpy.app.timers.is_registered(poll_results):
        bpy.app.timers.unregister(poll_results)
