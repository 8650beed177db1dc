"""How close can a texture layer get? A textured test look scored with its own texture put back.

    .venv/bin/python bench/texture_floor.py SUBJECT [--looks sepia_film_grain,charcoal_paper]
                                                   [--keyframes 0,60,30,90] [--max-frames 24]

The textured test looks (``tests/edit/unseen_looks.py``: a paper or film grain fixed in the frame)
draw their texture from seeded noise, so the texture is known here; the edit never sees it. For
each look this scores, on the held-out frames ``bench/style.py`` scores (the face box, against the
look applied to the real frames, ``image_scores``), reference renders:

* ``post-filter``: the look applied to the unstyled render (the bound of ``bench/style.py``);
* ``no texture``: the look's texture-free part applied to the unstyled render (a perfect translator
  of the look's content with no layer at all);
* ``k keyframe(s), exact where flat``: the same plus the texture as a fixed layer that knows each
  of the first k keyframes' true texture exactly wherever the layer's rule keeps it
  (``backend.style.frame_texture.flatness`` of the keyframe, averaged over keyframes as the edit
  averages them). Under a keyframe's eyes, mouth and outlines the rule keeps nothing.

The differences to the post-filter are what the texture costs with the content exact and the
layer's rule given a perfect estimate. It is a reference, not a strict bound: the edit's busy fill
guesses some texture where the rule keeps none, and a content model exact on the keyframe's own
features would reveal the texture there too. Keyframes never count among the scored frames.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class _SilentGenerator:
    """A stand-in for ``numpy.random.Generator`` whose noise is zero: the looks' texture vanishes."""

    def standard_normal(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape)


@contextlib.contextmanager
def _without_texture() -> Iterator[None]:
    """Within the block, seeded noise (``np.random.default_rng``, the test looks' texture) is zero."""
    real = np.random.default_rng
    np.random.default_rng = lambda seed=None: _SilentGenerator()
    try:
        yield
    finally:
        np.random.default_rng = real


def texture_free(look: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """(H, W, 3) uint8 -> (H, W, 3) float32: ``look`` without its seeded texture."""
    def apply(rgb: np.ndarray) -> np.ndarray:
        with _without_texture():
            return look(rgb).astype(np.float32)
    return apply


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("subject", type=Path)
    ap.add_argument("--looks", default="sepia_film_grain,charcoal_paper")
    ap.add_argument("--keyframes", default="0,60,30,90", help="the first is the edit's keyframe; "
                    "the rest are added one at a time")
    ap.add_argument("--max-frames", type=int, default=24)
    args = ap.parse_args()

    from style import unseen_looks  # bench/style.py: the test looks of tests/edit/unseen_looks.py

    from backend.data.subject import Subject
    from backend.imaging.convert import frame_at, frame_to_tensor
    from backend.metrics.evaluate import heldout_ids
    from backend.metrics.image_scores import image_scores
    from backend.metrics.regions import subject_regions
    from backend.paths import checkpoint_path
    from backend.render import Renderer
    from backend.style.frame_texture import flatness

    looks = unseen_looks()
    keys = [int(k) for k in args.keyframes.split(",")]
    subject = Subject.open(args.subject)
    renderer = Renderer.from_checkpoint(checkpoint_path(args.subject), subject=args.subject)
    size = renderer.size
    held = heldout_ids(renderer.meta, subject)
    held = held[~np.isin(held, keys)]
    ids = held[np.linspace(0, len(held) - 1, min(args.max_frames, len(held))).round().astype(int)]
    real = np.stack([frame_at(subject.frame(int(i)), size) for i in ids])
    plain = np.stack(list(renderer.render(subject.expressions, uv_maps=subject.uv_maps, indices=ids)))
    regions = subject_regions(subject, ids, size)
    key_frames = [frame_at(subject.frame(k), size) for k in keys]
    weights = [flatness(frame_to_tensor(f, size)[None])[0, 0].numpy() for f in key_frames]

    def face_psnr(renders: np.ndarray, truth: np.ndarray) -> float:
        out = np.clip(renders + 0.5, 0, 255).astype(np.uint8) if renders.dtype != np.uint8 else renders
        return image_scores(out, truth, regions)["face_psnr_db"]

    print(f"{args.subject}: {len(ids)} held-out frames, keyframes {keys}\n")
    print("| look | post-filter face PSNR | no texture (d) | "
          + " | ".join(f"{n} keyframe(s), exact where flat (d)" for n in range(1, len(keys) + 1)) + " |")
    print("|---|---:|---:|" + "---:|" * len(keys))
    for name in args.looks.split(","):
        look = looks[name]
        plain_look = texture_free(look)
        truth = np.stack([look(f) for f in real])
        post = face_psnr(np.stack([look(f) for f in plain]), truth)
        smooth = np.stack([plain_look(f) for f in plain])
        cells = [f"{face_psnr(smooth, truth) - post:+.2f}"]
        textures = [look(f).astype(np.float32) - plain_look(f) for f in key_frames]
        for n in range(1, len(keys) + 1):
            w = np.stack(weights[:n])[..., None]
            layer = (np.stack(textures[:n]) * w).sum(0) / np.maximum(w.sum(0), 1e-6) * w.max(0)
            cells.append(f"{face_psnr(smooth + layer, truth) - post:+.2f}")
        print(f"| {name} | {post:.2f} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
