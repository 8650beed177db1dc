"""Wire benchmark: the protocol envelope vs raw ``send_multipart`` of the same bytes.

Two processes, as in production (backend and Blender are separate): a "server" child with a
ROUTER and this "client" process with a DEALER, over tcp://127.0.0.1. The same socket pair
carries raw and protocol traffic in the same run, in alternating trials (best of N):

- 256x256x3 float16 UV maps, one per message (``job_submit`` render with T=1; client -> server);
- 512x512 PNG frames (cv2, compression 1) as ``frame`` messages (server -> client); the
  client also verifies the frame's crc32 content checksum as ``Client.frames`` does;
- small-message round trip latency p50/p99: raw echo vs ``hello`` -> ``hello_reply``.

Protocol rows decode fully (signature, msgpack, schema, shapes) and differ in the buffer
checksum scheme (none / crc32 / hmac-sha256). UV rows also get a "minimal envelope" row: the
least any signed envelope of this layout can cost in Python (one ``hmac.digest`` over the three
dicts, msgpack of a header and of the content with its buffer descriptor, no schema validation,
no buffer checksum; the receiver verifies the signature, unpacks and views the buffer). It is not
the protocol, only its lower bound measured in the same run. Prints a markdown table.

    .venv/bin/python bench/wire.py --quick      # < 30 s
"""

from __future__ import annotations

import argparse
import hmac
import multiprocessing as mp
import os
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import zmq

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from protocol.buffers import verify_checksum  # noqa: E402
from protocol.envelope import DELIM, PROTO, Session  # noqa: E402

KEY = b"bench-key-0123456789abcdef0123456789"
IDENT = b"client"
HWM = 16  # bounded queues: the sender waits for the receiver
CHECKSUMS = ("none", "crc32", "hmac-sha256")
MINIMAL = "minimal envelope"
"""Row key of the lower bound (see the module docstring)."""


BATCH = 16
"""UV maps per message in the batched rows (a render job_submit carries T maps at once)."""


def uv_payload(t: int = 1) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    uv = np.random.default_rng(1).random((t, 256, 256, 3)).astype(np.float16)
    params = {"subject_id": "s", "names": [f"c{i:02d}" for i in range(52)], "fps": 24.0}
    return uv, np.zeros((t, 52), np.float32), params


