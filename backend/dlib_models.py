"""Where dlib's model files are: the ``models/`` folder of the ``face-recognition-models`` wheel.

One lookup for the tracker's identity descriptor (``backend.face.identity``), its 68-point reader
(``backend.face.shape68``) and the identity metric (``backend.metrics.identity``). The package is
found without importing it: its ``__init__`` needs ``pkg_resources``, which recent setuptools no
longer ship.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

DESCRIPTOR_FILE = "dlib_face_recognition_resnet_model_v1.dat"
"""dlib's ResNet face descriptor (128-d)."""
SHAPE_PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"
"""dlib's 5-point shape predictor (eye corners, nose base)."""
SHAPE_PREDICTOR_68_FILE = "shape_predictor_68_face_landmarks.dat"
"""dlib's 68-point shape predictor (iBUG 300-W points: jaw line, brows, nose, eyes, lips)."""


class DlibModelsMissingError(ImportError):
    """``face-recognition-models`` or one of its files is missing (the message says which)."""


def models_dir() -> Path:
    """The ``models/`` folder of the installed ``face_recognition_models`` package.

    Raises:
        DlibModelsMissingError: the package is not installed.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise DlibModelsMissingError(
            "the face-recognition-models package is not installed (pip install face-recognition-models)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def model_file(name: str, what: str) -> Path:
    """Path of the model file ``name`` (e.g. ``DESCRIPTOR_FILE``) in ``models_dir()``.

    Args:
        name: file name in the package's ``models/`` folder.
        what: what the file is, for the error message ("descriptor weights").
    Raises:
        DlibModelsMissingError: the package or the file is missing.
    """
    path = models_dir() / name
    if not path.is_file():
        raise DlibModelsMissingError(f"{what} missing: {path}")
    return path


def load_model(name: str, what: str, build: Callable[[ModuleType, str], Any],
               weights: Path | None = None) -> tuple[ModuleType, Any]:
    """Import dlib and build one of its models from a file: ``build(dlib, path)``.

    Args:
        name: file name in the package's ``models/`` folder (used when ``weights`` is None).
        what: what the file is, for the error messages ("68-point shape predictor").
        build: makes the model from the dlib module and the file's path
            (e.g. ``lambda dlib, path: dlib.shape_predictor(path)``).
        weights: another file to read instead of the package's.
    Returns:
        (the dlib module, the model).
    Raises:
        DlibModelsMissingError: dlib, the package or the file is missing, or dlib cannot read the
            file (the message says which).
    """
    try:
        import dlib
    except ImportError as exc:
        raise DlibModelsMissingError(f"dlib is not installed ({exc})") from exc
    path = model_file(name, what) if weights is None else Path(weights)
    if not path.is_file():
        raise DlibModelsMissingError(f"{what} missing: {path}")
    try:
        return dlib, build(dlib, str(path))
    except RuntimeError as exc:
        raise DlibModelsMissingError(f"{what} unreadable: {path} ({exc})") from exc
