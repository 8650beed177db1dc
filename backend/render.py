"""Rendering API: a trained avatar + expression curves (+ UV maps or the subject's rig) -> frames.

    r = Renderer.from_checkpoint(checkpoint_path(subject), style=None)
    for rgb in r.render(expressions):          # (T, K) float32 in r.names order
        ...                                    # (size, size, 3) uint8 RGB per frame

    frames = Avatar.load(checkpoint_path(subject)).render(expressions, uv_maps)   # (T, size, size, 3)

``Avatar`` is the issue's name for the same thing: a ``Renderer`` whose ``render`` returns all
frames as one array instead of streaming them.

UV maps come from the caller (Blender's UV pass, ``uv_maps`` (T, H, W, 3) float [u, v, coverage])
or are rasterised from the subject's face rig (``backend.face.rig.FaceRig.uv_maps``) at the
given head ``pose`` (T, 6) and ``scale`` (T,) in the subject's crop convention; without a pose
the subject's median pose is used. Expression windows (t-2..t+2) are built over the whole
sequence, so rendering a sub-range (``indices``) gives the same pixels as rendering everything,
up to float rounding where a frame lands in a batch with other neighbours (on CPU, at most 1 level).
The same holds for a style whose translator carries a steady filter (``backend.style.steady``):
its frames are filtered with their neighbouring rows, which are rendered too (a batch of them at
each end of a range that ends before the curves do).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch

from backend.data.windows import expression_windows
from backend.imaging.convert import to_uint8
from backend.train.checkpoint import checkpoint_sha256, load_avatar

if TYPE_CHECKING:
    from backend.style.steady import SteadyFilter

log = logging.getLogger(__name__)


class RenderInputError(ValueError):
    """Curves, UV maps or pose a renderer cannot use; the message says what and how to fix it."""


def _finite(name: str, a: np.ndarray) -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])[:10]
        more = " ..." if bad.sum() > 10 else ""
        raise RenderInputError(f"{name} contain NaN/inf (rows {rows.tolist()}{more})")


def conform_names(expressions: np.ndarray, names: Sequence[str], target: Sequence[str]) -> np.ndarray:
    """Reorder (T, K') curves named ``names`` to the avatar's ``target`` names.

    Uses ``protocol.curves.Curves.conform`` (aliases, ARKit spellings; unknown names and missing
    rig names are errors listing them). Returns (T, len(target)) float32.
    """
    from protocol.curves import Curves
    from protocol.errors import ProtocolError

    if list(names) == list(target):
        return expressions
    try:
        c = Curves(list(names), 30.0, 0, np.asarray(expressions, dtype=np.float32))
        return c.conform(list(target)).values
    except ProtocolError as exc:
        raise RenderInputError(f"curve names do not match the avatar: {exc}") from exc


class Renderer:
    """A loaded avatar ready to render.

    Attributes:
        names: the K expression names the avatar was trained on (column order of ``expressions``).
        size: output side in pixels.
        subject_id: the subject it was trained on.
        meta: checkpoint metadata (config, preset, weights used, ...).
        device: torch device.
        forward: the avatar's image forward; with ``compile=True`` it goes through
            ``torch.compile`` (``forward.status`` says whether that ran or fell back to eager), and
            every batch is padded to ``batch`` rows so one graph serves the whole render.
    """

    def __init__(self, avatar: torch.nn.Module, meta: dict[str, Any], device: torch.device,
                 subject_dir: Path | None = None, compile: bool = False,
                 translator: torch.nn.Module | None = None) -> None:
        from backend.model.compiled import InferenceForward

        self.avatar = avatar.to(device).eval()
        self.translator = None if translator is None else translator.to(device).eval()
        if self.translator is not None and hasattr(self.translator, "low_precision"):
            self.translator.low_precision = True  # bfloat16 where the CPU computes it natively
        self.forward = InferenceForward(self.avatar, compile=compile, post=self.translator)
        self.meta = meta
        self.device = device
        self.names: list[str] = list(meta["expression_names"])
        self.size: int = int(meta["size"])
        self.subject_id: str = str(meta.get("subject_id", ""))
        self.subject_dir = subject_dir
        self._subject: Any = None

    @classmethod
    def from_checkpoint(cls, path: Path, device: str | torch.device | None = None, style: Path | None = None,
                        subject: Path | None = None, compile: bool = False) -> Renderer:
        """Load a stage-1 checkpoint (optionally restyled by a stage-2 ``.style`` file).

        Args:
            path: checkpoint file (``SUBJECT/avatar/checkpoint.pt``).
            device: "cpu", "cuda", ... or None for CUDA when present.
            style: a style file from ``emo-avatar edit``; it must belong to this checkpoint.
            subject: subject folder for the rig (default: the folder containing ``avatar/``).
            compile: render through ``torch.compile`` (``backend.model.compiled``): ~1.5x faster
                on CPU after a one-off compile of about a minute (seconds once cached).
        """
        from backend.device import pick_device

        path = Path(path)
        dev = pick_device(None if device is None else str(device))
        avatar, meta = load_avatar(path, device=dev)
        translator = None
        if style is not None:
            from backend.train.style import apply_style, load_style

            translator = apply_style(avatar, load_style(style), subject_id=str(meta.get("subject_id", "")),
                                     checkpoint_sha256=checkpoint_sha256(path))
            avatar.eval().requires_grad_(False)
            log.info("style %s applied", style)
        if subject is None and (path.parent.parent / "meta.json").is_file():
            subject = path.parent.parent
        return cls(avatar, meta, dev, Path(subject) if subject is not None else None, compile=compile,
                   translator=translator)

    # -- inputs ---------------------------------------------------------------------------------
    @property
    def subject(self) -> Any:
        if self._subject is None:
            if self.subject_dir is None:
                raise RenderInputError("no UV maps given and no subject folder known to rasterise the rig; "
                                       "pass uv_maps or subject=SUBJECT")
            from backend.data.subject import Subject

            self._subject = Subject.open(self.subject_dir)
        return self._subject

    def default_pose(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The subject's median head pose and scale repeated ``n`` times: (n, 6), (n,)."""
        s = self.subject
        return (np.repeat(np.median(s.pose, axis=0)[None], n, 0).astype(np.float32),
                np.full(n, float(np.median(s.scale)), np.float32))

    def curves_pose(self, head_pose: np.ndarray | None, head_scale: np.ndarray | None = None,
                    n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """A curves file's head pose (T, 6: rad, then cm around the rest pose) and head scale (T,:
        size relative to the rest size) -> (pose (T, 6) in subject crop pixels, scale (T,) px/cm)
        around the subject's median pose. Either may be None (rest pose / rest size); ``n`` is T
        when both are."""
        from protocol.curves import head_pose_to_crop

        t = len(head_pose) if head_pose is not None else len(head_scale) if head_scale is not None else n
        if t is None:
            raise ValueError("curves_pose needs head_pose, head_scale or n")
        mp, ms = self.default_pose(t)
        pose = mp if head_pose is None else head_pose_to_crop(head_pose, mp[0], float(ms[0]))
        scale = ms if head_scale is None else (ms * np.asarray(head_scale, np.float32)).astype(np.float32)
        return pose, scale

    def rig_uv_maps(self, expressions: np.ndarray, pose: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Rasterise the subject's rig at the avatar's size: (T, size, size, 3) float32.

        ``pose`` / ``scale`` are in subject crop pixels; they are scaled to the render size, so the
        geometry matches the training UV maps exactly.
        """
        f = self.size / float(self.subject.size)
        pose = np.asarray(pose, np.float32).copy()
        pose[:, 3:] *= f
        return self.subject.rig.uv_maps(expressions, pose, np.asarray(scale, np.float32) * f, self.size)

    def _check_uv(self, uv_maps: np.ndarray, n: int) -> np.ndarray:
        uv = np.asarray(uv_maps)
        if uv.ndim != 4:
            raise RenderInputError(f"UV maps must be (T, H, W, 3), got shape {uv.shape}")
        if uv.shape[-1] != 3:
            raise RenderInputError(f"UV maps must have 3 channels (u, v, coverage), got {uv.shape[-1]}")
        if uv.shape[0] != n:
            raise RenderInputError(f"{uv.shape[0]} UV maps for {n} frames of curves")
        return uv

    def _resample_uv(self, uv: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) -> (B, size, size, 3) float32, bilinear (logged once per call site)."""
        uv = uv.astype(np.float32, copy=False)
        if uv.shape[1:3] == (self.size, self.size):
            return uv
        return np.stack([cv2.resize(m, (self.size, self.size), interpolation=cv2.INTER_LINEAR) for m in uv])

    # -- rendering ------------------------------------------------------------------------------
    @torch.no_grad()
    def render(self, expressions: np.ndarray, uv_maps: np.ndarray | None = None,
               pose: np.ndarray | None = None, scale: np.ndarray | None = None, batch: int = 8,
               names: Sequence[str] | None = None,
               indices: Sequence[int] | None = None, steady: bool = True,
               cuts: Sequence[int] | None = None) -> Iterator[np.ndarray]:
        """Render frames one batch at a time.

        Args:
            expressions: (T, K) float curves, columns in ``self.names`` order (or named by ``names``).
            uv_maps: (T, H, W, 3) float [u, v, coverage] or None to rasterise the rig. With
                ``indices``, (len(indices), H, W, 3) maps (one per rendered row, same order) are
                accepted too. Other sizes are resampled (logged); other channel counts are an error.
            pose: (T, 6) head pose in subject crop pixels (rig rasterisation only); default: median.
            scale: (T,) px/cm (rig rasterisation only); default: the subject's median.
            batch: frames per forward pass.
            names: the curves' names when they may differ from ``self.names`` (reordered via
                ``Curves.conform``; unknown and missing names are listed in the error).
            indices: render only these rows (windows still use the neighbouring rows of the
                row's shot).
            steady: run the style's steady filter when it has one; False renders each frame as
                the network gives it, without rendering neighbours (a still: a live preview).
            cuts: curve rows that begin a new shot (a subject's ``cuts``): neither a frame's
                5-frame expression window nor the steady filter reaches across a cut, as stage 1
                trained. None: the rows are one shot.
        Yields:
            (size, size, 3) uint8 RGB per rendered frame, in ``indices`` order.
        Raises:
            RenderInputError: bad shapes, NaN, mismatching names.
        """
        expr = np.asarray(expressions, dtype=np.float32)
        if names is not None:
            expr = conform_names(expr, names, self.names)
        if expr.ndim != 2 or expr.shape[1] != len(self.names):
            raise RenderInputError(f"expressions must be (T, {len(self.names)}) in the avatar's curve order "
                                   f"({', '.join(self.names[:6])}{' ...' if len(self.names) > 6 else ''}), "
                                   f"got shape {expr.shape}; pass names= to reorder")
        _finite("expression curves", expr)
        n = expr.shape[0]
        rows = np.arange(n) if indices is None else np.asarray(list(indices), dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            raise RenderInputError(f"frame indices out of range 0..{n - 1}")
        starts = {int(c) for c in (cuts or ())}
        if any(not 0 <= c < n for c in starts):
            raise RenderInputError(f"cuts must be curve rows 0..{n - 1}, got {sorted(starts)}")
        uv_by_position = False
        if uv_maps is not None:
            uv_by_position = indices is not None and len(uv_maps) == len(rows) and len(uv_maps) != n
            uv_all = self._check_uv(uv_maps, len(rows) if uv_by_position else n)
            # all selected maps are checked before the first frame, so a bad map late in a shot
            # fails the render up front instead of after the frames before it were written
            for a in range(0, len(rows), batch):
                chunk = uv_all[a:a + batch] if uv_by_position else uv_all[rows[a:a + batch]]
                bad = ~np.isfinite(np.asarray(chunk)).reshape(len(chunk), -1).all(axis=1)
                if bad.any():
                    row = int(rows[a + int(np.argmax(bad))])
                    raise RenderInputError(f"UV maps contain NaN/inf (first at curve row {row})")
            if uv_all.shape[1:3] != (self.size, self.size):
                log.warning("UV maps are %dx%d, the avatar renders %dx%d: resampling them (bilinear)",
                            uv_all.shape[2], uv_all.shape[1], self.size, self.size)
        else:
            uv_all = None
            if pose is None or scale is None:
                dp, ds = self.default_pose(n)
                pose = dp if pose is None else pose
                scale = ds if scale is None else scale
            pose = np.asarray(pose, np.float32)
            scale = np.asarray(scale, np.float32).reshape(-1)
            if pose.shape != (n, 6) or scale.shape != (n,):
                raise RenderInputError(f"pose must be ({n}, 6) and scale ({n},), got {pose.shape}, "
                                       f"{scale.shape}")
            _finite("head pose", pose)
            _finite("scale", scale)
        windows = expression_windows(expr, cuts=starts)
        position = {int(r): i for i, r in enumerate(rows)} if uv_by_position else None

        def images(ids: np.ndarray, plain: bool) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
            if uv_all is not None:
                sel = [position[int(r)] for r in ids] if position is not None else ids
                uv = self._resample_uv(np.asarray(uv_all[sel], dtype=np.float32))
            else:
                uv = self.rig_uv_maps(expr[ids], pose[ids], scale[ids])
            uv_t = torch.from_numpy(np.ascontiguousarray(uv)).permute(0, 3, 1, 2).to(self.device)
            win = torch.from_numpy(windows[ids]).to(self.device)
            return self._images(uv_t, win, batch, plain)

        over_time = self.translator.steady if steady and self.translator is not None else None
        if over_time is None:
            frames = (f for a in range(0, len(rows), batch)
                      for f in to_uint8(images(rows[a:a + batch], False)))
        else:
            # rows without UV maps (maps given per rendered row) are no neighbours
            has = (lambda r: 0 <= r < n) if position is None else (lambda r: r in position)
            frames = _steady_render([int(r) for r in rows], images, has, over_time, batch, starts)
        dither = self.translator.dither if self.translator is not None else None
        for frame in frames:  # a dispersed-dot look is dotted last, after the steady filter
            yield frame if dither is None else dither.apply(frame)

    def _images(self, uv: torch.Tensor, win: torch.Tensor, batch: int, plain: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(n, 3, S, S) UV, (n, window, K) windows -> (n, 3, S, S) images (with ``plain``: the
        unstyled images too, ``(plain, images)``). A compiled forward has one graph per batch
        size, so a short last batch is padded with copies of its last row."""
        n = uv.shape[0]
        fwd = self.forward.with_plain if plain else self.forward
        if self.forward.compiled and n != batch:
            pad = batch - n
            uv = torch.cat([uv, uv[-1:].expand(pad, -1, -1, -1)])
            win = torch.cat([win, win[-1:].expand(pad, -1, -1)])
        out = fwd(uv, win)
        return tuple(x[:n] for x in out) if plain else out[:n]


def _steady_render(rows: list[int], images: Callable[[np.ndarray, bool], Any], has: Callable[[int], bool],
                   steady: SteadyFilter, batch: int, starts: set[int]) -> Iterator[np.ndarray]:
    """Render ``rows`` (in their order) through a style's temporal filter (``backend.style.steady``).

    Each run of consecutive rows is rendered with its rows of context on each side that exist
    (``has(row)``) and filtered as the batches arrive (``steady_run``); ``images(ids, True)``
    renders (plain, styled) of the curve rows ``ids``. The batches lie on the grid of ``batch``
    rows from the run's first row, and the context is whole batches of that grid (as far as the
    rows exist, at least ``steady.radius`` rows): a row is then rendered in the same batch
    whichever run starting on that grid needs it, so chunks of whole batches (a farm's tasks) give
    the pixels of one render, to the bit. A row in ``starts`` (the first after a cut) begins a new
    run, and no context reaches across it.
    """
    from backend.style.steady import steady_run

    context = -(-steady.radius // batch) * batch  # whole batches holding radius rows
    for run in _consecutive_runs(rows, starts):
        first, last = run[0], run[-1]
        grid_hi = first + -(-(last + 1 - first) // batch) * batch + context - 1
        lo, hi = first, last
        while lo > first - context and has(lo - 1) and lo not in starts:
            lo -= 1
        while hi < grid_hi and has(hi + 1) and hi + 1 not in starts:
            hi += 1
        stream, row = steady_run(steady), lo  # row: the curve row of the next filtered frame
        for a in range(first - context, grid_hi + 1, batch):
            ids = np.arange(max(a, lo), min(a + batch, hi + 1), dtype=np.int64)
            if len(ids):
                out = stream.add(*images(ids, True))
                yield from to_uint8(out[max(0, first - row):max(0, last + 1 - row)])
                row += len(out)
        yield from to_uint8(stream.finish()[max(0, first - row):max(0, last + 1 - row)])


def _consecutive_runs(rows: list[int], starts: set[int]) -> list[list[int]]:
    """[3, 4, 5, 9, 10, 4], {} -> [[3, 4, 5], [9, 10], [4]]: runs of rows each one after the last;
    a row in ``starts`` always begins a run."""
    runs: list[list[int]] = []
    for r in rows:
        if runs and r == runs[-1][-1] + 1 and r not in starts:
            runs[-1].append(r)
        else:
            runs.append([r])
    return runs


class Avatar(Renderer):
    """The issue's API: ``Avatar.load(path).render(expressions, uv_maps) -> frames``.

    A thin alias of :class:`Renderer` (same loading, same checks, same pixels); only ``render``
    differs: it returns every requested frame at once.
    """

    @classmethod
    def load(cls, path: Path, device: str | torch.device | None = None, style: Path | None = None,
             subject: Path | None = None, compile: bool = False) -> Avatar:
        """Same as :meth:`Renderer.from_checkpoint` (checkpoint file, optional ``.style``)."""
        return cls.from_checkpoint(path, device=device, style=style, subject=subject, compile=compile)

    def render(self, expressions: np.ndarray, uv_maps: np.ndarray | None = None,  # type: ignore[override]
               **kwargs: Any) -> np.ndarray:
        """All frames as (N, size, size, 3) uint8 RGB (N = T, or len(indices)); arguments as
        :meth:`Renderer.render` (rendered internally in batches of ``batch`` frames)."""
        frames = list(super().render(expressions, uv_maps, **kwargs))
        if not frames:
            return np.zeros((0, self.size, self.size, 3), np.uint8)
        return np.stack(frames)
