# ruff: noqa: N801, RUF012  (Blender class naming: CATEGORY_OT_name; bl_options sets)
"""Export Farm Job (File > Export > Emo-Avatar Farm Job): the scene's shot as a ``render-shot`` job
bundle that ``deadline bundle submit`` (or any Open Job Description runtime) takes. Never
contacts a farm.

The rig's curves over the scene's frame range go to ``BUNDLE/inputs/<shot>.json`` (the JSON the
backend's CLI reads). When the rig's shots take Blender's UV pass (``uv_source`` 'Blender UV
pass'), every frame's Cycles UV pass goes to ``BUNDLE/inputs/uv/NNNNNN.npy`` (float16, named by
frame number). Then the backend's own ``emo-avatar farm-bundle`` (run with the preferences'
'Backend command') checks the subject, curves, style, UV maps and parameter values and writes
template.yaml, parameter_values.yaml and asset_references.yaml beside them; its one-line error is
what the operator reports.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import bpy
import numpy as np
from bpy.props import BoolProperty, IntProperty, StringProperty

from . import backend_proc, curves_files, preferences, rig, uv_pass
from .props import UV_BLENDER
from .protocol.fileio import atomic_path

INPUTS_DIRNAME = "inputs"  # the backend's bundle.INPUTS_DIRNAME: the add-on never imports backend/
BUNDLE_TIMEOUT_S = 120.0


def backend_cli(backend: str) -> list[str]:
    """The argv prefix running the backend's CLI with ``backend`` (a Python or ``emo-avatar``),
    by the rule ``backend_proc.serve_command`` uses."""
    argv = backend_proc.serve_command(backend, "", "")
    return argv[: argv.index("serve")]


def default_subject_folder(head: bpy.types.Object) -> str:
    """``<backend workdir>/subjects/<the rig's subject id>`` (the local backend's layout)."""
    return str(Path(preferences.workdir()) / "subjects" / str(head[rig.PROP_SUBJECT]))


def export_farm_job(
    bundle: str | Path,
    scene: bpy.types.Scene,
    rig_object: bpy.types.Object | None = None,
    subject_folder: str | Path | None = None,
    style: str | None = None,
    uv_maps: bool | None = None,
    batch: int = 8,
    batches_per_task: int = 25,
) -> Path:
    """Write the scene's shot as a job bundle; return the bundle folder.

    Args:
        bundle: folder to write (new, or a bundle written before).
        scene: its frame range is the shot.
        rig_object: the rig (default: ``rig.find_rig``'s choice).
        subject_folder: the subject as the farm sees it (default: the local backend's workdir).
        style: a style name or .style file (default: the rig's style setting).
        uv_maps: export Blender's UV pass (default: when the rig's shots use it).
        batch, batches_per_task: frames per forward pass, batches per farm task.
    Raises:
        ValueError: no rig, or no backend command in the preferences.
        RuntimeError: the backend refused the job (its error message).
    """
    head = rig.find_rig(scene, rig_object)
    s = getattr(head, "emo_avatar", None)
    if style is None:
        style = (s.style if s is not None else "") or None
    if uv_maps is None:
        uv_maps = s is not None and s.uv_source == UV_BLENDER
    cli = backend_cli(preferences.prefs().backend_command)
    subject = str(subject_folder or default_subject_folder(head))
    first, last = int(scene.frame_start), int(scene.frame_end)
    bundle = Path(bpy.path.abspath(str(bundle)))
    inputs = bundle / INPUTS_DIRNAME
    curves = inputs / f"{bpy.path.clean_name(scene.name)}.json"
    curves_files.export_curves_file(curves, scene, head, first, last)
    argv = [*cli, "farm-bundle", subject, "--curves", str(curves), "-o", str(bundle),
            "--frames", f"{first}-{last}", "--batch", str(batch), "--batches-per-task", str(batches_per_task),
            "--name", bpy.path.clean_name(scene.name)]
    if style:
        argv += ["--style", style]
    if uv_maps:
        size, _s0 = rig.rig_frame(head, scene)
        folder = inputs / "uv"
        folder.mkdir(parents=True, exist_ok=True)
        for frame, uv in uv_pass.iter_uv_maps(head, rig.rig_camera(head, scene), range(first, last + 1),
                                              (size, size), scene=scene):
            with atomic_path(folder / f"{frame:06d}.npy") as tmp, open(tmp, "wb") as f:
                np.save(f, uv.astype(np.float16))
        argv += ["--uv", str(folder)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=BUNDLE_TIMEOUT_S)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        why = lines[-1][len("error: "):] if lines else (proc.stderr.strip() or "farm-bundle failed")
        raise RuntimeError(why)
    return bundle


class EMO_AVATAR_OT_export_farm_job(bpy.types.Operator):
    """Write the scene's shot as a render-farm job bundle (Open Job Description; never submits it)"""

    bl_idname = "emo_avatar.export_farm_job"
    bl_label = "Export Farm Job"
    bl_options = {"REGISTER"}

    directory: StringProperty(name="Bundle folder", subtype="DIR_PATH")
    subject_folder: StringProperty(
        name="Subject folder",
        subtype="DIR_PATH",
        description="The subject folder as the farm sees it (empty: the local backend's workdir)",
    )
    style: StringProperty(name="Style", description="Style name or .style file (empty: the rig's style)")
    uv_maps: BoolProperty(
        name="Blender UV maps",
        description="Export the Cycles UV pass of every frame (else the farm rasterises the rig)",
        default=True,
    )
    batch: IntProperty(name="Batch", default=8, min=1, max=64, description="Frames per forward pass")
    batches_per_task: IntProperty(name="Batches per task", default=25, min=1, max=150)

    @classmethod
    def poll(cls, context):
        try:
            rig.find_rig(context.scene)
        except ValueError as exc:
            cls.poll_message_set(str(exc))
            return False
        return True

    def invoke(self, context, event):
        head = rig.find_rig(context.scene)
        s = getattr(head, "emo_avatar", None)
        self.uv_maps = s is not None and s.uv_source == UV_BLENDER
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        if not self.directory:
            self.report({"ERROR"}, "choose a bundle folder")
            return {"CANCELLED"}
        try:
            bundle = export_farm_job(
                self.directory,
                context.scene,
                subject_folder=self.subject_folder or None,
                style=self.style or None,
                uv_maps=self.uv_maps,
                batch=self.batch,
                batches_per_task=self.batches_per_task,
            )
        except (ValueError, RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"farm job bundle written to {bundle}")
        return {"FINISHED"}


def menu_func(self, context) -> None:
    self.layout.operator(EMO_AVATAR_OT_export_farm_job.bl_idname, text="Emo-Avatar Farm Job")


def register() -> None:
    bpy.utils.register_class(EMO_AVATAR_OT_export_farm_job)
    bpy.types.TOPBAR_MT_file_export.append(menu_func)


def unregister() -> None:
    bpy.types.TOPBAR_MT_file_export.remove(menu_func)
    bpy.utils.unregister_class(EMO_AVATAR_OT_export_farm_job)
