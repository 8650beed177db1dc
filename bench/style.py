"""Style quality against ground truth: each look's edit scored on held-out frames next to the
post-filter bound, measured in the same run.

    .venv/bin/python bench/style.py SUBJECT [--looks cartoon,pencil,oil,watercolor,posterised_ink]
                                           [--methods translator,skips] [--frame 0] [--max-frames 24]

For every look: the look applied to the real frame ``--frame``, at the avatar's size (the size
the ground truth is made at), is the reference; each method edits
the subject with it (``edit_avatar``, its wall time is measured); ``evaluate_style`` scores the
styled renders of held-out frames against the look applied to the real held-out frames, together
with the post-filter (the look applied to the unstyled render). ``posterised_ink`` and
``cool_halftone`` are looks no part of the product makes (``tests/edit/unseen_looks.py``), so the
edit was never tuned on them. The expression and flicker columns also show the look applied to
the real shot ("truth"): what the look itself does to the re-tracked mouth and eyes, and how much
more it changes from frame to frame than the real frames do. Prints one markdown table row per
(look, method) and writes ``SUBJECT/styles/bench_style.json``.

Render cost only (no edit), for existing style files:

    .venv/bin/python bench/style.py SUBJECT --render-cost [STYLE ...] [--rounds 8] [--threads 2]
                                           [--reference]

renders the subject's first 48 frames (batch 8, its rig) unstyled and with each style, alternated
in every round, and prints per style the ratio of the fastest styled to the fastest unstyled
round (wall time), its range over the rounds (each round's styled / that round's unstyled), the
same ratio in process CPU time (less sensitive to other jobs on the machine) and the load average
before and after. ``--reference`` adds, in the same rounds, each style with its translator's
``forward_reference`` (the op-by-op forward training uses) instead of its ``InferencePlan``, and
with the plan kept float32 (the renderer runs it in bfloat16 where the CPU does that natively).
Without STYLE: every ``SUBJECT/styles/*.style``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.style.steady_choice import FLICKER_BOUND  # noqa: E402

TARGET_FACE_DB = -1.0  # styled face PSNR >= post-filter - 1 dB
TARGET_SSIM = -0.05  # whole-frame SSIM >= post-filter - 0.05
TARGET_R = 0.05  # expression correlations within 0.05 of unstyled
TARGET_FLICKER = FLICKER_BOUND  # flicker <= 1.2 x unstyled (the edit aims 0.05 under it on training frames)
TARGET_RENDER = 1.3  # styled render time <= 1.3 x unstyled


def render_times(subject: Path, styles: dict[str, Path | None], frames: int = 48, rounds: int = 2,
                 reference: tuple[str, ...] = (), float32: tuple[str, ...] = ()
                 ) -> dict[str, list[tuple[float, float]]]:
    """(wall, process CPU) seconds per frame of ``Renderer.render`` (batch 8, the subject's rig)
    of each renderer, per round; the renderers take turns within every round.

    Args:
        styles: name -> style file (None: unstyled).
        reference: names whose translator runs ``forward_reference`` instead of its ``InferencePlan``.
        float32: names whose translator's plan stays float32 where the renderer would run it in
            bfloat16 (``StyleTranslator.low_precision``).
    """
    from backend.data.subject import Subject
    from backend.paths import checkpoint_path
    from backend.render import Renderer

    s = Subject.open(subject)
    expr = s.expressions[:frames]
    renderers = {}
    for name, style in styles.items():
        renderers[name] = Renderer.from_checkpoint(checkpoint_path(subject), subject=subject, style=style)
        if name in reference and renderers[name].translator is not None:
            renderers[name].translator.fused_inference = False
        if name in float32 and renderers[name].translator is not None:
            renderers[name].translator.low_precision = False
    for r in renderers.values():  # warm-up: rig, oneDNN kernels, the translators' plans
        for _frame in r.render(expr[:8], batch=8):
            pass
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in renderers}
    for _ in range(rounds):
        for name, r in renderers.items():
            t, c = time.perf_counter(), time.process_time()
            for _frame in r.render(expr, batch=8):
                pass
            times[name].append(((time.perf_counter() - t) / len(expr), (time.process_time() - c) / len(expr)))
    return times


def render_cost(subject: Path, style: Path, frames: int = 48, repeats: int = 2) -> tuple[float, float]:
    """Seconds per frame of ``Renderer.render`` (batch 8, the subject's rig) unstyled and styled,
    alternated ``repeats`` times in the same run; the minimum of each is kept."""
    times = render_times(subject, {"plain": None, "styled": style}, frames, repeats)
    return min(w for w, _ in times["plain"]), min(w for w, _ in times["styled"])


def render_cost_report(subject: Path, styles: list[Path], rounds: int, reference: bool) -> None:
    """Prints the render cost of each style against the unstyled render (see the module doc)."""
    import torch

    load0 = os.getloadavg()
    named: dict[str, Path | None] = {"unstyled": None}
    for p in styles:
        named[p.stem] = p
        if reference:
            named[f"{p.stem} (reference forward)"] = p
            named[f"{p.stem} (float32 plan)"] = p
    ref = tuple(n for n in named if n.endswith("(reference forward)"))
    f32 = tuple(n for n in named if n.endswith("(float32 plan)"))
    times = render_times(subject, named, rounds=rounds, reference=ref, float32=f32)
    load1 = os.getloadavg()
    plain = times.pop("unstyled")
    pw, pc = min(w for w, _ in plain), min(c for _, c in plain)
    print(f"\nrender cost, {subject.name}, 48 frames, batch 8, {torch.get_num_threads()} threads, "
          f"{rounds} rounds; load average {load0[0]:.2f} / {load0[1]:.2f} before, "
          f"{load1[0]:.2f} / {load1[1]:.2f} after (1 / 5 min)\n")
    print(f"unstyled: {pw * 1000:.1f} ms/frame wall, {pc * 1000:.1f} ms CPU\n")
    print("| style | styled ms/frame | x unstyled (fastest) | x unstyled per round (range) | "
          "x unstyled in CPU time | target |")
    print("|---|---:|---:|---|---:|---|")
    for name, t in times.items():
        w, c = min(x for x, _ in t), min(x for _, x in t)
        per_round = [a[0] / b[0] for a, b in zip(t, plain, strict=True)]
        ratio = w / pw
        print(f"| {name} | {w * 1000:.1f} | {ratio:.2f} | {min(per_round):.2f}-{max(per_round):.2f} | "
              f"{c / pc:.2f} | {'met' if ratio <= TARGET_RENDER else 'missed'} (<= {TARGET_RENDER}) |")


def unseen_looks() -> dict:
    spec = importlib.util.spec_from_file_location("unseen_looks", ROOT / "tests" / "edit" / "unseen_looks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return {name: fn for name, fn in vars(mod).items()
            if callable(fn) and not name.startswith("_") and getattr(fn, "__module__", None) == mod.__name__}


def _d(a, b) -> float | None:
    return None if a is None or b is None else a - b


def _ratio(a, b) -> float | None:
    return None if a is None or not b else a / b


def row(look: str, method: str, seconds: float, r: dict) -> dict:
    s, p = r["styled"], r["post_filter"]
    ex = r["expression"]
    out = {
        "look": look, "method": method, "edit_s": round(seconds, 1),
        "face_psnr": s["face_psnr_db"], "post_face_psnr": p["face_psnr_db"],
        "ssim": s["ssim"], "post_ssim": p["ssim"], "edge_f1": s["edge_f1"], "post_edge_f1": p["edge_f1"],
        "detail": s.get("face_detail_ratio"), "post_detail": p.get("face_detail_ratio"),
        "jaw_r": ex["styled"]["jaw_open_r"], "jaw_r_unstyled": ex["unstyled"]["jaw_open_r"],
        "blink_r": ex["styled"]["eye_blink_r"], "blink_r_unstyled": ex["unstyled"]["eye_blink_r"],
        "jaw_r_post": ex.get("post_filter", {}).get("jaw_open_r"),
        "blink_r_post": ex.get("post_filter", {}).get("eye_blink_r"),
        "jaw_r_truth": ex.get("truth", {}).get("jaw_open_r"),
        "blink_r_truth": ex.get("truth", {}).get("eye_blink_r"),
        "flicker_ratio": r["flicker"]["ratio"],
        "truth_flicker_ratio": _ratio(r["flicker"].get("truth"), r["flicker"]["real"]),
        "warped_flicker_ratio": r["flicker"]["warped_ratio"],
        "truth_warped_flicker_ratio": _ratio(r["flicker"]["warped"].get("truth"),
                                             r["flicker"]["warped"]["real"]),
    }
    out["d_face_psnr"] = _d(out["face_psnr"], out["post_face_psnr"])
    out["d_ssim"] = _d(out["ssim"], out["post_ssim"])
    return out


def fmt(v, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("subject", type=Path)
    ap.add_argument("--render-cost", nargs="*", type=Path, default=None, metavar="STYLE",
                    help="only measure the render cost of these style files "
                         "(default: SUBJECT/styles/*.style)")
    ap.add_argument("--rounds", type=int, default=8, help="--render-cost: alternated rounds")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--reference", action="store_true",
                    help="--render-cost: also time each translator's forward_reference and its float32 plan "
                         "in the same rounds")
    ap.add_argument("--looks", default="cartoon,pencil,oil,watercolor,posterised_ink",
                    help="comma-separated: built-in looks, looks of tests/edit/unseen_looks.py, and "
                         "FILE.py:FUNCTION or package.module:FUNCTION look functions")
    ap.add_argument("--methods", default="translator")
    ap.add_argument("--frame", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None, help="edit steps (default: the preset's)")
    ap.add_argument("--steady-motion", action="store_true",
                    help="edit with the steady filter along the motion (style names end in _motion)")
    ap.add_argument("--max-frames", type=int, default=24)
    ap.add_argument("--shot-frames", type=int, default=80)
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.render_cost is not None:
        styles = args.render_cost or sorted((args.subject / "styles").glob("*.style"))
        if not styles:
            raise SystemExit(f"no style files given and none in {args.subject / 'styles'}")
        render_cost_report(args.subject, styles, args.rounds, args.reference)
        return 0

    from backend.data.subject import Subject
    from backend.images import write_png
    from backend.imaging.convert import frame_at
    from backend.looks import apply_look, load_look, look_function
    from backend.metrics.style_eval import evaluate_style
    from backend.paths import checkpoint_path
    from backend.train.checkpoint import read_checkpoint
    from backend.train.stage2 import edit_avatar

    extra = unseen_looks()
    subject = Subject.open(args.subject)
    size = int(read_checkpoint(checkpoint_path(args.subject))["meta"]["size"])
    rows = []
    print("| look | method | edit s | face PSNR styled / post-filter (d) | SSIM styled / post (d) | "
          "edge F1 styled / post | face detail x truth styled / post | "
          "jawOpen r styled / unstyled / post / truth | eyeBlink r styled / unstyled / post / truth | "
          "flicker x | truth's flicker x real | "
          "motion-compensated flicker x (truth's x real) |")
    print("|---|---|---:|---|---|---|---|---|---|---:|---:|---:|")
    for spec in args.looks.split(","):
        try:  # evaluate_style takes a name or a function
            fn = extra[spec] if spec in extra else load_look(spec)
        except ValueError as exc:
            raise SystemExit(f"{exc}; or one of {', '.join(extra)}") from exc
        look = look_function(fn)[0]
        frame = frame_at(subject.frame(args.frame), size)  # the look at the size it is scored at
        ref = apply_look(frame, fn)
        ref_path = args.subject / "styles" / f"bench_{look}.png"
        ref_path.parent.mkdir(exist_ok=True)
        write_png(ref_path, ref)
        for method in args.methods.split(","):
            name = f"bench_{look}_{method}" + ("_motion" if args.steady_motion else "")
            t0 = time.monotonic()
            style = edit_avatar(args.subject, ref_path, frame=args.frame, steps=args.steps, name=name,
                                method=method, steady_motion=args.steady_motion)
            seconds = time.monotonic() - t0
            r = evaluate_style(args.subject, style, fn, max_frames=args.max_frames,
                               shot_frames=args.shot_frames, identity=False)
            x = row(look, method, seconds, r)
            rows.append(x)
            cells = [look, method, f"{x['edit_s']:.0f}",
                     f"{fmt(x['face_psnr'])} / {fmt(x['post_face_psnr'])} ({fmt(x['d_face_psnr'], '+.2f')})",
                     f"{fmt(x['ssim'], '.3f')} / {fmt(x['post_ssim'], '.3f')} ({fmt(x['d_ssim'], '+.3f')})",
                     f"{fmt(x['edge_f1'])} / {fmt(x['post_edge_f1'])}",
                     f"{fmt(x['detail'])} / {fmt(x['post_detail'])}",
                     f"{fmt(x['jaw_r'])} / {fmt(x['jaw_r_unstyled'])} / {fmt(x['jaw_r_post'])} / "
                     f"{fmt(x['jaw_r_truth'])}",
                     f"{fmt(x['blink_r'])} / {fmt(x['blink_r_unstyled'])} / {fmt(x['blink_r_post'])} / "
                     f"{fmt(x['blink_r_truth'])}",
                     fmt(x["flicker_ratio"]), fmt(x["truth_flicker_ratio"]),
                     f"{fmt(x['warped_flicker_ratio'])} ({fmt(x['truth_warped_flicker_ratio'])})"]
            print("| " + " | ".join(cells) + " |", flush=True)
    (args.subject / "styles" / "bench_style.json").write_text(json.dumps(rows, indent=2, default=float))
    plain_s, styled_s = render_cost(args.subject, style)
    ratio = styled_s / plain_s
    print(f"\nrender (last style, {rows[-1]['method']}): {plain_s * 1000:.1f} ms/frame unstyled, "
          f"{styled_s * 1000:.1f} ms/frame styled: {ratio:.2f}x (target <= {TARGET_RENDER}x: "
          f"{'met' if ratio <= TARGET_RENDER else 'missed'})")
    met = [r for r in rows if r["d_face_psnr"] is not None and r["d_face_psnr"] >= TARGET_FACE_DB
           and r["d_ssim"] is not None and r["d_ssim"] >= TARGET_SSIM]
    print(f"\nface PSNR >= post-filter - 1 dB and SSIM >= post-filter - 0.05: {len(met)} of {len(rows)} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
