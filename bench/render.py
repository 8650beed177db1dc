"""Render speed of the Emo-Avatar of a training preset (default ``cpu``, 128 px), and the
generator's FLOP/s vs GEMM.

Usage::

    python bench/render.py [--quick] [--compile] [--style] [--threads N] [--preset cpu] [--size PX]
                           [--batch 4]

``--preset`` picks the architecture and size (``backend/train/presets.py``: ``--preset studio``
gives the 256 px rows); ``--size`` renders that preset's architecture at another size.

Prints a Markdown table:
- frames/s of the full renderer (texture + deformer + skips + generator) at batch 1 and batched
  (targets in ``RENDER_TARGETS``: ``cpu`` >= 10 frames/s at 128 px on 2 cores, ``studio``
  >= 20 frames/s compiled at batch 4 at 256 px);
- the generator synthesis alone: FLOPs per frame (counted by ``torch.utils.flop_counter``: convs,
  transposed convs, linears), achieved GFLOP/s;
- the baseline measured in the same run: ``torch.mm`` on the generator's own im2col GEMM shapes
  (M = batch * H_out * W_out, K = C_in * k * k, N = C_out, one per conv) and on a square 1024
  matrix; the generator's share of the GEMM rate (target >= 50%).
With ``--compile``, the renderer and the generator also run through ``torch.compile`` (the
product's ``--compile`` path, ``backend.model.compiled``) and get rows of their own; compiling
takes a few minutes cold on 2 cores (seconds once inductor's cache holds the graphs), outside
the timings.
With ``--style``, a style translator of the preset's edit settings (``TRANSLATOR_SETTINGS``, a
look without a screen or a position grade; random weights, which cost what fitted ones do) also
runs after the renderer as ``Renderer`` runs it (its fused plan after the eager or compiled
forward, bfloat16 where the CPU computes it natively, then the temporal filter of the settings,
``backend.style.steady``), and each path gets a styled / unstyled row
(target ``TARGET_RENDER``, imported from ``bench/style.py``, which holds every style target).
``bench/style.py SUBJECT --render-cost`` measures the same on a trained subject with its real
style files.
Timings are medians over interleaved rounds (renderer, generator, GEMM alternate), so a busy
machine slows all of them alike; the CPU-time columns (process CPU seconds, all threads) are the
least sensitive to other processes on a shared machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from style import TARGET_RENDER  # bench/style.py: the one render-cost target
from torch.utils.flop_counter import FlopCounterMode

from backend.model import AvatarConfig, EmoAvatar
from backend.style.steady import steady_run
from backend.train.presets import PRESETS


def _uv(batch: int, size: int) -> torch.Tensor:
    c = torch.linspace(0, 1, size)
    v, u = torch.meshgrid(c, c, indexing="ij")
    cov = (((u - 0.5) ** 2 + (v - 0.45) ** 2) < 0.09).float()
    return torch.stack([u, v, cov])[None].repeat(batch, 1, 1, 1)


def conv_gemm_shapes(model: EmoAvatar, batch: int) -> list[tuple[int, int, int]]:
    """(M, K, N) of the im2col GEMM of every generator conv, recorded from one synthesis pass."""
    shapes: list[tuple[int, int, int]] = []
    real_conv, real_convt = F.conv2d, F.conv_transpose2d

    def conv(x, w, *a, **k):
        out = real_conv(x, w, *a, **k)
        groups = k.get("groups", a[4] if len(a) > 4 else 1)
        if groups == 1:
            shapes.append((out.shape[0] * out.shape[2] * out.shape[3], w.shape[1] * w.shape[2] * w.shape[3],
                           w.shape[0]))
        return out

    def convt(x, w, *a, **k):
        out = real_convt(x, w, *a, **k)
        # transposed conv: one GEMM over the input pixels, K = C_in, N = C_out * k * k
        m, n = x.shape[0] * x.shape[2] * x.shape[3], w.shape[1] * w.shape[2] * w.shape[3]
        shapes.append((m, w.shape[0], n))
        return out

    w = model.w_pivot.detach().expand(batch, -1, -1)
    F.conv2d, F.conv_transpose2d = conv, convt
    try:
        with torch.inference_mode():
            model.generator.synthesis(w, None, noise_mode="const")
    finally:
        F.conv2d, F.conv_transpose2d = real_conv, real_convt
    return shapes


RENDER_TARGETS: dict[str, str] = {
    "cpu": ">= 10 frames/s at 128 px",
    "studio": ">= 20 frames/s compiled at batch 4 at 256 px (issue 15)",
}
"""The render-speed target of each preset that has one (2 cores)."""


def bench_translator(preset: str) -> torch.nn.Module:
    """The style translator of ``preset``'s edit settings for a look without a screen or a
    position grade, weights random (N(0, 0.05): the cost does not depend on them), in eval mode
    with the renderer's precision choice (``low_precision``)."""
    from backend.style.translator import StyleTranslator
    from backend.train.translator_edit import translator_settings

    net_cfg = dataclasses.replace(translator_settings(preset).net, screen_gates=0, screen_head=0, grade=0)
    net = StyleTranslator(net_cfg).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.05)
    net.low_precision = True
    net.steady = translator_settings(preset).steady  # the renderer's temporal filter, as the edit sets it
    return net


