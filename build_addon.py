"""Build the Blender extension: dist/<id>-<version>.zip (or one zip per platform).

    python build_addon.py [--output-dir dist] [--wheel-cache .cache/wheels] [--split-platforms]
                          [--platforms linux-x64,...] [--python-versions 3.11,3.13] [--offline]

Steps:
1. stage ``blender_addon/*.py`` + ``blender_manifest.toml`` into a temporary ``<id>/`` folder;
2. vendor ``protocol/`` as ``<id>/protocol`` (absolute ``protocol.x`` imports inside it are
   rewritten to relative ones, so the add-on never touches ``sys.path``);
3. fetch pyzmq + msgpack wheels (versions pinned in requirements/constraints.txt) for every
   platform and Blender Python version with ``pip download --only-binary=:all: --no-deps``
   into the wheel cache (an offline rebuild uses only the cache) and list them in the manifest's
   ``wheels``;
4. build with Blender's own ``blender_ext.py build`` (``--split-platforms`` gives one zip per
   platform) and check every zip with ``blender_ext.py validate``; both ship inside the bpy wheel;
5. print the path of each zip.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ADDON_SRC = ROOT / "blender_addon"
PROTOCOL_SRC = ROOT / "protocol"
WHEEL_PACKAGES = ("pyzmq", "msgpack")

# Blender platform -> pip --platform tags to try (pip accepts several; first match wins).
PLATFORM_TAGS: dict[str, list[str]] = {
    "linux-x64": ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "windows-x64": ["win_amd64"],
    "macos-arm64": ["macosx_11_0_arm64", "macosx_10_15_universal2", "macosx_10_9_universal2"],
    "macos-x64": [
        "macosx_10_15_x86_64",
        "macosx_10_13_x86_64",
        "macosx_10_12_x86_64",
        "macosx_10_9_x86_64",
        "macosx_10_15_universal2",
        "macosx_10_9_universal2",
    ],
}
DEFAULT_PYTHONS = ("3.11", "3.13")  # Blender 4.2 .. 5.0 use 3.11; 5.1+ uses 3.13


class BuildError(RuntimeError):
    """The extension could not be built; the message says why and what to do."""


def pinned_versions() -> dict[str, str]:
    """``{package: version}`` for the wheel packages, from requirements/constraints.txt."""
    pins: dict[str, str] = {}
    constraints = ROOT / "requirements" / "constraints.txt"
    if constraints.is_file():
        for line in constraints.read_text().splitlines():
            m = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s;#]+)", line)
            if m and m.group(1).lower() in WHEEL_PACKAGES:
                pins[m.group(1).lower()] = m.group(2)
    return pins


def find_blender_ext() -> Path:
    """``blender_ext.py`` inside the installed bpy wheel (without importing bpy)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("the bpy package is not installed in this Python: run `make venv` first")
    for base in spec.submodule_search_locations:
        found = sorted(Path(base).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if found:
            return found[-1]
    raise BuildError(
        "blender_ext.py not found inside the bpy package (expected "
        "bpy/<version>/scripts/addons_core/bl_pkg/cli/blender_ext.py)"
    )


def _relative_module(module: str, depth: int) -> str:
    """``protocol.a.b`` seen from a file ``depth`` packages below protocol/ -> ``..a.b``."""
    rest = module.split(".", 1)[1] if "." in module else ""
    return "." * (depth + 1) + rest


def vendor_protocol(dest: Path) -> None:
    """Copy protocol/ to ``dest`` with absolute self-imports made relative."""
    if not PROTOCOL_SRC.is_dir():
        raise BuildError(f"{PROTOCOL_SRC} is missing")
    for src in sorted(PROTOCOL_SRC.rglob("*.py")):
        if "__pycache__" in src.parts:
            continue
        rel = src.relative_to(PROTOCOL_SRC)
        depth = len(rel.parts) - 1
        text = src.read_text()
        lines = text.splitlines(keepends=True)
        for node in ast.walk(ast.parse(text, filename=str(src))):
            if (
                isinstance(node, ast.ImportFrom)
                and node.level == 0
                and node.module
                and (node.module == "protocol" or node.module.startswith("protocol."))
            ):
                line = lines[node.lineno - 1]
                lines[node.lineno - 1] = line.replace(
                    f"from {node.module} import", f"from {_relative_module(node.module, depth)} import", 1
                )
            elif isinstance(node, ast.Import) and any(a.name.split(".")[0] == "protocol" for a in node.names):
                raise BuildError(
                    f"{src}:{node.lineno}: `import protocol...` cannot be vendored; "
                    "use `from protocol.x import y` or a relative import"
                )
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(lines))


