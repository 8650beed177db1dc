"""How responsive is a running server? Signed hellos every 10 ms from their own process.

    python -m backend.service.hello_probe CONNECTION_FILE [--timeout S] [--warm-up]

Prints ``ready`` once connected (after one untimed hello with ``--warm-up``), then sends a hello
every 10 ms until a line arrives on stdin, and prints one line of space-separated
``send_time,round_trip,state`` triples: ``send_time`` on the system-wide monotonic clock (s, so a
caller's ``time.monotonic()`` marks compare with it), ``round_trip`` in s, ``state`` the server's
(``starting``, ``ready``, ...). A hello that fails ends the run: the line then ends with
``error:<exception type>`` and the exit status is 1. Used by ``bench/service.py`` and the
maximal-message test.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from protocol.client import Client

INTERVAL_S = 0.01


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
