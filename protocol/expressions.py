"""Expression-coefficient names: the single source of truth for the whole product.

The 52 ARKit blendshape names are the vocabulary shared by Live Link Face CSV files,
the backend's person-specific face model and the Blender rig's shape keys. The face model
solves for every name MediaPipe landmarks can observe (``FACE_MODEL_NAMES``: all but
``UNOBSERVABLE_NAMES``, which says why each is left out) plus ``residual_00``..``residual_NN``
components that make the rig reproduce the tracked shapes.

Pure Python: imported by the backend and vendored into the Blender add-on.
"""

from __future__ import annotations

ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawRight", "jawLeft", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthRight", "mouthLeft",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)
"""The 52 ARKit blendshapes in Live Link Face CSV column order."""

LIVE_LINK_ROTATION_NAMES: tuple[str, ...] = (
    "HeadYaw", "HeadPitch", "HeadRoll",
    "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)
"""The 9 rotation columns Live Link Face writes after the 52 blendshapes (radians / 1)."""

UNOBSERVABLE_NAMES: dict[str, str] = {
    "tongueOut": "MediaPipe FaceMesh has no tongue landmarks: a tongue between the lips moves no "
                 "tracked point, so there is no curve to track and no shape to fit",
}
"""ARKit names the tracked face model cannot observe, each with the reason (the only names a Live
Link Face file may lose on a tracked rig)."""

FACE_MODEL_NAMES: tuple[str, ...] = tuple(n for n in ARKIT_NAMES if n not in UNOBSERVABLE_NAMES)
"""The named coefficients the tracked face model solves for: every observable ARKit name, in
ARKit order."""

RESIDUAL_PREFIX = "residual_"

HEAD_POSE_NAMES: tuple[str, ...] = ("yaw", "pitch", "roll", "tx", "ty", "tz")
"""Per-frame head pose columns (T x 6): yaw, pitch, roll in radians, then a translation.

In curve files (Live Link Face CSV, curves JSON) the translation is an offset in mesh units (cm)
around the subject's median pose (Live Link Face has none: zeros). In a subject folder and in a
render job's ``pose`` buffer it is absolute, in the subject's crop pixels (``FaceRig.project``).
``protocol.curves.head_pose_to_crop`` / ``crop_to_head_pose`` convert between the two."""

ALIASES: dict[str, str] = {
    # Common spellings seen in other trackers and exporters -> ARKit name.
    "jaw_open": "jawOpen",
    "mouthopen": "jawOpen",
    "blink_l": "eyeBlinkLeft",
    "blink_r": "eyeBlinkRight",
    "eyeblink_l": "eyeBlinkLeft",
    "eyeblink_r": "eyeBlinkRight",
    "smile_l": "mouthSmileLeft",
    "smile_r": "mouthSmileRight",
    "mouthsmile_l": "mouthSmileLeft",
    "mouthsmile_r": "mouthSmileRight",
    "browinnerup_l": "browInnerUp",
    "browinnerup_r": "browInnerUp",
    "cheekpuff_l": "cheekPuff",
    "cheekpuff_r": "cheekPuff",
}
"""Lower-cased alternative names -> canonical ARKit name."""

_CANONICAL_BY_LOWER: dict[str, str] = {n.lower(): n for n in ARKIT_NAMES + LIVE_LINK_ROTATION_NAMES}


def residual_name(index: int) -> str:
    """Name of the ``index``-th residual component, e.g. ``residual_03``."""
    return f"{RESIDUAL_PREFIX}{index:02d}"


def is_residual(name: str) -> bool:
    return name.startswith(RESIDUAL_PREFIX)


def canonical_name(name: str) -> str | None:
    """Map a name from any source to its canonical spelling, case-insensitively.

    Returns the ARKit / Live Link rotation name, the residual name itself, or ``None`` when
    the name is unknown. Suffixes ``_L``/``_R``, Blender's ``.L``/``.R`` and ``Left``/``Right``
    are all understood.
    """
    key = name.strip()
    if is_residual(key):
        return key
    low = key.lower().replace(" ", "")
    if low in _CANONICAL_BY_LOWER:
        return _CANONICAL_BY_LOWER[low]
    if low in ALIASES:
        return ALIASES[low]
    for suffix, side in (("_l", "left"), ("_r", "right"), (".l", "left"), (".r", "right")):
        if low.endswith(suffix) and low[: -len(suffix)] + side in _CANONICAL_BY_LOWER:
            return _CANONICAL_BY_LOWER[low[: -len(suffix)] + side]
    return None
