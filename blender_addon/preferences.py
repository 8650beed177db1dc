"""Add-on preferences (stored by Blender under this extension's ``__package__``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import bpy
from bpy.props import BoolProperty, FloatProperty, IntProperty, StringProperty

ADDON_ID = __package__


def default_workdir() -> str:
    return str(Path(tempfile.gettempdir()) / "emo-avatar-work")


class EmoAvatarPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    connection_file: StringProperty(
        name="Connection file",
        subtype="FILE_PATH",
        description="connection.json written by `emo-avatar serve` (empty: <workdir>/connection.json)",
    )
    backend_command: StringProperty(
        name="Backend command",
        description="Python of the backend's environment (runs `-m backend.cli`) or the `emo-avatar` "
        "executable; used by 'Start local backend'",
        default=os.environ.get("EMO_BACKEND_PYTHON", ""),
    )
    workdir: StringProperty(
        name="Backend workdir",
        subtype="DIR_PATH",
        default=default_workdir(),
        description="Where a local backend keeps subjects, jobs and frames",
    )
    start_local: BoolProperty(
        name="Start local backend on connect",
        default=False,
        description="Start `emo-avatar serve` when connecting (stopped on quit)",
    )
    auto_connect: BoolProperty(name="Connect on startup", default=False)
    output_dir: StringProperty(
        name="Frames folder",
        subtype="DIR_PATH",
        default="//emo_frames/",
        description="Where rendered frames are written (// = next to the .blend)",
    )
    channel: IntProperty(
        name="Sequencer channel", default=2, min=1, max=128, description="Channel the rendered strip goes to"
    )
    timeout: FloatProperty(name="Reply timeout (s)", default=3.0, min=0.5, max=120.0)

    def draw(self, _context) -> None:
        col = self.layout.column()
        col.prop(self, "connection_file")
        col.prop(self, "workdir")
        col.prop(self, "backend_command")
        col.prop(self, "start_local")
        col.prop(self, "auto_connect")
        col.separator()
        col.prop(self, "output_dir")
        col.prop(self, "channel")
        col.prop(self, "timeout")


def prefs() -> EmoAvatarPreferences:
    return bpy.context.preferences.addons[ADDON_ID].preferences


def connection_file() -> str:
    p = prefs()
    if p.connection_file:
        return bpy.path.abspath(p.connection_file)
    return str(Path(bpy.path.abspath(p.workdir)) / "connection.json")


def register() -> None:
    bpy.utils.register_class(EmoAvatarPreferences)


def unregister() -> None:
    bpy.utils.unregister_class(EmoAvatarPreferences)
