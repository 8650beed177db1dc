"""Python API for TDs and pipeline scripts (``blender -b shot.blend -P script.py`` or the console),
and the one implementation of connect / import / render that the operators use too.

    from bl_ext.user_default.emo_avatar import api as emo

    emo.connect()                                  # connection file from the preferences
    head = emo.import_subject("anna")              # rig + camera + tracked curves
    shot = emo.render_shot(bpy.context.scene, 1, 48, style="ink", wait=True)
    print(shot.state, len(shot.frames_done), shot.strip_name)

Everything goes through the same I/O thread and result handling as the UI. With ``wait=True``
(the default, and the only mode in background Blender, where timers never fire) a call pumps
``runtime.apply_pending`` itself until it is done; with ``wait=False`` it returns at once and the
timer does the work while Blender runs (``wait_shot`` waits later).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import bpy

from . import backend_proc, compat, curves_files, preferences, rig, rigdata, runtime, shot, vse
from .protocol.messages import TRAIN_PRESETS as _TRAIN_PRESET_NAMES
from .runtime import RUNTIME, Shot


class EmoAvatarError(RuntimeError):
    """A request the backend or the add-on refused; the message says why."""


def connect(
    connection_file: str | Path | None = None,
    *,
    timeout: float = 30.0,
    start_backend: bool | None = None,
    reply_timeout: float | None = None,
    wait: bool = True,
) -> dict[str, Any]:
    """Connect (starting a local backend first when asked or set in the preferences).

    With ``wait`` it blocks until connected and returns the server info; raises ``EmoAvatarError``
    when no backend answers, at once when the connection file does not exist and no local backend
    is starting to write it. Without ``wait`` (the Connect button) it returns at once: the backend
    starts and the I/O thread connects in the background (the panel shows the status).
    A backend on another machine needs Blender's "Allow Online Access".
    """
    p = preferences.prefs()
    path = Path(connection_file) if connection_file else Path(preferences.connection_file())
    try:
        preferences.check_online_access(path)
    except PermissionError as exc:
        raise EmoAvatarError(str(exc)) from None
    if start_backend if start_backend is not None else p.start_local:
        start_local_backend(path)
    runtime.start_io(path, timeout=reply_timeout or p.timeout)
    st = runtime.wm_state()
    if not wait:
        return {}
    if not path.is_file() and not local_backend_running():
        # nothing will write the file: waiting the whole timeout would only delay this message
        # (the I/O thread keeps retrying in the background, as for a backend that does not answer)
        st.status, st.message = "UNAVAILABLE", missing_connection_file_message(path)
        raise EmoAvatarError(st.message)
    try:
        runtime.wait_for(lambda: st.status in ("CONNECTED", "ERROR"), timeout, "the backend")
    except TimeoutError:
        # the I/O thread keeps retrying in the background; scripts get the reason now
        raise EmoAvatarError(f"no backend answered within {timeout:.0f} s: {st.message}") from None
    if st.status == "ERROR":
        raise EmoAvatarError(st.message)
    return {
        "server": st.server,
        "device": st.device,
        "proto": st.proto,
        "instance_id": st.instance_id,
        "warning": st.message,
    }


def missing_connection_file_message(path: str | Path) -> str:
    """What to do about a connection file that does not exist."""
    return (
        f"no connection file at {path}: start the backend (`emo-avatar serve --connection-file {path}`) "
        "or use 'Start local backend' in the add-on preferences"
    )


def local_backend_running() -> bool:
    """True while the local backend this Blender started is alive (it may still be writing its
    connection file)."""
    return RUNTIME.backend_proc is not None and RUNTIME.backend_proc.poll() is None


def start_local_backend(connection_file: str | Path | None = None) -> None:
    """Start ``emo-avatar serve`` with the preferences' backend command and workdir (once). Returns
    as soon as the process runs: the I/O thread connects when it has written its connection file."""
    if local_backend_running():
        return
    p = preferences.prefs()
    path = Path(connection_file) if connection_file else Path(preferences.connection_file())
    RUNTIME.backend_proc = backend_proc.start(p.backend_command, preferences.workdir(), path, wait=0.0)


def stop_local_backend(timeout: float = 10.0) -> None:
    proc, RUNTIME.backend_proc = RUNTIME.backend_proc, None
    if proc is not None:
        backend_proc.stop(proc, timeout)


def disconnect() -> None:
    runtime.stop_io()


def _call(op: str, timeout: float = 120.0, **kwargs: Any):
    try:
        return runtime.call_and_wait(op, timeout=timeout, **kwargs)
    except RuntimeError as exc:
        raise EmoAvatarError(str(exc)) from None


def refresh() -> None:
    """Reload the job and subject lists from the backend."""
    _call("refresh")


def subjects() -> list[dict[str, Any]]:
    refresh()
    return [
        {"subject_id": s.name, "has_avatar": s.has_avatar, "styles": [x for x in s.styles.split(",") if x]}
        for s in runtime.wm_state().subjects
    ]


def jobs() -> list[dict[str, Any]]:
    refresh()
    return [
        {"job_id": j.job_id, "kind": j.kind, "state": j.state, "progress": j.progress, "error": j.error}
        for j in runtime.wm_state().jobs
    ]


def import_subject(
    subject_id: str | None = None,
    *,
    scene: bpy.types.Scene | None = None,
    frame_start: int = 1,
    folder: str | Path | None = None,
    with_curves: bool = True,
    match_scene: bool | None = None,
) -> bpy.types.Object:
    """Import a subject's rig (from the backend, or from a subject ``folder`` on disk) into its own
    collection; returns the head (active and selected). ``match_scene``: set the scene's camera,
    resolution, fps and frame range from the subject (default: only for an empty scene)."""
    scene = scene or bpy.context.scene
    if folder is not None:
        data = rigdata.load_subject_folder(folder)
    else:
        subject_id = subject_id or runtime.wm_state().subject
        if not subject_id:
            raise EmoAvatarError("which subject? pass subject_id (see subjects())")
        data = rigdata.from_subject_reply(_call("subject", subject_id=subject_id).data["subject"])
    head, _cam = rig.build_rig(
        data, scene, frame_start=frame_start, with_curves=with_curves, match_scene=match_scene
    )
    return head


def import_subject_async(
    subject_id: str,
    scene_name: str,
    *,
    frame_start: int = 1,
    with_curves: bool = True,
    match_scene: bool | None = None,
    on_done: Callable[[str | None, str], None] | None = None,
) -> int:
    """Non-blocking import (the Import Subject Rig button): the rig is fetched by the I/O thread
    and built by the timer, as its own undo step. ``on_done(head_name or None, error)``."""

    def done(result) -> None:
        head_name, error = None, result.error or ""
        scene = bpy.data.scenes.get(scene_name)
        if not error and scene is None:
            error = f"the scene '{scene_name}' is gone"
        if not error:
            try:
                data = rigdata.from_subject_reply(result.data["subject"])
                head, _cam = rig.build_rig(
                    data, scene, frame_start=frame_start, with_curves=with_curves, match_scene=match_scene
                )
                head_name = head.name
                runtime.undo_push(f"Import Emo-Avatar rig {head_name}")
            except (KeyError, ValueError) as exc:
                error = f"cannot build the rig of '{subject_id}': {exc}"
        if error:
            runtime.report("ERROR", error)
        if on_done is not None:
            on_done(head_name, error)

    return runtime.call("subject", on_done=done, subject_id=subject_id)


def submit(
    kind: str,
    params: dict[str, Any],
    buffers: dict | None = None,
    *,
    wait: bool = False,
    timeout: float = 3600.0,
) -> str:
    """Submit a track/train/edit job; with ``wait`` block until it ends (raises if it failed)."""
    job_id = _call("submit", kind=kind, params=params, buffers=buffers).data["job_id"]
    if wait:
        wait_job(job_id, timeout)
    return job_id


TRACK_FRAMINGS: tuple[tuple[str, str, str], ...] = (
    ("face", "Face", "The face fills the crop"),
    ("head", "Head", "Head and hair"),
    ("bust", "Bust", "Head, neck and shoulders"),
)
"""(name, label, description) of the crop framings a track job may ask for: the names of the
backend's ``backend/face/framing.py`` ``FRAMINGS``, which checks them (a test keeps the two
equal). The default framing is the backend's: without a framing the add-on sends none."""


