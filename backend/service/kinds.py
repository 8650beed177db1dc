"""The service's job kinds: track, train, edit, render.

Each kind validates a request at submit time (``prepare``: fast, on the I/O thread, no torch)
and does the work on the worker thread (``run``) by calling the step's public function with
the job's ``progress`` and ``should_stop``. Inputs and outputs are named by id inside the
workdir (``backend.paths`` layout); the only outside reads are files under ``--allow-read``.
Work modules are imported inside ``run`` so starting the server does not import torch.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from backend import paths
from backend.face.framing import DEFAULT_FRAMING, FRAMINGS
from backend.progress import EtaClock, ProgressUpdate, check_cancel
from backend.service.events import stamp
from backend.service.jobs import PRIORITY_COMPUTE, PRIORITY_RENDER, JobContext, JobError, JobKind, ServiceEnv
from backend.service.sandbox import check_id, inside
from backend.service.streams import frame_file
from backend.service.uploads import Uploads
from protocol.fileio import atomic_write_npz, read_npz
from protocol.messages import short_repr

log = logging.getLogger(__name__)

# -- shared helpers ---------------------------------------------------------------------------
def subject_dir(env: ServiceEnv, subject_id: Any) -> Path:
    """``WORKDIR/subjects/<id>`` (checked id, inside the workdir; need not exist)."""
    return inside(paths.workdir_subjects(env.workdir), check_id(subject_id, "subject id"), what="subject id")


def existing_subject(env: ServiceEnv, subject_id: Any) -> Path:
    path = subject_dir(env, subject_id)
    if not (path / "meta.json").is_file():
        raise JobError(f"no subject {subject_id!r} in the workdir (subject_list shows the available ones)")
    return path


def upload_file(env: ServiceEnv, upload_id: Any) -> Path:
    """The completed upload ``WORKDIR/uploads/<id>/data<suffix>``."""
    path = Uploads(paths.workdir_uploads(env.workdir)).completed(check_id(upload_id, "upload id"))
    if path is None:
        raise JobError(f"upload {upload_id!r} is missing or not finished (send every upload_chunk, "
                       "the last with final=true)")
    return path


def input_file(env: ServiceEnv, params: dict[str, Any], upload_key: str, path_key: str, what: str) -> Path:
    """An input given either as an upload id or as a path under ``--allow-read``."""
    upload, path = params.get(upload_key), params.get(path_key)
    if (upload is None) == (path is None):
        raise JobError(f"give exactly one of {upload_key!r} (uploaded bytes) or {path_key!r} "
                       f"(a file under --allow-read) for the {what}")
    return upload_file(env, upload) if upload is not None else env.read_policy.resolve(path, what)


def subject_meta(subject: Path) -> dict[str, Any]:
    try:
        return json.loads((subject / "meta.json").read_text())
    except (OSError, ValueError) as exc:
        raise JobError(f"subject {subject.name!r} has an unreadable meta.json: {exc}") from None


def _opt_int(params: dict[str, Any], key: str, lo: int = 0) -> int | None:
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise JobError(f"{key} must be an integer >= {lo}, got {value!r}")
    return value


def _framing(value: Any) -> str:
    """A track job's ``framing`` param: a ``FRAMINGS`` name, ``DEFAULT_FRAMING`` when absent."""
    if value is None:
        return DEFAULT_FRAMING
    if not isinstance(value, str) or value not in FRAMINGS:
        raise JobError(f"framing must be one of {', '.join(FRAMINGS)} (default {DEFAULT_FRAMING}), "
                       f"got {short_repr(value)}")
    return value


