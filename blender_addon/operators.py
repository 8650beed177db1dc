# ruff: noqa: N801, RUF012  (Blender class naming: CATEGORY_OT_name; bl_options sets)
"""Operators ``emo_avatar.*``. Network work goes through the I/O thread; results are applied by
the timer. UNDO only on operators that change Blender data (rig import, curve import, render's
strip). In background mode (``blender -b``) every operator runs blocking through ``api``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from . import api, curves_files, preferences, rig, rigdata, shot, state
from .protocol.errors import ProtocolError
from .state import RUNTIME


def _connected(cls, context=None) -> bool:
    if state.is_connected():
        return True
    cls.poll_message_set("Not connected to a backend: press Connect in the Emo-Avatar panel")
    return False


def _active_rig(cls, context) -> bpy.types.Object | None:
    ob = context.active_object
    if ob is not None and ob.type == "MESH" and rig.PROP_SUBJECT in ob:
        return ob
    cls.poll_message_set("Select an Emo-Avatar rig (import a subject rig first)")
    return None


def _report_result(op, result, ok: str) -> None:
    if result.error:
        op.report({"ERROR"}, result.error)
    else:
        op.report({"INFO"}, ok)


class EMO_AVATAR_OT_connect(bpy.types.Operator):
    """Connect to the Emo-Avatar backend (starts a local one if set in the preferences)"""

    bl_idname = "emo_avatar.connect"
    bl_label = "Connect"

    def execute(self, context):
        p = preferences.prefs()
        try:
            if p.start_local:
                api.start_local_backend()
            if bpy.app.background:
                info = api.connect()
                self.report({"INFO"}, f"connected to {info['server']} on {info['device']}")
            else:
                state.start_io(preferences.connection_file(), timeout=p.timeout)
                self.report({"INFO"}, "connecting...")
        except (api.EmoAvatarError, OSError, ValueError, RuntimeError, TimeoutError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


class EMO_AVATAR_OT_disconnect(bpy.types.Operator):
    """Disconnect from the backend (running jobs go on there)"""

    bl_idname = "emo_avatar.disconnect"
    bl_label = "Disconnect"

    @classmethod
    def poll(cls, context):
        if RUNTIME.io is None:
            cls.poll_message_set("Not connected")
            return False
        return True

    def execute(self, context):
        state.stop_io()
        return {"FINISHED"}


class EMO_AVATAR_OT_stop_backend(bpy.types.Operator):
    """Stop the local backend this Blender started"""

    bl_idname = "emo_avatar.stop_backend"
    bl_label = "Stop Local Backend"

    @classmethod
    def poll(cls, context):
        if RUNTIME.backend_proc is None or RUNTIME.backend_proc.poll() is not None:
            cls.poll_message_set("No local backend started by this Blender")
            return False
        return True

    def execute(self, context):
        state.stop_io()
        api.stop_local_backend()
        return {"FINISHED"}


class EMO_AVATAR_OT_refresh(bpy.types.Operator):
    """Reload subjects, styles and jobs from the backend"""

    bl_idname = "emo_avatar.refresh"
    bl_label = "Refresh"

    @classmethod
    def poll(cls, context):
        return _connected(cls)

    def execute(self, context):
        state.call("refresh")
        return {"FINISHED"}


class EMO_AVATAR_OT_track_video(bpy.types.Operator, ImportHelper):
    """Upload a portrait video and track it into a new subject"""

    bl_idname = "emo_avatar.track_video"
    bl_label = "Track Video"
    filter_glob: StringProperty(default="*.mp4;*.mov;*.avi;*.mkv;*.webm", options={"HIDDEN"})
    subject_id: StringProperty(name="Subject name", default="subject")
    size: IntProperty(name="Crop size", default=256, min=16, max=4096)

    @classmethod
    def poll(cls, context):
        return _connected(cls)

    def execute(self, context):
        if not self.subject_id.strip():
            self.report({"ERROR"}, "give the subject a name")
            return {"CANCELLED"}
        state.call(
            "track", path=self.filepath, subject_id=self.subject_id.strip(), params={"size": self.size}
        )
        self.report({"INFO"}, f"uploading {bpy.path.basename(self.filepath)} for tracking")
        return {"FINISHED"}


class EMO_AVATAR_OT_train(bpy.types.Operator):
    """Train an Emo-Avatar on the selected subject (stage 1)"""

    bl_idname = "emo_avatar.train"
    bl_label = "Train Avatar"
    preset: EnumProperty(
        name="Preset",
        items=[
            ("tiny", "Tiny", "seconds, for tests"),
            ("cpu", "CPU", "a CPU-sized model"),
            ("paper", "Paper", "the paper's settings (GPU)"),
        ],
        default="cpu",
    )

    @classmethod
    def poll(cls, context):
        if not _connected(cls):
            return False
        if not state.wm_state().subject:
            cls.poll_message_set("Pick a subject first")
            return False
        return True

    def execute(self, context):
        state.call(
            "submit", kind="train", params={"subject_id": state.wm_state().subject, "preset": self.preset}
        )
        self.report({"INFO"}, "training submitted")
        return {"FINISHED"}


def _load_reference(path: str) -> np.ndarray:
    """An image file -> (H, W, 3) uint8 RGB, top row first (Blender loads it; no cv2 here)."""
    img = bpy.data.images.load(path, check_existing=False)
    try:
        w, h = img.size
        if w == 0 or h == 0:
            raise ValueError(f"cannot read the image {path}")
        px = np.empty(w * h * 4, np.float32)
        img.pixels.foreach_get(px)
        rgb = px.reshape(h, w, 4)[::-1, :, :3]
        return np.ascontiguousarray(np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8))
    finally:
        bpy.data.images.remove(img)


class EMO_AVATAR_OT_edit(bpy.types.Operator, ImportHelper):
    """Create a style from one reference image (stage 2: tunes the skip connections)"""

    bl_idname = "emo_avatar.edit"
    bl_label = "Edit With Reference Image"
    filter_glob: StringProperty(default="*.png;*.jpg;*.jpeg;*.webp;*.tif;*.tiff", options={"HIDDEN"})
    style: StringProperty(name="Style name", default="style")
    frame: IntProperty(
        name="Subject frame",
        default=0,
        min=0,
        description="Frame of the subject the reference image corresponds to",
    )

    @classmethod
    def poll(cls, context):
        if not _connected(cls):
            return False
        subject = state.wm_state().subjects.get(state.wm_state().subject)
        if subject is None or not subject.has_avatar:
            cls.poll_message_set("Pick a subject with a trained avatar first")
            return False
        return True

    def execute(self, context):
        try:
            reference = _load_reference(self.filepath)
        except (RuntimeError, ValueError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        params = {"subject_id": state.wm_state().subject, "style": self.style.strip(), "frame": self.frame}
        state.call("submit", kind="edit", params=params, buffers={"reference": reference})
        self.report({"INFO"}, f"style '{self.style}' submitted")
        return {"FINISHED"}


class EMO_AVATAR_OT_import_rig(bpy.types.Operator):
    """Import the selected subject's rig: head mesh, shape keys, tracked curves, camera"""

    bl_idname = "emo_avatar.import_rig"
    bl_label = "Import Subject Rig"
    bl_options = {"REGISTER", "UNDO"}
    frame_start: IntProperty(name="Start frame", default=1)
    with_curves: BoolProperty(name="Tracked curves", default=True)

    @classmethod
    def poll(cls, context):
        if not _connected(cls):
            return False
        if not state.wm_state().subject:
            cls.poll_message_set("Pick a subject first")
            return False
        return True

    def execute(self, context):
        subject_id = state.wm_state().subject
        if bpy.app.background:
            try:
                head = api.import_subject(
                    subject_id,
                    scene=context.scene,
                    frame_start=self.frame_start,
                    with_curves=self.with_curves,
                )
            except (api.EmoAvatarError, ValueError) as exc:
                self.report({"ERROR"}, str(exc))
                return {"CANCELLED"}
            self.report({"INFO"}, f"imported {head.name}")
            return {"FINISHED"}
        scene_name, start, with_curves = context.scene.name, self.frame_start, self.with_curves

        def done(result) -> None:
            if result.error:
                RUNTIME.messages.append(("ERROR", result.error))
                return
            data = rigdata.from_subject_reply(result.data["subject"])
            rig.build_rig(data, bpy.data.scenes[scene_name], frame_start=start, with_curves=with_curves)
            with contextlib.suppress(RuntimeError):  # the rig arrives from the timer: its own undo step
                bpy.ops.ed.undo_push(message="Import Emo-Avatar rig")

        state.call("subject", on_done=done, subject_id=subject_id)
        self.report({"INFO"}, f"fetching subject '{subject_id}'")
        return {"FINISHED"}


