"""`emo-avatar` command line: one sub-command per step of the pipeline.

Each sub-command lives in its own module that defines ``add_arguments(parser)`` and
``run(args) -> int``; this file only routes to them, importing just the one that runs so that
``emo-avatar --help`` stays fast and a missing optional piece never breaks the others.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, one-line help)
    "sample": ("backend.data.sample_cli", "synthesise the embedded sample talking-head video"),
    "track": ("backend.face.track_cli", "track a portrait video into a subject"),
    "import-tracking": ("backend.face.import_cli", "import external tracker output (npz) as a subject"),
    "train": ("backend.train.train_cli", "train an Emo-Avatar on a subject (stage 1)"),
    "stylize": ("backend.train.stylize_cli", "make a stylised reference image from a subject frame"),
    "edit": ("backend.train.edit_cli", "restyle a trained avatar from 1-4 reference images (stage 2)"),
    "render": ("backend.render_cli", "render frames from expression curves"),
    "eval": ("backend.eval_cli", "evaluate a trained avatar, or a style, on held-out frames"),
    "serve": ("backend.service.serve_cli", "run the ZeroMQ backend service"),
    "jobs": ("backend.service.jobs_cli", "list the service's jobs and their states"),
    "farm-bundle": ("backend.farm.bundle_cli", "write an Open Job Description job bundle for a render farm"),
    "farm-chunk": ("backend.farm.chunk", "render one chunk of frames (a task of the render-shot job)"),
    "demo": ("backend.demo", "run the whole pipeline end to end on the embedded sample"),
}


def _build_parser(selected: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emo-avatar", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == selected:
            importlib.import_module(module_name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    if selected not in COMMANDS:
        selected = None
    args = _build_parser(selected).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if args.command is None:
        _build_parser(None).print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