def _follow_face(value: Any) -> bool:
    """A track job's ``follow_face`` param: a bool, False (one crop per shot) when absent."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise JobError(f"follow_face must be true or false (default false), got {short_repr(value)}")
    return value


# -- track ------------------------------------------------------------------------------------
class TrackKind:
    """Video (upload or --allow-read path) -> ``subjects/<subject>``, cropped in the ``framing``
    asked for (a ``backend.face.framing.FRAMINGS`` name, ``DEFAULT_FRAMING`` when absent), one crop
    per shot unless ``follow_face`` (``track_video``'s; False when absent)."""

    name = "track"
    priority = PRIORITY_COMPUTE

    def prepare(self, job_id: str, params: dict[str, Any], buffers: dict[str, Any], env: ServiceEnv
                ) -> dict[str, Any]:
        framing = _framing(params.get("framing"))
        follow_face = _follow_face(params.get("follow_face"))
        subject = params.get("subject_id") or job_id
        out = subject_dir(env, subject)
        video = input_file(env, params, "upload_id", "path", "video")
        overwrite = bool(params.get("overwrite", False))
        if out.exists() and not overwrite:
            raise JobError(f"subject {subject!r} already exists; pick another subject id or set overwrite")
        size = _opt_int(params, "size", 16) or 256
        return {"video": str(video), "subject_id": subject, "size": size,
                "max_frames": _opt_int(params, "max_frames", 1), "overwrite": overwrite,
                "framing": framing, "follow_face": follow_face}

    def run(self, ctx: JobContext) -> dict[str, Any]:
        from backend.face.track import track_video

        p = ctx.params
        out = subject_dir(ctx.env, p["subject_id"])
        if ctx.resuming and (out / "meta.json").is_file() and not p["overwrite"]:
            # the earlier attempt finished writing the subject just before the process died
            ctx.log(f"subject {p['subject_id']} was already written by the earlier attempt")
            return {"subject_id": p["subject_id"]}
        # track_video writes the subject atomically, so an interrupted attempt left nothing behind
        # a job journalled before tracks had a framing (follow_face) param is run in the default
        # framing (one crop per shot)
        track_video(Path(p["video"]), out, size=p["size"], max_frames=p["max_frames"],
                    overwrite=p["overwrite"], framing=p.get("framing") or DEFAULT_FRAMING,
                    follow_face=bool(p.get("follow_face", False)),
                    progress=ctx.progress, should_stop=ctx.should_stop)
        return {"subject_id": p["subject_id"]}


# -- train ------------------------------------------------------------------------------------
class TrainKind:
    """Stage 1 on ``subjects/<subject>``; resumes from its last checkpoint when run again. In this
    process, or in ``env.train_procs`` processes through torchrun (``train_launch``)."""

    name = "train"
    priority = PRIORITY_COMPUTE

    def prepare(self, job_id: str, params: dict[str, Any], buffers: dict[str, Any], env: ServiceEnv
                ) -> dict[str, Any]:
        subject = params.get("subject_id")
        existing_subject(env, subject)
        preset = params.get("preset") or "cpu"
        from backend.train.presets import PRESETS

        if preset not in PRESETS:
            raise JobError(f"unknown preset {preset!r} (known: {', '.join(sorted(PRESETS))})")
        if env.train_procs > 1:
            from backend.service.train_launch import check_job

            check_job(subject_dir(env, subject), preset, env.train_procs)
        return {"subject_id": subject, "preset": preset, "steps": _opt_int(params, "steps", 1),
                "seed": _opt_int(params, "seed") or 0, "resume": bool(params.get("resume", False))}

    def run(self, ctx: JobContext) -> dict[str, Any]:
        from backend.train.stage1 import train_avatar

        p = ctx.params
        subject = existing_subject(ctx.env, p["subject_id"])
        resume = p["resume"] or (ctx.resuming and paths.checkpoint_path(subject).is_file())
        if resume:
            ctx.log(f"resuming training of {p['subject_id']} from its last checkpoint")
        stages: list[str] = []
        first_train_step: list[int] = []

        def progress(update: ProgressUpdate) -> None:
            if not stages or stages[-1] != update.stage:
                stages.append(update.stage)
            if update.stage == "train" and not first_train_step:
                first_train_step.append(update.step)
            ctx.progress(update)

        if ctx.env.train_procs > 1:  # torchrun, N processes (serve --train-procs N)
            from backend.service.train_launch import train_in_processes

            ckpt = train_in_processes(ctx, subject, resume, progress)
        else:
            ckpt = train_avatar(subject, preset=p["preset"], steps=p["steps"], seed=p["seed"],
                                device=ctx.env.device, resume=resume, progress=progress,
                                should_stop=ctx.should_stop)
        started_at = first_train_step[0] - 1 if first_train_step else None
        return {"subject_id": p["subject_id"], "stages": stages, "started_at_step": started_at,
                "checkpoint": str(Path(ckpt).relative_to(ctx.env.workdir))}


# -- edit -------------------------------------------------------------------------------------
class EditKind:
    """Stage 2: one reference image restyles ``subjects/<subject>`` into ``styles/<name>.style``."""

    name = "edit"
    priority = PRIORITY_COMPUTE

    def prepare(self, job_id: str, params: dict[str, Any], buffers: dict[str, Any], env: ServiceEnv
                ) -> dict[str, Any]:
        subject = existing_subject(env, params.get("subject_id"))
        if not paths.checkpoint_path(subject).is_file():
            raise JobError(f"subject {subject.name!r} has no trained avatar yet; run a train job first")
        style = check_id(params.get("style") or "style", "style name")
        if paths.style_path(subject, style).exists() and not params.get("overwrite"):
            raise JobError(f"subject {subject.name!r} already has a style {style!r}; pick another name "
                           "or set overwrite")
        from backend.images import write_png
        from protocol.messages import MORE_REFERENCES

        more_frames = [int(f) for f in params.get("more_frames") or []]
        more_paths = params.get("more_reference_paths")
        references = []  # the first reference, then one per more_frames entry
        for i, name in enumerate(("reference", *MORE_REFERENCES[:len(more_frames)])):
            ref = buffers.get(name)
            if ref is not None:
                path = env.job_dir(job_id) / f"{name}.png"
                write_png(path, np.asarray(ref, np.uint8), fsync=True)
            elif i == 0:
                path = env.read_policy.resolve(params.get("reference_path"), "reference image")
            else:
                path = env.read_policy.resolve(more_paths[i - 1], f"reference image {i + 1}")
            references.append(str(path))
        clip = params.get("clip_checkpoint")
        clip_path = str(env.read_policy.resolve(clip, "CLIP checkpoint")) if clip is not None else None
        return {"subject_id": subject.name, "reference": references[0], "style": style,
                "frame": _opt_int(params, "frame") or 0, "more_references": references[1:],
                "more_frames": more_frames, "steps": _opt_int(params, "steps", 1),
                "seed": _opt_int(params, "seed") or 0, "clip_checkpoint": clip_path,
                "steady_motion": params.get("steady_motion") is True, "dither": params.get("dither") is True}

    def run(self, ctx: JobContext) -> dict[str, Any]:
        from backend.train.keyframes import Keyframe
        from backend.train.stage2 import edit_avatar
        from backend.train.style import load_style

        p = ctx.params
        subject = existing_subject(ctx.env, p["subject_id"])
        pairs = zip([p["reference"], *p.get("more_references", [])], [p["frame"], *p.get("more_frames", [])],
                    strict=True)
        out = edit_avatar(subject, keyframes=[Keyframe(Path(r), int(f)) for r, f in pairs], steps=p["steps"],
                          name=p["style"], clip_checkpoint=p["clip_checkpoint"], device=ctx.env.device,
                          seed=p.get("seed", 0), steady_motion=p.get("steady_motion", False),
                          dither=p.get("dither", False),
                          progress=ctx.progress, should_stop=ctx.should_stop)
        bare = load_style(Path(out)).meta.get("shots_without_keyframe") or []
        return {"subject_id": p["subject_id"], "style": p["style"],
                "style_file": str(Path(out).relative_to(ctx.env.workdir)),
                "shots_without_keyframe": [list(map(int, r)) for r in bare]}


# -- render -----------------------------------------------------------------------------------
def match_curves(curve_names: list[str], subject_names: list[str], values: np.ndarray) -> np.ndarray:
    """Reorder (T, K_in) curves into the subject's (T, K) order (``protocol.curves.Curves.conform``:
    aliases and ARKit spellings match; unknown names and missing rig names are errors)."""
    from protocol.curves import Curves
    from protocol.errors import ProtocolError

    try:
        return Curves(list(curve_names), 30.0, 0, values).conform(list(subject_names)).values
    except ProtocolError as exc:
        raise JobError(f"curve names do not match subject's rig: {exc}") from None


def avatar_size(subject: Path) -> int | None:
    """Render size of the subject's trained avatar (from ``avatar/metrics.json``'s preset), if known."""
    from backend.train.presets import PRESETS

    try:
        preset = json.loads((paths.avatar_dir(subject) / "metrics.json").read_text())["train"]["preset"]
        return int(PRESETS[preset].size)
    except (OSError, ValueError, KeyError, TypeError):
        return None


PREVIEW_MAX_FRAMES = 8
"""Most frames one preview render may make: its frames exist only in the stream's memory cache
(``streams.StreamTable.cache_frames``)."""


class RenderKind:
    """Curves (+ UV maps or the subject's rig) -> frames in ``renders/<job_id>/``, streamed to the client.

    Stored for the worker (and a resume) in ``WORKDIR/jobs/<job_id>/inputs.npz``: expressions
    (T, K) float32 in the subject's order, optional uv_maps (T, H, W, 3) float16, pose (T, 6).
    Frames are named by curve row: ``renders/<job_id>/000123.png`` is row 123.

    A preview render (``params["preview"]``, at most ``PREVIEW_MAX_FRAMES`` frames) stores
    nothing: its inputs stay in memory (``prepare_preview``) and its frames go to the stream
    straight from the generator, never to disk.
    """

    name = "render"
    priority = PRIORITY_RENDER

    def __init__(self) -> None:
        self._renderer_key: tuple | None = None
        self._renderer: Any = None

    def prepare(self, job_id: str, params: dict[str, Any], buffers: dict[str, Any], env: ServiceEnv
                ) -> dict[str, Any]:
        stored, arrays = self._validate(params, buffers, env)
        job_dir = env.job_dir(job_id)
        job_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_npz(job_dir / "inputs.npz", arrays)  # no GIL-held copies (see fileio)
        return stored

    def prepare_preview(self, job_id: str, params: dict[str, Any], buffers: dict[str, Any],
                        env: ServiceEnv) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Validate a preview render like ``prepare``; its inputs stay in memory (returned)."""
        check_id(job_id, "job id")
        stored, arrays = self._validate(params, buffers, env)
        frames = stored["last"] - stored["first"] + 1
        if frames > PREVIEW_MAX_FRAMES:
            raise JobError(f"a preview renders at most {PREVIEW_MAX_FRAMES} frames, this one asks for "
                           f"{frames}; use frame_range, or a render job without params.preview")
        return stored, arrays

    def _validate(self, params: dict[str, Any], buffers: dict[str, Any], env: ServiceEnv
                  ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(stored params, input arrays) of a render request; raises ``JobError``."""
        subject = existing_subject(env, params.get("subject_id"))
        if not paths.checkpoint_path(subject).is_file():
            raise JobError(f"subject {subject.name!r} has no trained avatar yet; run a train job first")
        style = params.get("style")
        if style is not None and not paths.style_path(subject, check_id(style, "style name")).is_file():
            raise JobError(f"subject {subject.name!r} has no style {style!r}")
        names, size = subject_rig_info(subject)
        curves = buffers.get("curves")
        if not isinstance(curves, np.ndarray) or curves.ndim != 2 or curves.shape[0] < 1:
            raise JobError("render needs a 'curves' buffer of shape (T, K) float32 with T >= 1")
        curve_names = list(params.get("names") or [])
        if len(curve_names) != curves.shape[1]:
            raise JobError(f"{len(curve_names)} curve names for {curves.shape[1]} curve columns")
        values = np.asarray(curves, np.float32)
        if not np.isfinite(values).all():
            raise JobError("curves contain NaN or inf values")
        expr = match_curves(curve_names, names, values)
        t = expr.shape[0]
        arrays: dict[str, np.ndarray] = {"expressions": expr}
        uv = buffers.get("uv_maps")
        if uv is not None:
            if uv.ndim != 4 or uv.shape[0] != t or uv.shape[3] != 3:
                raise JobError(f"uv_maps must be (T={t}, H, W, 3), got {tuple(uv.shape)}")
            sizes = sorted({size, avatar_size(subject) or size})
            if uv.shape[1] != uv.shape[2] or uv.shape[1] not in sizes:
                want = " or ".join(f"{n}x{n}" for n in sizes)
                raise JobError(f"uv_maps are {uv.shape[1]}x{uv.shape[2]} but subject {subject.name!r} "
                               f"needs {want}; render the UV pass at that size")
            arrays["uv_maps"] = np.asarray(uv, np.float16)
        pose = buffers.get("pose")
        if pose is not None:
            if pose.shape != (t, 6) or not np.isfinite(pose).all():
                raise JobError(f"pose must be finite (T={t}, 6), got shape {tuple(pose.shape)}")
            arrays["pose"] = np.asarray(pose, np.float32)
        scale = buffers.get("scale")
        if scale is not None:
            if scale.shape != (t,) or not np.isfinite(scale).all() or not (scale > 0).all():
                raise JobError(f"scale must be (T={t},) finite crop pixels per cm > 0, got shape "
                               f"{tuple(scale.shape)}")
            arrays["scale"] = np.asarray(scale, np.float32)
        frame_start = _opt_int(params, "frame_start", -(2**31)) or 0
        first, last = 0, t - 1
        if params.get("frame_range") is not None:
            a, b = params["frame_range"]
            first, last = a - frame_start, b - frame_start
            if first < 0 or last >= t or first > last:
                raise JobError(f"frame_range {[a, b]} is outside the curves' frames "
                               f"{frame_start}..{frame_start + t - 1}")
        encoding = params.get("encoding") or "raw"
        if encoding not in ("raw", "png"):
            raise JobError(f"encoding must be 'raw' or 'png', got {encoding!r}")
        out_size = _opt_int(params, "size", 16)  # None: the avatar's own size, no resampling
        return {"subject_id": subject.name, "style": style, "rows": t, "first": first, "last": last,
                "frame_start": frame_start, "fps": params.get("fps"), "encoding": encoding,
                "png_level": int(params.get("png_level") or 1), "size": out_size,
                "uv_from": "client" if uv is not None else "rig"}, arrays

    @staticmethod
    def out_dir(env: ServiceEnv, job_id: str) -> Path:
        return inside(paths.workdir_renders(env.workdir), check_id(job_id, "job id"), what="job id")

    def _renderer_for(self, ckpt: Path, style: Path | None, env: ServiceEnv) -> Any:
        from backend.render import Renderer

        key = (str(ckpt), ckpt.stat().st_mtime_ns, str(style), style.stat().st_mtime_ns if style else 0)
        if key != self._renderer_key:
            self._renderer = None  # free the old one first
            self._renderer = Renderer.from_checkpoint(ckpt, device=env.device, style=style,
                                                      compile=env.compile)
            self._renderer_key = key
        return self._renderer

    def _renderer_of(self, ctx: JobContext, subject: Path) -> Any:
        style = paths.style_path(subject, ctx.params["style"]) if ctx.params.get("style") else None
        return self._renderer_for(paths.checkpoint_path(subject), style, ctx.env)

    def run(self, ctx: JobContext) -> dict[str, Any]:
        p = ctx.params
        subject = existing_subject(ctx.env, p["subject_id"])
        if ctx.inputs is not None:
            return self._run_preview(ctx, subject)
        first, last = p["first"], p["last"]
        out_dir = self.out_dir(ctx.env, ctx.job_id)
        out_dir.mkdir(parents=True, exist_ok=True)
        start = first
        while start <= last and frame_file(out_dir, start).is_file():
            ctx.frame(start, None, frame_file(out_dir, start))  # from an earlier attempt: never re-rendered
            start += 1
        if start > first:
            ctx.log(f"{start - first} of {last - first + 1} frames already on disk; "
                    f"rendering from row {start}")
        if start <= last:
            arrays = read_npz(ctx.env.job_dir(ctx.job_id) / "inputs.npz")  # GIL released for the bytes
            expr = arrays["expressions"]
            renderer = self._renderer_of(ctx, subject)
            # the renderer builds each row's motion window from its neighbours, so rendering
            # only the missing rows gives the same pixels as rendering everything
            kwargs = {k: arrays[k] for k in ("uv_maps", "pose", "scale") if k in arrays}
            clock = EtaClock(last + 1, start)
            total = last - first + 1
            rows = range(start, last + 1)

            def written(i: int, image: np.ndarray, path: Path) -> None:
                ctx.frame(i, image, path)
                ctx.progress(ProgressUpdate("render", i - first + 1, total, eta=clock.eta(i + 1)))

            writer = FrameWriter(out_dir, p["png_level"], written)
            stamp(ctx.job_id, "render_start")
            try:
                for i, image in zip(rows, renderer.render(expr, indices=rows, **kwargs), strict=True):
                    stamp(ctx.job_id, "render_end")
                    check_cancel(ctx.should_stop)
                    writer.put(i, _output_frame(image, p.get("size")))
            except BaseException:
                # cancelled or failed: frames still queued are dropped, not encoded, so a cancel
                # ends within a frame; what is on disk stays a contiguous prefix (one FIFO writer)
                writer.close(discard=True)
                raise
            writer.close()  # every rendered frame is on disk (in order) before the job ends
        # every frame is on disk: the stored inputs are no longer needed for a resume
        (ctx.env.job_dir(ctx.job_id) / "inputs.npz").unlink(missing_ok=True)
        return {"frames_dir": str(out_dir.relative_to(Path(ctx.env.workdir).resolve())),
                "frame_count": last - first + 1, "first": first, "last": last}

    def _run_preview(self, ctx: JobContext, subject: Path) -> dict[str, Any]:
        """A preview: frames straight from the generator to the stream (nothing is written; the
        frame path handed on names where a stored render would keep the frame)."""
        p, arrays = ctx.params, ctx.inputs or {}
        first, last = p["first"], p["last"]
        out_dir = self.out_dir(ctx.env, ctx.job_id)
        renderer = self._renderer_of(ctx, subject)
        kwargs = {k: arrays[k] for k in ("uv_maps", "pose", "scale") if k in arrays}
        rows = range(first, last + 1)
        stamp(ctx.job_id, "render_start")
        # a still: the style's steady filter (over time) is left to the shot's render
        frames = renderer.render(arrays["expressions"], indices=rows, steady=False, **kwargs)
        for i, image in zip(rows, frames, strict=True):
            stamp(ctx.job_id, "render_end")
            check_cancel(ctx.should_stop)
            ctx.frame(i, _output_frame(image, p.get("size")), frame_file(out_dir, i))
        return {"frame_count": last - first + 1, "first": first, "last": last, "preview": True}


class FrameWriter:
    """Encodes and writes frames on its own thread, in order, so the renderer never waits for
    PNG encoding (cv2 releases the GIL). ``written(i, image, path)`` runs after each file is in
    place; on disk the frames are always a contiguous prefix (one writer, FIFO). Bounded queue:
    the renderer blocks when the disk falls ``maxsize`` frames behind."""

    def __init__(self, out_dir: Path, level: int, written: Any, maxsize: int = 16) -> None:
        import queue
        import threading

        self.out_dir, self.level, self.written = out_dir, level, written
        self.error: BaseException | None = None
        self._discard = False
        self._queue: queue.Queue = queue.Queue(maxsize)
        self._thread = threading.Thread(target=self._run, name="emo-frame-writer", daemon=True)
        self._thread.start()

    def put(self, index: int, image: np.ndarray) -> None:
        if self.error is not None:
            raise self.error
        self._queue.put((index, image))

    def _run(self) -> None:
        from backend.images import write_png

        while (item := self._queue.get()) is not None:
            if self.error is not None or self._discard:
                continue
            index, image = item
            try:
                path = frame_file(self.out_dir, index)
                write_png(path, image, self.level)
                self.written(index, image, path)
            except BaseException as exc:
                self.error = exc

    def close(self, discard: bool = False) -> None:
        """Write what is queued (or drop it: ``discard``), stop the thread; re-raise a write error
        (not when discarding: the job already fails or is cancelled)."""
        self._discard = discard
        self._queue.put(None)
        self._thread.join()
        if self.error is not None and not discard:
            raise self.error


_RIG_INFO: dict[str, tuple[tuple[int, int], tuple[list[str], int]]] = {}
"""subject folder -> ((meta.json inode, mtime ns), (names, size)): a subject is written as a
whole (``atomic_dir``), so a new ``meta.json`` marks a new subject."""


def subject_rig_info(subject: Path) -> tuple[list[str], int]:
    """(expression names, crop size in pixels) of a subject, read without loading frames (and
    remembered until the subject's ``meta.json`` changes: every render asks)."""
    from backend.data.subject import Subject

    try:
        st = (subject / "meta.json").stat()
        key = (st.st_ino, st.st_mtime_ns)
        hit = _RIG_INFO.get(str(subject))
        if hit is not None and hit[0] == key:
            return list(hit[1][0]), hit[1][1]
        subj = Subject.open(subject)
        info = (list(subj.expression_names), int(subj.size))
    except (OSError, ValueError, KeyError) as exc:
        raise JobError(f"subject {subject.name!r} cannot be read: {exc}") from None
    _RIG_INFO[str(subject)] = (key, info)
    return list(info[0]), info[1]


def _output_frame(image: np.ndarray, size: int | None) -> np.ndarray:
    """A rendered (S, S, 3) frame as the job hands it on: its own uint8 copy (the frame writer and
    the stream keep it), resampled to ``size`` when asked."""
    image = np.array(image, dtype=np.uint8, copy=True)
    if size and image.shape[0] != size:
        import cv2

        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if size < image.shape[0]
                           else cv2.INTER_LINEAR)
    return image


def default_kinds() -> dict[str, JobKind]:
    kinds: list[JobKind] = [TrackKind(), TrainKind(), EditKind(), RenderKind()]
    return {k.name: k for k in kinds}


__all__ = ["EditKind", "RenderKind", "TrackKind", "TrainKind", "default_kinds", "match_curves"]