class EMO_AVATAR_OT_import_subject_folder(bpy.types.Operator, ImportHelper):
    """Import a rig from a subject folder on disk (no backend needed)"""

    bl_idname = "emo_avatar.import_subject_folder"
    bl_label = "Import Subject Folder"
    bl_options = {"REGISTER", "UNDO"}
    filter_glob: StringProperty(default="meta.json", options={"HIDDEN"})
    frame_start: IntProperty(name="Start frame", default=1)

    def execute(self, context):
        folder = Path(bpy.path.abspath(self.filepath))
        try:
            head = api.import_subject(
                folder=folder.parent if folder.is_file() else folder,
                scene=context.scene,
                frame_start=self.frame_start,
            )
        except (OSError, ValueError, KeyError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"imported {head.name}")
        return {"FINISHED"}


class EMO_AVATAR_OT_import_curves(bpy.types.Operator, ImportHelper):
    """Load Live Link Face CSV or JSON curves onto the selected rig"""

    bl_idname = "emo_avatar.import_curves"
    bl_label = "Import Curves"
    bl_options = {"REGISTER", "UNDO"}
    filter_glob: StringProperty(default="*.csv;*.json", options={"HIDDEN"})
    use_scene_start: BoolProperty(name="Start at scene start", default=True)
    head_pose: BoolProperty(name="Head rotation", default=True)

    @classmethod
    def poll(cls, context):
        return _active_rig(cls, context) is not None

    def execute(self, context):
        start = context.scene.frame_start if self.use_scene_start else None
        try:
            curves, dropped = curves_files.import_curves_file(
                self.filepath, context.active_object, start, self.head_pose, scene=context.scene
            )
        except (OSError, ValueError, KeyError, ProtocolError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        msg = f"{curves.n_frames} frames, {len(curves.names)} curves"
        if curves_files.retime_step(curves.fps, context.scene) != 1.0:
            msg += f", retimed from {curves.fps:g} to {rig.scene_fps(context.scene):g} fps"
        if dropped:
            msg += f"; the rig has no shape key for: {', '.join(dropped)}"
        self.report({"WARNING" if dropped else "INFO"}, msg)
        return {"FINISHED"}


class EMO_AVATAR_OT_export_curves(bpy.types.Operator, ExportHelper):
    """Write the selected rig's curves as Live Link Face CSV or JSON"""

    bl_idname = "emo_avatar.export_curves"
    bl_label = "Export Curves"
    filename_ext = ".json"
    filter_glob: StringProperty(default="*.csv;*.json", options={"HIDDEN"})
    file_format: EnumProperty(
        name="Format",
        items=[
            (".json", "JSON", "every curve + head pose"),
            (".csv", "Live Link Face CSV", "52 ARKit curves"),
        ],
    )

    @classmethod
    def poll(cls, context):
        return _active_rig(cls, context) is not None

    def check(self, context):
        self.filename_ext = self.file_format
        return super().check(context)

    def execute(self, context):
        scene = context.scene
        try:
            left = curves_files.export_curves_file(
                self.filepath, scene, context.active_object, scene.frame_start, scene.frame_end
            )
        except (OSError, ValueError, KeyError, ProtocolError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if left:
            self.report({"WARNING"}, f"CSV cannot hold {len(left)} curves: {', '.join(left)}")
        else:
            self.report({"INFO"}, f"wrote {self.filepath}")
        return {"FINISHED"}


class EMO_AVATAR_OT_render_shot(bpy.types.Operator):
    """Render the frame range with the selected subject/style; frames land as a sequencer strip.
    Esc cancels (the strip keeps the frames received)"""

    bl_idname = "emo_avatar.render_shot"
    bl_label = "Render Shot"
    bl_options = {"REGISTER"}
    uv_source: EnumProperty(
        name="UV maps",
        items=[
            (shot.UV_BLENDER, "Blender UV pass", "Cycles UV pass of the rig from its own camera"),
            (
                shot.UV_BACKEND,
                "Backend rasterises",
                "Send only curves + head pose; the backend draws the UVs",
            ),
        ],
    )
    use_preview_range: BoolProperty(name="Preview range", default=False)

    _timer = None
    _builder = None
    _shot = None

    @classmethod
    def poll(cls, context):
        if not _connected(cls):
            return False
        try:
            shot.find_rig(context.scene)
        except ValueError as exc:
            cls.poll_message_set(str(exc))
            return False
        return True

    def _frame_range(self, context) -> tuple[int, int]:
        scene = context.scene
        use_preview = self.use_preview_range and scene.use_preview_range
        start = scene.frame_preview_start if use_preview else scene.frame_start
        end = scene.frame_preview_end if use_preview else scene.frame_end
        return start, end

    def _make_builder(self, context) -> shot.ShotBuilder:
        """The modal path's builder; the rig's names are checked against the backend's subject
        (one blocking ``subject`` request) before the first UV frame."""
        scene = context.scene
        p = preferences.prefs()
        head = shot.find_rig(scene)
        return shot.ShotBuilder(
            scene,
            *self._frame_range(context),
            rig_object=head,
            style=state.wm_state().style or None,
            subject_names=api.subject_names(str(head[rig.PROP_SUBJECT]), timeout=max(5.0, 3 * p.timeout)),
            uv_source=self.uv_source,
            output_dir=p.output_dir,
            channel=p.channel,
        )

    def execute(self, context):  # blocking (background mode, scripts, F3 redo)
        try:
            p = preferences.prefs()
            start, end = self._frame_range(context)
            the_shot = api.render_shot(
                context.scene,
                start,
                end,
                style=state.wm_state().style or None,
                uv_source=self.uv_source,
                output_dir=p.output_dir,
                channel=p.channel,
                wait=True,
            )
        except (ValueError, OSError, KeyError, api.EmoAvatarError, TimeoutError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"{len(the_shot.frames_done)} frames in strip '{the_shot.strip_name}'")
        return {"FINISHED"}

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        try:
            self._builder = self._make_builder(context)
        except (ValueError, OSError, KeyError, api.EmoAvatarError, TimeoutError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.02, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, 100)
        return {"RUNNING_MODAL"}

    def _status(self, context, text: str, fraction: float) -> None:
        context.workspace.status_text_set(f"Emo-Avatar: {text}  (Esc to cancel)")
        context.window_manager.progress_update(int(100 * fraction))

    def _finish(self, context, result: set) -> set:
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        context.workspace.status_text_set(None)
        if self._builder is not None:
            self._builder.close()
        return result

    def modal(self, context, event):
        if event.type == "ESC":
            if self._shot is not None and not self._shot.finished:
                state.call("cancel", job_id=self._shot.job_id)
                self.report(
                    {"WARNING"}, f"render cancelled; the strip keeps {len(self._shot.frames_done)} frames"
                )
            else:
                self.report({"WARNING"}, "render cancelled before it was sent")
            return self._finish(context, {"CANCELLED"})
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            return self._tick(context)
        except (RuntimeError, ValueError, OSError) as exc:  # e.g. Cycles failed, or the I/O thread is gone
            self.report({"ERROR"}, f"render failed: {exc}")
            return self._finish(context, {"CANCELLED"})

    def _tick(self, context) -> set:
        b = self._builder
        if self._shot is None:
            if b.step():
                self._status(
                    context, f"UV pass {b.steps_done}/{b.total_steps}", 0.3 * b.steps_done / b.total_steps
                )
                return {"RUNNING_MODAL"}
            self._shot = b.register_shot()
            the_shot = self._shot

            def submitted(result) -> None:
                if result.error:  # refused by the backend or lost: end the shot so the modal ends
                    the_shot.state, the_shot.error = "failed", result.error

            state.call("submit", on_done=submitted, **b.submit_kwargs())
            return {"RUNNING_MODAL"}
        s = self._shot
        self._status(
            context, f"frames {len(s.frames_done)}/{s.total}", 0.3 + 0.7 * len(s.frames_done) / s.total
        )
        if s.finished:
            if s.state == "done":
                self.report({"INFO"}, f"{len(s.frames_done)} frames in strip '{s.strip_name}'")
                return self._finish(context, {"FINISHED"})
            self.report({"ERROR"}, f"render {s.state}: {s.error}")
            return self._finish(context, {"CANCELLED"})
        return {"PASS_THROUGH"}


class EMO_AVATAR_OT_cancel_job(bpy.types.Operator):
    """Cancel a backend job (a render's strip keeps the frames received)"""

    bl_idname = "emo_avatar.cancel_job"
    bl_label = "Cancel Job"
    job_id: StringProperty(name="Job")

    @classmethod
    def poll(cls, context):
        return _connected(cls)

    def execute(self, context):
        job_id = self.job_id
        if not job_id:
            st = state.wm_state()
            if not (0 <= st.job_index < len(st.jobs)):
                self.report({"ERROR"}, "pick a job in the list")
                return {"CANCELLED"}
            job_id = st.jobs[st.job_index].job_id
        state.call("cancel", job_id=job_id)
        self.report({"INFO"}, f"cancelling {job_id[:8]}")
        return {"FINISHED"}


CLASSES = (
    EMO_AVATAR_OT_connect,
    EMO_AVATAR_OT_disconnect,
    EMO_AVATAR_OT_stop_backend,
    EMO_AVATAR_OT_refresh,
    EMO_AVATAR_OT_track_video,
    EMO_AVATAR_OT_train,
    EMO_AVATAR_OT_edit,
    EMO_AVATAR_OT_import_rig,
    EMO_AVATAR_OT_import_subject_folder,
    EMO_AVATAR_OT_import_curves,
    EMO_AVATAR_OT_export_curves,
    EMO_AVATAR_OT_render_shot,
    EMO_AVATAR_OT_cancel_job,
)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
