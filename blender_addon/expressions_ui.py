"""Expression sliders grouped by face region for the Expressions panel, and the small preset
library (JSON files in the extension's user folder). No bpy here.

Regions follow the ARKit naming the subject rigs use (``browInnerUp``, ``eyeBlinkLeft``,
``jawOpen``, ...); a name that matches none (e.g. ``residual_03``) is in "Other". Left / right
pairs (``...Left`` / ``...Right``) are shown side by side.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .protocol.fileio import atomic_write_bytes

REGIONS: tuple[tuple[str, str], ...] = (
    ("BROWS", "Brows"),
    ("EYES", "Eyes"),
    ("CHEEKS", "Cheeks"),
    ("NOSE", "Nose"),
    ("JAW", "Jaw"),
    ("MOUTH", "Mouth"),
    ("OTHER", "Other"),
)
_PREFIXES = {
    "brow": "BROWS",
    "eye": "EYES",
    "cheek": "CHEEKS",
    "nose": "NOSE",
    "jaw": "JAW",
    "mouth": "MOUTH",
    "tongue": "MOUTH",
}
PRESET_FOLDER = "expression_presets"


def region_of(name: str) -> str:
    """The region id (``REGIONS``) of an expression name."""
    lower = name.lower()
    for prefix, region in _PREFIXES.items():
        if lower.startswith(prefix):
            return region
    return "OTHER"


def names_in_region(names: list[str], region: str | None) -> list[str]:
    """``names`` in ``region`` (None: all), in their order."""
    return [n for n in names if region is None or region_of(n) == region]


def paired_rows(names: list[str]) -> list[tuple[str | None, str | None]]:
    """Rows for the panel: ``(left, right)`` pairs side by side, a name without a partner alone
    as ``(name, None)``. Order follows the first appearance."""
    rows: list[tuple[str | None, str | None]] = []
    done: set[str] = set()
    have = set(names)
    for n in names:
        if n in done:
            continue
        if n.endswith("Left") and n[:-4] + "Right" in have:
            rows.append((n, n[:-4] + "Right"))
            done |= {n, n[:-4] + "Right"}
        elif n.endswith("Right") and n[:-5] + "Left" in have:
            rows.append((n[:-5] + "Left", n))
            done |= {n, n[:-5] + "Left"}
        else:
            rows.append((n, None))
            done.add(n)
    return rows


def _preset_path(folder: Path, name: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}", name) or ".." in name:
        raise ValueError(f"preset name {name!r}: use 1-64 letters, digits, spaces, '_', '.' or '-'")
    return Path(folder) / PRESET_FOLDER / f"{name}.json"


def save_preset(folder: Path, name: str, values: dict[str, float]) -> Path:
    """Write ``{expression name: slider value}`` as preset ``name`` (atomically)."""
    path = _preset_path(folder, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": "emo-avatar-expression-preset", "version": 1, "values": dict(values)}
    atomic_write_bytes(path, json.dumps(data, indent=1).encode())
    return path


def load_preset(folder: Path, name: str) -> dict[str, float]:
    """The values of preset ``name``; ``ValueError`` for a file that is not a preset."""
    path = _preset_path(folder, name)
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("format") != "emo-avatar-expression-preset":
        raise ValueError(f"{path} is not an Emo-Avatar expression preset")
    values = data.get("values")
    if not isinstance(values, dict):
        raise ValueError(f"{path} has no 'values' table")
    return {str(k): float(v) for k, v in values.items()}


def preset_names(folder: Path) -> list[str]:
    """Names of the saved presets, sorted."""
    base = Path(folder) / PRESET_FOLDER
    return sorted(p.stem for p in base.glob("*.json")) if base.is_dir() else []
