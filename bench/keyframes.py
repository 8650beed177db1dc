"""Does an added keyframe help? One vs two (up to four) keyframes, scored in the same run.

    .venv/bin/python bench/keyframes.py SUBJECT [--look cartoon] [--first 0] [--second 120] [--near 20]
                                        [--seeds 0,1,2] [--more 60,200] [--all-frames]

Both edits use the look applied to the real frames ``--first`` (and ``--second``) as references.
Each style is scored (``evaluate_style``) on the held-out frames within ``--near`` frames of the
second keyframe, against the look applied to the real frames, with the post-filter as the bound.
``--look`` is a built-in look or one of the test looks of ``tests/edit/unseen_looks.py``.
``--more`` adds edits with a third and a fourth keyframe (up to 4 in all); ``--all-frames`` scores
every held-out frame that is none of the keyframes instead of the second one's neighbours (a
texture fixed in the frame, such as a paper grain, is seen under other content by each keyframe).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("subject", type=Path)
    ap.add_argument("--look", default="cartoon")
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--second", type=int, default=120)
    ap.add_argument("--near", type=int, default=20)
    ap.add_argument("--seeds", default="0", help="comma-separated edit seeds; each pair of runs is one seed")
    ap.add_argument("--more", default="", help="comma-separated further keyframes, one more per run (<= 2)")
    ap.add_argument("--all-frames", action="store_true",
                    help="score every held-out frame that is no keyframe, not only those near --second")
    args = ap.parse_args()

    from style import unseen_looks  # bench/style.py: the test looks no part of the product makes

    from backend.data.subject import Subject
    from backend.imaging.convert import frame_at
    from backend.looks import apply_look
    from backend.metrics.style_eval import evaluate_style
    from backend.paths import checkpoint_path
    from backend.train.checkpoint import read_checkpoint
    from backend.train.keyframes import Keyframe
    from backend.train.stage2 import edit_avatar

    subject = Subject.open(args.subject)
    _, held = subject.split()
    order = [args.first, args.second] + [int(f) for f in args.more.split(",") if f]
    if len(order) > 4 or len(set(order)) != len(order):
        raise SystemExit(f"keyframes {order}: at most 4, each once")
    keys = set(order)  # never scored: some edit saw them
    near = [int(i) for i in held if (args.all_frames or abs(int(i) - args.second) <= args.near)
            and int(i) not in keys]
    if not near:
        raise SystemExit(f"no held-out frame within {args.near} of frame {args.second}")
    size = int(read_checkpoint(checkpoint_path(args.subject))["meta"]["size"])
    look = unseen_looks().get(args.look, args.look)  # a test look's function, or a built-in name
    refs = {f: apply_look(frame_at(subject.frame(f), size), look) for f in order}
    runs = {f"{n} keyframe{'s' if n > 1 else ''}": order[:n] for n in range(1, len(order) + 1)}
    seeds = [int(x) for x in args.seeds.split(",")]
    scored = "all but the keyframes" if args.all_frames else f"near {args.second}"
    print(f"held-out frames scored ({scored}): {near}\n")
    print("| keyframes | seed | edit s | face PSNR styled / post-filter | SSIM styled / post-filter |")
    print("|---|---:|---:|---|---|")
    scores: dict[str, list[tuple[float, float]]] = {label: [] for label in runs}
    for seed in seeds:
        for label, frames in runs.items():
            t0 = time.monotonic()
            style = edit_avatar(args.subject, keyframes=[Keyframe(refs[f], f) for f in frames],
                                name=f"bench_kf{len(frames)}_seed{seed}", write_metrics=False, seed=seed)
            seconds = time.monotonic() - t0
            r = evaluate_style(args.subject, style, look, frame_ids=near, identity=False, write=False)
            s, p = r["styled"], r["post_filter"]
            scores[label].append((s["face_psnr_db"], s["ssim"]))
            print(f"| {label} ({', '.join(map(str, frames))}) | {seed} | {seconds:.0f} | "
                  f"{s['face_psnr_db']:.2f} / {p['face_psnr_db']:.2f} | {s['ssim']:.3f} / {p['ssim']:.3f} |",
                  flush=True)
    print()
    for label in list(runs)[1:]:
        gain = np.array(scores[label]) - np.array(scores["1 keyframe"])  # (seeds, [psnr, ssim])
        print(f"{label} against 1, per seed: face PSNR {', '.join(f'{g:+.2f}' for g in gain[:, 0])} dB "
              f"(mean {gain[:, 0].mean():+.2f}); SSIM {', '.join(f'{g:+.3f}' for g in gain[:, 1])} "
              f"(mean {gain[:, 1].mean():+.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