_PRESET_LABELS: dict[str, tuple[str, str]] = {
    "tiny": ("Tiny", "Seconds, for tests"),
    "cpu": ("CPU", "A CPU-sized model"),
    "studio": ("Studio", "A larger CPU model at a higher resolution (slower)"),
    "paper": ("Paper", "The paper's settings (GPU)"),
}

TRAIN_PRESETS: tuple[tuple[str, str, str], ...] = tuple(
    (name, *_PRESET_LABELS.get(name, (name.title(), f"The backend's {name} preset")))
    for name in _TRAIN_PRESET_NAMES
)
"""(name, label, description) of the training presets a train job may ask for: the names are the
message table's ``protocol.messages.TRAIN_PRESETS`` (a test keeps them equal to the backend's
``backend/train/presets.py`` PRESETS, where their sizes and step counts live); only the labels
are the add-on's."""


def track_video(path: str | Path, subject_id: str, *, size: int = 256, framing: str | None = None,
                wait: bool = False) -> str:
    """Upload a portrait video and track it into a new subject (``framing``: a ``TRACK_FRAMINGS``
    name; None: the backend's default framing)."""
    params: dict[str, Any] = {"size": int(size), **({"framing": framing} if framing else {})}
    job_id = _call("track", path=str(path), subject_id=subject_id, params=params).data["job_id"]
    if wait:
        wait_job(job_id)
    return job_id


