"""The process split holds: protocol/backend never load bpy, the add-on never loads torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imported_top_modules(package_dir: Path) -> dict[str, set[str]]:
    """Top-level module names each .py file under ``package_dir`` imports (static scan)."""
    found: dict[str, set[str]] = {}
    for path in package_dir.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def _offenders(package: str, forbidden: set[str]) -> list[str]:
    return [
        f"{path} imports {sorted(names & forbidden)}"
        for path, names in _imported_top_modules(ROOT / package).items()
        if names & forbidden
    ]


def test_protocol_and_backend_never_import_bpy() -> None:
    assert _offenders("protocol", {"bpy", "torch", "cv2", "mediapipe"}) == []
    assert _offenders("backend", {"bpy", "mathutils", "bmesh"}) == []


def test_addon_never_imports_backend_only_packages() -> None:
    forbidden = {"torch", "torchvision", "lpips", "open_clip", "cv2", "mediapipe", "backend"}
    assert _offenders("blender_addon", forbidden) == []


def test_importing_protocol_loads_neither_torch_nor_bpy() -> None:
    code = (
        "import sys, importlib, pkgutil, protocol\n"
        "for m in pkgutil.walk_packages(protocol.__path__, 'protocol.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in ('torch', 'bpy', 'cv2') if n in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"protocol pulled in: {out.stdout.strip()}"
