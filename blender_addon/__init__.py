"""Emo-Avatar Studio - Blender extension (4.2+).

Keyframe facial expressions on an imported subject rig and get stylized portrait frames back as
an image-sequence strip in the Video Sequence Editor. The heavy lifting happens in the backend
service (``emo-avatar serve``); this add-on talks to it through the vendored ``protocol``
package with pyzmq + msgpack (bundled wheels) and never imports torch.

Modules: ``compat`` (Blender-version differences), ``fcurves`` (the one F-curve reader/writer),
``rigdata``/``rig`` (subject rig), ``curves_bpy`` (sampling), ``uv_pass`` (Cycles UV pass),
``vse`` (strips), ``exr``/``png`` (file formats), ``io_thread``/``state`` (networking),
``operators``/``panels``/``preferences`` (UI), ``api`` (Python API for TDs).
"""

from __future__ import annotations

_MODULES = ("preferences", "state", "operators", "panels")


def _load():
    import importlib

    return [importlib.import_module(f".{name}", __package__) for name in _MODULES]


def _auto_connect() -> None:
    """First-interval timer after registration: connect when the preferences ask for it."""
    import bpy

    from . import preferences

    if bpy.app.background or not preferences.prefs().auto_connect:
        return None
    bpy.ops.emo_avatar.connect()
    return None


def register() -> None:
    import bpy

    for module in _load():
        module.register()
    if not bpy.app.background:
        bpy.app.timers.register(_auto_connect, first_interval=1.0)


def unregister() -> None:
    import bpy

    from . import api

    if bpy.app.timers.is_registered(_auto_connect):
        bpy.app.timers.unregister(_auto_connect)
    api.stop_local_backend()  # only the backend this Blender started
    for module in reversed(_load()):
        module.unregister()
