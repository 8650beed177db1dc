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

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

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


_KEY_FLOAT2 = ("co", "handle_left", "handle_right")
_KEY_ENUMS = ("interpolation", "handle_left_type", "handle_right_type", "easing")


def _enum_value(kp, prop: str, identifier: str) -> int:
    return kp[0].bl_rna.properties[prop].enum_items[identifier].value


def reduce_keys(frames: np.ndarray, values: np.ndarray, tolerance: float) -> np.ndarray:
    """Key reduction: (T,) bool mask of the keys to keep so that linear interpolation between the
    kept keys stays within ``tolerance`` of every dropped value (Ramer-Douglas-Peucker on the
    curve; the first and last keys are always kept). ``tolerance`` <= 0 keeps every key."""
    frames = np.asarray(frames, np.float64).reshape(-1)
    values = np.asarray(values, np.float64).reshape(-1)
    keep = np.zeros(len(values), bool)
    if len(values) == 0:
        return keep
    keep[[0, -1]] = True
    if tolerance <= 0:
        keep[:] = True
        return keep
    stack = [(0, len(values) - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        x = frames[a + 1 : b]
        line = values[a] + (values[b] - values[a]) * (x - frames[a]) / max(frames[b] - frames[a], 1e-12)
        err = np.abs(values[a + 1 : b] - line)
        i = int(np.argmax(err))
        if err[i] > tolerance:
            keep[a + 1 + i] = True
            stack += [(a, a + 1 + i), (a + 1 + i, b)]
    return keep


TAKE_MODES = ("REPLACE", "NEW_ACTION", "NLA")
"""Where Import Curves puts a take: over the current keys (inside the take's range only), into a
new action (the old one is kept with a fake user), or into an NLA strip above the current action."""


@contextmanager
def take_action(id_data: bpy.types.ID, name: str, mode: str = "REPLACE") -> Iterator[None]:
    """Keys written by ``ensure_fcurve`` + ``write_keys`` inside this block go where ``mode`` says
    (``TAKE_MODES``). For NLA, the take's action becomes a strip on a new track starting at its
    first key and the action assigned before stays assigned."""
    if mode not in TAKE_MODES:
        raise ValueError(f"take mode must be one of {', '.join(TAKE_MODES)}, got {mode!r}")
    if mode == "REPLACE":
        yield
        return
    ad = id_data.animation_data or id_data.animation_data_create()
    old = ad.action
    old_slot = ad.action_slot if compat.has_slotted_actions() else None
    if old is not None:
        old.use_fake_user = True  # never lost, even when no longer assigned
    ad.action = bpy.data.actions.new(name)
    try:
        yield
    finally:
        take = ad.action
        empty = not fcurves_of(id_data)
        if empty or mode == "NLA":
            ad.action = old
            if old is not None and old_slot is not None:
                ad.action_slot = old_slot
        if empty:  # nothing was keyed: no empty action or strip is left behind
            bpy.data.actions.remove(take)
        elif mode == "NLA":
            start = int(np.floor(take.frame_range[0]))
            track = ad.nla_tracks.new()
            track.name = name
            strip = track.strips.new(name, start, take)
            if getattr(strip, "action_slot", "missing") is None and len(take.slots):
                strip.action_slot = take.slots[0]


def write_keys(
    fcurve: bpy.types.FCurve,
    frames: np.ndarray,
    values: np.ndarray,
    interpolation: str = "LINEAR",
    replace: str = "RANGE",
) -> None:
    """Write keys in bulk. ``frames`` (T,) scene frames, ``values`` (T,) floats.

    ``replace``: ``"RANGE"`` (default) removes only the existing keys from the first to the last of
    ``frames`` (keys outside the take stay exactly as they were: handles, interpolation, easing);
    ``"ALL"`` clears the curve first; ``"NONE"`` adds to what is there. New keys get AUTO_CLAMPED
    handles, recomputed by ``update()`` (LINEAR and CONSTANT keys ignore them).
    """
    frames = np.asarray(frames, dtype=np.float32).reshape(-1)
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    if frames.shape != values.shape:
        raise ValueError(f"frames {frames.shape} and values {values.shape} differ in length")
    if replace not in ("RANGE", "ALL", "NONE"):
        raise ValueError(f"replace must be RANGE, ALL or NONE, got {replace!r}")
    n = len(frames)
    if n == 0:
        return
    kp = fcurve.keyframe_points
    old = len(kp)
    kept: dict[str, np.ndarray] = {}
    if old and replace != "ALL":
        for prop in _KEY_FLOAT2:
            kept[prop] = np.empty(old * 2, np.float32)
            kp.foreach_get(prop, kept[prop])
            kept[prop] = kept[prop].reshape(old, 2)
        for prop in _KEY_ENUMS:
            kept[prop] = np.empty(old, np.int32)
            kp.foreach_get(prop, kept[prop])
        if replace == "RANGE":
            x = kept["co"][:, 0]
            outside = (x < frames.min() - 1e-4) | (x > frames.max() + 1e-4)
            kept = {k: v[outside] for k, v in kept.items()}
    m = len(kept.get("co", ()))
    kp.clear()
    kp.add(m + n)
    new_co = np.stack([frames, values], axis=1)
    arrays = {
        "co": np.concatenate([kept["co"], new_co]) if m else new_co,
        "handle_left": np.concatenate([kept["handle_left"], new_co]) if m else new_co,
        "handle_right": np.concatenate([kept["handle_right"], new_co]) if m else new_co,
    }
    code = _enum_value(kp, "interpolation", interpolation)
    auto = _enum_value(kp, "handle_left_type", "AUTO_CLAMPED")  # Blender's default for new keys
    ease = _enum_value(kp, "easing", "AUTO")
    fresh = {"interpolation": code, "handle_left_type": auto, "handle_right_type": auto, "easing": ease}
    for prop, value in fresh.items():
        arrays[prop] = np.full(m + n, value, np.int32)
        if m:
            arrays[prop][:m] = kept[prop]
    order = np.argsort(arrays["co"][:, 0], kind="stable")
    for prop in _KEY_FLOAT2:
        kp.foreach_set(prop, np.ascontiguousarray(arrays[prop][order], np.float32).reshape(-1))
    for prop in _KEY_ENUMS:
        kp.foreach_set(prop, np.ascontiguousarray(arrays[prop][order]))
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
