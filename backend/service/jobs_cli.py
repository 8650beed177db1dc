"""`emo-avatar jobs`: list the service's jobs and their states."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from protocol.errors import ProtocolError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connection-file", type=Path, default=Path("emo-work") / "connection.json",
                        help="the backend's connection file (default ./emo-work/connection.json)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the backend")


def format_jobs(jobs: list[dict]) -> str:
    """A plain-text table: id, kind, state, progress, updated, error."""
    rows = [("JOB", "KIND", "STATE", "PROGRESS", "UPDATED", "ERROR")]
    for j in jobs:
        total = j.get("total") or 0
        progress = f"{j.get('stage') or ''} {j.get('step', 0)}/{total}".strip() if total else ""
        rows.append((j["job_id"], j["kind"], j["state"], progress, (j.get("updated") or "")[:19],
                     (j.get("error") or "")[:60]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def run(args: argparse.Namespace) -> int:
    from protocol.client import Client

    try:
        client = Client.from_connection_file(args.connection_file, timeout=args.timeout)
        try:
            jobs = client.jobs()
        finally:
            client.close()
    except ProtocolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_jobs([j if isinstance(j, dict) else j.to_dict() for j in jobs]) if jobs else "no jobs")
    return 0
