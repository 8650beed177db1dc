"""backend/data/ (the subject layout and the sample synthesiser) knows no tracker: it imports
nothing that finds landmarks, cuts, identities or fits a face model (that lives in backend/face/)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRACKER_MODULES = {
    "backend.face.track", "backend.face.track_cli", "backend.face.scan", "backend.face.landmarks",
    "backend.face.shots", "backend.face.identity", "backend.face.selection", "backend.face.face_model",
    "backend.face.import_tracking", "backend.face.import_cli", "backend.face.pose", "backend.face.smoothing",
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_backend_data_imports_no_tracker() -> None:
    offenders = {str(p.relative_to(ROOT)): sorted(_imports(p) & TRACKER_MODULES)
                 for p in (ROOT / "backend" / "data").rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}
    assert not (ROOT / "backend" / "data" / "import_tracking.py").exists()
