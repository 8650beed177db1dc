"""The project's Open Job Description job templates (package data in ``backend/farm/openjd/``) and
their validation with ``openjd-model``, the specification's reference implementation.

``render-shot``: a shot in chunks of frame batches (``emo-avatar farm-chunk`` per task).
``train-and-style``: track -> train -> edit -> eval of one subject, each step after the one before.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

TEMPLATE_NAMES = ("render-shot", "train-and-style")
"""Templates shipped with the backend (``backend/farm/openjd/<name>.yaml``)."""

EXTENSIONS = ("TASK_CHUNKING",)
"""Open Job Description extensions the templates may use (render-shot's ``CHUNK[INT]``)."""


class FarmError(ValueError):
    """A job template, a parameter value or a bundle is not usable (the message says why)."""


def template_path(name: str) -> Path:
    """Path of a shipped template file."""
    if name not in TEMPLATE_NAMES:
        raise FarmError(f"unknown job template {name!r}; choose one of {', '.join(TEMPLATE_NAMES)}")
    return Path(str(resources.files("backend.farm") / "openjd" / f"{name}.yaml"))


def template_text(name: str) -> str:
    """The YAML text of a shipped template (what bundles copy as ``template.yaml``)."""
    return template_path(name).read_text(encoding="utf-8")


def decode_template(document: dict[str, Any], where: str = "template") -> Any:
    """Validate a job template document with openjd-model; return its ``JobTemplate``.

    Raises:
        FarmError: the document breaks the jobtemplate-2023-09 schema (openjd-model's message).
    """
    from openjd.model import DecodeValidationError, decode_job_template

    try:
        return decode_job_template(template=document, supported_extensions=list(EXTENSIONS))
    except DecodeValidationError as exc:
        raise FarmError(f"{where} is not a valid Open Job Description template: {exc}") from None


def load_template(name: str) -> Any:
    """The validated ``JobTemplate`` of a shipped template."""
    return decode_template(yaml.safe_load(template_text(name)), f"job template {name}")


def check_parameter_values(template: Any, values: dict[str, str], where: str = "job") -> dict[str, str]:
    """Check values against the template's parameter definitions (types, ranges, allowed values,
    required parameters) the way a farm does when the job is submitted.

    Args:
        template: a ``JobTemplate`` (``load_template``/``decode_template``).
        values: parameter name -> value as a string (PATH values absolute).
    Returns:
        Every parameter's value, defaults filled in.
    Raises:
        FarmError: listing every value openjd-model refuses.
    """
    from openjd.model import preprocess_job_parameters

    try:
        out = preprocess_job_parameters(job_template=template, job_parameter_values=dict(values),
                                        job_template_dir=Path("/"), current_working_dir=Path("/"),
                                        allow_job_template_dir_walk_up=True)
    except ValueError as exc:
        raise FarmError(f"{where}: parameter values refused: {exc}") from None
    return {k: str(v.value) for k, v in out.items()}
