# ruff: noqa: N801, RUF012  (Blender class naming: CATEGORY_PT_name; bl_options sets)
"""The "Emo-Avatar" sidebar panel, in the 3D viewport and in the sequencer (same content), with
sub-panels for the rig's shot settings, the live preview, the expression sliders and the jobs."""

from __future__ import annotations

import bpy
from bpy.app.translations import pgettext_iface as iface_

from . import expressions_ui, rig
from .curves_bpy import rig_names
from .preview import PREVIEW
from .runtime import RUNTIME

STATUS_ICONS = {
    "CONNECTED": "CHECKMARK",
    "CONNECTING": "SORTTIME",
    "UNAVAILABLE": "ERROR",
    "ERROR": "CANCEL",
    "DISCONNECTED": "UNLINKED",
}


def _wrap(text: str, width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) + 1 > width and line:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines


def _label_wrapped(layout, text: str, icon: str = "NONE", width: int = 48, lines: int = 6) -> None:
    col = layout.column(align=True)
    for i, line in enumerate(_wrap(text, width)[:lines]):
        col.label(text=line, icon=icon if i == 0 else "BLANK1")


def _rig(context) -> bpy.types.Object | None:
    try:
        return rig.find_rig(context.scene)
    except ValueError:
        return None


class EMO_AVATAR_UL_jobs(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        row = layout.row(align=True)
        row.label(text=f"{item.label or item.kind} [{item.job_id[:6]}]", translate=False)
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
            "emo_avatar.connect",
            text=iface_("Retry") if st.status in ("UNAVAILABLE", "ERROR") else iface_("Connect"),
        )
    if st.message:
        _label_wrapped(box, st.message)
    if st.server:
        box.label(text=f"{st.server} on {st.device}", icon="SYSTEM", translate=False)
    if RUNTIME.backend_proc is not None and RUNTIME.backend_proc.poll() is None:
        box.operator("emo_avatar.stop_backend", icon="CANCEL")

    col = layout.column(align=True)
    col.prop_search(st, "subject", st, "subjects", icon="USER")
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
    for level, text in RUNTIME.messages[-3:]:
        _label_wrapped(layout, text, icon="ERROR" if level == "ERROR" else "INFO")


class _Sub:
    bl_region_type = "UI"
    bl_category = "Emo-Avatar"
    bl_options = {"DEFAULT_CLOSED"}


def draw_shot(layout, context) -> None:
    head = _rig(context)
    if head is None:
        layout.label(text=iface_("Import a subject rig (or make one active)"), icon="INFO")
        return
    st = context.window_manager.emo_avatar
    layout.label(text=head.name, icon="OBJECT_DATA", translate=False)
    s = head.emo_avatar
    col = layout.column(align=True)
    col.prop_search(s, "style", st, "styles", icon="BRUSH_DATA")
    col.prop(s, "output_dir")
    col.prop(s, "channel")
    col.prop(s, "uv_source")
    missing, _extra = rig.shape_key_mismatch(head, list(head.get(rig.PROP_NAMES, [])))
    if missing:
        layout.label(text=iface_("Rig lacks {} shape keys").format(len(missing)), icon="ERROR")
    layout.operator("emo_avatar.render_shot", icon="RENDER_ANIMATION").uv_source = s.uv_source


def draw_preview(layout, context) -> None:
    p = context.scene.emo_avatar_preview
    row = layout.row(align=True)
    row.prop(p, "live", toggle=True, icon="PLAY" if not p.live else "PAUSE")
    row.operator("emo_avatar.preview_frame", text="", icon="RENDER_STILL")
    layout.prop(p, "camera_background")
    layout.prop(p, "size")
    if PREVIEW.latency is not None:
        layout.label(
            text=iface_("frame {}: {:.0f} ms").format(PREVIEW.shown_frame, 1000 * PREVIEW.latency),
            icon="TIME",
        )
    if PREVIEW.error:
        _label_wrapped(layout, PREVIEW.error, icon="ERROR")
    layout.label(text=iface_("Image: 'Emo-Avatar Preview' (Image Editor)"), icon="IMAGE_DATA")