def bench_config(n_expr: int, size: int | None = None, preset: str = "cpu") -> tuple[AvatarConfig, str]:
    """The ``AvatarConfig`` of training preset ``preset`` (``backend.train.presets``), at ``size``
    px when given (else the preset's own size), and a label naming both."""
    from backend.train.presets import get_preset

    cfg = get_preset(preset).avatar_config(n_expr)
    source = f"preset `{preset}`"
    if size is not None and size != cfg.size:
        cfg = dataclasses.replace(cfg, size=size)
        source += f" at {size} px"
    return cfg, source


def count_flops(fn: Callable[[], object]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def timed(fn: Callable[[], object], reps: int) -> tuple[float, float]:
    """Median wall seconds and median process CPU seconds of one call."""
    wall, cpu = [], []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - t)
    return statistics.median(wall), statistics.median(cpu)


def tiny_train_step_ms(n_expr: int, reps: int) -> float:
    """Median wall ms of forward + backward of the tiny config at batch 2 (what the tests run)."""
    torch.manual_seed(0)
    cfg = AvatarConfig.tiny(n_expr)
    model = EmoAvatar(cfg)
    uv, ew = _uv(2, cfg.size), torch.randn(2, cfg.window, cfg.n_expr)

    def step() -> None:
        out = model(uv, ew)
        (out.image.abs().mean() + out.tex_rgb.abs().mean()).backward()

    step()
    return 1000 * timed(step, max(reps, 3))[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (< 60 s)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    ap.add_argument("--preset", default="cpu", choices=list(PRESETS),
                    help="training preset whose architecture and size are timed (default: cpu)")
    ap.add_argument("--size", type=int, default=None, help="output px (default: the preset's size)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--n-expr", type=int, default=52)
    ap.add_argument("--compile", action="store_true",
                    help="also time the torch.compile path (compiles first: minutes cold, seconds cached)")
    ap.add_argument("--style", action="store_true",
                    help="also time a style translator after the renderer (styled / unstyled rows)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg, source = bench_config(args.n_expr, args.size, args.preset)
    model = EmoAvatar(cfg).eval()
    with torch.no_grad():
        for layer in model.generator.convs:
            layer.noise.weight.fill_(0.1)  # a trained model uses its noise; pay for it
    rounds, reps = (2, 3) if args.quick else (5, 8)

    inputs = {b: (_uv(b, cfg.size), torch.randn(b, cfg.window, cfg.n_expr)) for b in (1, args.batch)}
    skips = {}
    with torch.inference_mode():
        for b, (uv, ew) in inputs.items():
            motion = model.motion_code(ew)
            feats, mask, _ = model.sample_features(uv, ew, motion)
            skips[b] = model.skips(model.skip_input(feats, uv, mask), motion if cfg.skip_film else None)
    w = {b: model.w_pivot.detach().expand(b, -1, -1) for b in inputs}

    modes = ["eager", "compiled"] if args.compile else ["eager"]
    forward = {"eager": model, "compiled": torch.compile(model, dynamic=False)}
    synthesis = {"eager": model.generator.synthesis,
                 "compiled": torch.compile(model.generator.synthesis, dynamic=False)}

    def render(b: int, mode: str = "eager") -> Callable[[], object]:
        return lambda: forward[mode](*inputs[b])

    translator = bench_translator(args.preset) if args.style else None

    runs: dict[tuple[int, str], object] = {}

    def styled(b: int, mode: str = "eager") -> Callable[[], object]:
        """The translator after the renderer, then its temporal filter when the settings carry one
        (one run per path that goes on from call to call, as a long render's batches do)."""
        def run() -> object:
            plain = forward[mode](*inputs[b]).image
            out = translator.on_render(plain, inputs[b][0])
            if translator.steady is None:
                return out
            return runs.setdefault((b, mode), steady_run(translator.steady)).add(plain, out)
        return run

    def synth(b: int, mode: str = "eager") -> Callable[[], object]:
        return lambda: synthesis[mode](w[b], skips[b], noise_mode="const")

    g_flops = {b: count_flops(synth(b)) for b in inputs}
    r_flops = count_flops(lambda: model(*inputs[1]))
    gemms = {b: conv_gemm_shapes(model, b) for b in inputs}
    mats = {b: [(torch.randn(m, k), torch.randn(k, n)) for m, k, n in gemms[b]] for b in inputs}
    gemm_flops = {b: sum(2 * m * k * n for m, k, n in gemms[b]) for b in inputs}
    sq = (torch.randn(1024, 1024), torch.randn(1024, 1024))

    def gemm(b: int) -> Callable[[], object]:
        return lambda: [a @ c for a, c in mats[b]]

    times: dict[str, list[tuple[float, float]]] = {}
    compile_s = 0.0
    with torch.inference_mode():
        for b in inputs:
            gemm(b)()  # warm-up
            for mode in modes:
                t0 = time.perf_counter()
                render(b, mode)()
                synth(b, mode)()
                if translator is not None:
                    styled(b, mode)()
                compile_s += time.perf_counter() - t0 if mode == "compiled" else 0.0
        for _ in range(rounds):
            for b in inputs:
                for mode in modes:
                    times.setdefault(f"render{b}{mode}", []).append(timed(render(b, mode), reps))
                    times.setdefault(f"synth{b}{mode}", []).append(timed(synth(b, mode), reps))
                    if translator is not None:
                        times.setdefault(f"styled{b}{mode}", []).append(timed(styled(b, mode), reps))
                times.setdefault(f"gemm{b}", []).append(timed(gemm(b), reps))
            times.setdefault("sq", []).append(timed(lambda: sq[0] @ sq[1], reps))
    wall = {k: statistics.median(x[0] for x in v) for k, v in times.items()}
    cpu = {k: statistics.median(x[1] for x in v) for k, v in times.items()}
    sq_rate = 2 * 1024 ** 3 / wall["sq"]

    mode = "quick" if args.quick else "full"
    print(f"\n### Emo-Avatar render benchmark ({cfg.size} px, {source}, "
          f"{torch.get_num_threads()} threads, {mode}, load avg {os.getloadavg()[0]:.1f})\n")
    print(f"channels {model.generator.channels}; renderer {r_flops / 1e9:.2f} GFLOP/frame "
          f"(generator {g_flops[1] / 1e9:.2f}); "
          f"square 1024 GEMM: {sq_rate / 1e9:.1f} GFLOP/s\n")
    print("| path | batch | render frames/s | render CPU ms/frame | generator GFLOP/s "
          "| conv-shaped GEMM GFLOP/s | generator / GEMM (wall) | generator / GEMM (CPU time) "
          "| generator / square GEMM |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mode in modes:
        for b in inputs:
            fps = b / wall[f"render{b}{mode}"]
            g_rate = g_flops[b] / wall[f"synth{b}{mode}"]
            gemm_rate = gemm_flops[b] / wall[f"gemm{b}"]
            cpu_share = (g_flops[b] / cpu[f"synth{b}{mode}"]) / (gemm_flops[b] / cpu[f"gemm{b}"])
            print(f"| {mode} | {b} | {fps:.1f} | {1000 * cpu[f'render{b}{mode}'] / b:.1f} "
                  f"| {g_rate / 1e9:.1f} | {gemm_rate / 1e9:.1f} | {100 * g_rate / gemm_rate:.0f}% "
                  f"| {100 * cpu_share:.0f}% | {100 * g_rate / sq_rate:.0f}% |")
    if translator is not None:
        from backend.style.inference_plan import bf16_native

        print(f"\nstyled (a translator of the `{args.preset}` edit settings after the renderer, its plan "
              f"in {'bfloat16' if bf16_native() else 'float32'}; target <= {TARGET_RENDER}x):\n")
        print("| path | batch | styled ms/frame | unstyled ms/frame | styled / unstyled | target |")
        print("|---|---:|---:|---:|---:|---|")
        for mode in modes:
            for b in inputs:
                st, un = wall[f"styled{b}{mode}"] / b, wall[f"render{b}{mode}"] / b
                print(f"| {mode} | {b} | {1000 * st:.1f} | {1000 * un:.1f} | {st / un:.2f} "
                      f"| {'met' if st / un <= TARGET_RENDER else 'missed'} |")
    if args.compile:
        print(f"\ncompiled: torch.compile (inductor, static shapes), {compile_s:.0f} s to compile the "
              f"{2 * len(inputs)} graphs (not in the timings; seconds when inductor's cache holds them)")
    tiny_ms = tiny_train_step_ms(args.n_expr, reps)
    print(f"\ntiny config (32 px) forward + backward, batch 2: {tiny_ms:.0f} ms wall (target < 500 ms)")
    target = RENDER_TARGETS.get(args.preset, "none for this preset")
    print(f"\ntargets: render {target}; generator >= 50% of the GEMM rate"
          + ("" if args.compile else " (the product's --compile path reaches it: rerun with --compile)"))
    if os.getloadavg()[0] > (os.cpu_count() or 1) and torch.get_num_threads() > 1:
        print("note: the machine is busier than its core count; multi-threaded timings suffer from "
              "oversubscription (compare with --threads 1)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
