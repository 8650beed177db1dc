"""Render a shot: sample the rig's curves, make UV maps (Cycles UV pass) or let the backend
rasterise, build the ``render`` job, and register the Shot whose frames become a strip.

``ShotBuilder`` does the Blender work in steps so the modal operator can show progress and stay
responsive (one UV frame per timer tick); the blocking path (``api.render_shot``) runs the steps in
a loop. Both then hand the job to the I/O thread through ``state.call("submit", ...)``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import bpy
import numpy as np

from . import curves_bpy, rig, uv_pass, vse
from .protocol.curves import Curves
from .protocol.errors import CurveError
from .state import RUNTIME, Shot

UV_BLENDER = "BLENDER"
UV_BACKEND = "BACKEND"


def find_rig(scene: bpy.types.Scene, rig_object: bpy.types.Object | None = None) -> bpy.types.Object:
    """The rig to render: the given one, the active object if it is a rig, else the only rig."""
    if rig_object is not None:
        if rig.PROP_SUBJECT not in rig_object:
            raise ValueError(f"'{rig_object.name}' is not an Emo-Avatar rig (import a subject rig first)")
        return rig_object
    active = bpy.context.view_layer.objects.active if bpy.context.view_layer else None
    if active is not None and rig.PROP_SUBJECT in active and active.name in scene.objects:
        return active
    rigs = rig.rig_objects(scene)
    if len(rigs) == 1:
        return rigs[0]
    if not rigs:
        raise ValueError(f"scene '{scene.name}' has no Emo-Avatar rig: import a subject rig first")
    raise ValueError(
        f"scene '{scene.name}' has {len(rigs)} rigs ({', '.join(r.name for r in rigs)}): "
        "make the one to render active"
    )


def check_subject_names(
    rig_object: bpy.types.Object, names: list[str], subject_id: str, subject_names: list[str]
) -> None:
    """Raise ``ValueError`` listing the missing / extra names when the backend would refuse the rig's
    expression ``names`` for its subject (whose names are ``subject_names``): the rule the backend
    applies at submit (``protocol.curves.Curves.conform``: aliases match, known names the subject
    lacks are dropped, missing ``residual_*`` are zeros), checked before any UV map is rendered."""
    try:
        Curves(list(names), 30.0, 0, np.zeros((1, len(names)), np.float32)).conform(list(subject_names))
    except CurveError as exc:
        missing = [n for n in subject_names if n not in names]
        extra = [n for n in names if n not in subject_names]
        raise ValueError(
            f"rig '{rig_object.name}' does not match subject '{subject_id}' on the backend: "
            f"missing {len(missing)} name(s): {', '.join(missing) or '-'}; "
            f"extra {len(extra)} name(s): {', '.join(extra) or '-'} ({exc}); re-import the subject rig"
        ) from None


class ShotBuilder:
    """Everything a render job needs, computed step by step (see the module docstring).

    ``subject_names``: the backend's expression names for the rig's subject (``subject`` request);
    when given, a rig the backend would refuse is refused here, before any sampling or UV pass.
    """

    def __init__(
        self,
        scene: bpy.types.Scene,
        frame_start: int,
        frame_end: int,
        *,
        rig_object: bpy.types.Object | None = None,
        style: str | None = None,
        subject_names: list[str] | None = None,
        uv_source: str = UV_BLENDER,
        output_dir: str = "//emo_frames/",
        channel: int = 2,
    ) -> None:
        self.scene = scene
        self.frames = curves_bpy.frame_range(frame_start, frame_end)
        self.rig = find_rig(scene, rig_object)
        self.subject_id = str(self.rig[rig.PROP_SUBJECT])
        names = curves_bpy.rig_names(self.rig)
        if subject_names is not None:  # the connected backend's names for this subject
            check_subject_names(self.rig, names, self.subject_id, subject_names)
        missing, _extra = rig.shape_key_mismatch(self.rig, names)
        if missing:
            raise ValueError(
                f"rig '{self.rig.name}' lacks shape keys for {len(missing)} of the subject's "
                f"names: {', '.join(missing)}; re-import the subject rig"
            )
        self.names = list(names)
        self.style = style or None
        self.uv_source = uv_source
        self.channel = int(channel)
        self.folder = vse.check_output_folder(output_dir)
        self.size = rig.rig_frame(self.rig, scene)[0]
        self.camera = rig.rig_camera(self.rig, scene) if uv_source == UV_BLENDER else None
        self.sampled = curves_bpy.sample_rig(scene, self.rig, self.frames[0], self.frames[-1], self.names)
        self.uv_maps: np.ndarray | None = None
        self._uv_iter: Iterator[tuple[int, np.ndarray]] | None = None
        self._uv_done = 0
        if uv_source == UV_BLENDER:
            self.uv_maps = np.zeros((len(self.frames), self.size, self.size, 3), np.float16)
            self._uv_iter = uv_pass.iter_uv_maps(self.rig, self.camera, self.frames, (self.size, self.size))
        self.job_id = uuid.uuid4().hex
        safe = re.sub(r"[^A-Za-z0-9_-]+", "_", f"{self.subject_id}_{self.style or 'avatar'}")
        self.prefix = f"{safe}_{self.job_id[:8]}"
        self.strip_name = f"EmoAvatar {self.subject_id} {self.job_id[:8]}"

    @property
    def total_steps(self) -> int:
        return len(self.frames) if self.uv_source == UV_BLENDER else 0

    @property
    def steps_done(self) -> int:
        return self._uv_done

    def step(self) -> bool:
        """Render the next UV frame; False when all are done."""
        if self._uv_iter is None or self._uv_done >= len(self.frames):
            return False
        _frame, uv = next(self._uv_iter)
        self.uv_maps[self._uv_done] = uv
        self._uv_done += 1
        if self._uv_done == len(self.frames):
            self._uv_iter.close()
        return True

    def run_all(self) -> None:
        while self.step():
            pass

    def close(self) -> None:
        if self._uv_iter is not None:
            self._uv_iter.close()

    def job(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(params, buffers) of the render job_submit."""
        s = self.sampled
        params = {
            "subject_id": self.subject_id,
            "style": self.style,
            "names": s.names,
            "fps": s.fps,
            "frame_start": int(self.frames[0]),
            "encoding": "raw",
            "size": self.size,
        }
        buffers = {
            "curves": np.ascontiguousarray(s.expressions, np.float32),
            "pose": np.ascontiguousarray(s.pose, np.float32),
            "scale": np.ascontiguousarray(s.scale, np.float32),
        }
        if self.uv_maps is not None:
            buffers["uv_maps"] = np.ascontiguousarray(self.uv_maps, np.float16)
        return params, buffers

    def register_shot(self) -> Shot:
        shot = Shot(
            job_id=self.job_id,
            scene_name=self.scene.name,
            strip_name=self.strip_name,
            folder=Path(self.folder),
            prefix=self.prefix,
            frame_start=int(self.frames[0]),
            total=len(self.frames),
            channel=self.channel,
        )
        RUNTIME.shots[self.job_id] = shot
        return shot

    def submit_kwargs(self) -> dict:
        """kwargs for ``state.call("submit", ...)`` (the I/O thread streams the frames to disk)."""
        params, buffers = self.job()
        return {
            "kind": "render",
            "params": params,
            "buffers": buffers,
            "job_id": self.job_id,
            "stream": {
                "folder": str(self.folder),
                "prefix": self.prefix,
                "frame_start": int(self.frames[0]),
                "total": len(self.frames),
            },
        }
