"""Scoring code imports no trainer: backend/metrics/, backend/looks.py and backend/imaging/ never
import backend.train (checked statically, including imports inside functions)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCORING = [ROOT / "backend" / "metrics", ROOT / "backend" / "imaging", ROOT / "backend" / "looks.py"]


def _imports(path: Path) -> set[str]:
    """Every absolute module name a file imports, at any depth (``from x import y`` gives x and x.y)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (use absolute backend.* imports)"
            if node.module:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _files() -> list[Path]:
    out: list[Path] = []
    for p in SCORING:
        out += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return out


def test_scoring_code_imports_no_trainer() -> None:
    files = _files()
    assert len(files) >= 10 and ROOT / "backend" / "metrics" / "style_eval.py" in files
    bad = {str(f.relative_to(ROOT)): sorted(n for n in _imports(f) if n == "backend.train"
                                            or n.startswith("backend.train."))
           for f in files}
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("def g():\n    from backend.train import stage1\n    import backend.train.data\n")
    assert {"backend.train", "backend.train.stage1", "backend.train.data"} <= _imports(f)


def test_importing_the_scoring_modules_loads_no_trainer() -> None:
    code = ("import sys, importlib, pkgutil, backend.metrics, backend.imaging, backend.looks\n"
            "for pkg in (backend.metrics, backend.imaging):\n"
            "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
            "        importlib.import_module(m.name)\n"
            "print(','.join(sorted(n for n in sys.modules if n.startswith('backend.train'))))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"scoring modules loaded {out.stdout.strip()}"
