"""The Open Job Description templates validate with openjd-model, their commands parse with the
real emo-avatar parsers, their steps depend on each other in order, and out-of-range parameter
values are refused before any task runs."""

from __future__ import annotations

import argparse
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from backend.cli import COMMANDS
from backend.farm.ranges import RangeError, format_range, parse_range
from backend.farm.templates import (
    TEMPLATE_NAMES,
    FarmError,
    check_parameter_values,
    load_template,
    template_path,
    template_text,
)

OPENJD = Path(sys.executable).with_name("openjd")
RENDER_VALUES = {"Subject": "/farm/anna", "Curves": "/farm/shot.json", "Output": "/farm/out",
                 "Frames": "1001-1100"}
TRAIN_VALUES = {"Video": "/farm/anna.mp4", "Reference": "/farm/ink.png", "Subject": "/farm/anna"}


def _job(name: str, values: dict[str, str]):
    """(openjd Job, every parameter's value with defaults) for a shipped template."""
    from openjd.model import create_job, preprocess_job_parameters

    t = load_template(name)
    vals = preprocess_job_parameters(job_template=t, job_parameter_values=values, job_template_dir=Path("/"),
                                     current_working_dir=Path("/"), allow_job_template_dir_walk_up=True)
    return create_job(job_template=t, job_parameter_values=vals), {k: str(v.value) for k, v in vals.items()}


def _fill(args, values: dict[str, str]) -> list[str]:
    """An action's args with ``{{Param.X}}`` / ``{{Task.Param.X}}`` replaced by ``values``."""
    return [re.sub(r"\{\{\s*(?:Task\.)?Param\.(\w+)\s*\}\}", lambda m: values[m.group(1)], str(a))
            for a in args]


def _parse_command(args: list[str]) -> argparse.Namespace:
    """Parse an action's args with the emo-avatar sub-command's own parser."""
    module = importlib.import_module(COMMANDS[args[0]][0])
    parser = argparse.ArgumentParser(prog=f"emo-avatar {args[0]}", exit_on_error=False)
    module.add_arguments(parser)
    return parser.parse_args(args[1:])


def test_templates_are_package_data_and_validate() -> None:
    for name in TEMPLATE_NAMES:
        assert template_path(name).is_file()
        doc = yaml.safe_load(template_text(name))
        assert doc["specificationVersion"] == "jobtemplate-2023-09"
        load_template(name)  # openjd-model's own validation
    render = yaml.safe_load(template_text("render-shot"))
    assert render["extensions"] == ["TASK_CHUNKING"]
    (chunk,) = render["steps"][0]["parameterSpace"]["taskParameterDefinitions"]
    assert chunk["type"] == "CHUNK[INT]"
    with pytest.raises(FarmError, match="unknown job template"):
        template_path("render-everything")


def test_bundle_defaults_are_the_template_defaults() -> None:
    from backend.farm.bundle import RenderJob

    defaults = {d["name"]: d.get("default")
                for d in yaml.safe_load(template_text("render-shot"))["parameterDefinitions"]}
    job = RenderJob(subject=Path("s"), curves=Path("c"), output=Path("o"))
    assert (job.batch, job.batches_per_task, job.resolution, job.device, job.emo_avatar) == (
        defaults["Batch"], defaults["BatchesPerTask"], defaults["Resolution"], defaults["Device"],
        defaults["EmoAvatar"])


def test_render_shot_tasks_are_batches_and_parse_as_farm_chunk() -> None:
    from openjd.model import StepParameterSpaceIterator

    job, values = _job("render-shot", {**RENDER_VALUES, "Batch": "8", "BatchesPerTask": "6"})
    (step,) = job.steps
    chunks = [t["BatchStart"].value for t in StepParameterSpaceIterator(space=step.parameterSpace)]
    starts = [s for c in chunks for s in parse_range(c)]
    assert starts == list(range(1001, 1101, 8))  # every batch once, in order
    assert len(chunks) == 3  # 13 batches in tasks of at most 6
    args = _fill(step.script.actions.onRun.args, {**values, "BatchStart": chunks[0]})
    assert str(step.script.actions.onRun.command) == "{{Param.EmoAvatar}}" and args[0] == "farm-chunk"
    ns = _parse_command(args)  # every option exists in the real CLI
    assert (ns.batches, ns.batch, ns.shot, ns.device) == (chunks[0], 8, "1001-1100", "auto")