def _wheel_matches(name: str, package: str, version: str, python: str, platform_tags: list[str]) -> bool:
    """Does wheel file ``name`` hold ``package==version`` usable by CPython ``python`` on one of the tags?"""
    stem = name[:-4].split("-")
    if len(stem) < 5 or stem[0].lower().replace("_", "-") != package or stem[1] != version:
        return False
    py, abi, plat = stem[-3], stem[-2], stem[-1]
    digits = python.replace(".", "")
    py_ok = py == f"cp{digits}" or (abi == "abi3" and py.startswith("cp") and int(py[2:]) <= int(digits))
    return py_ok and any(t in plat.split(".") for t in platform_tags)


def _cached(cache: Path, package: str, version: str, python: str, tags: list[str]) -> list[Path]:
    return [p for p in sorted(cache.glob("*.whl")) if _wheel_matches(p.name, package, version, python, tags)]


def fetch_wheels(cache: Path, platforms: list[str], pythons: list[str], offline: bool) -> list[Path]:
    """Wheels for every (package, platform, python), from the cache or PyPI; returns unique paths."""
    cache.mkdir(parents=True, exist_ok=True)
    pins = pinned_versions()
    chosen: list[Path] = []
    for python in pythons:
        for platform in platforms:
            tags = PLATFORM_TAGS[platform]
            for package in WHEEL_PACKAGES:
                version = pins.get(package)
                if version is None:
                    raise BuildError(f"{package} has no `==` pin in requirements/constraints.txt")
                hit = _cached(cache, package, version, python, tags)
                if not hit:
                    if offline:
                        raise BuildError(
                            f"no cached {package}=={version} wheel for {platform} / Python {python} "
                            f"in {cache}; run once without --offline to fill the cache"
                        )
                    digits = python.replace(".", "")
                    cmd = [
                        sys.executable,
                        "-m",
                        "pip",
                        "download",
                        "--quiet",
                        "--disable-pip-version-check",
                        "--only-binary=:all:",
                        "--no-deps",
                        "--python-version",
                        python,
                        "--implementation",
                        "cp",
                        "--abi",
                        f"cp{digits}",
                        "--abi",
                        "abi3",
                        "--dest",
                        str(cache),
                    ]
                    for tag in tags:
                        cmd += ["--platform", tag]
                    cmd.append(f"{package}=={version}")
                    proc = subprocess.run(cmd, capture_output=True, text=True)
                    hit = _cached(cache, package, version, python, tags)
                    if proc.returncode != 0 or not hit:
                        if python != pythons[0]:  # later Pythons are best effort ("where wheels exist")
                            print(
                                f"note: no {package}=={version} wheel for {platform} / Python {python}; "
                                "skipped"
                            )
                            continue
                        raise BuildError(
                            f"pip could not fetch {package}=={version} for {platform} / Python "
                            f"{python}:\n{proc.stderr.strip()[-800:]}"
                        )
                if hit[0] not in chosen:
                    chosen.append(hit[0])
    return chosen


def _toml_list(values: list[str]) -> str:
    return "[\n" + "".join(f'  "{v}",\n' for v in values) + "]"


