"""Python API for TDs and pipeline scripts (``blender -b shot.blend -P script.py`` or the console).

    from bl_ext.user_default.emo_avatar import api as emo

    emo.connect()                                  # connection file from the preferences
    head = emo.import_subject("anna")              # rig + camera + tracked curves
    shot = emo.render_shot(bpy.context.scene, 1, 48, style="ink", wait=True)
    print(shot.state, len(shot.frames_done), shot.strip_name)

Everything goes through the same I/O thread and result handling as the UI. With ``wait=True``
(the default, and the only mode in background Blender, where timers never fire) a call pumps
``state.apply_pending`` itself until it is done; with ``wait=False`` it returns at once and the
timer applies the results while Blender runs (``wait_shot`` waits later).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy

from . import backend_proc, curves_files, preferences, rig, rigdata, shot, state
from .state import RUNTIME, Shot


class EmoAvatarError(RuntimeError):
    """A request the backend or the add-on refused; the message says why."""


def connect(
    connection_file: str | Path | None = None,
    *,
    timeout: float = 30.0,
    start_backend: bool | None = None,
    reply_timeout: float | None = None,
) -> dict[str, Any]:
    """Connect (starting a local backend first when asked or set in the preferences); blocks until
    connected and returns the server info. Raises ``EmoAvatarError`` when no backend answers, at
    once when the connection file does not exist and no local backend is starting to write it."""
    p = preferences.prefs()
    path = Path(connection_file) if connection_file else Path(preferences.connection_file())
    if start_backend if start_backend is not None else p.start_local:
        start_local_backend(path)
    state.start_io(path, timeout=reply_timeout or p.timeout)
    st = state.wm_state()
    if not path.is_file() and not local_backend_running():
        # nothing will write the file: waiting the whole timeout would only delay this message
        # (the I/O thread keeps retrying in the background, as for a backend that does not answer)
        st.status, st.message = "UNAVAILABLE", missing_connection_file_message(path)
        raise EmoAvatarError(st.message)
    try:
        state.wait_for(lambda: st.status in ("CONNECTED", "ERROR"), timeout, "the backend")
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
    """Start ``emo-avatar serve`` with the preferences' backend command and workdir (once)."""
    if local_backend_running():
        return
    p = preferences.prefs()
    path = Path(connection_file) if connection_file else Path(preferences.connection_file())
    RUNTIME.backend_proc = backend_proc.start(p.backend_command, bpy.path.abspath(p.workdir), path)


def stop_local_backend() -> None:
    proc, RUNTIME.backend_proc = RUNTIME.backend_proc, None
    if proc is not None:
        backend_proc.stop(proc)


def disconnect() -> None:
    state.stop_io()


def _call(op: str, timeout: float = 120.0, **kwargs: Any):
    try:
        return state.call_and_wait(op, timeout=timeout, **kwargs)
    except RuntimeError as exc:
        raise EmoAvatarError(str(exc)) from None


def refresh() -> None:
    """Reload the job and subject lists from the backend."""
    _call("refresh")


def subjects() -> list[dict[str, Any]]:
    refresh()
    return [
        {"subject_id": s.name, "has_avatar": s.has_avatar, "styles": [x for x in s.styles.split(",") if x]}
        for s in state.wm_state().subjects
    ]


def jobs() -> list[dict[str, Any]]:
    refresh()
    return [
        {"job_id": j.job_id, "kind": j.kind, "state": j.state, "progress": j.progress, "error": j.error}
        for j in state.wm_state().jobs
    ]


