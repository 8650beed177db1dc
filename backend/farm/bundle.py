"""Job bundles for ``render-shot``: the folder layout AWS Deadline Cloud's ``deadline bundle submit``
reads, and any Open Job Description runtime (``openjd run BUNDLE/template.yaml
-p file://BUNDLE/parameter_values.json``...) can run::

    BUNDLE/
      template.yaml           the render-shot job template (a copy of backend/farm/openjd/)
      parameter_values.yaml   parameterValues: [{name, value}, ...], every PATH absolute
      asset_references.yaml   assetReferences: inputs (filenames, directories), outputs (directories)
      inputs/                 optional: files exported with the job (Blender's curves and UV maps)

Everything is checked before the first file is written: the subject folder and its checkpoint,
the curves (and the frame range within them), the style file, the UV maps of every frame, the
parameter values against the template (openjd-model) and that the output folder can be written.
The three files are written atomically, so a bundle is never half-written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from backend.farm.outputs import OutputFolderError, check_output_folder
from backend.farm.ranges import RangeError, format_range, parse_range
from backend.farm.templates import (
    FarmError,
    check_parameter_values,
    decode_template,
    load_template,
    template_text,
)
from backend.paths import checkpoint_path, frame_file_name
from protocol.fileio import atomic_write_text

TEMPLATE_FILE = "template.yaml"
PARAMETERS_FILE = "parameter_values.yaml"
ASSETS_FILE = "asset_references.yaml"
OUTPUT_DIRNAME = "frames"
"""Default output folder inside the bundle when no ``--frames-dir`` is given."""
INPUTS_DIRNAME = "inputs"
"""Folder inside a bundle for inputs exported with the job (the add-on's curves and UV maps)."""


@dataclass
class RenderJob:
    """What one ``render-shot`` job renders (paths as given; made absolute when written).

    Attributes:
        subject: subject folder with a trained avatar.
        curves: expression curves file (.json, .csv, .npz).
        output: folder the frames go to.
        style: a .style file, a style name of the subject, or None.
        frames: "FIRST-LAST" frame numbers (None: every frame of the curves).
        uv_maps: folder of per-frame UV maps NNNNNN.npy, or None to rasterise the rig.
        batch: frames per forward pass.
        batches_per_task: batches per farm task.
        resolution: output side in px (0: the avatar's size).
        device: "auto", "cpu" or "cuda".
        shot_name: shown in the job's name.
        emo_avatar: the emo-avatar command on the workers.
    """

    subject: Path
    curves: Path
    output: Path
    style: Path | str | None = None
    frames: str | None = None
    uv_maps: Path | None = None
    batch: int = 8
    batches_per_task: int = 25
    resolution: int = 0
    device: str = "auto"
    shot_name: str = "shot"
    emo_avatar: str = "emo-avatar"


def _abs(p: Path | str) -> str:
    return str(Path(p).expanduser().absolute())


def resolve_render_job(job: RenderJob) -> tuple[dict[str, str], dict[str, Any]]:
    """Check a render job's inputs; return (parameter values, asset references document).

    Raises:
        FileNotFoundError: a missing subject, checkpoint, curves file, style file or UV maps.
        FarmError: a frame range outside the curves, or parameter values the template refuses.
        OutputFolderError: the output folder cannot be written.
        CurveError: an unreadable curves file.
    """
    from backend.render_cli import load_curves, resolve_style

    subject = Path(job.subject)
    if not subject.is_dir():
        raise FileNotFoundError(f"subject folder {subject} not found")
    if not checkpoint_path(subject).is_file():
        raise FileNotFoundError(f"subject {subject} has no trained avatar ({checkpoint_path(subject)} is "
                                "missing; run emo-avatar train first)")
    curves = load_curves(Path(job.curves))
    first_c, last_c = curves.frame_start, curves.frame_start + curves.n_frames - 1
    try:
        frames = parse_range(job.frames) if job.frames else list(range(first_c, last_c + 1))
    except RangeError as exc:
        raise FarmError(f"--frames: {exc}") from None
    if frames != list(range(frames[0], frames[-1] + 1)):
        raise FarmError(f"--frames {job.frames}: give the shot as one range FIRST-LAST")
    if frames[0] < first_c or frames[-1] > last_c:
        raise FarmError(f"--frames {job.frames} reaches outside the curves file {job.curves} "
                        f"(frames {first_c}-{last_c})")
    style = resolve_style(subject, Path(job.style)) if job.style else None
    if style is not None and not style.is_file():
        raise FileNotFoundError(f"style file {style} not found")
    if job.uv_maps is not None:
        uv = Path(job.uv_maps)
        if not uv.is_dir():
            raise FileNotFoundError(f"UV maps folder {uv} not found")
        missing = [f for f in frames if not (uv / frame_file_name(f, ".npy")).is_file()]
        if missing:
            raise FileNotFoundError(f"UV maps folder {uv} has no map for frames {format_range(missing)}")
    output = check_output_folder(Path(job.output), create=False)
    values = {
        "ShotName": job.shot_name, "EmoAvatar": job.emo_avatar, "Subject": _abs(subject),
        "Curves": _abs(job.curves), "Style": _abs(style) if style else "",
        "UVMaps": _abs(job.uv_maps) if job.uv_maps else "", "Output": str(output),
        "Frames": f"{frames[0]}-{frames[-1]}", "BatchesPerTask": str(job.batches_per_task),
        "Batch": str(job.batch), "Resolution": str(job.resolution), "Device": job.device,
    }
    check_parameter_values(load_template("render-shot"), values, "render-shot")
    inputs_files = sorted(v for v in (values["Curves"], values["Style"]) if v)
    inputs_dirs = sorted(v for v in (values["Subject"], values["UVMaps"]) if v)
    assets = {"assetReferences": {
        "inputs": {"filenames": inputs_files, "directories": inputs_dirs},
        "outputs": {"directories": [values["Output"]]},
        "referencedPaths": [],
    }}
    return values, assets


def write_render_bundle(job: RenderJob, bundle: Path) -> Path:
    """Check ``job`` and write its job bundle folder; return the bundle path.

    Nothing is written unless every check passes. An existing bundle folder is updated in place
    (each file replaced atomically); a folder holding other files is refused.

    Raises:
        see :func:`resolve_render_job`; FarmError when ``bundle`` is a file or another folder.
    """
    bundle = Path(bundle)
    values, assets = resolve_render_job(job)
    if bundle.exists():
        if not bundle.is_dir():
            raise FarmError(f"bundle {bundle} exists and is not a folder")
        ours = {TEMPLATE_FILE, PARAMETERS_FILE, ASSETS_FILE, OUTPUT_DIRNAME, INPUTS_DIRNAME}
        other = sorted(p.name for p in bundle.iterdir() if p.name not in ours)
        if other:
            raise FarmError(f"bundle folder {bundle} holds other files ({', '.join(other[:5])}); "
                            "give a new or empty folder")
    check_output_folder(bundle, create=True)
    atomic_write_text(bundle / TEMPLATE_FILE, template_text("render-shot"))
    definitions = yaml.safe_load(template_text("render-shot"))["parameterDefinitions"]
    types = {d["name"]: d["type"] for d in definitions}
    params = {"parameterValues": [{"name": k, "value": int(v) if types[k] == "INT" else v}
                                  for k, v in values.items()]}
    atomic_write_text(bundle / PARAMETERS_FILE, yaml.safe_dump(params, sort_keys=False))
    atomic_write_text(bundle / ASSETS_FILE, yaml.safe_dump(assets, sort_keys=False))
    return bundle


def read_yaml(path: Path) -> Any:
    """A bundle file's YAML document (FarmError naming the file when it is missing or broken)."""
    if not path.is_file():
        raise FarmError(f"{path} not found (not a job bundle?)")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise FarmError(f"{path} is not valid YAML: {exc}") from None


def bundle_parameter_values(bundle: Path) -> dict[str, str]:
    """``parameter_values.yaml`` of a bundle as {name: value} (what ``openjd run -p`` takes)."""
    params = read_yaml(Path(bundle) / PARAMETERS_FILE) or {}
    try:
        return {str(p["name"]): str(p["value"]) for p in params.get("parameterValues", [])}
    except (TypeError, KeyError, AttributeError):
        where = Path(bundle) / PARAMETERS_FILE
        raise FarmError(f"{where}: expected parameterValues: [{{name, value}}, ...]") from None


def check_bundle(bundle: Path) -> dict[str, str]:
    """Check a job bundle as a farm would before running it; return its parameter values.

    The template must validate, the parameter values must satisfy it, every input asset must
    exist and every output folder must be writable.

    Raises:
        FarmError, FileNotFoundError, OutputFolderError: the first problem found, by name.
    """
    bundle = Path(bundle)
    template = decode_template(read_yaml(bundle / TEMPLATE_FILE), str(bundle / TEMPLATE_FILE))
    values = check_parameter_values(template, bundle_parameter_values(bundle), str(bundle))
    refs = (read_yaml(bundle / ASSETS_FILE) or {}) if (bundle / ASSETS_FILE).exists() else {}
    refs = refs.get("assetReferences", {}) if isinstance(refs, dict) else {}
    inputs = refs.get("inputs", {}) or {}
    missing = [f for f in inputs.get("filenames", []) or [] if not Path(f).is_file()]
    missing += [d for d in inputs.get("directories", []) or [] if not Path(d).is_dir()]
    if missing:
        raise FileNotFoundError(f"bundle {bundle}: input assets missing: {', '.join(missing)}")
    for d in (refs.get("outputs", {}) or {}).get("directories", []) or []:
        check_output_folder(Path(d), create=False)
    return values


__all__ = ["FarmError", "OutputFolderError", "RenderJob", "bundle_parameter_values", "check_bundle",
           "resolve_render_job", "write_render_bundle"]
