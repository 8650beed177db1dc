"""A styled shot from Blender: the default (style translator) edit's file, picked by name, renders
through the service into the sequencer, and its frames are the styled ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.addon.conftest import SUBJECT_ID, _backend

pytestmark = [pytest.mark.bpy, pytest.mark.timeout(1200)]
STYLE = "styled_shot_test"


@pytest.fixture(scope="module")
def connected(styled_subject, connected):
    """Connected after the style exists, so the backend lists it (conftest's ``connected``)."""
    return connected


@pytest.fixture(scope="module")
def styled_subject(backend_workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared subject with a translator style made by the backend's CLI (stylize + edit)."""
    subject = backend_workdir / "subjects" / SUBJECT_ID
    ref = tmp_path_factory.mktemp("style") / "ref.png"
    _backend("stylize", str(subject), "--frame", "2", "--look", "cartoon", "-o", str(ref),
             cwd=backend_workdir)
    _backend("edit", str(subject), "--reference", str(ref), "--frame", "2", "--steps", "30", "--name", STYLE,
             cwd=backend_workdir)
    assert (subject / "styles" / f"{STYLE}.style").is_file()
    return subject


def test_a_styled_shot_renders_into_the_sequencer(addon_mod, styled_subject, connected, clean_scene,
                                                  tmp_path) -> None:
    api, png, vse = addon_mod("api"), addon_mod("png"), addon_mod("vse")
    api.refresh()
    api.import_subject(folder=styled_subject, scene=clean_scene)
    kw = {"channel": 2, "uv_source": "BACKEND"}
    plain = api.render_shot(clean_scene, 1, 4, output_dir=str(tmp_path / "plain"), **kw)
    styled = api.render_shot(clean_scene, 1, 4, style=STYLE, output_dir=str(tmp_path / "styled"), **kw)
    assert plain.state == "done" and styled.state == "done", (plain.error, styled.error)
    strips = {s.name for s in addon_mod("compat").sequencer_strips(clean_scene)}
    assert styled.strip_name in strips
    diffs = []
    for f in range(1, 5):
        a = png.decode_png((tmp_path / "plain" / vse.frame_filename(plain.prefix, f)).read_bytes())
        b = png.decode_png((tmp_path / "styled" / vse.frame_filename(styled.prefix, f)).read_bytes())
        assert a.shape == b.shape
        diffs.append(np.abs(a.astype(int) - b.astype(int)).mean())
    assert min(diffs) > 1.0  # every frame of the styled take went through the style