def import_subject(
    subject_id: str | None = None,
    *,
    scene: bpy.types.Scene | None = None,
    frame_start: int = 1,
    folder: str | Path | None = None,
    with_curves: bool = True,
) -> bpy.types.Object:
    """Import a subject's rig (from the backend, or from a subject ``folder`` on disk); returns the head."""
    scene = scene or bpy.context.scene
    if folder is not None:
        data = rigdata.load_subject_folder(folder)
    else:
        subject_id = subject_id or state.wm_state().subject
        if not subject_id:
            raise EmoAvatarError("which subject? pass subject_id (see subjects())")
        data = rigdata.from_subject_reply(_call("subject", subject_id=subject_id).data["subject"])
    head, _cam = rig.build_rig(data, scene, frame_start=frame_start, with_curves=with_curves)
    return head


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


def track_video(path: str | Path, subject_id: str, *, size: int = 256, wait: bool = False) -> str:
    """Upload a portrait video and track it into a new subject."""
    job_id = _call("track", path=str(path), subject_id=subject_id, params={"size": int(size)}).data["job_id"]
    if wait:
        wait_job(job_id)
    return job_id


def wait_job(job_id: str, timeout: float = 3600.0) -> str:
    """Block until ``job_id`` ends; returns its final state (raises EmoAvatarError if it failed)."""
    st = state.wm_state()

    def final() -> bool:
        job = state._job(st, job_id)
        return job is not None and job.state in state.FINAL_STATES

    state.wait_for(final, timeout, f"job {job_id}")
    job = state._job(st, job_id)
    if job.state != "done":
        raise EmoAvatarError(f"job {job_id} {job.state}: {job.error}")
    return job.state


def subject_names(subject_id: str, timeout: float = 60.0) -> list[str]:
    """The expression names of ``subject_id`` on the connected backend (one ``subject`` request)."""
    return [str(n) for n in _call("subject", timeout=timeout, subject_id=subject_id).data["subject"]["names"]]


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
) -> Shot:
    """Render frames ``frame_start..frame_end`` (inclusive; default: the scene range) of the rig.

    The frames land as ``<output_dir>/<subject>_<style>_<job>_<frame>.png`` and as an image strip on
    ``channel`` starting at ``frame_start``. With ``wait`` it returns when the job ended (the Shot's
    ``state``: done | cancelled | failed); otherwise at once (``wait_shot`` later). The rig's names
    are checked against the backend's subject first: ``ValueError`` lists missing / extra names
    before any UV map is rendered.
    """
    scene = scene or bpy.context.scene
    p = preferences.prefs()
    head = shot.find_rig(scene, rig_object)
    builder = shot.ShotBuilder(
        scene,
        scene.frame_start if frame_start is None else frame_start,
        scene.frame_end if frame_end is None else frame_end,
        rig_object=head,
        style=style,
        subject_names=subject_names(str(head[rig.PROP_SUBJECT])),
        uv_source=uv_source,
        output_dir=output_dir or p.output_dir,
        channel=channel or p.channel,
    )
    builder.run_all()
    the_shot = builder.register_shot()
    try:
        _call("submit", **builder.submit_kwargs())
    except EmoAvatarError as exc:
        the_shot.state, the_shot.error = "failed", str(exc)
        RUNTIME.shots.pop(the_shot.job_id, None)
        raise
    if wait:
        wait_shot(the_shot, timeout)
    return the_shot


def wait_shot(the_shot: Shot, timeout: float = 3600.0) -> Shot:
    """Block until every frame of the shot arrived or its job ended."""
    state.wait_for(lambda: the_shot.finished, timeout, f"render {the_shot.job_id}")
    return the_shot


def cancel(job_id: str) -> str:
    """Cancel a job; a render keeps the frames received so far in its strip."""
    return _call("cancel", job_id=job_id).data.get("state", "")


def import_curves(
    path: str | Path,
    rig_object: bpy.types.Object,
    frame_start: int | None = None,
    scene: bpy.types.Scene | None = None,
) -> list[str]:
    """Live Link Face CSV / JSON curves onto the rig, retimed to ``scene``'s fps (default: the
    context scene) when the file was recorded at another rate; returns names that were dropped."""
    _curves, dropped = curves_files.import_curves_file(path, rig_object, frame_start, scene=scene)
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
