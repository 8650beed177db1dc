"""Emo-Avatar wire protocol: the only code the Blender add-on and the backend share.

Pure Python (numpy, msgpack, pyzmq). Never imports torch or bpy: it is vendored into the
Blender extension by ``build_addon.py``.
"""

PROTOCOL_VERSION = (2, 6)
"""(major, minor): a major mismatch is refused, a minor difference is tolerated."""
