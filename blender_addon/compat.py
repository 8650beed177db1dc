"""Every difference between the supported Blender versions (4.2 LTS .. 5.x) in one place.

- Actions: 4.2/4.3 keep F-curves on ``Action.fcurves`` ("legacy" actions). 4.4 introduced
  slotted (layered) actions: F-curves live in ``action.layers[0].strips[0].channelbag(slot)``,
  with ``AnimData.action_slot`` choosing the slot; ``Action.fcurves`` remained as a proxy for
  the first slot until 5.0 removed it.
- Sequencer: 4.2 calls the strip collection ``SequenceEditor.sequences``; 4.4 added ``strips``
  and 5.0 removed ``sequences``.
- Sequencer scene: 5.0 lets a workspace show another scene's sequencer
  (``WorkSpace.sequencer_scene``); strips go where the animator's sequencer looks.
- Compositor: 5.0 replaced ``Scene.node_tree`` with ``Scene.compositing_node_group`` (the add-on
  avoids the compositor: the UV pass is read back from a multilayer EXR, see ``exr.py``).

Feature tests use the RNA description (``bl_rna``), never version numbers, so a point release
that backports a feature is handled too.
"""

from __future__ import annotations

from typing import Any

import bpy

VERSION: tuple[int, int, int] = tuple(bpy.app.version)  # type: ignore[assignment]


def _rna_has(struct: Any, name: str) -> bool:
    return name in struct.bl_rna.properties


def has_slotted_actions() -> bool:
    """True on Blender 4.4+ (``AnimData.action_slot`` exists)."""
    return _rna_has(bpy.types.AnimData, "action_slot")


def action_has_legacy_fcurves(action: bpy.types.Action) -> bool:
    """True when ``Action.fcurves`` exists (4.2 - 4.5); 5.0 removed it."""
    return _rna_has(action, "fcurves")


def channelbag(animdata: bpy.types.AnimData, create: bool = False) -> Any | None:
    """The channelbag of the action slot ``animdata`` uses (4.4+), or None.

    With ``create`` a missing layer / keyframe strip / channelbag is made (the slot must be set).
    """
    action = animdata.action
    slot = animdata.action_slot
    if action is None or slot is None:
        return None
    from bpy_extras import anim_utils

    if create and hasattr(anim_utils, "action_ensure_channelbag_for_slot"):
        return anim_utils.action_ensure_channelbag_for_slot(action, slot)
    bag = anim_utils.action_get_channelbag_for_slot(action, slot)
    if bag is None and create:
        layer = action.layers[0] if len(action.layers) else action.layers.new("Layer")
        strip = layer.strips[0] if len(layer.strips) else layer.strips.new(type="KEYFRAME")
        bag = strip.channelbag(slot, ensure=True)
    return bag


def sequencer_strips(scene: bpy.types.Scene, create: bool = True) -> Any | None:
    """The top-level strip collection of the scene's sequencer (``strips`` or ``sequences``)."""
    sed = scene.sequence_editor
    if sed is None:
        if not create:
            return None
        sed = scene.sequence_editor_create()
    return sed.strips if _rna_has(sed, "strips") else sed.sequences


def sequencer_scene(scene: bpy.types.Scene) -> bpy.types.Scene:
    """The scene whose sequencer the animator sees: the workspace's ``sequencer_scene`` (5.0+) when
    one is set, else ``scene``."""
    workspace = getattr(bpy.context, "workspace", None)
    if workspace is not None and _rna_has(workspace, "sequencer_scene"):
        chosen = workspace.sequencer_scene
        if chosen is not None:
            return chosen
    return scene


def sequencer_all_strips(scene: bpy.types.Scene) -> list[Any]:
    """Every strip, including strips inside meta strips."""
    sed = scene.sequence_editor
    if sed is None:
        return []
    return list(sed.strips_all if _rna_has(sed, "strips_all") else sed.sequences_all)


def set_standard_view(scene: bpy.types.Scene) -> None:
    """Standard view transform, no look, exposure 0, gamma 1: frames are shown as delivered."""
    vs = scene.view_settings
    vs.view_transform = "Standard"
    vs.look = "None"
    vs.exposure = 0.0
    vs.gamma = 1.0
    scene.sequencer_colorspace_settings.name = "sRGB"


def is_background() -> bool:
    """True in ``blender -b`` and in the ``bpy`` module, where timers and modal operators never run."""
    return bool(bpy.app.background)


def set_multilayer_exr(image_settings) -> None:
    """Multilayer OpenEXR output: 5.0 chooses it with ``media_type``, 4.x with ``file_format``."""
    if _rna_has(image_settings, "media_type"):
        image_settings.media_type = "MULTI_LAYER_IMAGE"
    image_settings.file_format = "OPEN_EXR_MULTILAYER"
