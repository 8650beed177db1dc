"""Shared helpers of the Blender example scripts: argument parsing after ``--`` and finding the
installed Emo-Avatar extension (whatever repository it was installed into)."""

from __future__ import annotations

import importlib
import sys

import bpy


def script_args() -> list[str]:
    """Arguments for the script: after ``--`` under ``blender -b ... -P script.py -- ARGS``."""
    return sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]


def install_extension(zip_path: str) -> None:
    """Install + enable a built extension zip (what Edit > Preferences > Get Extensions does)."""
    bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)


def emo_api():
    """The installed add-on's ``api`` module (``bl_ext.<repo>.emo_avatar.api``)."""
    for name in bpy.context.preferences.addons.keys():  # noqa: SIM118 (iterating yields Addon structs)
        if name.split(".")[-1] == "emo_avatar":
            return importlib.import_module(f"{name}.api")
    raise SystemExit("the Emo-Avatar extension is not enabled: install it (or pass --install ZIP)")
