"""THE F-curve reader/writer of the add-on: one code path for Blender 4.2 (legacy actions),
4.4+ (slotted actions) and 5.0 (no ``Action.fcurves``).

An ID's animation is found as ``id.animation_data.action`` (+ ``action_slot`` on 4.4+). Reading
evaluates the F-curves with ``FCurve.evaluate(frame)``, which is what ``scene.frame_set`` does
for an action without NLA tracks, drivers or modifiers on top; when the ID uses NLA tracks the
reader says so (``uses_nla``) and callers fall back to ``frame_set`` sampling.

Writing is bulk: ``keyframe_points.add(n)`` then ``foreach_set("co", ...)`` - thousands of keys
in milliseconds instead of one ``keyframe_insert`` call each.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import bpy
import numpy as np

from . import compat


def fcurves_of(id_data: bpy.types.ID) -> list[bpy.types.FCurve]:
    """All F-curves of the action assigned to ``id_data`` (its slot's channelbag on 4.4+)."""
    ad = getattr(id_data, "animation_data", None)
    if ad is None or ad.action is None:
        return []
    if compat.has_slotted_actions():
        if ad.action_slot is None:
            return []
        bag = compat.channelbag(ad)
        return list(bag.fcurves) if bag is not None else []
    return list(ad.action.fcurves)


def fcurve_map(id_data: bpy.types.ID) -> dict[tuple[str, int], bpy.types.FCurve]:
    """``{(data_path, array_index): fcurve}`` for ``id_data``."""
    return {(fc.data_path, fc.array_index): fc for fc in fcurves_of(id_data)}


def uses_nla(id_data: bpy.types.ID) -> bool:
    """True when NLA tracks or drivers also drive ``id_data`` (the reader alone is then not exact)."""
    ad = getattr(id_data, "animation_data", None)
    if ad is None:
        return False
    return bool((ad.use_nla and len(ad.nla_tracks)) or len(ad.drivers))


def ensure_action(id_data: bpy.types.ID, name: str) -> bpy.types.Action:
    """Give ``id_data`` an action (and a slot for it on 4.4+); returns the action."""
    ad = id_data.animation_data or id_data.animation_data_create()
    if ad.action is None:
        ad.action = bpy.data.actions.new(name)
    if compat.has_slotted_actions() and ad.action_slot is None:
        action = ad.action
        slot = None
        for candidate in action.slots:
            if candidate.target_id_type == id_data.id_type:
                slot = candidate
                break
        if slot is None:
            slot = action.slots.new(id_type=id_data.id_type, name=id_data.name)
        ad.action_slot = slot
    return ad.action


def ensure_fcurve(id_data: bpy.types.ID, data_path: str, index: int = 0, group: str = "") -> bpy.types.FCurve:
    """The F-curve for ``data_path[index]`` on ``id_data``'s action, created when missing."""
    action = ensure_action(id_data, f"{id_data.name}Action")
    if compat.has_slotted_actions():  # 4.4+: the F-curve lives in the slot's channelbag
        bag = compat.channelbag(id_data.animation_data, create=True)
        fc = bag.fcurves.find(data_path, index=index)
        if fc is None:
            fc = bag.fcurves.new(data_path, index=index)
            if group:
                grp = bag.groups.get(group) if hasattr(bag.groups, "get") else None
                fc.group = grp or bag.groups.new(group)
        return fc
    fc = action.fcurves.find(data_path, index=index)
    if fc is None:
        fc = action.fcurves.new(data_path, index=index, action_group=group)
    return fc


def write_keys(
    fcurve: bpy.types.FCurve,
    frames: np.ndarray,
    values: np.ndarray,
    interpolation: str = "LINEAR",
    replace: bool = True,
) -> None:
    """Write keys in bulk. ``frames`` (T,) scene frames, ``values`` (T,) floats.

    With ``replace`` existing keys are removed first. Handles are set to the key itself (LINEAR
    and CONSTANT ignore them; BEZIER keys get AUTO_CLAMPED handles recomputed by ``update()``).
    """
    frames = np.asarray(frames, dtype=np.float32).reshape(-1)
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    if frames.shape != values.shape:
        raise ValueError(f"frames {frames.shape} and values {values.shape} differ in length")
    kp = fcurve.keyframe_points
    if replace:
        kp.clear()
    start = len(kp)
    n = len(frames)
    if n == 0:
        return
    kp.add(n)
    co = np.empty((start + n, 2), dtype=np.float32)
    kp.foreach_get("co", co.reshape(-1))
    co[start:, 0] = frames
    co[start:, 1] = values
    kp.foreach_set("co", co.reshape(-1))
    kp.foreach_set("handle_left", co.reshape(-1))
    kp.foreach_set("handle_right", co.reshape(-1))
    interp_enum = kp[0].bl_rna.properties["interpolation"].enum_items
    code = interp_enum[interpolation].value
    modes = np.full(start + n, code, dtype=np.int32)
    kp.foreach_set("interpolation", modes)
    if interpolation == "BEZIER":
        htype = kp[0].bl_rna.properties["handle_left_type"].enum_items["AUTO_CLAMPED"].value
        kp.foreach_set("handle_left_type", np.full(start + n, htype, dtype=np.int32))
        kp.foreach_set("handle_right_type", np.full(start + n, htype, dtype=np.int32))
    fcurve.update()


def evaluate(fcurve: bpy.types.FCurve | None, frames: Iterable[float], default: float) -> np.ndarray:
    """``fcurve`` evaluated at ``frames`` -> (T,) float32; ``default`` when there is no curve."""
    frames = list(frames)
    if fcurve is None or fcurve.mute or (len(fcurve.keyframe_points) == 0 and not len(fcurve.modifiers)):
        return np.full(len(frames), default, dtype=np.float32)
    ev = fcurve.evaluate
    return np.fromiter((ev(f) for f in frames), dtype=np.float32, count=len(frames))


def sample_paths(
    id_data: bpy.types.ID,
    paths: Sequence[tuple[str, int]],
    frames: Sequence[float],
    defaults: Sequence[float],
) -> np.ndarray:
    """Values of ``paths`` ((data_path, index) pairs) at ``frames`` -> (T, len(paths)) float32.

    A path without an F-curve keeps its default (usually the property's current static value).
    """
    fmap = fcurve_map(id_data)
    out = np.empty((len(frames), len(paths)), dtype=np.float32)
    for j, (key, default) in enumerate(zip(paths, defaults, strict=True)):
        out[:, j] = evaluate(fmap.get(key), frames, default)
    return out
