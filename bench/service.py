"""Benchmark of the backend service: render frames/s over the wire vs in-process, hello latency.

    python bench/service.py --quick            # < 60 s: untrained cpu-preset avatar (128 px), 32 frames
    python bench/service.py --quick --preset tiny --frames 96   # 32 px: the overhead's worst case
    python bench/service.py                    # 200 frames
    python bench/service.py --subject SUBJECT  # a trained subject folder (SUBJECT/avatar/checkpoint.pt)
    python bench/service.py --max-message      # hello latency next to maximal (511 MiB) messages
    python bench/service.py --fuzz 100000      # stress: hostile messages (tests/service/hostile.py)

``--max-message``: another process sends a signed hello every 10 ms throughout, and every round
trip is kept. Windows: the server's start-up (state ``starting``: torch is imported), idle (the
baseline), a maximal render job_submit (511 MiB of UV maps, received, validated, scanned,
stored as inputs.npz and freed) from this process, the same bytes sent to a plain ZeroMQ sink
in another process instead (what moving 511 MiB over loopback costs the machine, server
untouched), the job's own run (the worker loads the 511 MiB inputs), and the maximal submit
again with hmac-sha256 buffer checksums (what a client sends on a link that is neither loopback
nor CURVE; the server verifies them off its I/O thread). Then, in this process, the longest wait
of a thread that wants the GIL every millisecond while the inputs are stored by ``np.savez`` and
by ``protocol.fileio.atomic_write_npz``. Target: every hello during a maximal message < 100 ms.

Over the wire = `emo-avatar serve` in a subprocess on 127.0.0.1, a render job submitted with the
protocol Client and all frames received (raw uint8, credit flow control, checksums verified);
the service also writes every frame to disk as PNG. In-process = ``Renderer.render`` on the
same curves in this process. Both after a warm-up (model load excluded from both). Prints a
Markdown table; the target is ratio >= 0.9.

``--fuzz N``: the fuzz of ``tests/service/test_bad_input.py`` (which sends 10,000) at any size:
N hostile messages from ``tests/service/hostile.py`` (80 % correctly signed, some of them replays,
20 % unauthenticated) to a server with an avatar subject and a tracked one. Prints the counts,
messages/s, the hello counters, and whether every check of the test held (exit code 1 if not).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_subject(work: Path, preset: str) -> Path:
    """Tiny sample -> tracked subject -> an *untrained* avatar checkpoint of ``preset`` (render cost
    does not depend on the weights, and training would take minutes)."""
    from backend import paths
    from backend.data.sample import synthesize_sample
    from backend.data.subject import Subject
    from backend.face.track import track_video
    from backend.model.avatar import EmoAvatar
    from backend.train.checkpoint import save_checkpoint
    from backend.train.presets import get_preset

    synthesize_sample(work / "sample", tiny=True)
    subject = work / "subject"
    track_video(work / "sample" / "sample.mp4", subject, size=64)
    s = Subject.open(subject)
    p = get_preset(preset)
    cfg = p.avatar_config(len(s.expression_names))
    avatar = EmoAvatar(cfg)
    meta = {"config": cfg.to_dict(), "preset": p.name, "subject_id": s.subject_id,
            "expression_names": list(s.expression_names), "fps": s.fps, "size": cfg.size}
    save_checkpoint(paths.checkpoint_path(subject), avatar.state_dict(), meta, None)
    return subject


def start_server(workdir: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    cmd = [sys.executable, "-m", "backend.cli", "serve", "--workdir", str(workdir), "--device", "cpu", *extra]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("connection file:"):
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, Path(line.split(":", 1)[1].strip())


def wait_or_kill(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Wait for a server told to shut down; kill it after ``timeout`` seconds."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()


@contextlib.contextmanager
def served(workdir: Path, *extra: str) -> Iterator[tuple[subprocess.Popen, Any]]:
    """(server process, connected ``protocol.client.Client``) of a server on ``workdir``; on
    leaving, the server is told to shut down (when the block ended normally) and waited for
    (``wait_or_kill``)."""
    from protocol.client import Client

    proc, conn = start_server(workdir, *extra)
    try:
        client = Client.from_connection_file(conn, timeout=60)
        try:
            yield proc, client
            client.shutdown("bench done")
        finally:
            client.close()
    finally:
        wait_or_kill(proc)


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


SINK = """
import sys, zmq
ctx = zmq.Context()
sock = ctx.socket(zmq.ROUTER)
port = sock.bind_to_random_port("tcp://127.0.0.1")
print(port, flush=True)
while True:
    frames = sock.recv_multipart(copy=False)
    if len(frames) == 2 and frames[1].bytes == b"stop":
        break
    sock.send_multipart([frames[0], b"ok"])
    del frames