def test_train_and_style_steps_run_in_order_and_parse() -> None:
    job, values = _job("train-and-style", {**TRAIN_VALUES, "TrainProcesses": "2"})
    names = [s.name for s in job.steps]
    assert names == ["Track", "Train", "Edit", "Eval"]
    deps = {s.name: [d.dependsOn for d in (s.dependencies or [])] for s in job.steps}
    assert deps == {"Track": [], "Train": ["Track"], "Edit": ["Train"], "Eval": ["Edit"]}
    for step in job.steps:
        args = _fill(step.script.actions.onRun.args, values)
        assert args[0] == step.name.lower()
        ns = _parse_command(args)  # every option exists in the real CLI
        if step.name == "Train":
            assert (ns.nproc, ns.resume, ns.preset) == (2, True, "cpu")


def test_preset_values_are_the_training_presets() -> None:
    """The template's Preset choices are backend/train/presets.py's PRESETS (one source of truth),
    and each one reaches `emo-avatar train --preset` through the real parser."""
    from backend.train.presets import PRESETS

    doc = yaml.safe_load(template_text("train-and-style"))
    preset = next(p for p in doc["parameterDefinitions"] if p["name"] == "Preset")
    assert preset["allowedValues"] == list(PRESETS)
    for name in PRESETS:
        job, values = _job("train-and-style", {**TRAIN_VALUES, "Preset": name})
        train = next(s for s in job.steps if s.name == "Train")
        assert _parse_command(_fill(train.script.actions.onRun.args, values)).preset == name


@pytest.mark.parametrize(("name", "values", "message"), [
    ("render-shot", {**RENDER_VALUES, "Batch": "0"}, "Batch must be at least 1"),
    ("render-shot", {**RENDER_VALUES, "BatchesPerTask": "151"}, "BatchesPerTask must be at most 150"),
    ("render-shot", {**RENDER_VALUES, "Resolution": "5000"}, "Resolution must be at most 4096"),
    ("render-shot", {**RENDER_VALUES, "Device": "tpu"}, "Device"),
    ("render-shot", {k: v for k, v in RENDER_VALUES.items() if k != "Curves"}, "Curves"),
    ("train-and-style", {**TRAIN_VALUES, "Preset": "huge"}, "Preset"),
    ("train-and-style", {**TRAIN_VALUES, "TrainProcesses": "0"}, "TrainProcesses must be at least 1"),
])
def test_out_of_range_parameters_are_refused(name: str, values: dict[str, str], message: str) -> None:
    with pytest.raises(FarmError, match=message):
        check_parameter_values(load_template(name), values, name)


def test_openjd_run_refuses_an_out_of_range_value_before_any_task(tmp_path: Path) -> None:
    out = tmp_path / "frames"
    params = {**RENDER_VALUES, "Output": str(out), "Batch": "65"}
    proc = subprocess.run([str(OPENJD), "run", str(template_path("render-shot")), "-p", json.dumps(params)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Batch must be at most 64" in proc.stdout + proc.stderr
    assert "Running Task" not in proc.stdout and not out.exists()


@pytest.mark.parametrize("expr", ["7", "1-10", "1-3,5,7-20:2", "0-40:8", "-3-2", "100,108", "5-5"])
def test_range_parser_agrees_with_openjd(expr: str) -> None:
    from openjd.model import IntRangeExpr

    assert parse_range(expr) == sorted(set(IntRangeExpr.from_str(expr)))
    assert parse_range(format_range(parse_range(expr))) == parse_range(expr)


@pytest.mark.parametrize("expr", ["", "a-b", "10-1", "1-9:0", "1-"])
def test_range_parser_refuses_bad_expressions(expr: str) -> None:
    with pytest.raises(RangeError):
        parse_range(expr)
