"""The add-on's Blender properties.

- ``WindowManager.emo_avatar`` (``EmoAvatarState``): the connection, subjects, styles and jobs;
  runtime facts that are never saved into a .blend.
- ``Object.emo_avatar`` (``EmoAvatarRigSettings``): per rig, saved with the .blend: the style, the
  frames folder and the sequencer channel its shots use.
- ``Scene.emo_avatar_preview`` (``EmoAvatarPreviewSettings``): the live preview toggle and where
  its image shows.
"""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from .vse import MAX_CHANNEL

STATUS_ITEMS = [
    ("DISCONNECTED", "Disconnected", "Not connected to a backend"),
    ("CONNECTING", "Connecting", "Looking for the backend"),
    ("CONNECTED", "Connected", "Talking to the backend"),
    ("UNAVAILABLE", "Unavailable", "No backend answers; retrying"),
    ("ERROR", "Error", "Cannot use this backend"),
]
UV_BLENDER = "BLENDER"
UV_BACKEND = "BACKEND"
UV_SOURCE_ITEMS = [
    (UV_BLENDER, "Blender UV pass", "Cycles UV pass of the rig from its own camera"),
    (UV_BACKEND, "Backend rasterises", "Send only curves + head pose; the backend draws the UVs"),
]


class EmoAvatarJob(bpy.types.PropertyGroup):
    job_id: StringProperty(name="Job")
    kind: StringProperty(name="Kind")
    state: StringProperty(name="State")
    stage: StringProperty(name="Stage")
    progress: FloatProperty(name="Progress", min=0.0, max=1.0, subtype="FACTOR")
    error: StringProperty(name="Error")
    label: StringProperty(name="Label")


class EmoAvatarSubject(bpy.types.PropertyGroup):
    # ``name`` (built in) is the subject id, so prop_search can list these.
    has_avatar: BoolProperty(name="Trained")
    styles: StringProperty(name="Styles", description="Comma-separated style names")
    frames: IntProperty(name="Frames")


class EmoAvatarStyle(bpy.types.PropertyGroup):
    pass


def fill_styles(st: EmoAvatarState) -> None:
    """The style list of the chosen subject (``st.subject``)."""
    st.styles.clear()
    subject = st.subjects.get(st.subject) if st.subject else None
    names = [s for s in (subject.styles.split(",") if subject else []) if s]
    for name in names:
        st.styles.add().name = name
    if st.style and st.style not in names:
        st.style = ""


def _subject_changed(self, _context) -> None:
    fill_styles(self)


class EmoAvatarState(bpy.types.PropertyGroup):
    status: EnumProperty(name="Status", items=STATUS_ITEMS, default="DISCONNECTED")
    message: StringProperty(name="Message")
    server: StringProperty(name="Server")
    device: StringProperty(name="Device")
    proto: StringProperty(name="Protocol")
    instance_id: StringProperty(name="Instance")
    jobs: CollectionProperty(type=EmoAvatarJob)
    job_index: IntProperty(name="Active job")
    subjects: CollectionProperty(type=EmoAvatarSubject)
    subject: StringProperty(
        name="Subject", description="Subject (tracked person) on the backend", update=_subject_changed
    )
    styles: CollectionProperty(type=EmoAvatarStyle)
    style: StringProperty(name="Style", description="Style to render with (empty: the un-styled avatar)")


class EmoAvatarRigSettings(bpy.types.PropertyGroup):
    """A rig's pipeline state, saved with the .blend (empty / 0: the add-on preferences decide)."""

    style: StringProperty(name="Style", description="Style this rig's shots render with (empty: un-styled)")
    output_dir: StringProperty(
        name="Frames folder",
        subtype="DIR_PATH",
        description="Where this rig's frames are written (empty: the preferences' folder; "
        "// = next to the .blend)",
    )
    channel: IntProperty(
        name="Sequencer channel",
        default=0,
        min=0,
        max=MAX_CHANNEL,
        description="Channel of this rig's strips (0: the preferences' channel)",
    )
    uv_source: EnumProperty(name="UV maps", items=UV_SOURCE_ITEMS, default=UV_BLENDER)


def _preview_toggled(self, context) -> None:
    from . import preview

    preview.live_toggled(context.scene if context is not None else None)


class EmoAvatarPreviewSettings(bpy.types.PropertyGroup):
    live: BoolProperty(
        name="Live preview",
        description="Render the current frame with the backend on every frame change or scrub",
        default=False,
        update=_preview_toggled,
    )
    camera_background: BoolProperty(
        name="Show on rig camera",
        description="Show the preview image as the rig camera's background",
        default=False,
    )
    size: IntProperty(
        name="Preview size",
        description="Side of the preview image in pixels (0: the subject's size)",
        default=0,
        min=0,
        max=1024,
    )


CLASSES = (
    EmoAvatarJob,
    EmoAvatarSubject,
    EmoAvatarStyle,
    EmoAvatarState,
    EmoAvatarRigSettings,
    EmoAvatarPreviewSettings,
)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.WindowManager.emo_avatar = PointerProperty(type=EmoAvatarState)
    bpy.types.Object.emo_avatar = PointerProperty(type=EmoAvatarRigSettings)
    bpy.types.Scene.emo_avatar_preview = PointerProperty(type=EmoAvatarPreviewSettings)


def unregister() -> None:
    del bpy.types.Scene.emo_avatar_preview
    del bpy.types.Object.emo_avatar
    del bpy.types.WindowManager.emo_avatar
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