def wait_job(job_id: str, timeout: float = 3600.0) -> str:
    """Block until ``job_id`` ends; returns its final state (raises EmoAvatarError if it failed)."""
    st = runtime.wm_state()

    def final() -> bool:
        job = runtime.job_item(st, job_id)
        return job is not None and job.state in runtime.FINAL_STATES

    runtime.wait_for(final, timeout, f"job {job_id}")
    job = runtime.job_item(st, job_id)
    if job.state != "done":
        raise EmoAvatarError(f"job {job_id} {job.state}: {job.error}")
    return job.state


def subject_names(subject_id: str, timeout: float = 60.0) -> list[str]:
    """The expression names of ``subject_id`` on the connected backend (one ``subject`` request)."""
    return [str(n) for n in _call("subject", timeout=timeout, subject_id=subject_id).data["subject"]["names"]]


def shot_settings(head: bpy.types.Object) -> dict[str, Any]:
    """The rig's pipeline settings (``Object.emo_avatar``, saved with the .blend) with the add-on
    preferences filling what the rig leaves empty: style, output_dir, channel, uv_source."""
    p = preferences.prefs()
    s = getattr(head, "emo_avatar", None)
    return {
        "style": (s.style if s is not None else "") or None,
        "output_dir": (s.output_dir if s is not None else "") or p.output_dir,
        "channel": (s.channel if s is not None else 0) or p.channel,
        "uv_source": s.uv_source if s is not None else shot.UV_BLENDER,
    }


def begin_shot(
    scene: bpy.types.Scene,
    frame_start: int,
    frame_end: int,
    *,
    subject_names: list[str] | None,
    rig_object: bpy.types.Object | None = None,
    style: str | None = None,
    channel: int | None = None,
    output_dir: str | None = None,
    uv_source: str = shot.UV_BLENDER,
    set_standard_view: bool | None = None,
    chunk_bytes: int = shot.CHUNK_BYTES,
    uv_maps=None,
    frame_size: int | None = None,
) -> shot.ShotRunner:
    """Check everything (names, sizes, the frames folder), register the shot and its runner; the
    timer (or ``wait_for``) then renders the UV maps and submits the chunks. Used by
    ``render_shot`` and the Render Shot operator."""
    head = shot.find_rig(scene, rig_object)
    p = preferences.prefs()
    builder = shot.ShotBuilder(
        scene,
        frame_start,
        frame_end,
        rig_object=head,
        style=style,
        subject_names=subject_names,
        uv_source=uv_source,
        output_dir=output_dir or p.output_dir,
        channel=channel or p.channel,
        chunk_bytes=chunk_bytes,
        set_standard_view=p.standard_view if set_standard_view is None else set_standard_view,
        uv_maps=uv_maps,
        frame_size=frame_size,
    )
    runner = shot.ShotRunner(builder)
    runtime.ensure_timer()
    return runner


def render_shot(
    scene: bpy.types.Scene | None = None,
    frame_start: int | None = None,
    frame_end: int | None = None,
    style: str | None = None,
    wait: bool = True,
    *,
    rig_object: bpy.types.Object | None = None,
    channel: int | None = None,
    output_dir: str | None = None,
    uv_source: str = shot.UV_BLENDER,
    timeout: float = 3600.0,
    set_standard_view: bool | None = None,
    chunk_bytes: int = shot.CHUNK_BYTES,
    uv_maps=None,
    frame_size: int | None = None,
) -> Shot:
    """Render frames ``frame_start..frame_end`` (inclusive; default: the scene range) of the rig.

    The frames land as ``<output_dir>/<subject>_<style>_<shot>_<frame>.png`` and as an image strip
    on ``channel`` starting at ``frame_start`` (a long shot is sent as several jobs, see
    ``shot.py``). With ``wait`` it returns when the shot ended (the Shot's ``state``: done |
    cancelled | failed); otherwise at once (the timer renders the UV maps; ``wait_shot`` waits).
    The rig's names are checked against the backend's subject first: ``ValueError`` lists missing /
    extra names before any UV map is rendered. ``set_standard_view``: Standard view transform and
    an sRGB sequencer on the scene, so the sequencer shows the backend's pixels unchanged (default:
    the preference "Show frames as delivered", off). ``uv_maps``: ``(frame) -> (H, W, 3)`` instead
    of the Cycles UV pass; ``frame_size``: side of the returned frames (default: the subject's).
    """
    scene = scene or bpy.context.scene
    head = shot.find_rig(scene, rig_object)
    runner = begin_shot(
        scene,
        scene.frame_start if frame_start is None else frame_start,
        scene.frame_end if frame_end is None else frame_end,
        subject_names=subject_names(str(head[rig.PROP_SUBJECT])),
        rig_object=head,
        style=style,
        channel=channel,
        output_dir=output_dir,
        uv_source=uv_source,
        set_standard_view=set_standard_view,
        chunk_bytes=chunk_bytes,
        uv_maps=uv_maps,
        frame_size=frame_size,
    )
    if wait:
        wait_shot(runner.shot, timeout)
    return runner.shot


