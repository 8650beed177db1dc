"""`emo-avatar render SUBJECT --curves FILE [--style S] [--frames A:B]
[--uv DIR | --uv-maps NPZ | --rasterize] -o DIR`.

Writes one PNG per frame, named by frame number (``frame_start`` of the curves + row):
``DIR/000123.png``, each written atomically. Frames that already exist are skipped, so a
render-farm manager can split a shot into ``--frames`` ranges and re-run failed tasks.

Curves: ``.csv`` (Live Link Face), ``.json`` (emo-avatar-curves) or ``.npz`` (``names`` (K,) str,
``values`` (T, K) float, optional ``head_pose`` (T, 6), ``fps``, ``frame_start``). Names are
matched to the avatar's through ``Curves.conform``. A curves head pose (yaw, pitch, roll in
radians, tx, ty, tz in cm) is applied around the subject's median pose; without one the median
pose is used.

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
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from backend.paths import checkpoint_path

if TYPE_CHECKING:
    from backend.render import Renderer

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("subject", type=Path, help="subject folder with a trained avatar/")
    parser.add_argument("--curves", type=Path, required=True, help="expression curves (.csv, .json or .npz)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder for NNNNNN.png frames")
    parser.add_argument("--style", type=Path, default=None, help="a .style file from emo-avatar edit")
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
    parser.add_argument("--batch", type=int, default=8, help="frames per forward pass")


def load_curves(path: Path) -> tuple[list[str], np.ndarray, np.ndarray | None, int]:
    """(names, values (T, K), head_pose (T, 6) | None, frame_start) from a curves file."""
    if not path.is_file():
        raise FileNotFoundError(f"curves file {path} not found")
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if "names" not in z.files or "values" not in z.files:
                raise ValueError(f"{path}: an npz of curves needs 'names' and 'values' arrays, has {z.files}")
            names = [str(n) for n in z["names"]]
            values = np.asarray(z["values"], np.float32)
            pose = np.asarray(z["head_pose"], np.float32) if "head_pose" in z.files else None
            start = int(z["frame_start"]) if "frame_start" in z.files else 0
        return names, values, pose, start
    from protocol.curves import read_curves

    c = read_curves(path)
    return list(c.names), c.values, c.head_pose, c.frame_start


def parse_frames(spec: str | None, start: int, n: int) -> range:
    """'A:B' frame numbers -> row range within 0..n-1 (frame number = start + row)."""
    if not spec:
        return range(n)
    if ":" not in spec:
        raise ValueError(f"--frames {spec!r}: use A:B (B exclusive), e.g. 0:100, 100:, :50")
    a, b = spec.split(":", 1)
    try:
        lo = int(a) - start if a else 0
        hi = int(b) - start if b else n
    except ValueError:
        raise ValueError(f"--frames {spec!r}: A and B must be integers") from None
    lo, hi = max(lo, 0), min(hi, n)
    if lo >= hi:
        raise ValueError(f"--frames {spec!r} selects no frame (curves cover frames {start}..{start + n - 1})")
    return range(lo, hi)


def curves_pose(renderer: Renderer, head_pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A curves file's head pose (T, 6) -> (pose (T, 6) crop px, scale (T,) px/cm) for ``renderer``."""
    from protocol.curves import head_pose_to_crop

    mp, ms = renderer.default_pose(1)
    return head_pose_to_crop(head_pose, mp[0], float(ms[0])), np.full(len(head_pose), ms[0], np.float32)


def load_uv_dir(folder: Path, frame_numbers: list[int]) -> np.ndarray:
    """``folder/NNNNNN.npy`` for each frame number -> (N, H, W, 3) float32.

    Raises:
        FileNotFoundError: the folder or some frames' files are missing (listed).
        ValueError: a map that is not H x W x 3 or not all the same size.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"--uv {folder}: not a folder")
    files = [folder / f"{f:06d}.npy" for f in frame_numbers]
    missing = [p.name for p in files if not p.is_file()]
    if missing:
        more = f" ... ({len(missing)} in all)" if len(missing) > 8 else ""
        raise FileNotFoundError(f"--uv {folder}: no UV map for frames {', '.join(missing[:8])}{more} "
                                "(one NNNNNN.npy per frame number)")
    maps = []
    for p in files:
        m = np.load(p, allow_pickle=False)
        if m.ndim != 3 or m.shape[-1] != 3:
            raise ValueError(f"{p}: a UV map must be H x W x 3 (u, v, coverage), got shape {m.shape}")
        if maps and m.shape != maps[0].shape:
            raise ValueError(f"{p}: shape {m.shape} differs from {files[0].name}'s {maps[0].shape}")
        maps.append(m.astype(np.float32, copy=False))
    return np.stack(maps)


def run(args: argparse.Namespace) -> int:
    from backend.images import write_png
    from backend.render import Renderer, RenderInputError

    ckpt = args.checkpoint or checkpoint_path(args.subject)
    try:
        names, values, head_pose, start = load_curves(args.curves)
        renderer = Renderer.from_checkpoint(ckpt, device=args.device, style=args.style, subject=args.subject)
        rows = parse_frames(args.frames, start, len(values))
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    todo = [r for r in rows if not (args.out / f"{start + r:06d}.png").exists()]
    if len(todo) < len(rows):
        log.info("%d of %d frames already exist in %s; rendering the other %d",
                 len(rows) - len(todo), len(rows), args.out, len(todo))
    if not todo:
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    try:
        uv = pose = scale = None
        if getattr(args, "uv", None) is not None:
            uv = load_uv_dir(args.uv, [start + r for r in todo])  # one per rendered row
        elif args.uv_maps is not None:
            with np.load(args.uv_maps, allow_pickle=False) as z:
                if "uv" not in z.files:
                    raise RenderInputError(f"{args.uv_maps} has no 'uv' array (has {z.files})")
                uv = z["uv"]
        elif head_pose is not None:
            pose, scale = curves_pose(renderer, head_pose)
        frames = renderer.render(values, uv_maps=uv, pose=pose, scale=scale, batch=args.batch, names=names,
                                 indices=todo)
        for i, (row, rgb) in enumerate(zip(todo, frames, strict=True)):
            write_png(args.out / f"{start + row:06d}.png", rgb)
            if sys.stderr.isatty():
                print(f"\rrender {i + 1}/{len(todo)}", end="", file=sys.stderr, flush=True)
    except (RenderInputError, OSError, ValueError) as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    dt = time.monotonic() - t0
    if sys.stderr.isatty():
        print(file=sys.stderr)
    log.info("%d frames -> %s (%.1f frames/s)", len(todo), args.out, len(todo) / max(dt, 1e-9))
    return 0
