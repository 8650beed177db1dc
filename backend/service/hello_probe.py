"""How responsive is a running server? Signed hellos every 10 ms from their own process.

    python -m backend.service.hello_probe CONNECTION_FILE [--timeout S] [--warm-up]

Prints ``ready`` once connected (after one untimed hello with ``--warm-up``), then sends a hello
every 10 ms until a line arrives on stdin, and prints one line of space-separated
``send_time,round_trip,state`` triples: ``send_time`` on the system-wide monotonic clock (s, so a
caller's ``time.monotonic()`` marks compare with it), ``round_trip`` in s, ``state`` the server's
(``starting``, ``ready``, ...). A hello that fails ends the run: the line then ends with
``error:<exception type>`` and the exit status is 1. Used by ``bench/service.py`` and the
maximal-message test, which also share what they measure it against from here: the wait for the
end of the server's start-up (``wait_started``) and the maximal render message
(``maximal_render_buffers``).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import numpy as np

from protocol.client import Client
from protocol.limits import DEFAULT_MAX_MESSAGE_BYTES

INTERVAL_S = 0.01


def wait_started(client: Client, timeout: float = 300.0, interval: float = 0.05) -> float:
    """Wait until the server has finished its start-up import (its hello state is no longer
    ``starting``); returns the seconds waited. Raises ``TimeoutError`` after ``timeout`` s."""
    t0 = time.monotonic()
    while client.hello().get("state") == "starting":
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"the server stayed in state starting for {timeout:.0f} s")
        time.sleep(interval)
    return time.monotonic() - t0


def maximal_render_buffers(names: list[str], size: int, limit: int = DEFAULT_MAX_MESSAGE_BYTES,
                           spare: int = 1 << 20) -> dict[str, np.ndarray]:
    """The buffers of the largest render ``job_submit`` under ``limit`` bytes (``spare`` left for
    the envelope): as many rows as fit of zero curves (T, len(names)) float32 and UV maps
    (T, size, size, 3) float16 with coverage 1 (every pixel on the face)."""
    rows = (limit - spare) // (size * size * 3 * 2 + 4 * len(names))
    uv = np.zeros((rows, size, size, 3), np.float16)
    uv[..., 2] = 1.0
    return {"curves": np.zeros((rows, len(names)), np.float32), "uv_maps": uv}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("connection_file")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds one hello may take")
    ap.add_argument("--warm-up", action="store_true", help="one untimed hello before 'ready'")
    args = ap.parse_args(argv)
    client = Client.from_connection_file(args.connection_file, timeout=args.timeout, retries=0)
    if args.warm_up:
        client.hello()
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    print("ready", flush=True)
    samples: list[str] = []
    error = None
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            state = client.hello().get("state")
        except Exception as exc:  # the server went away or stalled: report what was measured
            error = type(exc).__name__
            break
        samples.append(f"{t0:.6f},{time.monotonic() - t0:.6f},{state}")
        time.sleep(INTERVAL_S)
    print(" ".join(samples + ([f"error:{error}"] if error else [])), flush=True)
    return 1 if error else 0


if __name__ == "__main__":
    raise SystemExit(main())