def stage(stage_root: Path, wheels: list[Path], platforms: list[str]) -> tuple[Path, dict]:
    """Assemble the extension source folder; returns (folder, manifest dict)."""
    manifest_src = ADDON_SRC / "blender_manifest.toml"
    manifest = tomllib.loads(manifest_src.read_text())
    folder = stage_root / manifest["id"]
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for src in sorted(ADDON_SRC.glob("*.py")):
        shutil.copy2(src, folder / src.name)
    vendor_protocol(folder / "protocol")
    lines = manifest_src.read_text().rstrip("\n").splitlines()
    lines = [ln for ln in lines if not re.match(r"^\s*(wheels|platforms)\s*=", ln)]
    # Top-level keys must precede the first [table] header.
    at = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("[")), len(lines))
    extra = ["platforms = " + _toml_list(platforms)]
    if wheels:
        (folder / "wheels").mkdir()
        for whl in wheels:
            shutil.copy2(whl, folder / "wheels" / whl.name)
        extra.append("wheels = " + _toml_list([f"./wheels/{w.name}" for w in wheels]))
    lines[at:at] = [*extra, ""]
    (folder / "blender_manifest.toml").write_text("\n".join(lines) + "\n")
    return folder, manifest


def run_blender_ext(blender_ext: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(blender_ext), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"blender_ext.py {args[0]} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def build(
    output_dir: Path,
    wheel_cache: Path,
    platforms: list[str],
    pythons: list[str],
    split: bool,
    offline: bool,
    with_wheels: bool = True,
) -> list[Path]:
    """Build (and validate) the extension zip(s); returns their paths."""
    unknown = [p for p in platforms if p not in PLATFORM_TAGS]
    if unknown:
        raise BuildError(f"unknown platform(s) {unknown}; choose from {sorted(PLATFORM_TAGS)}")
    blender_ext = find_blender_ext()
    wheels = fetch_wheels(wheel_cache, platforms, pythons, offline) if with_wheels else []
    with tempfile.TemporaryDirectory(prefix="emo_addon_stage_") as stage_root:  # builds may run at once
        return _build_staged(Path(stage_root), blender_ext, output_dir, wheels, platforms, split)


def _build_staged(stage_root: Path, blender_ext: Path, output_dir: Path, wheels: list[Path],
                  platforms: list[str], split: bool) -> list[Path]:
    """Stage the source under ``stage_root``, build and validate the zip(s) into ``output_dir``."""
    folder, manifest = stage(stage_root, wheels, platforms)
    output_dir.mkdir(parents=True, exist_ok=True)
    base = f"{manifest['id']}-{manifest['version']}"
    expected = (
        [output_dir / f"{base}-{p.replace('-', '_')}.zip" for p in platforms]
        if split
        else [output_dir / f"{base}.zip"]
    )
    for path in expected:
        path.unlink(missing_ok=True)
    args = ["build", "--source-dir", str(folder), "--output-dir", str(output_dir)]
    if split:
        args.append("--split-platforms")
    run_blender_ext(blender_ext, *args)
    made = [p for p in expected if p.is_file()]
    if not made:
        made = sorted(output_dir.glob(f"{base}*.zip"))
    if not made:
        raise BuildError(f"blender_ext.py build produced no zip in {output_dir}")
    for path in made:
        run_blender_ext(blender_ext, "validate", str(path))
    return made


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--output-dir", type=Path, default=ROOT / "dist")
    ap.add_argument("--wheel-cache", type=Path, default=ROOT / ".cache" / "wheels")
    ap.add_argument(
        "--platforms",
        default=",".join(PLATFORM_TAGS),
        help="comma-separated Blender platforms (default: all four)",
    )
    ap.add_argument(
        "--python-versions",
        default=",".join(DEFAULT_PYTHONS),
        help="Blender Python versions to bundle wheels for (the first is required)",
    )
    ap.add_argument("--split-platforms", action="store_true", help="one zip per platform")
    ap.add_argument("--offline", action="store_true", help="use only the wheel cache, never PyPI")
    args = ap.parse_args(argv)
    try:
        paths = build(
            args.output_dir.resolve(),
            args.wheel_cache.resolve(),
            [p.strip() for p in args.platforms.split(",") if p.strip()],
            [p.strip() for p in args.python_versions.split(",") if p.strip()],
            args.split_platforms,
            args.offline,
        )
    except BuildError as exc:
        print(f"build_addon.py: error: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
