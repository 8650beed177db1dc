# ruff: noqa: N801  (Blender class naming: CATEGORY_OT_name; bl_options sets)
"""The "Emo-Avatar" sidebar panel, in the 3D viewport and in the sequencer (same content)."""

from __future__ import annotations

import bpy

from . import rig
from .state import RUNTIME

STATUS_ICONS = {
    "CONNECTED": "CHECKMARK",
    "CONNECTING": "SORTTIME",
    "UNAVAILABLE": "ERROR",
    "ERROR": "CANCEL",
    "DISCONNECTED": "UNLINKED",
}


class EMO_AVATAR_UL_jobs(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        row = layout.row(align=True)
        row.label(text=f"{item.label or item.kind} [{item.job_id[:6]}]")
        if item.state in ("running", "queued", "cancelling"):
            sub = row.row()
            sub.scale_x = 0.8
            if hasattr(sub, "progress"):  # 4.0+: a progress bar widget
                sub.progress(factor=item.progress, type="BAR", text=f"{int(100 * item.progress)}%")
            else:
                sub.label(text=f"{int(100 * item.progress)}%")
        else:
            row.label(text=item.state, icon="ERROR" if item.state == "failed" else "NONE")


def draw_panel(layout: bpy.types.UILayout, context) -> None:
    st = context.window_manager.emo_avatar
    box = layout.box()
    row = box.row()
    row.label(text=st.status.title(), icon=STATUS_ICONS.get(st.status, "NONE"))
    if st.status in ("CONNECTED",):
        row.operator("emo_avatar.refresh", text="", icon="FILE_REFRESH")
        row.operator("emo_avatar.disconnect", text="", icon="X")
    else:
        row.operator(
            "emo_avatar.connect", text="Retry" if st.status in ("UNAVAILABLE", "ERROR") else "Connect"
        )
    if st.message:
        for line in _wrap(st.message, 48)[:4]:
            box.label(text=line)
    if st.server:
        box.label(text=f"{st.server} on {st.device}", icon="SYSTEM")
    if RUNTIME.backend_proc is not None and RUNTIME.backend_proc.poll() is None:
        box.operator("emo_avatar.stop_backend", icon="CANCEL")

    col = layout.column(align=True)
    col.prop_search(st, "subject", st, "subjects", icon="USER")
    col.prop_search(st, "style", st, "styles", icon="BRUSH_DATA")
    col = layout.column(align=True)
    col.operator("emo_avatar.track_video", icon="FILE_MOVIE")
    col.operator("emo_avatar.train", icon="PLAY")
    col.operator("emo_avatar.edit", icon="IMAGE_DATA")
    col = layout.column(align=True)
    col.operator("emo_avatar.import_rig", icon="MESH_MONKEY")
    col.operator("emo_avatar.import_subject_folder", icon="FILE_FOLDER")
    row = col.row(align=True)
    row.operator("emo_avatar.import_curves", icon="IMPORT")
    row.operator("emo_avatar.export_curves", icon="EXPORT")
    rigs = rig.rig_objects(context.scene)
    if rigs:
        missing, _extra = rig.shape_key_mismatch(rigs[0], [n for n in rigs[0].get(rig.PROP_NAMES, [])])
        if missing:
            layout.label(text=f"Rig lacks {len(missing)} shape keys", icon="ERROR")
    row = layout.row(align=True)
    row.operator("emo_avatar.render_shot", icon="RENDER_ANIMATION").uv_source = "BLENDER"
    row.operator("emo_avatar.render_shot", text="Backend UVs", icon="MESH_UVSPHERE").uv_source = "BACKEND"

    layout.label(text="Jobs")
    layout.template_list("EMO_AVATAR_UL_jobs", "", st, "jobs", st, "job_index", rows=3)
    layout.operator("emo_avatar.cancel_job", icon="CANCEL")
    for level, text in RUNTIME.messages[-3:]:
        layout.label(text=text[:80], icon="ERROR" if level == "ERROR" else "INFO")


def _wrap(text: str, width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) + 1 > width and line:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines


class EMO_AVATAR_PT_view3d(bpy.types.Panel):
    bl_label = "Emo-Avatar"
    bl_idname = "EMO_AVATAR_PT_view3d"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Emo-Avatar"

    def draw(self, context):
        draw_panel(self.layout, context)


class EMO_AVATAR_PT_sequencer(bpy.types.Panel):
    bl_label = "Emo-Avatar"
    bl_idname = "EMO_AVATAR_PT_sequencer"
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Emo-Avatar"

    def draw(self, context):
        draw_panel(self.layout, context)


CLASSES = (EMO_AVATAR_UL_jobs, EMO_AVATAR_PT_view3d, EMO_AVATAR_PT_sequencer)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
