"""`emo-avatar serve`: run the ZeroMQ backend service until shutdown (message, Ctrl-C or SIGTERM)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from backend.render_cli import COMPILE_HELP
from backend.service.lock import WorkdirBusyError
from backend.service.server import DEFAULT_MAX_MESSAGE_BYTES, Server, ServerConfig, ServerError
from protocol.connection import is_loopback_ip

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connection-file", type=Path, default=None,
                        help="where to write the connection file (default WORKDIR/connection.json); "
                             "an existing one is reused (same ports and key) so clients reconnect")
    parser.add_argument("--ip", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1); any other address needs CURVE "
                             "(automatic) or --insecure")
    parser.add_argument("--workdir", type=Path, default=Path("emo-work"),
                        help="folder for the journal, uploads, subjects and renders (default ./emo-work)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when present)")
    parser.add_argument("--compile", action="store_true", help=COMPILE_HELP)
    parser.add_argument("--allow-read", type=Path, action="append", default=[], metavar="DIR",
                        help="a directory whose files jobs may read by path (repeatable); "
                             "otherwise inputs must be uploaded")
    parser.add_argument("--insecure", action="store_true",
                        help="bind a non-loopback address without CURVE encryption")
    parser.add_argument("--resume-jobs", action="store_true",
                        help="on start, run again the jobs a previous run left queued or running")
    parser.add_argument("--max-message-mb", type=float, default=DEFAULT_MAX_MESSAGE_BYTES / 2**20,
                        help="largest accepted message in MiB (default %(default)g)")
    defaults = ServerConfig(workdir=Path("."))
    parser.add_argument("--max-active-jobs", type=int, default=defaults.max_active_jobs,
                        help="jobs queued or running at once; more are refused (default %(default)d)")
    parser.add_argument("--max-open-uploads", type=int, default=defaults.max_open_uploads,
                        help="unfinished uploads at once; more are refused (default %(default)d)")
    parser.add_argument("--retain-inputs-hours", type=float, default=defaults.retain_inputs_hours,
                        help="delete finished jobs' stored inputs (WORKDIR/jobs/<id>/) after this many "
                             "hours (default %(default)g)")
    parser.add_argument("--train-procs", type=int, default=defaults.train_procs, metavar="N",
                        help="run train jobs in N processes through torchrun (DDP: one per GPU with NCCL, "
                             "else gloo on CPU, at most one per core); 1 (default) trains in this process")


def run(args: argparse.Namespace) -> int:
    for d in args.allow_read:
        if not d.is_dir():
            print(f"error: --allow-read {d} is not a directory", file=sys.stderr)
            return 2
    if args.train_procs != 1:
        from backend.train.ddp import DistributedError, check_launch

        try:
            how = check_launch(args.train_procs, args.device)
        except DistributedError as exc:
            print(f"error: --train-procs {args.train_procs}: {exc}", file=sys.stderr)
            return 2
        log.info("train jobs run in %s (torchrun)", how)
    config = ServerConfig(workdir=args.workdir, ip=args.ip, connection_file=args.connection_file,
                          device=args.device, compile=args.compile, allow_read=list(args.allow_read),
                          insecure=args.insecure, resume_jobs=args.resume_jobs,
                          max_message_bytes=int(args.max_message_mb * 2**20),
                          max_active_jobs=args.max_active_jobs, max_open_uploads=args.max_open_uploads,
                          retain_inputs_hours=args.retain_inputs_hours, train_procs=args.train_procs)
    if not is_loopback_ip(args.ip):
        print(f"binding non-loopback address {args.ip}: "
              + ("UNENCRYPTED (--insecure)" if args.insecure else "CURVE encryption on"), file=sys.stderr)
    # everything the server writes (uploaded faces, subjects, frames, keys) is for this user only
    os.umask(0o077)
    try:
        server = Server(config)
    except WorkdirBusyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        path = server.bind()
    except (ServerError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        server.close()
        return 1
    server.install_signal_handlers()
    print(f"connection file: {path}", flush=True)
    server.serve_forever()
    # Everything is flushed and closed (journal, sockets, connection file removed): skip the
    # interpreter's slow teardown of torch & co, which only delays whoever waits for the exit.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
