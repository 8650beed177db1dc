"""`emo-avatar render SUBJECT --curves FILE [--style S] [--frames A:B]
[--uv DIR | --uv-maps NPZ | --rasterize] -o DIR`.

Writes one PNG per frame, named by frame number (``frame_start`` of the curves + row):
``DIR/000123.png``, each written atomically. Frames that already exist are skipped, so a
render-farm manager can split a shot into ``--frames`` ranges and re-run failed tasks. A range
reaching outside the curves' frames is an error. Bad input (curves, UV maps, style, checkpoint,
output folder) is a one-line ``error:`` and exit code 2, found before the output folder is made.

Curves: ``.csv`` (Live Link Face), ``.json`` (emo-avatar-curves) or ``.npz`` (``names`` (K,) str,
``values`` (T, K) float, optional ``head_pose`` (T, 6), ``head_scale`` (T,), ``fps``,
``frame_start``). Names are matched to the avatar's through ``Curves.conform``. A curves head pose
(yaw, pitch, roll in radians, tx, ty, tz in cm) is applied around the subject's median pose, and a
head scale (relative size) to its median scale; without them the median pose and scale are used.

UV maps (one source): ``--rasterize`` (the default) rasterises the subject's rig; ``--uv DIR`` reads
one map per frame, ``DIR/NNNNNN.npy`` named by frame number like the output PNGs (H x W x 3 float16
or float32: u, v, coverage; only the frames being rendered need a file); ``--uv-maps NPZ`` reads
key ``uv``: (T, H, W, 3) float, one per curve row.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from backend.paths import checkpoint_path, frame_file_name, style_path
from protocol.curves import Curves

if TYPE_CHECKING:
    from backend.render import Renderer

COMPILE_HELP = ("render through torch.compile (backend/model/compiled.py): ~1.5x faster on CPU after a "
                "one-off compile of about a minute on 2 cores, seconds once cached; without a working "
                "C++ compiler it falls back to eager and logs why")
"""``--compile`` help of ``emo-avatar render`` and ``emo-avatar serve``."""

log = logging.getLogger(__name__)


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("subject", type=Path, help="subject folder with a trained avatar/")
    parser.add_argument("--curves", type=Path, required=True, help="expression curves (.csv, .json or .npz)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder for NNNNNN.png frames")
    parser.add_argument("--style", type=Path, default=None,
                        help="a .style file from emo-avatar edit, or the name of one of the subject's styles")
    parser.add_argument("--frames", default=None, metavar="A:B",
                        help="frame numbers A (inclusive) to B (exclusive); either side may be empty")
    uv = parser.add_mutually_exclusive_group()
    uv.add_argument("--uv", type=Path, default=None, metavar="DIR",
                    help="folder of per-frame UV maps NNNNNN.npy (HxWx3 float: u, v, coverage)")
    uv.add_argument("--uv-maps", type=Path, default=None, metavar="NPZ",
                    help="one npz with 'uv' (T, H, W, 3), one map per curve row")
    uv.add_argument("--rasterize", action="store_true",
                    help="rasterise the subject's face rig (the default when no UV maps are given)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: SUBJECT/avatar/checkpoint.pt")
    parser.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: CUDA when present)")
    parser.add_argument("--batch", type=_positive_int, default=8, help="frames per forward pass")
    parser.add_argument("--compile", action="store_true", help=COMPILE_HELP)


def load_curves(path: Path) -> Curves:
    """The curves of a file, with at least one frame (errors name the file).

    Every format is validated by ``protocol.curves.Curves`` (finite values, shapes, unique names).

    Raises:
        FileNotFoundError: no such file.
        CurveError: an unknown suffix, an unreadable or invalid file, or one without frames.
    """
    from protocol.curves import read_curves
    from protocol.errors import CurveError

    if not path.is_file():
        raise FileNotFoundError(f"curves file {path} not found")
    try:
        c = read_curves(path)
    except CurveError as exc:  # name the file in every message
        raise CurveError(str(exc) if str(path) in str(exc) else f"{path}: {exc}") from None
    if c.n_frames == 0:
        raise CurveError(f"{path}: the curves hold no frames")
    return c


def parse_frames(spec: str | None, start: int, n: int) -> range:
    """'A:B' frame numbers -> row range within 0..n-1 (frame number = start + row).

    A is inclusive, B exclusive; an empty side means the curves' first or last frame. A range that
    reaches outside the curves' frames ``start..start + n - 1`` or selects nothing is a ``ValueError``
    (never silently fewer frames than asked for).
    """
    if not spec:
        return range(n)
    if ":" not in spec:
        raise ValueError(f"--frames {spec!r}: use A:B (B exclusive), e.g. 0:100, 100:, :50")
    a, b = spec.split(":", 1)
    try:
        lo = int(a) - start if a.strip() else 0
        hi = int(b) - start if b.strip() else n
    except ValueError:
        raise ValueError(f"--frames {spec!r}: A and B must be integers") from None
    cover = f"the curves cover frames {start}..{start + n - 1}, so A:B within {start}:{start + n}"
    if lo < 0 or hi > n or lo >= n or hi <= 0:
        raise ValueError(f"--frames {spec!r} is out of range ({cover})")
    if lo >= hi:
        raise ValueError(f"--frames {spec!r} selects no frame (A must be below B; {cover})")
    return range(lo, hi)


def resolve_style(subject: Path, style: Path | None) -> Path | None:
    """``--style``: a style file's path, or a bare name (``cartoon``) meaning
    ``SUBJECT/styles/cartoon.style``, as Blender and the service name styles."""
    if style is None or style.exists() or style.suffix or len(style.parts) > 1:
        return style
    return style_path(subject, str(style))


def load_uv_dir(folder: Path, frame_numbers: list[int]) -> np.ndarray:
    """``folder/NNNNNN.npy`` for each frame number -> (N, H, W, 3) float32.

    Raises:
        FileNotFoundError: the folder or some frames' files are missing (listed).
        ValueError: a map that is not H x W x 3 or not all the same size.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"--uv {folder}: not a folder")
    files = [folder / frame_file_name(f, ".npy") for f in frame_numbers]
    missing = [p.name for p in files if not p.is_file()]
    if missing:
        more = f" ... ({len(missing)} in all)" if len(missing) > 8 else ""
        raise FileNotFoundError(f"--uv {folder}: no UV map for frames {', '.join(missing[:8])}{more} "
                                "(one NNNNNN.npy per frame number)")
    maps = []
    for p in files:
        try:
            m = np.load(p, allow_pickle=False)
        except (OSError, EOFError, ValueError) as exc:
            raise ValueError(f"{p}: not a readable .npy UV map ({exc})") from None
        if m.ndim != 3 or m.shape[-1] != 3:
            raise ValueError(f"{p}: a UV map must be H x W x 3 (u, v, coverage), got shape {m.shape}")
        if maps and m.shape != maps[0].shape:
            raise ValueError(f"{p}: shape {m.shape} differs from {files[0].name}'s {maps[0].shape}")
        maps.append(m.astype(np.float32, copy=False))
    return np.stack(maps)


