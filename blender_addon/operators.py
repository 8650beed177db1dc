# ruff: noqa: N801, RUF012  (Blender class naming: CATEGORY_OT_name; bl_options sets)
"""Operators ``emo_avatar.*``. Network work goes through the I/O thread; results are applied by
the timer. UNDO only on operators that change Blender data (rig import, curve import); a shot's
strip gets its own undo step when the shot ends. In background mode (``blender -b``) every
operator runs blocking through ``api``.

``ShotModal`` is the Render Shot operator's state machine without Blender's event system: the
operator feeds it timer ticks and Esc; tests drive it the same way with real bpy in background mode.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import bpy
import numpy as np
from bpy.app.translations import pgettext_iface as iface_
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    StringProperty,
)
from bpy_extras.io_utils import ExportHelper, ImportHelper

from . import api, curves_files, expressions_ui, fcurves, preferences, preview, rig, runtime
from .props import UV_SOURCE_ITEMS
from .protocol.errors import ProtocolError
from .protocol.limits import MAX_KEYFRAMES
from .protocol.messages import MORE_REFERENCES
from .runtime import RUNTIME

log = logging.getLogger(__name__)


def _poll_check(cls, ok: bool, message: str) -> bool:
    """``ok``; when False, ``message`` becomes the poll message (why the button is greyed out)."""
    if not ok:
        cls.poll_message_set(message)
    return ok


def _connected(cls, context=None) -> bool:
    return _poll_check(
        cls, runtime.is_connected(), "Not connected to a backend: press Connect in the Emo-Avatar panel"
    )


def _subject_picked(cls) -> bool:
    """Connected, with a subject picked in the panel (poll message otherwise)."""
    return _connected(cls) and _poll_check(cls, bool(runtime.wm_state().subject), "Pick a subject first")


def _rig_poll(cls, context) -> bpy.types.Object | None:
    """The rig an operator works on (``rig.find_rig``, the one rule), or None with a poll message."""
    try:
        return rig.find_rig(context.scene)
    except ValueError as exc:
        cls.poll_message_set(str(exc))
        return None


class _NeedsConnection:
    """Operator mixin: available while connected to a backend."""

    @classmethod
    def poll(cls, context):
        return _connected(cls)


class _NeedsRig:
    """Operator mixin: available when the scene has a rig to work on (``_rig_poll``)."""

    @classmethod
    def poll(cls, context):
        return _rig_poll(cls, context) is not None


class _NeedsConnectedRig:
    """Operator mixin: available while connected and when the scene has a rig."""

    @classmethod
    def poll(cls, context):
        return _connected(cls) and _rig_poll(cls, context) is not None


def _disconnect() -> None:
    """Stop the live preview and the I/O thread (jobs go on in the backend)."""
    preview.stop()
    runtime.stop_io()


class EMO_AVATAR_OT_report_message(bpy.types.Operator):
    """Show a message from the add-on's background work in the status bar and the Info editor"""

    bl_idname = "emo_avatar.report_message"
    bl_label = "Emo-Avatar Message"
    bl_options = {"INTERNAL"}
    level: StringProperty(default="INFO")
    text: StringProperty(default="")

    def execute(self, context):
        level = self.level if self.level in ("INFO", "WARNING", "ERROR") else "INFO"
        self.report({level}, self.text)
        return {"FINISHED"}


