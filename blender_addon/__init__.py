"""Emo-Avatar Studio - Blender extension (4.2+).

Keyframe facial expressions on an imported subject rig and get stylized portrait frames back as
an image-sequence strip in the Video Sequence Editor, or the current frame as a live preview. The
heavy lifting happens in the backend service (``emo-avatar serve``); this add-on talks to it
through the vendored ``protocol`` package with pyzmq + msgpack (bundled wheels) and never imports
torch.

Modules: ``compat`` (Blender-version differences), ``fcurves`` (the one F-curve reader/writer),
``rigdata``/``rig`` (subject rig), ``curves_bpy`` (sampling), ``uv_pass`` (Cycles UV pass),
``vse`` (strips), ``exr``/``png`` (file formats), ``io_thread`` (networking), ``props``
(properties), ``runtime`` (threads, shots, the timer), ``shot`` (long shots in chunks),
``preview`` (live preview), ``operators``/``panels``/``preferences`` (UI), ``api`` (Python API
for TDs and the operators' shared logic), ``farm_export`` (Export Farm Job: a job bundle).
"""

from __future__ import annotations

import time

_MODULES = ("preferences", "props", "runtime", "preview", "operators", "panels", "farm_export")
_TRANSLATIONS: dict[str, dict[tuple[str | None, str], str]] = {}
"""UI strings go through Blender's translation system (``bpy.app.translations``); languages are
added here as ``{locale: {(context, source): translation}}``."""


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
    bpy.app.translations.register(__package__, _TRANSLATIONS)
    if not bpy.app.background:
        bpy.app.timers.register(_auto_connect, first_interval=1.0)


def unregister() -> None:
    """Disabling the add-on: running shots are cancelled (UV pass and render jobs) and the
    connection closed within ``runtime.SHUTDOWN_TIMEOUT``; a local backend this Blender started
    is stopped without waiting for it."""
    import bpy

    from . import api

    t0 = time.monotonic()
    if bpy.app.timers.is_registered(_auto_connect):
        bpy.app.timers.unregister(_auto_connect)
    bpy.app.translations.unregister(__package__)
    for module in reversed(_load()):
        module.unregister()
    api.stop_local_backend(timeout=max(0.05, (1.9 - (time.monotonic() - t0)) / 2))