def load_uv_npz(path: Path, n: int) -> np.ndarray:
    """``--uv-maps`` file: key ``uv`` (n, H, W, 3), one map per curve row (shape checked by the renderer).

    Raises:
        FileNotFoundError: no such file.
        RenderInputError: not a readable npz, no ``uv`` array, or not one map per curve row.
    """
    from backend.render import RenderInputError

    if not path.is_file():
        raise FileNotFoundError(f"--uv-maps {path} not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            files = z.files
            uv = z["uv"] if "uv" in files else None
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise RenderInputError(f"--uv-maps {path}: not a readable npz ({exc})") from None
    if uv is None:
        raise RenderInputError(f"{path} has no 'uv' array (has {files})")
    if uv.ndim < 1 or len(uv) != n:
        raise RenderInputError(f"--uv-maps {path}: {len(uv) if uv.ndim else 0} UV maps for {n} curve rows "
                               "(one map per curve row)")
    return uv


def write_frames(renderer: Renderer, values: np.ndarray, rows: list[int], start: int, out: Path, *,
                 uv: np.ndarray | None = None, pose: np.ndarray | None = None,
                 scale: np.ndarray | None = None, batch: int = 8,
                 finish: Callable[[np.ndarray], np.ndarray] | None = None, progress: bool = False) -> int:
    """Render the curve ``rows`` and write each frame atomically to ``out/NNNNNN.png``, named by
    its frame number ``start + row``; ``out`` is made once the first frame exists, so a bad input
    leaves no empty folder.

    Args:
        values: (T, K) float32 curves in the renderer's names; uv, pose, scale: as
            ``Renderer.render`` takes them.
        rows: curve rows to render, in order.
        start: frame number of row 0.
        batch: frames per forward pass.
        finish: applied to each (S, S, 3) uint8 frame before it is written (e.g. a resize).
        progress: show ``render i/N`` on stderr (a terminal).
    Returns:
        The exit code: 0, or 2 after one ``error:`` line on stderr (an input the renderer refuses,
        or frames that cannot be written).
    """
    from backend.images import write_png

    nl = "\n" if progress else ""  # ends the progress line
    try:
        frames = renderer.render(values, uv_maps=uv, pose=pose, scale=scale, batch=batch, indices=rows)
        for i, (row, rgb) in enumerate(zip(rows, frames, strict=True)):
            if i == 0:  # created once the first frame exists, so bad inputs leave no empty folder
                out.mkdir(parents=True, exist_ok=True)
            write_png(out / frame_file_name(start + row), rgb if finish is None else finish(rgb))
            if progress:
                print(f"\rrender {i + 1}/{len(rows)}", end="", file=sys.stderr, flush=True)
    except ValueError as exc:  # RenderInputError, or a subject folder the rig cannot be read from
        print(f"{nl}error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{nl}error: cannot write frames to {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if progress:
        print(file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    from backend.render import Renderer, conform_names
    from protocol.errors import CurveError

    ckpt = args.checkpoint or checkpoint_path(args.subject)
    # every input is read and checked before anything touches the output folder
    try:
        curves = load_curves(args.curves)
        values, start = curves.values, curves.frame_start
        rows = parse_frames(args.frames, start, len(values))
        if args.checkpoint is None and not args.subject.is_dir():
            raise FileNotFoundError(f"subject folder {args.subject} not found")
        style = resolve_style(args.subject, args.style)
        renderer = Renderer.from_checkpoint(ckpt, device=args.device, style=style, subject=args.subject,
                                            compile=args.compile)
        values = conform_names(values, curves.names, renderer.names)
        if args.out.exists() and not args.out.is_dir():
            raise FileExistsError(f"-o {args.out} exists and is not a folder")
        todo = [r for r in rows if not (args.out / frame_file_name(start + r)).exists()]
        if len(todo) < len(rows):
            log.info("%d of %d frames already exist in %s; rendering the other %d",
                     len(rows) - len(todo), len(rows), args.out, len(todo))
        if not todo:  # a re-run of a finished task needs no UV maps
            return 0
        uv = pose = scale = None
        if getattr(args, "uv", None) is not None:
            uv = load_uv_dir(args.uv, [start + r for r in todo])  # one per rendered row
        elif args.uv_maps is not None:
            uv = load_uv_npz(args.uv_maps, len(values))
        else:  # around the subject's median pose and scale (opening the subject checks its folder now)
            pose, scale = renderer.curves_pose(curves.head_pose, curves.head_scale, n=len(values))
    except (FileNotFoundError, FileExistsError, ValueError, CurveError, RuntimeError) as exc:
        # RuntimeError: --device asks for CUDA where there is none, or names no device
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    code = write_frames(renderer, values, todo, start, args.out, uv=uv, pose=pose, scale=scale,
                        batch=args.batch, progress=sys.stderr.isatty())
    if code:
        return code
    dt = time.monotonic() - t0
    log.info("%d frames -> %s (%.1f frames/s, %s)", len(todo), args.out, len(todo) / max(dt, 1e-9),
             renderer.forward.status)
    return 0