class EMO_AVATAR_OT_connect(bpy.types.Operator):
    """Connect to the Emo-Avatar backend (starts a local one if set in the preferences)"""

    bl_idname = "emo_avatar.connect"
    bl_label = "Connect"

    def execute(self, context):
        p = preferences.prefs()
        try:
            info = api.connect(timeout=max(30.0, 10 * p.timeout), wait=bpy.app.background)
        except (api.EmoAvatarError, OSError, ValueError, RuntimeError, TimeoutError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if info:
            self.report({"INFO"}, iface_("connected to {} on {}").format(info["server"], info["device"]))
        else:
            self.report({"INFO"}, iface_("connecting..."))
        return {"FINISHED"}


class EMO_AVATAR_OT_disconnect(bpy.types.Operator):
    """Disconnect from the backend (running jobs go on there)"""

    bl_idname = "emo_avatar.disconnect"
    bl_label = "Disconnect"

    @classmethod
    def poll(cls, context):
        return _poll_check(cls, RUNTIME.io is not None, "Not connected")

    def execute(self, context):
        _disconnect()
        return {"FINISHED"}


class EMO_AVATAR_OT_stop_backend(bpy.types.Operator):
    """Stop the local backend this Blender started"""

    bl_idname = "emo_avatar.stop_backend"
    bl_label = "Stop Local Backend"

    @classmethod
    def poll(cls, context):
        return _poll_check(cls, api.local_backend_running(), "No local backend started by this Blender")

    def execute(self, context):
        _disconnect()
        api.stop_local_backend()
        return {"FINISHED"}


class EMO_AVATAR_OT_refresh(_NeedsConnection, bpy.types.Operator):
    """Reload subjects, styles and jobs from the backend"""

    bl_idname = "emo_avatar.refresh"
    bl_label = "Refresh"

    def execute(self, context):
        if bpy.app.background:
            api.refresh()
        else:
            runtime.call("refresh")
        return {"FINISHED"}


DEFAULT_FRAMING = "DEFAULT"
"""The Track Video operator's framing item that sends no framing (the backend's default)."""


class EMO_AVATAR_OT_track_video(_NeedsConnection, bpy.types.Operator, ImportHelper):
    """Upload a portrait video and track it into a new subject"""

    bl_idname = "emo_avatar.track_video"
    bl_label = "Track Video"
    filter_glob: StringProperty(default="*.mp4;*.mov;*.avi;*.mkv;*.webm", options={"HIDDEN"})
    subject_id: StringProperty(name="Subject name", default="subject")
    size: IntProperty(name="Crop size", default=256, min=16, max=4096)
    framing: EnumProperty(
        name="Framing",
        description="How much of the person the crop holds",
        items=[(DEFAULT_FRAMING, "Backend default", "The backend's default framing"), *api.TRACK_FRAMINGS],
        default=DEFAULT_FRAMING,
    )

    def execute(self, context):
        if not self.subject_id.strip():
            self.report({"ERROR"}, "give the subject a name")
            return {"CANCELLED"}
        params = {"size": self.size, **({} if self.framing == DEFAULT_FRAMING else {"framing": self.framing})}
        runtime.call("track", path=self.filepath, subject_id=self.subject_id.strip(), params=params)
        self.report({"INFO"}, f"uploading {bpy.path.basename(self.filepath)} for tracking")
        return {"FINISHED"}


class EMO_AVATAR_OT_train(bpy.types.Operator):
    """Train an Emo-Avatar on the selected subject (stage 1)"""

    bl_idname = "emo_avatar.train"
    bl_label = "Train Avatar"
    preset: EnumProperty(name="Preset", items=list(api.TRAIN_PRESETS), default="cpu")

    @classmethod
    def poll(cls, context):
        return _subject_picked(cls)

    def execute(self, context):
        runtime.call(
            "submit", kind="train", params={"subject_id": runtime.wm_state().subject, "preset": self.preset}
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


def edit_references(directory: str, names: list[str], filepath: str, frame: int, more_frames: str
                    ) -> list[tuple[str, int]]:
    """(image path, subject frame) pairs of an edit: the selected images in file-name order, the
    first for ``frame`` and the others for the comma-separated ``more_frames``.

    Raises:
        ValueError: more or fewer frames than images, a frame given twice, over MAX_KEYFRAMES images.
    """
    paths = [str(Path(directory) / n) for n in sorted(n for n in names if n)] or [filepath]
    try:
        more = [int(x) for x in more_frames.replace(";", ",").split(",") if x.strip()]
    except ValueError:
        raise ValueError("'More subject frames' must be frame numbers separated by commas, "
                         f"got {more_frames!r}") from None
    frames = [frame, *more]
    if len(paths) > MAX_KEYFRAMES:
        raise ValueError(f"{len(paths)} reference images selected; an edit takes at most {MAX_KEYFRAMES}")
    if len(frames) != len(paths):
        raise ValueError(f"{len(paths)} reference image(s) selected but {len(frames)} subject "
                         "frame(s) given: the first image is for 'Subject frame', the others (in file "
                         "name order) for 'More subject frames'")
    if len(set(frames)) != len(frames) or min(frames) < 0:
        raise ValueError(f"subject frames {frames}: each reference needs its own frame, 0 or more")
    return list(zip(paths, frames, strict=True))


class EMO_AVATAR_OT_edit(bpy.types.Operator, ImportHelper):
    """Create a style from up to 4 reference images of subject frames, one per shot for the best result"""

    bl_idname = "emo_avatar.edit"
    bl_label = "Edit With Reference Images"
    filter_glob: StringProperty(default="*.png;*.jpg;*.jpeg;*.webp;*.tif;*.tiff", options={"HIDDEN"})
    files: CollectionProperty(type=bpy.types.OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})
    style: StringProperty(name="Style name", default="style")
    frame: IntProperty(
        name="Subject frame",
        default=0,
        min=0,
        description="Frame of the subject the (first) reference image corresponds to",
    )
    more_frames: StringProperty(
        name="More subject frames",
        default="",
        description="With several images selected: the subject frames of the 2nd, 3rd and 4th image "
        "in file name order, separated by commas (e.g. 85 or 85, 160)",
    )
    steady_motion: BoolProperty(
        name="Crisp moving strokes",
        default=False,
        description="Steady the style over time along the motion: moving lines stay as crisp as each "
        "frame draws them, with no faded second outline (best for ink and sketch looks); renders "
        "are slower",
    )
    dither: BoolProperty(
        name="Keep the dots",
        default=False,
        description="Where the reference is a dither of a few inks (an error-diffused or stippled "
        "print): dot every frame with its inks instead of giving a smooth tone",
    )

    @classmethod
    def poll(cls, context):
        if not _connected(cls):
            return False
        subject = runtime.wm_state().subjects.get(runtime.wm_state().subject)
        return _poll_check(
            cls, subject is not None and subject.has_avatar, "Pick a subject with a trained avatar first"
        )

    def execute(self, context):
        try:
            pairs = edit_references(self.directory, [f.name for f in self.files], self.filepath, self.frame,
                                    self.more_frames)
            images = [_load_reference(path) for path, _ in pairs]
        except (RuntimeError, ValueError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        params = {"subject_id": runtime.wm_state().subject, "style": self.style.strip(), "frame": pairs[0][1],
                  "steady_motion": bool(self.steady_motion), "dither": bool(self.dither)}
        buffers = {"reference": images[0]}
        if len(pairs) > 1:
            params["more_frames"] = [f for _, f in pairs[1:]]
            buffers.update(zip(MORE_REFERENCES, images[1:], strict=False))
        runtime.call("submit", kind="edit", params=params, buffers=buffers)
        self.report({"INFO"}, f"style '{self.style}' submitted ({len(pairs)} reference image(s))")
        return {"FINISHED"}


_MATCH_SCENE = BoolProperty(
    name="Match scene to subject",
    description="Make the rig camera the scene camera and set resolution, fps and frame range "
    "from the subject (on by default only for an empty scene)",
    default=False,
)
"""The ``match_scene`` property of the rig-import operators."""


def _match_scene(self, context) -> bool:
    """The operator's ``match_scene`` as set, else whether the scene is empty."""
    if self.properties.is_property_set("match_scene"):
        return self.match_scene
    return rig.scene_is_empty(context.scene)


def _match_scene_default(self, context) -> None:
    self.match_scene = _match_scene(self, context)


class EMO_AVATAR_OT_import_rig(bpy.types.Operator):
    """Import the selected subject's rig into its own collection: head mesh, shape keys, tracked
    curves, camera"""

    bl_idname = "emo_avatar.import_rig"
    bl_label = "Import Subject Rig"
    bl_options = {"REGISTER", "UNDO"}
    frame_start: IntProperty(name="Start frame", default=1)
    with_curves: BoolProperty(name="Tracked curves", default=True)
    match_scene: _MATCH_SCENE

    @classmethod
    def poll(cls, context):
        return _subject_picked(cls)

    def invoke(self, context, event):
        _match_scene_default(self, context)
        return self.execute(context)

    def execute(self, context):
        subject_id = runtime.wm_state().subject
        if bpy.app.background:
            try:
                head = api.import_subject(
                    subject_id,
                    scene=context.scene,
                    frame_start=self.frame_start,
                    with_curves=self.with_curves,
                    match_scene=self.match_scene,
                )
            except (api.EmoAvatarError, ValueError) as exc:
                self.report({"ERROR"}, str(exc))
                return {"CANCELLED"}
            self.report({"INFO"}, iface_("imported {}").format(head.name))
            return {"FINISHED"}
        api.import_subject_async(
            subject_id,
            context.scene.name,
            frame_start=self.frame_start,
            with_curves=self.with_curves,
            match_scene=self.match_scene,
        )
        self.report({"INFO"}, iface_("fetching subject '{}'").format(subject_id))
        return {"FINISHED"}


class EMO_AVATAR_OT_import_subject_folder(bpy.types.Operator, ImportHelper):
    """Import a rig from a subject folder on disk (no backend needed)"""

    bl_idname = "emo_avatar.import_subject_folder"
    bl_label = "Import Subject Folder"
    bl_options = {"REGISTER", "UNDO"}
    filter_glob: StringProperty(default="meta.json", options={"HIDDEN"})
    frame_start: IntProperty(name="Start frame", default=1)
    match_scene: _MATCH_SCENE

    def invoke(self, context, event):
        _match_scene_default(self, context)
        return ImportHelper.invoke(self, context, event)

    def execute(self, context):
        folder = Path(bpy.path.abspath(self.filepath))
        match = _match_scene(self, context)
        try:
            head = api.import_subject(
                folder=folder.parent if folder.is_file() else folder,
                scene=context.scene,
                frame_start=self.frame_start,
                match_scene=match,
            )
        except (OSError, ValueError, KeyError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, iface_("imported {}").format(head.name))
        return {"FINISHED"}


class EMO_AVATAR_OT_import_curves(_NeedsRig, bpy.types.Operator, ImportHelper):
    """Load Live Link Face CSV or JSON curves onto the rig; keys outside the take's frames stay"""

    bl_idname = "emo_avatar.import_curves"
    bl_label = "Import Curves"
    bl_options = {"REGISTER", "UNDO"}
    filter_glob: StringProperty(default="*.csv;*.json", options={"HIDDEN"})
    start_at: EnumProperty(
        name="Start at",
        items=[
            ("SCENE_START", "Scene start", "The take starts at the scene's first frame"),
            ("PLAYHEAD", "Playhead", "The take starts at the current frame"),
            ("FILE", "File's frame", "The frame the file says (retimed to the scene's fps)"),
        ],
        default="SCENE_START",
    )
    mode: EnumProperty(
        name="Keys",
        items=[
            ("REPLACE", "Replace in range", "Replace keys inside the take's frames only"),
            ("NEW_ACTION", "New action", "Put the take into a new action (the old one is kept)"),
            ("NLA", "NLA strip", "Push the take to an NLA strip above the current action"),
        ],
        default="REPLACE",
    )
    smooth: IntProperty(
        name="Smoothing", description="Moving-average width in frames (0: off)", default=0, min=0, max=31
    )
    reduce: FloatProperty(
        name="Key reduction",
        description="Drop keys that the neighbouring keys reproduce within this tolerance "
        "(0: a key per frame)",
        default=0.0,
        min=0.0,
        max=1.0,
        precision=4,
    )
    head_pose: BoolProperty(name="Head rotation", default=True)

    def execute(self, context):
        scene = context.scene
        start = {"SCENE_START": scene.frame_start, "PLAYHEAD": scene.frame_current, "FILE": None}[
            self.start_at
        ]
        head = rig.find_rig(scene)
        try:
            curves, dropped = curves_files.import_curves_file(
                self.filepath,
                head,
                start,
                self.head_pose,
                scene=scene,
                mode=self.mode,
                smooth=self.smooth,
                reduce=self.reduce,
            )
        except (OSError, ValueError, KeyError, ProtocolError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        msg = iface_("{} frames, {} curves").format(curves.n_frames, len(curves.names))
        if curves_files.retime_step(curves.fps, scene) != 1.0:
            msg += iface_(", retimed from {:g} to {:g} fps").format(curves.fps, rig.scene_fps(scene))
        if dropped:
            msg += iface_("; the rig has no shape key for: {}").format(", ".join(dropped))
        self.report({"WARNING" if dropped else "INFO"}, msg)
        return {"FINISHED"}


class EMO_AVATAR_OT_export_curves(_NeedsRig, bpy.types.Operator, ExportHelper):
    """Write the rig's curves as Live Link Face CSV or JSON"""

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

    def check(self, context):
        self.filename_ext = self.file_format
        return super().check(context)

    def execute(self, context):
        scene = context.scene
        try:
            left = curves_files.export_curves_file(
                self.filepath, scene, rig.find_rig(scene), scene.frame_start, scene.frame_end
            )
        except (OSError, ValueError, KeyError, ProtocolError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if left:
            self.report(
                {"WARNING"}, iface_("CSV cannot hold {} curves: {}").format(len(left), ", ".join(left))
            )
        else:
            self.report({"INFO"}, iface_("wrote {}").format(self.filepath))
        return {"FINISHED"}


Report = Callable[[set, str], None]


class ShotModal:
    """The Render Shot operator's state machine (see the module docstring).

    Phases: ``names`` (the subject's expression names are fetched by the I/O thread, so the UI
    never waits), ``running`` (the runner builds UV maps and submits chunks; frames arrive),
    ``finished``. ``on_timer()`` / ``on_escape()`` return the operator's result set;
    ``abort()`` is the operator's ``cancel()`` (file load, window closed). Any exception ends it
    cleanly with the shot cancelled. Holds names only, never Blender IDs.
    """

    def __init__(
        self,
        scene: bpy.types.Scene,
        frame_start: int,
        frame_end: int,
        report: Report,
        *,
        uv_source: str | None = None,
        rig_object: bpy.types.Object | None = None,
        **shot_kwargs,
    ) -> None:
        head = rig.find_rig(scene, rig_object)
        settings = api.shot_settings(head)
        self.scene_name, self.rig_name = scene.name, head.name
        self.frames = (int(frame_start), int(frame_end))
        self.kwargs = {
            "style": settings["style"],
            "output_dir": settings["output_dir"],
            "channel": settings["channel"],
            "uv_source": uv_source or settings["uv_source"],
            **shot_kwargs,
        }
        self.report = report
        self.phase = "names"
        self.shot: runtime.Shot | None = None
        self.runner = None
        self.result: set | None = None
        self._names: list[str] | None = None
        self._names_error = ""
        self._names_done = False

    def start(self) -> set:
        subject = str(bpy.data.objects[self.rig_name][rig.PROP_SUBJECT])
        try:
            runtime.call("subject", on_done=self._got_names, subject_id=subject)
        except RuntimeError as exc:
            return self._end({"CANCELLED"}, "ERROR", str(exc))
        return {"RUNNING_MODAL"}

    def _got_names(self, result) -> None:
        self._names_done = True
        if result.error:
            self._names_error = result.error
        else:
            self._names = [str(n) for n in result.data["subject"]["names"]]

    def _end(self, result: set, level: str, text: str) -> set:
        self.phase, self.result = "finished", result
        if text:
            self.report({level}, text)
        return result

    def on_timer(self) -> set:
        if self.phase == "finished":
            return self.result
        try:
            return self._timer()
        except Exception as exc:  # the catch-all: the operator always finishes cleanly
            log.exception("Render Shot failed")
            self.abort(f"{type(exc).__name__}: {exc}")
            return self._end(
                {"CANCELLED"}, "ERROR", iface_("render failed: {}").format(f"{type(exc).__name__}: {exc}")
            )

    def _timer(self) -> set:
        if self.phase == "names":
            if not self._names_done:
                return {"RUNNING_MODAL"}
            if self._names_error:
                return self._end({"CANCELLED"}, "ERROR", self._names_error)
            scene = bpy.data.scenes.get(self.scene_name)
            head = bpy.data.objects.get(self.rig_name)
            if scene is None or head is None:
                return self._end({"CANCELLED"}, "ERROR", iface_("the scene or rig is gone"))
            try:
                self.runner = api.begin_shot(
                    scene, *self.frames, subject_names=self._names, rig_object=head, **self.kwargs
                )
            except (ValueError, OSError, KeyError, RuntimeError) as exc:
                return self._end({"CANCELLED"}, "ERROR", str(exc))
            self.shot = self.runner.shot
            self.phase = "running"
            return {"RUNNING_MODAL"}
        s = self.shot
        if s.finished:
            if s.state == "done":
                return self._end(
                    {"FINISHED"},
                    "INFO",
                    iface_("{} frames in strip '{}'").format(len(s.frames_done), s.strip_name),
                )
            if s.detached:
                return self._end(
                    {"CANCELLED"}, "WARNING", iface_("the shot was detached: {}").format(s.error)
                )
            level = "WARNING" if s.state == "cancelled" else "ERROR"
            return self._end({"CANCELLED"}, level, iface_("render {}: {}").format(s.state, s.error or "-"))
        if s.detached:  # another file was loaded: its frames keep landing on disk
            return self._end(
                {"CANCELLED"},
                "WARNING",
                iface_("another file was loaded; the shot's frames go on to {}").format(s.folder),
            )
        return {"PASS_THROUGH"}

    def on_escape(self) -> set:
        if self.phase == "finished":
            return self.result
        try:
            if self.shot is not None:
                runtime.cancel_shot(self.shot)
                n = len(self.shot.frames_done)
                return self._end(
                    {"CANCELLED"}, "WARNING", iface_("render cancelled; the strip keeps {} frames").format(n)
                )
            return self._end({"CANCELLED"}, "WARNING", iface_("render cancelled before it was sent"))
        except Exception as exc:  # never leave the operator running
            log.exception("cancelling the shot failed")
            return self._end({"CANCELLED"}, "ERROR", str(exc))

    def abort(self, reason: str = "cancelled") -> None:
        """Blender ends the operator (file load, window closed): stop the shot's work."""
        if self.shot is not None and not self.shot.finished and not self.shot.detached:
            runtime.cancel_shot(self.shot, reason)
        self.phase = "finished"
        if self.result is None:
            self.result = {"CANCELLED"}

    @property
    def progress(self) -> float:
        return self.runner.progress if self.runner is not None else 0.0

    def status(self) -> str:
        if self.phase == "names":
            return iface_("checking the rig against the backend's subject")
        return self.runner.status() if self.runner is not None else ""


class EMO_AVATAR_OT_render_shot(_NeedsConnectedRig, bpy.types.Operator):
    """Render the frame range with the rig's style; frames land as a sequencer strip.
    Esc cancels (the strip keeps the frames received)"""

    bl_idname = "emo_avatar.render_shot"
    bl_label = "Render Shot"
    bl_options = {"REGISTER"}
    uv_source: EnumProperty(name="UV maps", items=UV_SOURCE_ITEMS)
    use_preview_range: BoolProperty(name="Preview range", default=False)

    _timer = None
    _session: ShotModal | None = None

    def _frame_range(self, context) -> tuple[int, int]:
        scene = context.scene
        use_preview = self.use_preview_range and scene.use_preview_range
        start = scene.frame_preview_start if use_preview else scene.frame_start
        end = scene.frame_preview_end if use_preview else scene.frame_end
        return start, end

    def execute(self, context):  # blocking (background mode, scripts, F3 redo)
        try:
            head = rig.find_rig(context.scene)
            settings = api.shot_settings(head)
            the_shot = api.render_shot(
                context.scene,
                *self._frame_range(context),
                style=settings["style"],
                rig_object=head,
                uv_source=self.uv_source,
                output_dir=settings["output_dir"],
                channel=settings["channel"],
                wait=True,
            )
        except (ValueError, OSError, KeyError, api.EmoAvatarError, TimeoutError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report(
            {"INFO"}, iface_("{} frames in strip '{}'").format(len(the_shot.frames_done), the_shot.strip_name)
        )
        return {"FINISHED" if the_shot.state == "done" else "CANCELLED"}

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        try:
            self._session = ShotModal(
                context.scene, *self._frame_range(context), self.report, uv_source=self.uv_source
            )
            result = self._session.start()
        except (ValueError, OSError, KeyError, RuntimeError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if "RUNNING_MODAL" not in result:
            return result
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.05, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, 100)
        return {"RUNNING_MODAL"}

    def _cleanup(self, context) -> None:
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        if context.workspace is not None:
            context.workspace.status_text_set(None)

    def modal(self, context, event):
        session = self._session
        try:
            if event.type == "ESC" and event.value == "PRESS":
                result = session.on_escape()
            elif event.type == "TIMER":
                result = session.on_timer()
                if "RUNNING_MODAL" in result or "PASS_THROUGH" in result:
                    text = iface_("Emo-Avatar: {}  (Esc to cancel)").format(session.status())
                    context.workspace.status_text_set(text)
                    context.window_manager.progress_update(int(100 * session.progress))
            else:
                return {"PASS_THROUGH"}
        except Exception as exc:  # the catch-all: always finish cleanly
            log.exception("Render Shot modal failed")
            session.abort(str(exc))
            self.report({"ERROR"}, str(exc))
            result = {"CANCELLED"}
        if "FINISHED" in result or "CANCELLED" in result:
            self._cleanup(context)
            return result
        return {"PASS_THROUGH"}

    def cancel(self, context):
        """Blender ends the operator without an event (file load, window closed)."""
        if self._session is not None:
            self._session.abort("the render was interrupted")
        self._cleanup(context)


class EMO_AVATAR_OT_preview_frame(_NeedsConnectedRig, bpy.types.Operator):
    """Render the current frame once with the backend (its own UVs) into the "Emo-Avatar Preview"
    image"""

    bl_idname = "emo_avatar.preview_frame"
    bl_label = "Preview Frame"

    def execute(self, context):
        scene = context.scene
        frame = scene.frame_current
        if not preview.request(scene, frame):
            self.report({"ERROR"}, preview.PREVIEW.error)
            return {"CANCELLED"}
        if bpy.app.background:  # no timer: wait here for the image
            try:
                runtime.wait_for(
                    lambda: preview.PREVIEW.in_flight is None and preview.PREVIEW.pending is None,
                    120,
                    "the preview",
                )
            except TimeoutError as exc:
                self.report({"ERROR"}, str(exc))
                return {"CANCELLED"}
            if preview.PREVIEW.shown_frame != frame:
                self.report({"ERROR"}, preview.PREVIEW.error or iface_("no preview arrived"))
                return {"CANCELLED"}
        self.report({"INFO"}, iface_("preview of frame {}").format(frame))
        return {"FINISHED"}


class EMO_AVATAR_OT_attach_strip(_NeedsConnection, bpy.types.Operator):
    """Put the frames of a finished render job (e.g. one that ran while Blender was closed) into a
    sequencer strip"""

    bl_idname = "emo_avatar.attach_strip"
    bl_label = "Attach Strip From Job"
    bl_options = {"REGISTER", "UNDO"}
    job_id: StringProperty(name="Job")

    def execute(self, context):
        job_id = self.job_id or _selected_job()
        if not job_id:
            self.report({"ERROR"}, iface_("pick a render job in the list"))
            return {"CANCELLED"}
        try:
            the_shot = api.attach_strip(job_id, context.scene, wait=bpy.app.background)
        except (api.EmoAvatarError, OSError, ValueError, TimeoutError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report(
            {"INFO"}, iface_("attaching {} frames as '{}'").format(the_shot.total, the_shot.strip_name)
        )
        return {"FINISHED"}


def _selected_job() -> str:
    st = runtime.wm_state()
    return st.jobs[st.job_index].job_id if 0 <= st.job_index < len(st.jobs) else ""


class EMO_AVATAR_OT_cancel_job(_NeedsConnection, bpy.types.Operator):
    """Cancel a backend job (a shot's strip keeps the frames received)"""

    bl_idname = "emo_avatar.cancel_job"
    bl_label = "Cancel Job"
    job_id: StringProperty(name="Job")

    def execute(self, context):
        job_id = self.job_id or _selected_job()
        if not job_id:
            self.report({"ERROR"}, iface_("pick a job in the list"))
            return {"CANCELLED"}
        the_shot = runtime.shot_of_job(job_id)
        if the_shot is not None:  # every chunk of the shot, and its UV pass
            runtime.cancel_shot(the_shot)
        else:
            runtime.call("cancel", job_id=job_id)
        self.report({"INFO"}, iface_("cancelling {}").format(job_id[:8]))
        return {"FINISHED"}


def _region_sliders(context, region: str) -> tuple[bpy.types.Key, list[str]]:
    """The scene's rig's shape keys and its expression names in face ``region`` (empty: all)."""
    head = rig.find_rig(context.scene)
    return head.data.shape_keys, expressions_ui.names_in_region(rig_names(head), region or None)


class EMO_AVATAR_OT_key_expressions(_NeedsRig, bpy.types.Operator):
    """Key the rig's expression sliders at the current frame (all, or one face region)"""

    bl_idname = "emo_avatar.key_expressions"
    bl_label = "Key Expressions"
    bl_options = {"REGISTER", "UNDO"}
    region: StringProperty(name="Region", default="", description="Face region (empty: all)")

    def execute(self, context):
        key, names = _region_sliders(context, self.region)
        frame = context.scene.frame_current
        for name in names:
            fc = fcurves.ensure_fcurve(key, rig.shape_key_path(name), 0, group="Expressions")
            fcurves.write_keys(fc, [frame], [key.key_blocks[name].value], replace="RANGE")
        self.report({"INFO"}, iface_("keyed {} sliders at frame {}").format(len(names), frame))
        return {"FINISHED"}


class EMO_AVATAR_OT_reset_expressions(_NeedsRig, bpy.types.Operator):
    """Set the rig's expression sliders to 0 (all, or one face region); keys are not touched"""

    bl_idname = "emo_avatar.reset_expressions"
    bl_label = "Reset Expressions"
    bl_options = {"REGISTER", "UNDO"}
    region: StringProperty(name="Region", default="")

    def execute(self, context):
        key, names = _region_sliders(context, self.region)
        for name in names:
            key.key_blocks[name].value = 0.0
        return {"FINISHED"}


class EMO_AVATAR_OT_save_preset(_NeedsRig, bpy.types.Operator):
    """Save the rig's current expression sliders as a named preset (a small library shared by
    every .blend, in the extension's user folder)"""

    bl_idname = "emo_avatar.save_preset"
    bl_label = "Save Expression Preset"
    name: StringProperty(name="Name", default="preset")

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context):
        head = rig.find_rig(context.scene)
        key = head.data.shape_keys
        values = {n: float(key.key_blocks[n].value) for n in rig_names(head)}
        try:
            expressions_ui.save_preset(preferences.user_folder(), self.name, values)
        except (OSError, ValueError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


def _preset_items(self, context):
    try:
        names = expressions_ui.preset_names(preferences.user_folder())
    except OSError:
        names = []
    return [(n, n, "") for n in names] or [("", "(no presets)", "")]


class EMO_AVATAR_OT_apply_preset(_NeedsRig, bpy.types.Operator):
    """Set the rig's expression sliders from a saved preset (names it lacks are skipped)"""

    bl_idname = "emo_avatar.apply_preset"
    bl_label = "Apply Expression Preset"
    bl_options = {"REGISTER", "UNDO"}
    name: EnumProperty(name="Preset", items=_preset_items)

    def execute(self, context):
        head = rig.find_rig(context.scene)
        try:
            values = expressions_ui.load_preset(preferences.user_folder(), self.name)
        except (OSError, ValueError, KeyError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        key = head.data.shape_keys
        for name, value in values.items():
            if name in key.key_blocks:
                key.key_blocks[name].value = value
        return {"FINISHED"}


def rig_names(head: bpy.types.Object) -> list[str]:
    from .curves_bpy import rig_names as names

    return names(head)


CLASSES = (
    EMO_AVATAR_OT_report_message,
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
    EMO_AVATAR_OT_preview_frame,
    EMO_AVATAR_OT_attach_strip,
    EMO_AVATAR_OT_cancel_job,
    EMO_AVATAR_OT_key_expressions,
    EMO_AVATAR_OT_reset_expressions,
    EMO_AVATAR_OT_save_preset,
    EMO_AVATAR_OT_apply_preset,
)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