def png_bytes(size: int = 512) -> bytes:
    import cv2  # the bench may use cv2; protocol/ never does

    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.stack([x, y, 0.5 + 0.5 * np.sin(8 * x * y)], axis=-1)
    img = (img * 255 + np.random.default_rng(0).normal(0, 4, img.shape)).clip(0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    assert ok
    return buf.tobytes()


def minimal_frames(uv: np.ndarray, params: dict[str, Any], seq: int) -> list[Any]:
    """The least a signed envelope carrying ``uv`` can be: [DELIM, signature, header, parent,
    content, buffer] with one HMAC over the dicts, no validation and no buffer checksum."""
    header = msgpack.packb({"msg_id": os.urandom(16).hex(), "session": "bench", "msg_type": "job_submit",
                            "proto": PROTO, "date": "", "seq": seq})
    parent = msgpack.packb({})
    content = msgpack.packb({"kind": "render", "params": params,
                             "_buffers": [{"name": "uv_maps", "dtype": "float16", "shape": list(uv.shape)}]})
    signature = hmac.digest(KEY, header + parent + content, "sha256")
    return [DELIM, signature, header, parent, content, memoryview(uv).cast("B")]


def minimal_decode(frames: list[Any]) -> np.ndarray:
    """Verify and decode :func:`minimal_frames` output (after the ROUTER's identity frame)."""
    signature, header, parent, content = (f.bytes for f in frames[2:6])
    if not hmac.compare_digest(signature, hmac.digest(KEY, header + parent + content, "sha256")):
        raise ValueError("bad signature")
    msgpack.unpackb(header)
    msgpack.unpackb(parent)
    desc = msgpack.unpackb(content)["_buffers"][0]
    return np.frombuffer(frames[6].buffer, desc["dtype"]).reshape(desc["shape"])


# -- server process -------------------------------------------------------------------------------


def server(port_queue: Any) -> None:
    """Child: ROUTER for data, PAIR for commands ("uv"/"png"/"echo", mode, checksum, n)."""
    ctx = zmq.Context()
    router, ctl = ctx.socket(zmq.ROUTER), ctx.socket(zmq.PAIR)
    router.sndhwm = router.rcvhwm = HWM
    router.router_mandatory = 1  # block at the HWM instead of dropping
    port_queue.put((router.bind_to_random_port("tcp://127.0.0.1"), ctl.bind_to_random_port("tcp://127.0.0.1")))
    uvs = {"uv": uv_payload(1), "uvbatch": uv_payload(BATCH)}
    png = png_bytes()
    png_arr = np.frombuffer(png, np.uint8)
    png_checksum = f"crc32:{zlib.crc32(png) & 0xFFFFFFFF:08x}"
    receiver = Session(KEY)
    while True:
        what, mode, checksum, n = ctl.recv_pyobj()
        if what == "quit":
            break
        cpu0 = time.process_time()
        session = Session(KEY, checksum=checksum)
        for i in range(n):
            if what in uvs:
                shape = uvs[what][0].shape
                if mode == "raw":
                    _, frame = router.recv_multipart(copy=False)
                    np.frombuffer(frame.buffer, np.float16).reshape(shape)
                elif mode == "minimal":
                    assert minimal_decode(router.recv_multipart(copy=False)).shape == shape
                else:
                    assert receiver.recv(router).buffers["uv_maps"].shape == shape
            elif what == "png":
                if mode == "raw":
                    router.send_multipart([IDENT, png], copy=False)
                else:
                    session.send(router, "frame", {"job_id": "j", "index": i, "total": n, "encoding": "png",
                                                   "checksum": png_checksum},
                                 buffers={"image": png_arr}, ident=IDENT)
            elif what == "echo":
                if mode == "raw":
                    router.send_multipart(router.recv_multipart())
                else:
                    msg = receiver.recv(router)
                    session.send_reply(router, msg, {"server": "bench", "proto": "1.0", "instance_id": "i",
                                                     "device": "cpu"})
        ctl.send_pyobj(time.process_time() - cpu0)  # CPU seconds this process spent
    router.close(0)
    ctl.close(0)
    ctx.term()


# -- client side ----------------------------------------------------------------------------------


class Bench:
    def __init__(self) -> None:
        self.ctx = zmq.Context()
        queue = mp.get_context("spawn").Queue()
        self.proc = mp.get_context("spawn").Process(target=server, args=(queue,), daemon=True)
        self.proc.start()
        data_port, ctl_port = queue.get(timeout=60)
        self.dealer, self.ctl = self.ctx.socket(zmq.DEALER), self.ctx.socket(zmq.PAIR)
        self.dealer.sndhwm = self.dealer.rcvhwm = HWM
        self.dealer.identity = IDENT
        self.dealer.connect(f"tcp://127.0.0.1:{data_port}")
        self.ctl.connect(f"tcp://127.0.0.1:{ctl_port}")
        self.uvs = {"uv": uv_payload(1), "uvbatch": uv_payload(BATCH)}
        self.session = Session(KEY)
        self.run("echo", "raw", "none", 1)  # establish the route to IDENT

    def run(self, what: str, mode: str, checksum: str, n: int) -> tuple[Any, float]:
        """(seconds for ``n`` messages (uv, png) or per-message round trips (echo), CPU seconds
        both processes spent)."""
        self.ctl.send_pyobj((what, mode, checksum, n))
        session = Session(KEY, checksum=checksum)
        uv, curves, params = self.uvs["uvbatch" if what == "uvbatch" else "uv"]
        raw_uv = memoryview(uv).cast("B")
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        rtts = np.empty(n)
        for i in range(n):
            if what in self.uvs:
                if mode == "raw":
                    self.dealer.send_multipart([raw_uv], copy=False)
                elif mode == "minimal":
                    self.dealer.send_multipart(minimal_frames(uv, params, i), copy=False)
                else:
                    session.send(self.dealer, "job_submit", {"kind": "render", "params": params},
                                 buffers={"curves": curves, "uv_maps": uv})
            elif what == "png":
                if mode == "raw":
                    self.dealer.recv_multipart(copy=False)
                else:
                    msg = self.session.recv(self.dealer)
                    verify_checksum(memoryview(msg.buffers["image"]).cast("B"), msg.content["checksum"])
            else:
                t = time.perf_counter()
                if mode == "raw":
                    self.dealer.send(b"hello")
                    self.dealer.recv()
                else:
                    session.send(self.dealer, "hello", {"client": "bench"})
                    assert session.recv(self.dealer).msg_type == "hello_reply"
                rtts[i] = time.perf_counter() - t
        child_cpu = self.ctl.recv_pyobj()  # the child is done: every message was received
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0 + child_cpu
        return (rtts if what == "echo" else wall), cpu

    def close(self) -> None:
        self.ctl.send_pyobj(("quit", "", "", 0))
        self.proc.join(10)
        self.dealer.close(0)
        self.ctl.close(0)
        self.ctx.term()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer messages and trials (< 30 s)")
    args = ap.parse_args(argv)
    n, trials, n_lat = (100, 3, 1000) if args.quick else (400, 5, 5000)
    bench = Bench()
    nbytes = {"uv": bench.uvs["uv"][0].nbytes, "uvbatch": bench.uvs["uvbatch"][0].nbytes,
              "png": len(png_bytes())}
    rows = []
    try:
        for what, label in (("uv", "UV map 256x256x3 f16, 1/msg"), (
                "uvbatch", f"UV maps 256x256x3 f16, {BATCH}/msg"), ("png", "PNG frame 512x512")):
            count = max(24, n // 4) if what == "uvbatch" else n
            keys = ["raw", *CHECKSUMS] + ([MINIMAL] if what != "png" else [])
            best = {key: (np.inf, np.inf) for key in keys}
            for _ in range(trials):  # alternate raw and protocol so load changes hit both
                for key in keys:
                    mode = key if key in ("raw", MINIMAL) else "protocol"
                    wall, cpu = bench.run(what, "minimal" if key == MINIMAL else mode,
                                          key if key in CHECKSUMS else "none", count)
                    best[key] = (min(best[key][0], wall / count), min(best[key][1], cpu / count))
            for key in keys[1:]:
                rows.append((label, nbytes[what], key, best["raw"], best[key]))
        raw_lat, raw_lat_cpu = bench.run("echo", "raw", "none", n_lat)
        proto_lat, proto_lat_cpu = bench.run("echo", "protocol", "crc32", n_lat)
    finally:
        bench.close()

    print(f"\n## bench/wire.py ({'quick' if args.quick else 'full'}: {n} msgs, best of {trials}; "
          "tcp://127.0.0.1; server and client in separate processes)\n")
    print("| payload | bytes/msg | buffer checksum (or lower bound) | raw msg/s | protocol msg/s "
          "| protocol GB/s | ratio | wall cost/msg | CPU/msg raw | CPU/msg protocol | CPU ratio |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, size, checksum, (raw_s, raw_cpu), (proto_s, proto_cpu) in rows:
        print(f"| {label} | {size:,} | {checksum} | {1 / raw_s:,.0f} | {1 / proto_s:,.0f} | "
              f"{size / proto_s / 1e9:.2f} | {raw_s / proto_s:.2f} | {(proto_s - raw_s) * 1e6:+.0f} us | "
              f"{raw_cpu * 1e6:.0f} us | {proto_cpu * 1e6:.0f} us | {raw_cpu / proto_cpu:.2f} |")
    print("\n| round trip (small message) | p50 | p99 | CPU per round trip (both processes) |")
    print("|---|---:|---:|---:|")
    for label, lat, cpu in (("raw echo", raw_lat, raw_lat_cpu),
                            ("hello -> hello_reply", proto_lat, proto_lat_cpu)):
        print(f"| {label} | {np.percentile(lat, 50) * 1e3:.3f} ms | {np.percentile(lat, 99) * 1e3:.3f} ms | "
              f"{cpu / n_lat * 1e6:.0f} us |")
    print("\nCPU/msg: user+system CPU of both processes per message (less sensitive to machine load "
          "than wall time).")
    print("PNG rows include the client's crc32 check of the frame bytes (frame 'checksum' field).")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("targets: ratio >= 0.90, hello p50 < 1 ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
