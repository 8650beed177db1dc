"""``SUBJECT/avatar/metrics.json``: one JSON object of named sections (train, eval, style_eval ...)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from protocol.fileio import atomic_write_text

log = logging.getLogger(__name__)


def update_metrics_json(path: Path, section: str, values: dict[str, Any]) -> None:
    """Merge ``{section: values}`` into the JSON file at ``path`` (atomic rewrite)."""
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            log.warning("%s was not valid JSON; rewriting it", path)
    data[section] = values
    atomic_write_text(path, json.dumps(data, indent=2, default=float) + "\n")