def draw_expressions(layout, context) -> None:
    head = _rig(context)
    key = head.data.shape_keys if head is not None else None
    if key is None:
        layout.label(text=iface_("No rig"), icon="INFO")
        return
    row = layout.row(align=True)
    row.operator("emo_avatar.key_expressions", text=iface_("Key All"), icon="KEY_HLT").region = ""
    row.operator("emo_avatar.reset_expressions", text=iface_("Reset"), icon="LOOP_BACK").region = ""
    row = layout.row(align=True)
    row.operator_menu_enum("emo_avatar.apply_preset", "name", text=iface_("Preset"), icon="PRESET")
    row.operator("emo_avatar.save_preset", text="", icon="ADD")
    names = [n for n in rig_names(head) if n in key.key_blocks]
    for region, label in expressions_ui.REGIONS:
        in_region = expressions_ui.names_in_region(names, region)
        if not in_region:
            continue
        box = layout.box()
        head_row = box.row(align=True)
        head_row.label(text=iface_(label))
        head_row.operator("emo_avatar.key_expressions", text="", icon="KEY_HLT").region = region
        head_row.operator("emo_avatar.reset_expressions", text="", icon="LOOP_BACK").region = region
        col = box.column(align=True)
        for left, right in expressions_ui.paired_rows(in_region):
            r = col.row(align=True)
            r.prop(key.key_blocks[left], "value", text=left, slider=True, translate=False)
            if right is not None:
                r.prop(key.key_blocks[right], "value", text=right, slider=True, translate=False)


def draw_jobs(layout, context) -> None:
    st = context.window_manager.emo_avatar
    layout.template_list("EMO_AVATAR_UL_jobs", "", st, "jobs", st, "job_index", rows=3)
    row = layout.row(align=True)
    row.operator("emo_avatar.cancel_job", icon="CANCEL")
    row.operator("emo_avatar.attach_strip", icon="SEQ_STRIP_DUPLICATE")
    if 0 <= st.job_index < len(st.jobs) and st.jobs[st.job_index].error:
        _label_wrapped(layout, st.jobs[st.job_index].error, icon="ERROR")


def _panels(space: str, suffix: str) -> list[type]:
    main = type(
        f"EMO_AVATAR_PT_{suffix}",
        (bpy.types.Panel,),
        {
            "bl_label": "Emo-Avatar",
            "bl_idname": f"EMO_AVATAR_PT_{suffix}",
            "bl_space_type": space,
            "bl_region_type": "UI",
            "bl_category": "Emo-Avatar",
            "draw": lambda self, context: draw_panel(self.layout, context),
        },
    )
    out = [main]
    for name, label, fn in (
        ("shot", "Shot", draw_shot),
        ("preview", "Live Preview", draw_preview),
        ("expressions", "Expressions", draw_expressions),
        ("jobs", "Jobs", draw_jobs),
    ):
        out.append(
            type(
                f"EMO_AVATAR_PT_{suffix}_{name}",
                (_Sub, bpy.types.Panel),
                {
                    "bl_label": label,
                    "bl_idname": f"EMO_AVATAR_PT_{suffix}_{name}",
                    "bl_space_type": space,
                    "bl_parent_id": f"EMO_AVATAR_PT_{suffix}",
                    "bl_options": set() if name in ("shot", "jobs") else {"DEFAULT_CLOSED"},
                    "draw": (lambda f: lambda self, context: f(self.layout, context))(fn),
                },
            )
        )
    return out


CLASSES = (EMO_AVATAR_UL_jobs, *_panels("VIEW_3D", "view3d"), *_panels("SEQUENCE_EDITOR", "sequencer"))


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
