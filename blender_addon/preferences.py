"""Add-on preferences (stored by Blender under this extension's ``__package__``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import bpy
from bpy.props import BoolProperty, FloatProperty, IntProperty, StringProperty

from .vse import MAX_CHANNEL

ADDON_ID = __package__


def user_folder() -> Path:
    """The extension's own user folder (Blender's rule for extensions: never the system temp)."""
    return Path(bpy.utils.extension_path_user(ADDON_ID, path="", create=True))


def workdir() -> str:
    """The local backend's workdir: the preference, or ``<extension user folder>/backend``."""
    p = prefs()
    return bpy.path.abspath(p.workdir) if p.workdir else str(user_folder() / "backend")


class EmoAvatarPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    use_manual: BoolProperty(
        name="Enter host, ports and key",
        description="Connect without a connection file (e.g. a backend on another machine)",
        default=False,
    )
    host: StringProperty(name="Host", default="127.0.0.1")
    shell_port: IntProperty(name="Shell port", default=0, min=0, max=65535)
    control_port: IntProperty(name="Control port", default=0, min=0, max=65535)
    events_port: IntProperty(name="Events port", default=0, min=0, max=65535)
    key: StringProperty(
        name="Key", subtype="PASSWORD", description="HMAC key from the backend's connection file"
    )
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
        default="",
        description="Where a local backend keeps subjects, jobs and frames (empty: the extension's "
        "user folder)",
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
        name="Sequencer channel",
        default=2,
        min=1,
        max=MAX_CHANNEL,
        description="Channel the rendered strip goes to (or the first free one above it)",
    )
    timeout: FloatProperty(name="Reply timeout (s)", default=3.0, min=0.5, max=120.0)
    standard_view: BoolProperty(
        name="Show frames as delivered",
        default=False,
        description="When a shot's strip is created, set the scene's view transform to Standard and the "
        "sequencer to sRGB, so the sequencer shows the backend's pixels unchanged (changes the "
        "scene's colour management)",
    )

    def draw(self, _context) -> None:
        col = self.layout.column()
        col.prop(self, "use_manual")
        if self.use_manual:
            box = col.box()
            for name in ("host", "shell_port", "control_port", "events_port", "key"):
                box.prop(self, name)
        else:
            col.prop(self, "connection_file")
        col.prop(self, "workdir")
        col.prop(self, "backend_command")
        col.prop(self, "start_local")
        col.prop(self, "auto_connect")
        col.separator()
        col.prop(self, "output_dir")
        col.prop(self, "channel")
        col.prop(self, "standard_view")
        col.prop(self, "timeout")


def prefs() -> EmoAvatarPreferences:
    return bpy.context.preferences.addons[ADDON_ID].preferences


def manual_connection_file(p) -> str:
    """Host/ports/key from the preferences as a private connection file (mode 0600) the client reads."""
    from .protocol.connection import ConnectionInfo

    if not (p.shell_port and p.control_port and p.events_port and p.key):
        raise ValueError("enter the host, the three ports and the key (from the backend's connection file)")
    info = ConnectionInfo(
        shell_port=p.shell_port,
        control_port=p.control_port,
        events_port=p.events_port,
        key=p.key,
        ip=p.host or "127.0.0.1",
    )
    path = user_folder() / f"connection_{os.getuid() if hasattr(os, 'getuid') else 0}.json"
    return str(info.write(path))


def connection_file() -> str:
    p = prefs()
    if p.use_manual:
        return manual_connection_file(p)
    if p.connection_file:
        return bpy.path.abspath(p.connection_file)
    return str(Path(workdir()) / "connection.json")


def connection_host(path: str | os.PathLike[str]) -> str | None:
    """The backend host a connection file names (None when it cannot be read yet)."""
    try:
        return str(json.loads(Path(path).read_text()).get("ip") or "127.0.0.1")
    except (OSError, ValueError, AttributeError):
        return None


def check_online_access(path: str | os.PathLike[str]) -> None:
    """Blender's rule: an add-on reaches other machines only with "Allow Online Access" on. Raises
    ``PermissionError`` for a non-loopback host while it is off (loopback is always allowed)."""
    from .protocol.connection import is_loopback_ip

    host = connection_host(path)
    if host is None or is_loopback_ip(host) or getattr(bpy.app, "online_access", True):
        return
    raise PermissionError(
        f"the backend at {host} is on another machine and Blender's online access is off: enable "
        "'Allow Online Access' in Preferences > System > Network, or run the backend locally"
    )


def register() -> None:
    bpy.utils.register_class(EmoAvatarPreferences)


def unregister() -> None:
    bpy.utils.unregister_class(EmoAvatarPreferences)
