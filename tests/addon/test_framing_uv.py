"""Every framing of `emo-avatar track --framing` gives a rig whose Cycles UV pass, seen through the
imported rig camera, equals the backend's UV maps (the check of test_e2e, once per framing)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import _backend_all, _cached
from .helpers import assert_uv_maps_agree

pytestmark = pytest.mark.bpy

FRAMINGS = ("face", "head", "bust")
_RECIPE = tuple(f"track sample.mp4 --size 64 --max-frames 12 --framing {f}" for f in FRAMINGS)


@pytest.fixture(scope="module")
def framed_subjects(backend_workdir, tmp_path_factory) -> dict[str, object]:
    """The tiny sample tracked at 64 px, 12 frames, once per framing (no training needed); the
    three tracks run side by side, and are cached like ``backend_workdir`` (read-only)."""
    video = backend_workdir.parent / "sample.mp4"

    def build(work) -> None:
        _backend_all(*(("track", str(video), "-o", str(work / "subjects" / f), "--size", "64",
                        "--max-frames", "12", "--framing", f) for f in FRAMINGS))

    cache = _cached("framings", _RECIPE, build, tmp_path_factory)
    return {f: cache / "subjects" / f for f in FRAMINGS}


def test_tighter_framing_shows_a_larger_face(framed_subjects) -> None:
    sides = [json.loads((framed_subjects[f] / "meta.json").read_text())["crop"]["side"] for f in FRAMINGS]
    assert sides[0] < sides[1] < sides[2]


@pytest.mark.parametrize("framing", FRAMINGS)
def test_uv_pass_equals_the_backends_uv_maps_for_every_framing(addon_mod, clean_scene, framed_subjects,
                                                               framing) -> None:
    api, uv_pass = addon_mod("api"), addon_mod("uv_pass")
    subject = framed_subjects[framing]
    head = api.import_subject(folder=subject, scene=clean_scene)
    want = np.load(subject / "uv" / "uv.npy").astype(np.float32)
    got = dict(uv_pass.iter_uv_maps(head, clean_scene.camera, [1, 9], (64, 64)))
    assert_uv_maps_agree(got, want, framing)
