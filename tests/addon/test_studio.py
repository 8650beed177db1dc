"""A 256 px subject through the add-on: a subject tracked at 256 px and trained with the
``studio`` preset (2 steps; conftest's ``studio_subject``) is imported from the backend, the
scene follows its size, and a shot rendered through Blender's UV pass lands in the sequencer as
256 x 256 frames; the Train operator offers the backend's presets and the backend accepts
``studio`` from it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from .conftest import STUDIO_SUBJECT_ID
from .helpers import pump, render_sequencer

pytestmark = pytest.mark.bpy
SIZE = 256


@pytest.fixture(scope="module")
def connected(studio_subject: Path, backend, connected):
    """Connected (conftest's ``connected``) to the session's backend, whose workdir holds the
    studio subject for this module (the service lists subjects from its workdir on each request;
    later modules copy that workdir, so the 46 MB subject and its copies go afterwards)."""
    subjects = backend.workdir / "subjects"
    shutil.copytree(studio_subject, subjects / STUDIO_SUBJECT_ID)
    yield connected
    for name in (STUDIO_SUBJECT_ID, "studio2"):
        shutil.rmtree(subjects / name, ignore_errors=True)


def test_a_256_px_subject_renders_256_px_frames_into_the_sequencer(
    addon_mod, connected, studio_subject, clean_scene, tmp_path
) -> None:
    import bpy

    from backend.train.presets import PRESETS

    assert PRESETS["studio"].size == SIZE
    api, rig, vse, png = (addon_mod(n) for n in ("api", "rig", "vse", "png"))
    assert STUDIO_SUBJECT_ID in [s["subject_id"] for s in api.subjects()]
    head = api.import_subject(STUDIO_SUBJECT_ID, scene=clean_scene)  # from the backend, like the UI
    assert rig.rig_frame(head, clean_scene)[0] == SIZE
    r = clean_scene.render
    assert (r.resolution_x, r.resolution_y, r.resolution_percentage) == (SIZE, SIZE, 100)
    assert clean_scene.camera == rig.rig_camera(head, clean_scene)

    shot = api.render_shot(clean_scene, 1, 2, output_dir=str(tmp_path / "frames"), channel=2,
                           set_standard_view=True)  # the sequencer shows the pixels as delivered
    assert shot.state == "done", shot.error
    strip = vse.find_strip(clean_scene, shot.strip_name)
    assert strip is not None and len(strip.elements) == 2
    frames = [png.decode_png((tmp_path / "frames" / vse.frame_filename(shot.prefix, f)).read_bytes())
              for f in (1, 2)]
    assert [f.shape for f in frames] == [(SIZE, SIZE, 3)] * 2
    assert frames[0].std() > 5  # a rendered face, not an empty frame
    # the backend's frames as Blender shows them: the sequencer's output at frame 2
    seq = png.decode_png(render_sequencer(bpy, clean_scene, 2, tmp_path / "seq.png"))
    assert seq.shape == (SIZE, SIZE, 3)
    assert np.abs(seq.astype(int) - frames[1].astype(int)).max() <= 1


def test_train_operator_offers_the_backends_presets_and_studio_is_accepted(
    addon_mod, connected, backend, tmp_path
) -> None:
    import bpy

    from backend.train.presets import PRESETS

    api, state = addon_mod("api"), addon_mod("runtime")
    items = bpy.ops.emo_avatar.train.get_rna_type().properties["preset"].enum_items
    assert [i.identifier for i in items] == [name for name, _, _ in api.TRAIN_PRESETS] == list(PRESETS)
    # on a copy: the job trains from scratch until cancelled, and the studio subject is shared
    subjects = backend.workdir / "subjects"
    shutil.copytree(subjects / STUDIO_SUBJECT_ID, subjects / "studio2")  # removed with the module
    st = state.wm_state()
    api.refresh()
    st.subject = "studio2"
    before = {j.job_id for j in st.jobs}
    assert bpy.ops.emo_avatar.train(preset="studio") == {"FINISHED"}
    pump(state, lambda: any(j.job_id not in before and j.kind == "train" for j in st.jobs), timeout=60)
    [job] = [j for j in st.jobs if j.job_id not in before]
    assert job.state in ("queued", "running", "done"), (job.state, job.error)
    client_cls = addon_mod("protocol.client").Client
    with client_cls.from_connection_file(backend.connection_file, timeout=5) as client:
        assert client.status(job.job_id)["job"]["params"]["preset"] == "studio"
    bpy.ops.emo_avatar.cancel_job(job_id=job.job_id)
    pump(state, lambda: state.job_item(st, job.job_id).state in state.FINAL_STATES, timeout=120)