"""
"""A plain ZeroMQ ROUTER that answers every message with b"ok" (the transfer baseline)."""


def _gil_wait(write) -> float:
    """Longest wait (ms) of a thread that sleeps 1 ms in a loop while ``write()`` runs here."""
    import threading

    gaps: list[float] = []
    done = threading.Event()

    def probe() -> None:
        last = time.perf_counter()
        while not done.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last - 0.001)
            last = now

    t = threading.Thread(target=probe)
    t.start()
    time.sleep(0.05)
    write()
    done.set()
    t.join()
    return max(gaps) * 1000


def max_message(args: argparse.Namespace) -> int:
    """Hello latency next to maximal messages (see the module docstring)."""
    import zmq

    from backend.data.subject import Subject
    from backend.service.hello_probe import maximal_render_buffers, wait_started
    from protocol.client import Client
    from protocol.fileio import atomic_write_npz

    load_start = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="emo-bench-maxmsg-"))
    windows: dict[str, list[tuple[float, float]]] = {}
    marks: list[tuple[str, float, float]] = []
    try:
        subject = args.subject or make_subject(tmp, "tiny")
        workdir = tmp / "work"
        shutil.copytree(subject, workdir / "subjects" / "bench")
        s = Subject.open(subject)
        names, size = list(s.expression_names), int(s.size)
        buffers = maximal_render_buffers(names, size)
        curves, uv = buffers["curves"], buffers["uv_maps"]
        rows = len(curves)
        sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
        ctx = zmq.Context()
        dealer = ctx.socket(zmq.DEALER)
        dealer.connect(f"tcp://127.0.0.1:{int(sink.stdout.readline())}")
        launched = time.monotonic()
        proc, conn = start_server(workdir)
        pinger = subprocess.Popen([sys.executable, "-m", "backend.service.hello_probe", str(conn)], cwd=ROOT,
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert pinger.stdout.readline().strip() == "ready"
        try:
            client = Client.from_connection_file(conn, timeout=300, retries=0)
            t = time.monotonic()
            wait_started(client)
            marks.append(("start-up: torch and the request modules imported (state starting)", t,
                          time.monotonic()))
            print(f"start-up took {time.monotonic() - launched:.1f} s", flush=True)
            time.sleep(1.0)
            t = time.monotonic()
            time.sleep(3.0)
            marks.append(("idle server (baseline)", t, time.monotonic()))
            params = {"subject_id": "bench", "names": names, "fps": 25.0, "frame_range": [0, 0]}
            for r in range(args.rounds):
                t = time.monotonic()
                dealer.send_multipart([b"big", memoryview(curves).cast("B"), memoryview(uv).cast("B")],
                                      copy=False)
                dealer.recv()
                marks.append((f"round {r + 1}: 511 MiB sent to a plain ZeroMQ sink (transfer baseline)", t,
                              time.monotonic()))
                time.sleep(0.5)
                t = time.monotonic()
                job = client.submit("render", params, buffers={"curves": curves, "uv_maps": uv})
                t1 = time.monotonic()
                marks.append((f"round {r + 1}: maximal render job_submit (511 MiB), until its reply", t, t1))
                while client.status(job)["job"]["state"] not in ("done", "failed", "cancelled"):
                    time.sleep(0.05)
                marks.append((f"round {r + 1}: its job runs (the worker loads the 511 MiB inputs, renders "
                              "1 frame)", t1, time.monotonic()))
                print(f"round {r + 1}: submit {t1 - t:.2f} s, job {time.monotonic() - t1:.2f} s, "
                      f"load average {os.getloadavg()[0]:.1f}", flush=True)
                time.sleep(0.5)
                # the same with hmac-sha256 buffer checksums, what a client sends on a link that is
                # neither loopback nor CURVE: the server verifies 511 MiB of them (off its I/O thread)
                link_checksum, client.session.checksum = client.session.checksum, "hmac-sha256"
                t = time.monotonic()
                job = client.submit("render", params, buffers={"curves": curves, "uv_maps": uv})
                t1 = time.monotonic()
                client.session.checksum = link_checksum
                marks.append((f"round {r + 1}: the same with hmac-sha256 buffer checksums, until its reply",
                               t, t1))
                while client.status(job)["job"]["state"] not in ("done", "failed", "cancelled"):
                    time.sleep(0.05)
                print(f"round {r + 1}: submit with checksums {t1 - t:.2f} s", flush=True)
                time.sleep(0.5)
            out, _ = pinger.communicate("stop\n", timeout=120)  # before the server goes away
            client.shutdown("bench done")
            client.close()
        finally:
            if pinger.poll() is None:
                out, _ = pinger.communicate("stop\n", timeout=120)
            dealer.send(b"stop")
            sink.wait(30)
            dealer.close(0)
            ctx.term()
            wait_or_kill(proc, 30)
        pings = [(float(a), float(b)) for a, b, _ in (x.split(",") for x in out.split() if "," in x)]
        for name, t0, t1 in marks:
            windows.setdefault(name, []).extend(lat for sent, lat in pings if sent < t1 and sent + lat > t0)
        arrays = {"expressions": curves, "uv_maps": uv}

        def savez() -> None:
            with open(tmp / "a.npz", "wb") as f:
                np.savez(f, **arrays)

        gil = {"np.savez": [], "atomic_write_npz": []}
        for _ in range(2):
            gil["np.savez"].append(_gil_wait(savez))
            gil["atomic_write_npz"].append(_gil_wait(lambda: atomic_write_npz(tmp / "b.npz", arrays)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n## Hello latency next to maximal messages ({os.cpu_count()} CPUs; {rows} rows of {size} px "
          f"UV maps = {(uv.nbytes + curves.nbytes) / 2**20:.0f} MiB; {args.rounds} rounds; load average "
          f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end)\n")
    print("| window | hellos | p50 ms | p99 ms | max ms | over 100 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, lat in windows.items():
        if not lat:
            print(f"| {name} | 0 | | | | |")
            continue
        ms = [x * 1000 for x in lat]
        print(f"| {name} | {len(ms)} | {percentile(ms, 50):.1f} | {percentile(ms, 99):.1f} | {max(ms):.1f} "
              f"| {sum(x >= 100 for x in ms)} |")
    print("\n| storing the 511 MiB inputs.npz (in this process) | longest wait of a thread wanting the GIL |")
    print("|---|---|")
    for name, waits in gil.items():
        print(f"| {name} | {', '.join(f'{w:.1f}' for w in waits)} ms |")
    return 0


def fuzz(args: argparse.Namespace) -> int:
    """``args.fuzz`` hostile messages, checked as the fuzz test checks them (module docstring)."""
    from backend.data.subject import Subject
    from tests.service.hostile import TRAINED, UNTRAINED, check_fuzz, run_fuzz

    load_start = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="emo-bench-fuzz-"))
    try:
        subject = args.subject or make_subject(tmp, "tiny")
        workdir = tmp / "work"
        shutil.copytree(subject, workdir / "subjects" / TRAINED)
        shutil.copytree(subject, workdir / "subjects" / UNTRAINED, ignore=shutil.ignore_patterns("avatar"))
        names = list(Subject.open(subject).expression_names)
        failure = None
        with served(workdir, "--max-message-mb", "16") as (proc, client):
            client.hello()
            stats = run_fuzz(client.info, names, args.fuzz, seed=args.fuzz_seed)
            alive = proc.poll() is None
            hello = client.hello()
            try:
                assert alive, "the server died"
                check_fuzz(stats, args.fuzz, client)
            except AssertionError as exc:
                failure = str(exc) or "a check failed"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    enames = ", ".join(f"{k[6:]} {v:,}" for k, v in sorted(stats.items()) if k.startswith("ename:"))
    print(f"\n## Fuzz: {args.fuzz:,} hostile messages (seed {args.fuzz_seed}; {os.cpu_count()} CPUs; load "
          f"average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end)\n")
    print("| measure | value |")
    print("|---|---|")
    print(f"| signed (replays) / unauthenticated | {stats['signed']:,} ({stats['replays']:,}) / "
          f"{stats['unauthenticated']:,} |")
    print(f"| replies: ok / errors | {stats['replies']:,}: {stats['ok']:,} / {stats['error']:,} |")
    print(f"| errors by type | {enames} |")
    rate = args.fuzz / stats["seconds"]
    print(f"| time for the messages | {stats['seconds']:.1f} s ({rate:,.0f} messages/s) |")
    print(f"| hello: unauthenticated, internal errors, dropped replies | {hello['unauthenticated']:,}, "
          f"{hello['internal_errors']}, {hello['dropped_replies']} |")
    print(f"| the fuzz test's checks | {'all held' if failure is None else 'FAILED: ' + failure} |")
    return 0 if failure is None else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small run (< 60 s)")
    ap.add_argument("--subject", type=Path, help="a trained subject folder (default: build an untrained one)")
    ap.add_argument("--preset", default=None,
                    help="preset of the untrained avatar (default cpu: the demo's 128 px; tiny = 32 px, "
                         "where per-frame overhead weighs most)")
    ap.add_argument("--frames", type=int, default=None, help="frames per render job")
    ap.add_argument("--hellos", type=int, default=None, help="hello round trips")
    ap.add_argument("--rounds", type=int, default=None,
                    help="alternating rounds per measurement (best kept; fewer are noisy on 2 cores); "
                         "default 5, 3 with --max-message")
    ap.add_argument("--max-message", action="store_true",
                    help="only the hello latency next to maximal messages (see the module docstring)")
    ap.add_argument("--fuzz", type=int, default=0, metavar="N",
                    help="only the stress run: N hostile messages (see the module docstring)")
    ap.add_argument("--fuzz-seed", type=int, default=99, help="seed of the hostile messages (default 99)")
    args = ap.parse_args()
    if args.fuzz:
        return fuzz(args)
    if args.max_message:
        args.rounds = args.rounds or 3
        return max_message(args)
    args.rounds = args.rounds or 5
    n_frames = args.frames or (32 if args.quick else 200)
    preset = args.preset or "cpu"
    n_hello = args.hellos or (300 if args.quick else 2000)

    from backend.data.subject import Subject
    from backend.render import Renderer

    tmp = Path(tempfile.mkdtemp(prefix="emo-bench-service-"))
    try:
        t0 = time.perf_counter()
        subject = args.subject or make_subject(tmp, preset)
        workdir = tmp / "work"
        shutil.copytree(subject, workdir / "subjects" / "bench")
        s = Subject.open(subject)
        reps = -(-n_frames // s.expressions.shape[0])
        curves = np.ascontiguousarray(np.tile(s.expressions, (reps, 1))[:n_frames], np.float32)
        names = list(s.expression_names)
        setup = time.perf_counter() - t0

        with served(workdir) as (proc, client):
            params = {"subject_id": "bench", "names": names, "fps": 25.0}
            # warm-up: model load + first forward on both sides
            warm = client.submit("render", params, buffers={"curves": curves[:8]})
            list(client.frames(warm))
            renderer = Renderer.from_checkpoint(subject / "avatar" / "checkpoint.pt", device="cpu")
            list(renderer.render(curves[:8]))
            # hello latency, idle server
            lat = []
            for _ in range(n_hello):
                t = time.perf_counter()
                client.hello()
                lat.append((time.perf_counter() - t) * 1000)

            # alternate the two measurements and keep the best of each (the machine is shared)
            t_local = t_wire = cpu_local = cpu_server = cpu_client = float("inf")
            for _ in range(args.rounds):
                t, c = time.perf_counter(), time.process_time()
                local = list(renderer.render(curves))
                t_local = min(t_local, time.perf_counter() - t)
                cpu_local = min(cpu_local, time.process_time() - c)
                t, c, cs = time.perf_counter(), time.process_time(), process_cpu(proc.pid)
                job = client.submit("render", params, buffers={"curves": curves})
                got = dict(client.frames(job, credit=16))
                t_wire = min(t_wire, time.perf_counter() - t)
                cpu_client = min(cpu_client, time.process_time() - c)
                cpu_server = min(cpu_server, process_cpu(proc.pid) - cs)
                assert len(got) == n_frames
            del renderer
            max_diff = max(int(np.abs(got[i].astype(int) - local[i].astype(int)).max())
                           for i in range(n_frames))

            # hello latency while a render job keeps the worker busy
            busy_job = client.submit("render", params, buffers={"curves": np.tile(curves, (20, 1))})
            busy = []
            for _ in range(max(100, n_hello // 2)):
                t = time.perf_counter()
                client.hello()
                busy.append((time.perf_counter() - t) * 1000)
            client.cancel(busy_job)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    fps_local, fps_wire = n_frames / t_local, n_frames / t_wire
    size = local[0].shape[0]
    print(f"\n## Service benchmark ({'quick' if args.quick else 'full'}; {os.cpu_count()} CPUs; "
          f"{size}x{size} frames; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
          f"setup {setup:.1f} s; load average {os.getloadavg()[0]:.1f})\n")
    print("| measure | value | baseline | ratio |")
    print("|---|---|---|---|")
    print(f"| render {n_frames} frames over the wire (raw, credit 16, PNG to disk; best of {args.rounds}) "
          f"| {fps_wire:.1f} frames/s "
          f"| in-process {fps_local:.1f} frames/s | {fps_wire / fps_local:.2f} (target >= 0.9) |")
    per = 1000 / n_frames
    print(f"| CPU per frame: server + client | {cpu_server * per:.1f} + {cpu_client * per:.1f} ms "
          f"| in-process {cpu_local * per:.1f} ms | {(cpu_server + cpu_client) / cpu_local:.2f}x |")
    print(f"| hello round trip, idle server ({n_hello}) | p50 {percentile(lat, 50):.2f} ms, "
          f"p99 {percentile(lat, 99):.2f} ms | | |")
    print(f"| hello round trip, render job running ({len(busy)}) | p50 {percentile(busy, 50):.2f} ms, "
          f"p99 {percentile(busy, 99):.2f} ms | idle p50 {percentile(lat, 50):.2f} ms | "
          f"{percentile(busy, 50) / percentile(lat, 50):.1f}x |")
    print(f"| max pixel difference wire vs in-process | {max_diff} | 0 | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
