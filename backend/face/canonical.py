"""The MediaPipe canonical face mesh (Apache-2.0, see canonical/README.md) in landmark order.

Vertex ``i`` is FaceMesh landmark ``i`` (0..467; the refined iris points 468..477 are not in
the mesh). Units: centimetres, y up, z towards the viewer.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).with_name("canonical")
PBTXT_PATH = DATA_DIR / "geometry_pipeline_metadata_landmarks.pbtxt"
N_MESH_VERTICES = 468
N_LANDMARKS = 478  # FaceMesh with refine_landmarks=True


@dataclass(frozen=True)
class CanonicalMesh:
    """The canonical mesh.

    Attributes:
        vertices: (468, 3) float32, centimetres.
        uvs: (468, 2) float32 in [0, 1], per-vertex texture coordinates as stored in the file.
        triangles: (898, 3) int32 vertex indices, counter-clockwise seen from the front.
        procrustes_ids: (33,) int32 landmark ids used for rigid alignment.
        procrustes_weights: (33,) float32 weights for those ids.
    """

    vertices: np.ndarray
    uvs: np.ndarray
    triangles: np.ndarray
    procrustes_ids: np.ndarray
    procrustes_weights: np.ndarray


def _numbers_after(key: str, text: str) -> list[str]:
    return re.findall(rf"{key}:\s*([-+0-9.eE]+)", text)


@functools.cache
def load_canonical_mesh(path: Path = PBTXT_PATH) -> CanonicalMesh:
    """Parse the geometry-pipeline pbtxt (text protobuf) without needing protobuf."""
    text = Path(path).read_text()
    basis = re.findall(r"procrustes_landmark_basis\s*{\s*landmark_id:\s*(\d+)\s*weight:\s*([-0-9.eE]+)", text)
    vbuf = np.asarray(_numbers_after("vertex_buffer", text), dtype=np.float32).reshape(-1, 5)
    ibuf = np.asarray(_numbers_after("index_buffer", text), dtype=np.int32).reshape(-1, 3)
    if vbuf.shape[0] != N_MESH_VERTICES:
        raise ValueError(f"{path}: expected {N_MESH_VERTICES} vertices, found {vbuf.shape[0]}")
    return CanonicalMesh(
        vertices=np.ascontiguousarray(vbuf[:, :3]),
        uvs=np.ascontiguousarray(vbuf[:, 3:5]),
        triangles=ibuf,
        procrustes_ids=np.asarray([int(i) for i, _ in basis], dtype=np.int32),
        procrustes_weights=np.asarray([float(w) for _, w in basis], dtype=np.float32),
    )
