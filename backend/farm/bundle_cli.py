"""`emo-avatar farm-bundle SUBJECT --curves FILE [--style S] -o BUNDLE [--frames FIRST-LAST]
[--frames-dir DIR] [--uv DIR] [--batch N] [--batches-per-task M] [--resolution PX]`: write a
``render-shot`` job bundle (template.yaml, parameter_values.yaml, asset_references.yaml) that
``deadline bundle submit BUNDLE`` submits to AWS Deadline Cloud, or ``openjd run`` runs here.

`emo-avatar farm-bundle --check BUNDLE [--json]` checks an existing bundle (template, values,
assets); ``--json`` prints its values for ``openjd run BUNDLE/template.yaml -p JSON``.

Every input is checked before anything is written; a problem is one ``error:`` line, exit code 2.
Nothing contacts a farm.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from backend.farm.bundle import RenderJob
from backend.farm.chunk import MAX_RESOLUTION


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("subject", type=Path, nargs="?", help="subject folder with a trained avatar/")
    parser.add_argument("--curves", type=Path, help="expression curves of the shot (.json, .csv, .npz)")
    parser.add_argument("-o", "--output", type=Path, help="bundle folder to write")
    parser.add_argument("--style", default=None, help="a .style file, or a style name of the subject")
    parser.add_argument("--frames", default=None, metavar="FIRST-LAST",
                        help="frame numbers to render, ends inclusive (default: every frame of the curves)")
    parser.add_argument("--frames-dir", type=Path, default=None, metavar="DIR",
                        help="where the job writes the frames (default: BUNDLE/frames)")
    parser.add_argument("--uv", type=Path, default=None, metavar="DIR",
                        help="per-frame UV maps NNNNNN.npy (Blender's UV pass); default: rasterise the rig")
    parser.add_argument("--batch", type=int, default=RenderJob.batch, help="frames per forward pass (1-64)")
    parser.add_argument("--batches-per-task", type=int, default=RenderJob.batches_per_task,
                        help=f"batches per farm task (1-150, default {RenderJob.batches_per_task})")
    parser.add_argument("--resolution", type=int, default=0,
                        help=f"output side in px, 0 (the avatar's size) or 8-{MAX_RESOLUTION}")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda on the workers")
    parser.add_argument("--name", default=None,
                        help="shot name shown in the job's name (default: the curves file's stem)")
    parser.add_argument("--worker-command", default="emo-avatar", metavar="CMD",
                        help="the emo-avatar command on the workers (a full path when not on their PATH)")
    parser.add_argument("--check", type=Path, default=None, metavar="BUNDLE",
                        help="check an existing bundle instead of writing one")
    parser.add_argument("--json", action="store_true",
                        help="with --check: print the parameter values as one JSON object "
                             "(for `openjd run BUNDLE/template.yaml -p JSON`)")


def run(args: argparse.Namespace) -> int:
    from backend.farm.bundle import (
        OUTPUT_DIRNAME,
        bundle_parameter_values,
        check_bundle,
        write_render_bundle,
    )
    from backend.farm.templates import FarmError
    from protocol.errors import CurveError

    try:
        if args.check is not None:
            values = check_bundle(args.check)
            if args.json:
                print(json.dumps(bundle_parameter_values(args.check)))
            else:
                print(f"{args.check}: ok (frames {values.get('Frames', '?')}, {len(values)} parameters)")
            return 0
        if args.subject is None or args.curves is None or args.output is None:
            raise FarmError("give SUBJECT, --curves FILE and -o BUNDLE (or --check BUNDLE)")
        if args.resolution != 0 and not 8 <= args.resolution <= MAX_RESOLUTION:
            raise FarmError(f"--resolution must be 0 or 8..{MAX_RESOLUTION}, got {args.resolution}")
        job = RenderJob(subject=args.subject, curves=args.curves, style=args.style, frames=args.frames,
                        output=args.frames_dir or args.output / OUTPUT_DIRNAME, uv_maps=args.uv,
                        batch=args.batch, batches_per_task=args.batches_per_task,
                        resolution=args.resolution, device=args.device,
                        shot_name=args.name or args.curves.stem, emo_avatar=args.worker_command)
        bundle = write_render_bundle(job, args.output)
    except (FileNotFoundError, FarmError, OSError, CurveError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(bundle)
    return 0
