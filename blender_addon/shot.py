"""Render a shot: sample the rig's curves, make UV maps (Cycles UV pass) or let the backend
rasterise, send the frame range as one or more ``render`` jobs, and collect the frames as a strip.

Long shots: a render job carries its UV maps in one message, so a shot is split into chunks of
consecutive frames whose message stays under ``CHUNK_BYTES``; each chunk is its own job with a
``frame_range`` and ``WINDOW_RADIUS`` extra rows of curves (and UV maps) on each side, because the
backend builds each frame's expression window from its neighbours: the frames of a chunked shot are
the frames of the whole shot rendered at once. The sizes are checked before the UV pass starts.

``ShotBuilder`` plans the chunks and renders UV frames one ``step()`` at a time, holding only the
rows the next chunk needs; ``ShotRunner`` drives it from the timer (``runtime.apply_pending``): one
UV frame per tick, a chunk submitted as soon as its rows are there (the backend renders chunk 1
while Blender renders the UV maps of chunk 2), at most ``MAX_CHUNKS_IN_FLIGHT`` chunks waiting in
the I/O thread. Everything is held by name (scene, rig, camera), never as a Blender ID between two
ticks.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from . import compat, curves_bpy, rig, runtime, uv_pass, vse
from .props import UV_BACKEND, UV_BLENDER
from .protocol.curves import Curves
from .protocol.envelope import DEFAULT_MAX_MESSAGE_BYTES
from .protocol.errors import CurveError
from .runtime import Shot

__all__ = ["UV_BACKEND", "UV_BLENDER", "ShotBuilder", "ShotRunner", "find_rig"]

WINDOW_RADIUS = 2
"""Rows of context on each side of a frame the backend's expression window reads
(``backend/data/windows.py``; a test checks the two agree)."""
CHUNK_BYTES = 64 * 1024 * 1024
"""Largest render message the add-on sends (well under the protocol's message limit)."""
MAX_CHUNKS_IN_FLIGHT = 2
"""Chunks submitted but not finished before the UV pass waits (bounds memory on long shots)."""

find_rig = rig.find_rig


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


@dataclass(frozen=True)
class Chunk:
    """Rows ``first..last`` (inclusive, 0-based in the shot) rendered by one job that carries rows
    ``lo..hi`` (``WINDOW_RADIUS`` rows of context on each side, clipped to the shot)."""

    first: int
    last: int
    lo: int
    hi: int


def plan_chunks(
    n_rows: int, row_bytes: int, fixed_bytes: int = 0, limit: int = CHUNK_BYTES, margin: int = WINDOW_RADIUS
) -> list[Chunk]:
    """Split ``n_rows`` frames into chunks whose messages (``fixed_bytes`` + rows * ``row_bytes``,
    context rows included) stay within ``limit``. Raises ``ValueError`` when not even one frame
    with its context fits (a frame size no message can carry)."""
    room = (limit - fixed_bytes) // max(1, row_bytes) - 2 * margin
    if room < 1:
        need = (fixed_bytes + (1 + 2 * margin) * row_bytes) / 2**20
        raise ValueError(
            f"one frame's UV maps with its {2 * margin} context rows need {need:.0f} MiB, more than a "
            f"render message may carry ({limit / 2**20:.0f} MiB): render at a smaller size or choose "
            "'Backend rasterises'"
        )
    chunks = []
    for first in range(0, n_rows, room):
        last = min(n_rows, first + room) - 1
        chunks.append(Chunk(first, last, max(0, first - margin), min(n_rows - 1, last + margin)))
    return chunks


class ShotBuilder:
    """Everything a shot's render jobs need, computed step by step (see the module docstring).

    ``subject_names``: the backend's expression names for the rig's subject (``subject`` request);
    when given, a rig the backend would refuse is refused here, before any sampling or UV pass.
    ``uv_maps``: a callable ``(frame) -> (H, W, 3)`` map used instead of the Cycles UV pass (tests
    and benchmarks that need many frames quickly). ``frame_size``: side of the frames the backend
    returns (default: the subject's size, as the UV maps).
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
        chunk_bytes: int = CHUNK_BYTES,
        set_standard_view: bool = False,
        uv_maps=None,
        frame_size: int | None = None,
    ) -> None:
        frames = curves_bpy.frame_range(frame_start, frame_end)
        head = find_rig(scene, rig_object)
        self.scene_name = scene.name
        self.strip_scene_name = compat.sequencer_scene(scene).name  # 5.0: the workspace's sequencer
        self.rig_name = head.name
        self.subject_id = str(head[rig.PROP_SUBJECT])
        names = curves_bpy.rig_names(head)
        if subject_names is not None:  # the connected backend's names for this subject
            check_subject_names(head, names, self.subject_id, subject_names)
        missing, _extra = rig.shape_key_mismatch(head, names)
        if missing:
            raise ValueError(
                f"rig '{head.name}' lacks shape keys for {len(missing)} of the subject's "
                f"names: {', '.join(missing)}; re-import the subject rig"
            )
        self.frames = frames
        self.names = list(names)
        self.style = style or None
        self.uv_source = uv_source
        self.channel = int(channel)
        self.relative = str(output_dir).startswith("//")
        self.folder = vse.check_output_folder(output_dir)
        self.size = rig.rig_frame(head, scene)[0]
        self.frame_size = int(frame_size or self.size)  # the frames' side in px (UV maps: self.size)
        self.set_standard_view = set_standard_view
        uv = uv_source == UV_BLENDER
        self.camera_name = rig.rig_camera(head, scene).name if uv and uv_maps is None else None
        # the sizes first: a shot no message can carry is refused before any work
        row_bytes = 4 * len(self.names) + 4 * 6 + 4 + (self.size * self.size * 3 * 2 if uv else 0)
        limit = min(int(chunk_bytes), DEFAULT_MAX_MESSAGE_BYTES - 2**20)
        self.chunks = plan_chunks(len(frames), row_bytes, 64 * 1024, limit)
        self.sampled = curves_bpy.sample_rig(scene, head, frames[0], frames[-1], self.names)
        self._uv_fn = uv_maps
        self._uv: dict[int, np.ndarray] = {}  # row -> (H, W, 3) float16, only rows still needed
        self._uv_iter: Iterator[tuple[int, np.ndarray]] | None = None
        self._next_row = 0 if uv else len(frames)
        self.next_chunk = 0
        self.shot_id = uuid.uuid4().hex
        safe = re.sub(r"[^A-Za-z0-9_-]+", "_", f"{self.subject_id}_{self.style or 'avatar'}")
        self.prefix = f"{safe}_{self.shot_id[:8]}"
        self.strip_name = f"EmoAvatar {self.subject_id} {self.shot_id[:8]}"

    @property
    def total_steps(self) -> int:
        """UV frames to render (0 when the backend rasterises)."""
        return len(self.frames) if self.uv_source == UV_BLENDER else 0

    @property
    def steps_done(self) -> int:
        return min(self._next_row, self.total_steps)

    def chunk_ready(self) -> bool:
        """The next chunk's rows (with context) have their UV maps."""
        return self.next_chunk < len(self.chunks) and self._next_row > self.chunks[self.next_chunk].hi

    def needs_step(self) -> bool:
        """More UV frames are needed before the next chunk can be sent."""
        return self.next_chunk < len(self.chunks) and not self.chunk_ready()

    def step(self) -> bool:
        """Render the next UV frame; False when none is needed now."""
        if not self.needs_step():
            return False
        row = self._next_row
        if self._uv_fn is not None:
            uv = self._uv_fn(self.frames[row])
        else:
            if self._uv_iter is None:
                self._uv_iter = uv_pass.iter_uv_maps(
                    self.rig_name,
                    self.camera_name,
                    self.frames[row:],
                    (self.size, self.size),
                    scene=self.scene_name,
                )
            _frame, uv = next(self._uv_iter)
        self._uv[row] = np.asarray(uv, np.float16)
        self._next_row += 1
        if self._next_row >= len(self.frames):
            self.close()
        return True

    def run_all(self) -> None:
        while self.step():
            pass

    def close(self) -> None:
        """End the UV pass (its private scene is removed)."""
        if self._uv_iter is not None:
            self._uv_iter.close()
            self._uv_iter = None

    def next_job(self) -> dict:
        """kwargs for ``runtime.call("submit", ...)`` of the next chunk (the I/O thread streams its
        frames to disk); its UV rows no later chunk needs are released."""
        c = self.chunks[self.next_chunk]
        s = self.sampled
        params = {
            "subject_id": self.subject_id,
            "style": self.style,
            "names": s.names,
            "fps": s.fps,
            "frame_start": int(self.frames[c.lo]),
            "frame_range": [int(self.frames[c.first]), int(self.frames[c.last])],
            "encoding": "raw",
            "size": self.frame_size,
        }
        rows = slice(c.lo, c.hi + 1)
        buffers = {
            "curves": np.ascontiguousarray(s.expressions[rows], np.float32),
            "pose": np.ascontiguousarray(s.pose[rows], np.float32),
            "scale": np.ascontiguousarray(s.scale[rows], np.float32),
        }
        if self.uv_source == UV_BLENDER:
            buffers["uv_maps"] = np.stack([self._uv[r] for r in range(c.lo, c.hi + 1)])
        self.next_chunk += 1
        keep_from = (
            self.chunks[self.next_chunk].lo if self.next_chunk < len(self.chunks) else len(self.frames)
        )
        for r in [r for r in self._uv if r < keep_from]:
            del self._uv[r]
        job_id = uuid.uuid4().hex
        return {
            "kind": "render",
            "params": params,
            "buffers": buffers,
            "job_id": job_id,
            "stream": {
                "folder": str(self.folder),
                "prefix": self.prefix,
                "frame_start": int(self.frames[c.lo]),
                "total": c.last - c.first + 1,
            },
        }

    def make_shot(self) -> Shot:
        return Shot(
            shot_id=self.shot_id,
            scene_name=self.strip_scene_name,
            strip_name=self.strip_name,
            folder=Path(self.folder),
            prefix=self.prefix,
            frame_start=int(self.frames[0]),
            total=len(self.frames),
            channel=self.channel,
            subject_id=self.subject_id,
            style=self.style,
            chunks=len(self.chunks),
            set_standard_view=self.set_standard_view,
            relative=self.relative,
        )


class ShotRunner:
    """Drives a ``ShotBuilder`` from the timer (``runtime.RUNTIME.runners``): one UV frame per
    ``tick()``, each chunk submitted when ready. The shot's state lives in ``runtime`` (frames and
    job ends arrive there); ``cancel()`` ends the UV pass."""

    def __init__(self, builder: ShotBuilder) -> None:
        self.builder = builder
        self.shot = builder.make_shot()
        runtime.add_shot(self.shot)
        runtime.RUNTIME.runners[self.shot.shot_id] = self

    @property
    def busy(self) -> bool:
        b = self.builder
        return not self.shot.finished and b.needs_step() and self._room()

    def _room(self) -> bool:
        return len(self.shot.running_jobs) < MAX_CHUNKS_IN_FLIGHT

    def tick(self) -> bool:
        """One step: a UV frame, or submitting the next chunk. False when nothing is left to do
        (every chunk submitted, or the shot ended)."""
        b = self.builder
        if self.shot.finished:
            b.close()
            return False
        if b.chunk_ready() and self._room():
            kwargs = b.next_job()
            job_id = kwargs["job_id"]
            runtime.add_shot_job(self.shot, job_id)
            runtime.call("submit", on_done=lambda r, j=job_id: self._submitted(j, r), **kwargs)
        elif self._room():
            b.step()
        if b.next_chunk >= len(b.chunks):
            b.close()
            return False
        return True

    def _submitted(self, job_id: str, result) -> None:
        if result.error:  # refused by the backend or lost: the shot cannot be whole
            self.shot.job_states[job_id] = "failed"
            runtime.fail_shot(self.shot, result.error)

    def cancel(self, reason: str = "cancelled") -> None:
        self.builder.close()

    @property
    def progress(self) -> float:
        """0..1: a third for the UV pass (when Blender makes the UVs), the rest for the frames."""
        s, b = self.shot, self.builder
        frames = len(s.frames_done) / max(1, s.total)
        if not b.total_steps:
            return frames
        return 0.3 * b.steps_done / b.total_steps + 0.7 * frames

    def status(self) -> str:
        s, b = self.shot, self.builder
        parts = []
        if b.total_steps and b.steps_done < b.total_steps:
            parts.append(f"UV pass {b.steps_done}/{b.total_steps}")
        parts.append(f"frames {len(s.frames_done)}/{s.total}")
        if len(b.chunks) > 1:
            parts.append(f"chunk {min(b.next_chunk, len(b.chunks))}/{len(b.chunks)}")
        return ", ".join(parts)