def wait_shot(the_shot: Shot, timeout: float = 3600.0) -> Shot:
    """Block until every frame of the shot arrived or it ended."""
    runtime.wait_for(lambda: the_shot.finished, timeout, f"shot {the_shot.strip_name}")
    return the_shot


def cancel_shot(the_shot: Shot) -> None:
    """Cancel a shot (its UV pass and every chunk job); the strip keeps the frames received."""
    runtime.cancel_shot(the_shot)


def cancel(job_id: str) -> str:
    """Cancel a job; a render keeps the frames received so far in its strip."""
    return _call("cancel", job_id=job_id).data.get("state", "")


def attach_strip(
    job_id: str,
    scene: bpy.types.Scene | None = None,
    *,
    output_dir: str | None = None,
    channel: int | None = None,
    wait: bool = True,
    timeout: float = 600.0,
) -> Shot:
    """A strip for a render job that ran while this Blender was closed (or another one sent it):
    its frames are streamed again from the backend into ``output_dir`` and placed at the job's
    first frame."""
    scene = scene or bpy.context.scene
    record = next((r for r in _call("jobs_raw").data.get("jobs", []) if r.get("job_id") == job_id), None)
    if record is None:
        raise EmoAvatarError(f"the backend knows no job {job_id!r}")
    if record.get("kind") != "render":
        raise EmoAvatarError(f"job {job_id[:8]} is a {record.get('kind')} job, not a render")
    params = record.get("params") or {}
    frange = params.get("frame_range")
    frame_start = int(params.get("frame_start") or 0)
    first = int(frange[0]) if frange else frame_start
    outputs = record.get("outputs") or {}
    total = int(outputs.get("frame_count") or 0) or (int(frange[1]) - int(frange[0]) + 1 if frange else 0)
    if total <= 0:
        raise EmoAvatarError(f"job {job_id[:8]} has no frames yet (state {record.get('state')})")
    p = preferences.prefs()
    folder = vse.check_output_folder(output_dir or p.output_dir)
    subject = str(params.get("subject_id") or "")
    style = params.get("style")
    prefix = f"{subject}_{style or 'avatar'}_{job_id[:8]}"
    the_shot = Shot(
        shot_id=job_id,
        scene_name=compat.sequencer_scene(scene).name,
        strip_name=f"EmoAvatar {subject} {job_id[:8]}",
        folder=folder,
        prefix=prefix,
        frame_start=first,
        total=total,
        channel=channel or p.channel,
        subject_id=subject,
        style=style,
        relative=str(output_dir or p.output_dir).startswith("//"),
    )
    runtime.add_shot(the_shot)
    runtime.add_shot_job(the_shot, job_id)
    _call("attach", job_id=job_id, folder=str(folder), prefix=prefix, frame_start=frame_start, total=total)
    if wait:
        wait_shot(the_shot, timeout)
    return the_shot


def import_curves(
    path: str | Path,
    rig_object: bpy.types.Object,
    frame_start: int | None = None,
    scene: bpy.types.Scene | None = None,
    *,
    mode: str = "REPLACE",
    smooth: int = 0,
    reduce: float = 0.0,
    head_pose: bool = True,
) -> list[str]:
    """Live Link Face CSV / JSON curves onto the rig, retimed to ``scene``'s fps (default: the
    context scene) when the file was recorded at another rate; returns names that were dropped.
    Keys outside the take's frames are never touched; ``mode`` REPLACE | NEW_ACTION | NLA,
    ``smooth`` (moving-average width, rows), ``reduce`` (key-reduction tolerance)."""
    _curves, dropped = curves_files.import_curves_file(
        path, rig_object, frame_start, head_pose, scene=scene, mode=mode, smooth=smooth, reduce=reduce
    )
    return dropped


def export_curves(
    path: str | Path,
    rig_object: bpy.types.Object,
    frame_start: int,
    frame_end: int,
    scene: bpy.types.Scene | None = None,
) -> list[str]:
    """The rig's curves to ``.csv`` / ``.json``; returns names a CSV could not hold."""
    return curves_files.export_curves_file(
        path, scene or bpy.context.scene, rig_object, frame_start, frame_end
    )
