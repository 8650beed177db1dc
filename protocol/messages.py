"""Message types and their schemas: THE single table both sides validate against.

``MESSAGES`` maps every ``msg_type`` to a :class:`MessageSpec` (role, channel, fields, buffers);
``JOB_KINDS`` maps every ``job_submit`` kind to the schema of its ``params``. Everything else
(validation, the docs table in docs/protocol.md, the hypothesis round-trip test) reads these.

Rules:
- ``validate(msg_type, content)`` returns a new dict with defaults filled in. Unknown fields
  are ignored (kept as they are) so a newer minor version can add fields; a missing required
  field, a wrong type or a value outside ``choices`` raises :class:`SchemaError` naming the field.
- every request ``X`` has a reply ``X_reply`` carrying ``status: "ok" | "error"``; an error
  reply needs only ``ename`` and ``evalue`` (readable text), its other fields are not required.
  ``error_reply`` answers a message whose type could not be determined.
- optional fields accept ``None``, which means "absent" and is replaced by the default.
- ints are not floats' only source: an int is accepted (and converted) for a ``float`` field;
  ``bool`` is never accepted for ``int``/``float``.
- buffer shapes use symbols ("T", "K", ...) that must agree across the buffers of a message;
  ``bind`` ties a symbol to ``len(content[field])`` (e.g. K = number of curve names).
- every field is bounded (:mod:`protocol.limits`): strings by ``max_len`` characters (default
  ``MAX_FIELD_CHARS``), lists by ``max_len`` items (default ``MAX_LIST_ITEMS``) and ``item_len``
  characters per string item, ints by ``minimum``/``maximum`` (default ``INT_MIN..INT_MAX``).
  Validation is linear in the size of the content.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .buffers import dtype_name
from .errors import BufferSpecError, CurveError, SchemaError, UnknownMessageType
from .limits import (
    FRAME_MAX,
    FRAME_MIN,
    INT_MAX,
    INT_MIN,
    JOB_LIST_PAGE,
    MAX_FIELD_CHARS,
    MAX_JOB_LIST_PAGE,
    MAX_KEYFRAMES,
    MAX_LIST_ITEMS,
    MAX_NAME_CHARS,
    MAX_NAMES,
    MAX_ROWS,
)

# --------------------------------------------------------------------------------------------
# schema building blocks


@dataclass(frozen=True)
class Field:
    """One content field.

    ``type`` is one of: str, int, float, bool, list, dict, any, list[str], list[int],
    list[float], dict[str,float], list[dict] (checked shallowly: element types only).
    """

    type: str
    required: bool = False
    default: Any = None
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    doc: str = ""
    schema: Mapping[str, Field] | None = None
    """For ``dict`` / ``list[dict]``: the nested schema each map is validated against."""
    max_len: int | None = None
    """Most characters (str) or items (lists); None: ``MAX_FIELD_CHARS`` / ``MAX_LIST_ITEMS``."""
    item_len: int | None = None
    """Most characters of each item of a ``list[str]``; None: ``MAX_FIELD_CHARS``."""


def req(type_: str, doc: str = "", **kw: Any) -> Field:
    return Field(type_, required=True, doc=doc, **kw)


def opt(type_: str, default: Any = None, doc: str = "", **kw: Any) -> Field:
    return Field(type_, required=False, default=default, doc=doc, **kw)


@dataclass(frozen=True)
class BufferSpec:
    """One named buffer: allowed dtypes and a shape pattern (ints fixed, str symbols shared
    across the message's buffers, ``None`` free). ``shape=None`` accepts any shape."""

    dtypes: tuple[str, ...]
    shape: tuple[int | str | None, ...] | None = None
    required: bool = False
    doc: str = ""


@dataclass(frozen=True)
class MessageSpec:
    """A message type: ``role`` request|reply|event, the socket it travels on, its fields
    and buffers. ``bind`` maps a shape symbol to a list field whose length it must equal;
    ``check(content, buffers)`` adds rules that span fields and buffers."""

    role: str
    channel: str
    fields: Mapping[str, Field]
    buffers: Mapping[str, BufferSpec] = field(default_factory=dict)
    bind: Mapping[str, str] = field(default_factory=dict)
    check: Callable[[dict[str, Any], dict[str, np.ndarray]], None] | None = None
    doc: str = ""
    scan: Callable[[dict[str, Any], dict[str, np.ndarray]], None] | None = None
    """A rule that reads every buffer value (e.g. a NaN scan); run by ``scan_values``."""


# --------------------------------------------------------------------------------------------
# vocabulary

JOB_STATES: tuple[str, ...] = (
    "queued", "running", "cancelling", "cancelled", "failed", "done", "interrupted",
)
FINAL_JOB_STATES: tuple[str, ...] = ("cancelled", "failed", "done", "interrupted")
"""``interrupted``: the backend stopped (killed, restarted) while the job was queued or running;
resubmitting the same job_id resumes it (checkpoint, frames on disk)."""
SERVER_STATES: tuple[str, ...] = ("starting", "idle", "busy", "stopping")
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")
FRAME_ENCODINGS: tuple[str, ...] = ("raw", "png")
TRAIN_PRESETS: tuple[str, ...] = ("tiny", "cpu", "studio", "paper")
STATUS: tuple[str, ...] = ("ok", "error")

JOB_RECORD: dict[str, Field] = {
    "job_id": req("str"),
    "kind": req("str"),
    "state": req("str", choices=JOB_STATES),
    "stage": opt("str"),
    "step": opt("int", 0),
    "total": opt("int", 0),
    "error": opt("str", doc="readable error when state is failed"),
    "created": opt("str", doc="ISO-8601 UTC"),
    "updated": opt("str", doc="ISO-8601 UTC"),
    "params": opt("dict", {}),
    "outputs": opt("dict", {}, doc="e.g. subject_id, style, frames_dir, frame_count"),
}
"""A job as job_status / job_list report it."""

# --------------------------------------------------------------------------------------------
# job kinds (params of job_submit)


def _check_track(params: dict[str, Any], buffers: dict[str, np.ndarray]) -> None:
    if (params.get("upload_id") is None) == (params.get("path") is None):
        raise SchemaError("track job needs exactly one of params.upload_id (uploaded video) or "
                          "params.path (a file under a directory the server may read)",
                          field="params.upload_id")


MORE_REFERENCES = tuple(f"reference_{i}" for i in range(1, MAX_KEYFRAMES))
"""Buffer names of an edit job's further references, in the order of ``params.more_frames``."""


def _check_edit(params: dict[str, Any], buffers: dict[str, np.ndarray]) -> None:
    if ("reference" in buffers) == (params.get("reference_path") is not None):
        raise SchemaError("edit job needs exactly one reference image: a 'reference' buffer (uint8 HxWx3) "
                          "or params.reference_path", field="params.reference_path")
    more = params.get("more_frames") or []
    paths = params.get("more_reference_paths")
    sent = [name for name in MORE_REFERENCES if name in buffers]
    if paths is not None and sent:
        raise SchemaError("send further references either as buffers reference_1.. or as "
                          "params.more_reference_paths, not both", field="params.more_reference_paths")
    given = len(paths) if paths is not None else len(sent)
    if given != len(more) or (paths is None and sent != list(MORE_REFERENCES[:len(sent)])):
        raise SchemaError(f"params.more_frames has {len(more)} frames but {given} further references "
                          f"were sent (buffers {', '.join(MORE_REFERENCES[:len(more)]) or 'none'} in order, "
                          "or params.more_reference_paths)", field="params.more_frames")
    frames = [params.get("frame") or 0, *more]
    if len(set(frames)) != len(frames):
        raise SchemaError(f"two references for one subject frame: frames {frames}",
                          field="params.more_frames")


def _check_render(params: dict[str, Any], buffers: dict[str, np.ndarray]) -> None:
    curves = buffers.get("curves")
    rows = int(curves.shape[0]) if curves is not None and curves.ndim == 2 else 0
    if rows > MAX_ROWS:
        raise BufferSpecError(f"render curves have {rows} rows; at most {MAX_ROWS} per job "
                              "(split the shot with frame_range)")
    start = params.get("frame_start") or 0
    if rows and start + rows - 1 > FRAME_MAX:
        raise SchemaError(f"params.frame_start {start} + {rows} rows runs past the last frame number "
                          f"{FRAME_MAX}", field="params.frame_start")
    fr = params.get("frame_range")
    if fr is not None and (len(fr) != 2 or fr[0] > fr[1]):
        raise SchemaError(f"params.frame_range {short_repr(fr)} must be [first, last] with first <= last",
                          field="params.frame_range")


def _scan_render(params: dict[str, Any], buffers: dict[str, np.ndarray]) -> None:
    curves = buffers.get("curves")
    if curves is not None and curves.size and not np.isfinite(curves).all():
        bad = np.argwhere(~np.isfinite(curves))[0]
        names = params.get("names") or []
        name = names[bad[1]] if bad[1] < len(names) else bad[1]
        raise CurveError(f"render curves contain NaN/inf (first at frame row {bad[0]}, curve "
                         f"{name!r}); fix or bake the F-curves")


@dataclass(frozen=True)
class JobKind:
    fields: Mapping[str, Field]
    buffers: Mapping[str, BufferSpec] = field(default_factory=dict)
    bind: Mapping[str, str] = field(default_factory=dict)
    check: Callable[[dict[str, Any], dict[str, np.ndarray]], None] | None = None
    doc: str = ""
    scan: Callable[[dict[str, Any], dict[str, np.ndarray]], None] | None = None
    """A rule that reads every buffer value; run by ``scan_values``."""


JOB_KINDS: dict[str, JobKind] = {
    "track": JobKind(
        fields={
            "subject_id": req("str", "id of the subject to create in the workdir"),
            "upload_id": opt("str", doc="video sent before with upload_chunk"),
            "path": opt("str", doc="video path under a directory the server was started with --allow-read"),
            "size": opt("int", 256, "crop size in pixels", minimum=16, maximum=4096),
            "max_frames": opt("int", doc="track at most this many frames", minimum=1),
            "overwrite": opt("bool", False),
            "framing": opt("str", doc="how much of the person the crop holds: a framing name the backend "
                                      "knows (`emo-avatar track --framing`; the backend checks it); None: "
                                      "the backend's default; since 2.1", max_len=MAX_NAME_CHARS),
            "follow_face": opt("bool", False, "re-fit the crop within a shot where the face moves "
                                              "(`emo-avatar track --follow-face`); since 2.3"),
        },
        check=_check_track,
        doc="monocular portrait video -> subject (frames, pose, expression curves, rig, UV maps)",
    ),
    "train": JobKind(
        fields={
            "subject_id": req("str"),
            "preset": opt("str", "cpu", "a training preset of the backend (`backend/train/presets.py` "
                                        "PRESETS, which a test keeps equal to TRAIN_PRESETS); studio "
                                        "since 2.2", choices=TRAIN_PRESETS),
            "steps": opt("int", doc="override the preset's step count", minimum=1),
            "seed": opt("int", 0),
            "resume": opt("bool", False, "continue from the subject's last checkpoint"),
        },
        doc="paper stage 1: train the Emo-Avatar of a subject",
    ),
    "edit": JobKind(
        fields={
            "subject_id": req("str"),
            "style": req("str", "name of the style to create"),
            "reference_path": opt("str", doc="reference image path (or send a 'reference' buffer)"),
            "frame": opt("int", 0, "subject frame the reference corresponds to", minimum=0),
            "more_frames": opt("list[int]", doc=f"subject frames of up to {MAX_KEYFRAMES - 1} more "
                               "references (keyframes; one per shot restyles a subject with cuts best), "
                               "in the order of the reference_1.. buffers or more_reference_paths; since 2.4",
                               max_len=MAX_KEYFRAMES - 1),
            "more_reference_paths": opt("list[str]", doc="paths of the further references (or send "
                                        "buffers reference_1..); since 2.4", max_len=MAX_KEYFRAMES - 1,
                                        item_len=MAX_FIELD_CHARS),
            "steps": opt("int", minimum=1),
            "seed": opt("int", 0),
            "clip_checkpoint": opt("str", doc="open_clip weights file for the CLIP direction loss"),
            "overwrite": opt("bool", False),
            "steady_motion": opt("bool", False, "steady the style over time along the motion: moving "
                                 "strokes stay crisp, the render is slower; since 2.5"),
            "dither": opt("bool", False, "where the references are a dither of a few inks, dot every "
                          "frame with those inks instead of a smooth tone; since 2.6"),
        },
        buffers={"reference": BufferSpec(("uint8",), (None, None, 3), doc="reference image RGB"),
                 **{name: BufferSpec(("uint8",), (None, None, 3), doc="a further reference image RGB, "
                                     "for the same place of params.more_frames")
                    for name in MORE_REFERENCES}},
        check=_check_edit,
        doc="paper stage 2: restyle the avatar from reference images of 1-4 subject frames",
    ),
    "render": JobKind(
        fields={
            "subject_id": req("str"),
            "style": opt("str", doc="style name; None renders the un-styled avatar"),
            "names": req("list[str]", "curve names, one per column of the curves buffer",
                         max_len=MAX_NAMES, item_len=MAX_NAME_CHARS),
            "fps": req("float", minimum=1e-6, maximum=1e6),
            "frame_start": opt("int", 0, "frame number of row 0", minimum=FRAME_MIN, maximum=FRAME_MAX),
            "frame_range": opt("list[int]", doc="[first, last] frame numbers (inclusive) to render",
                               minimum=FRAME_MIN, maximum=FRAME_MAX, max_len=2),
            "encoding": opt("str", "raw", choices=FRAME_ENCODINGS),
            "png_level": opt("int", 1, "PNG compression level when encoding is png", minimum=0, maximum=9),
            "size": opt("int", doc="output size in pixels (default: the avatar's)", minimum=16, maximum=4096),
            "preview": opt("bool", False, "a live preview: kept in memory only (no journal row, no files), "
                                          "run ahead of other renders, a few frames at most"),
        },
        buffers={
            "curves": BufferSpec(("float32",), ("T", "K"), required=True, doc="expression values"),
            "pose": BufferSpec(("float32",), ("T", 6),
                               doc="head pose, subject crop convention (FaceRig.project): yaw, pitch, "
                                   "roll (rad), tx, ty, tz (crop pixels); used to rasterise when no uv_maps"),
            "scale": BufferSpec(("float32",), ("T",),
                                doc="head scale, subject crop convention (crop pixels per cm); used with "
                                    "pose to rasterise (default: the subject's median); since 1.1"),
            "uv_maps": BufferSpec(("float16",), ("T", "H", "W", 3),
                                  doc="UV maps from Blender (u, v, mask); else rasterised by the backend"),
        },
        bind={"K": "names"},
        check=_check_render,
        scan=_scan_render,
        doc="expression curves (+ UV maps or pose) -> frames streamed back under credit",
    ),
}

# --------------------------------------------------------------------------------------------
# the message table

_RIG_BUFFERS: dict[str, BufferSpec] = {
    "neutral": BufferSpec(("float32",), ("V", 3), required=True, doc="neutral mesh vertices (cm)"),
    "deltas": BufferSpec(("float32",), ("K", "V", 3), required=True, doc="blendshape offsets per name"),
    "uvs": BufferSpec(("float32",), ("V", 2), required=True),
    "triangles": BufferSpec(("int32",), ("F", 3), required=True),
    "expressions": BufferSpec(("float32",), ("T", "K"), doc="tracked curves per frame"),
    "pose": BufferSpec(("float32",), ("T", 6), doc="tracked head pose per frame"),
    "scale": BufferSpec(("float32",), ("T",), doc="tracked scale per frame"),
}

_REQUESTS: dict[str, MessageSpec] = {
    "hello": MessageSpec("request", "shell", {
        "client": opt("str", "", "client name and version"),
        "capabilities": opt("list[str]", []),
    }, doc="handshake; also a cheap ping"),
    "job_submit": MessageSpec("request", "shell", {
        "kind": req("str", choices=tuple(JOB_KINDS)),
        "params": req("dict", doc="validated against JOB_KINDS[kind]"),
        "job_id": opt("str", doc="client-chosen idempotency key"),
    }, doc="start a job; returns at once"),
    "job_status": MessageSpec("request", "shell", {
        "job_id": opt("str", doc="None: server status only"),
    }),
    "job_list": MessageSpec("request", "shell", {
        "offset": opt("int", 0, "skip this many jobs (oldest first); since 2.0", minimum=0),
        "limit": opt("int", JOB_LIST_PAGE, "jobs per page; since 2.0", minimum=1, maximum=MAX_JOB_LIST_PAGE),
    }, doc="one page of the journal, oldest first"),
    "job_cancel": MessageSpec("request", "control", {"job_id": req("str")}),
    "frames_credit": MessageSpec("request", "shell", {
        "job_id": req("str"),
        "credit": req("int", "how many more frames the client can take now", minimum=0),
        "start": opt("int", doc="first frame index the client still needs (resume after reconnect)",
                     minimum=0),
    }, doc="flow control for frame streaming; also (re)attaches this client to the job's frames"),
    "shutdown": MessageSpec("request", "control", {"reason": opt("str", "")}),
    "subject_list": MessageSpec("request", "shell", {}),
    "subject_get": MessageSpec("request", "shell", {"subject_id": req("str")}),
    "upload_chunk": MessageSpec("request", "shell", {
        "upload_id": req("str", "client-chosen id (uuid hex) for the whole file"),
        "filename": req("str", "original file name (suffix kept)"),
        "offset": req("int", minimum=0),
        "total": req("int", "file size in bytes", minimum=0),
        "final": opt("bool", False),
        "checksum": opt("str", doc="crc32:<hex> of the whole file, on the final chunk"),
    }, buffers={"data": BufferSpec(("uint8",), (None,), required=True)}),
}

_REPLIES: dict[str, MessageSpec] = {
    "hello_reply": MessageSpec("reply", "shell", {
        "server": req("str", "server name and version"),
        "proto": req("str", "protocol version major.minor"),
        "instance_id": req("str", "changes when the backend restarts"),
        "device": req("str", "cpu, cuda:0, ..."),
        "pid": opt("int"),
        "capabilities": opt("list[str]", []),
        "job_kinds": opt("list[str]", []),
        "max_message_bytes": opt("int"),
        "state": opt("str", choices=SERVER_STATES,
                     doc="starting while the backend still imports torch after its start"),
    }),
    "job_submit_reply": MessageSpec("reply", "shell", {
        "job_id": req("str"),
        "state": req("str", choices=JOB_STATES),
        "existing": opt("bool", False, "True when job_id was already known (idempotent resubmit)"),
    }),
    "job_status_reply": MessageSpec("reply", "shell", {
        "instance_id": req("str"),
        "job": opt("dict", schema=JOB_RECORD),
        "queue": opt("int", 0),
        "state": opt("str", choices=SERVER_STATES),
    }),
    "job_list_reply": MessageSpec("reply", "shell", {
        "instance_id": req("str"),
        "jobs": req("list[dict]", schema=JOB_RECORD),
        "total": opt("int", doc="jobs in the journal; since 2.0"),
        "next_offset": opt("int", doc="offset of the next page, None after the last; since 2.0"),
    }),
    "job_cancel_reply": MessageSpec("reply", "control", {
        "job_id": req("str"),
        "state": req("str", choices=JOB_STATES),
    }),
    "frames_credit_reply": MessageSpec("reply", "shell", {
        "job_id": req("str"),
        "credit": opt("int", 0, "credit now outstanding"),
    }),
    "shutdown_reply": MessageSpec("reply", "control", {}),
    "subject_list_reply": MessageSpec("reply", "shell", {
        "subjects": req("list[dict]", doc="subject_id, frames, has_avatar, styles, ..."),
    }),
    "subject_get_reply": MessageSpec("reply", "shell", {
        "subject_id": req("str"),
        "names": req("list[str]", "expression names, one per blendshape / curve column",
                     max_len=MAX_NAMES, item_len=MAX_NAME_CHARS),
        "fps": req("float", minimum=1e-6),
        "meta": opt("dict", {}),
    }, buffers=_RIG_BUFFERS, bind={"K": "names"}),
    "upload_chunk_reply": MessageSpec("reply", "shell", {
        "upload_id": req("str"),
        "received": req("int", "bytes received so far"),
        "done": opt("bool", False),
    }),
    "error_reply": MessageSpec("reply", "shell", {}, doc="answer to a message of unknown type"),
}

_EVENTS: dict[str, MessageSpec] = {
    "status": MessageSpec("event", "events", {
        "instance_id": req("str"),
        "state": req("str", choices=SERVER_STATES),
        "queue": opt("int", 0),
        "running": opt("list[str]", []),
        "device": opt("str"),
        "uptime": opt("float"),
    }, doc="heartbeat"),
    "job_progress": MessageSpec("event", "events", {
        "job_id": req("str"),
        "stage": req("str"),
        "step": req("int"),
        "total": req("int"),
        "losses": opt("dict[str,float]", {}),
        "eta": opt("float", doc="seconds left, None when unknown"),
    }),
    "job_state": MessageSpec("event", "events", {
        "job_id": req("str"),
        "state": req("str", choices=JOB_STATES),
        "kind": opt("str"),
        "error": opt("str"),
        "outputs": opt("dict", {}),
    }),
    "log": MessageSpec("event", "events", {
        "level": req("str", choices=LOG_LEVELS),
        "text": req("str"),
        "job_id": opt("str"),
        "logger": opt("str"),
    }),
    "frame": MessageSpec("event", "shell", {
        "job_id": req("str"),
        "index": req("int", "0-based row of the curves", minimum=0),
        "total": opt("int", doc="number of frames the job produces"),
        "frame": opt("int", doc="frame number (frame_start + index)"),
        "encoding": req("str", choices=FRAME_ENCODINGS),
        "checksum": req("str", "crc32:<hex> of the image buffer bytes"),
    }, buffers={"image": BufferSpec(("uint8",), None, required=True,
                                    doc="raw: H x W x 3 RGB; png: 1-D PNG file bytes")},
        doc="one rendered frame, sent on the shell socket to the client that gave credit"),
}

MESSAGES: dict[str, MessageSpec] = {**_REQUESTS, **_REPLIES, **_EVENTS}
"""Every message type of protocol 1.x."""

REQUESTS: tuple[str, ...] = tuple(_REQUESTS)
REPLIES: tuple[str, ...] = tuple(_REPLIES)
EVENTS: tuple[str, ...] = tuple(_EVENTS)


def reply_type(msg_type: str) -> str:
    """``"hello"`` -> ``"hello_reply"``; ``"error_reply"`` for anything that is not a request."""
    return f"{msg_type}_reply" if msg_type in _REQUESTS else "error_reply"


# --------------------------------------------------------------------------------------------
# validation

_ERROR_FIELDS: dict[str, Field] = {
    "status": req("str", choices=STATUS),
    "ename": req("str", "exception class name"),
    "evalue": req("str", "readable error message"),
}


def _is_number(v: Any) -> bool:
    return (type(v) is float or type(v) is int) or (isinstance(v, int | float) and not isinstance(v, bool))


_FAST_CHECKS: dict[str, Callable[[Any], bool]] = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: type(v) is int or (isinstance(v, int) and not isinstance(v, bool)),
    "float": _is_number,
    "bool": lambda v: isinstance(v, bool),
    "dict": lambda v: isinstance(v, dict),
    "list": lambda v: isinstance(v, list),
    "any": lambda v: True,
    "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "list[dict]": lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
    "list[int]": lambda v: isinstance(v, list) and all(
        type(x) is int or (isinstance(x, int) and not isinstance(x, bool)) for x in v),
    "list[float]": lambda v: isinstance(v, list) and all(_is_number(x) for x in v),
    "dict[str,float]": lambda v: isinstance(v, dict) and all(_is_number(x) for x in v.values()),
}


def _type_ok(type_: str, value: Any) -> bool:
    check = _FAST_CHECKS.get(type_)
    if check is not None:
        return check(value)
    if type_ == "any":
        return True
    if type_ == "str":
        return isinstance(value, str)
    if type_ == "bool":
        return isinstance(value, bool)
    if type_ == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_ == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if type_ == "dict":
        return isinstance(value, dict)
    if type_ == "list":
        return isinstance(value, list)
    if type_.startswith("list[") and type_.endswith("]"):
        return isinstance(value, list) and all(_type_ok(type_[5:-1], v) for v in value)
    if type_ == "dict[str,float]":
        return isinstance(value, dict) and all(_type_ok("float", v) for v in value.values())
    raise ValueError(f"unknown field type {type_!r} in the message table")


def _check_field(name: str, spec: Field, value: Any, where: str) -> Any:
    if not _type_ok(spec.type, value):
        raise SchemaError(f"{where}: field {name!r} must be {spec.type}, got {type(value).__name__} "
                          f"{short_repr(value)}", field=name)
    t = spec.type
    if t == "str" or t.startswith("list"):
        limit = spec.max_len or (MAX_FIELD_CHARS if t == "str" else MAX_LIST_ITEMS)
        if len(value) > limit:
            unit = "characters" if t == "str" else "items"
            raise SchemaError(f"{where}: field {name!r} has {len(value)} {unit}; at most {limit}", field=name)
    if t == "list[str]":
        item_limit = spec.item_len or MAX_FIELD_CHARS
        if value and max(map(len, value)) > item_limit:
            raise SchemaError(f"{where}: field {name!r} has an item over {item_limit} characters", field=name)
    if t == "float":
        value = float(value)
        if not math.isfinite(value):
            raise SchemaError(f"{where}: field {name!r} must be a finite number, got {value}", field=name)
    if spec.choices is not None and value not in spec.choices:
        raise SchemaError(f"{where}: field {name!r} is {short_repr(value)}; expected one of "
                          f"{', '.join(map(str, spec.choices))}", field=name)
    if t in ("int", "float", "list[int]"):
        lo = spec.minimum if spec.minimum is not None else (INT_MIN if t != "float" else None)
        hi = spec.maximum if spec.maximum is not None else (INT_MAX if t != "float" else None)
        values = value if t == "list[int]" else (value,)
        if values and lo is not None and min(values) < lo:
            raise SchemaError(f"{where}: field {name!r} is {short_repr(value)}; must be >= {lo}", field=name)
        if values and hi is not None and max(values) > hi:
            raise SchemaError(f"{where}: field {name!r} is {short_repr(value)}; must be <= {hi}", field=name)
    if spec.schema is not None:
        if t == "dict":
            value = validate_fields(spec.schema, value, f"{where}.{name}")
        elif t == "list[dict]":
            value = [validate_fields(spec.schema, v, f"{where}.{name}[{i}]") for i, v in enumerate(value)]
    elif t == "dict[str,float]":
        value = {k: float(v) for k, v in value.items()}
        if not all(map(math.isfinite, value.values())):
            raise SchemaError(f"{where}: field {name!r} holds a value that is not a finite number",
                              field=name)
    elif t == "list[float]":
        value = [float(v) for v in value]
    return value


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict = 2, 40, 40, 4, 4


def short_repr(value: Any) -> str:
    """A short repr for error messages: bounded in length and depth (never recursion-deep)."""
    try:
        text = _REPR.repr(value)
    except Exception:  # a repr that fails must not turn a readable error into another error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def validate_fields(fields: Mapping[str, Field], content: Any, where: str) -> dict[str, Any]:
    """Validate ``content`` against ``fields``; returns a new dict with defaults filled.

    Unknown keys are kept unchanged. ``where`` prefixes error messages (e.g. ``"job_submit"``).
    """
    if not isinstance(content, dict):
        raise SchemaError(f"{where}: content must be a map, got {type(content).__name__}")
    out = dict(content)
    for name, spec in fields.items():
        value = content.get(name)
        if value is None:
            if spec.required:
                raise SchemaError(f"{where}: required field {name!r} is missing ({spec.type}"
                                  f"{': ' + spec.doc if spec.doc else ''})", field=name)
            default = spec.default
            out[name] = list(default) if isinstance(default, list) else (
                dict(default) if isinstance(default, dict) else default)
            continue
        out[name] = _check_field(name, spec, value, where)
    return out


def spec_for(msg_type: Any) -> MessageSpec:
    """The :class:`MessageSpec` of ``msg_type`` or :class:`UnknownMessageType`."""
    spec = MESSAGES.get(msg_type) if isinstance(msg_type, str) else None
    if spec is None:
        raise UnknownMessageType(f"unknown msg_type {short_repr(msg_type)}; this side knows: "
                                 f"{', '.join(REQUESTS + EVENTS)} (+ their replies)")
    return spec


def is_error(content: Mapping[str, Any]) -> bool:
    return content.get("status") == "error"


def validate(msg_type: str, content: Any) -> dict[str, Any]:
    """Check ``content`` of a ``msg_type`` message; returns it with defaults filled.

    Raises :class:`UnknownMessageType`, :class:`SchemaError` (field named). For ``job_submit``
    the ``params`` are validated against ``JOB_KINDS[kind]`` (errors name ``params.<field>``).
    """
    spec = spec_for(msg_type)
    if spec.role == "reply":
        if not isinstance(content, dict):
            raise SchemaError(f"{msg_type}: content must be a map, got {type(content).__name__}")
        if content.get("status") == "error":
            return validate_fields(_ERROR_FIELDS, content, msg_type)
        out = validate_fields({"status": _ERROR_FIELDS["status"]}, content, msg_type)
        return validate_fields(spec.fields, out, msg_type)
    out = validate_fields(spec.fields, content, msg_type)
    if msg_type == "job_submit":
        kind = JOB_KINDS[out["kind"]]
        try:
            out["params"] = validate_fields(kind.fields, out["params"], f"job_submit {out['kind']} params")
        except SchemaError as exc:
            exc.field = f"params.{exc.field}" if exc.field else "params"
            raise
    return out


def _match_shapes(where: str, specs: Mapping[str, BufferSpec], buffers: Mapping[str, np.ndarray],
                  bind: Mapping[str, str], content: Mapping[str, Any]) -> None:
    symbols: dict[str, tuple[int, str]] = {}
    for sym, fname in bind.items():
        value = content.get(fname)
        if isinstance(value, list):
            symbols[sym] = (len(value), f"len({fname})")
    for name, bspec in specs.items():
        arr = buffers.get(name)
        if arr is None:
            if bspec.required:
                shape = f" {bspec.shape}" if bspec.shape else ""
                raise BufferSpecError(f"{where}: required buffer {name!r} is missing "
                                      f"({'/'.join(bspec.dtypes)}{shape})")
            continue
        if dtype_name(arr.dtype) not in bspec.dtypes:
            raise BufferSpecError(f"{where}: buffer {name!r} has dtype {arr.dtype}; expected "
                                  f"{' or '.join(bspec.dtypes)} (convert with .astype)")
        if bspec.shape is None:
            continue
        if arr.ndim != len(bspec.shape):
            raise BufferSpecError(f"{where}: buffer {name!r} has shape {arr.shape}; expected "
                                  f"{len(bspec.shape)} dimensions {bspec.shape}")
        for axis, (want, got) in enumerate(zip(bspec.shape, arr.shape, strict=True)):
            if isinstance(want, int) and want != got:
                raise BufferSpecError(f"{where}: buffer {name!r} has shape {arr.shape}; "
                                      f"axis {axis} must be {want}")
            if isinstance(want, str):
                if want in symbols and symbols[want][0] != got:
                    raise BufferSpecError(f"{where}: buffer {name!r} has shape {arr.shape}; "
                                          f"axis {axis} ({want}) must equal {symbols[want][1]} = "
                                          f"{symbols[want][0]}")
                symbols.setdefault(want, (got, f"{name}.shape[{axis}]"))


def validate_buffers(msg_type: str, content: Mapping[str, Any], buffers: Mapping[str, np.ndarray], *,
                     scan_values: bool = True) -> None:
    """Check buffers (names, dtypes, shape symbols, cross-field rules) of a validated message.

    Unknown buffer names are ignored like unknown fields. Error replies are not checked.
    ``scan_values=False`` leaves out the rules that read every value (see :func:`scan_values`).
    Raises :class:`BufferSpecError`, :class:`SchemaError` or :class:`CurveError`.
    """
    spec = _rules_of(msg_type, content)
    if spec is None:
        return
    where, rules, params = spec
    _match_shapes(where, rules.buffers, buffers, rules.bind, params)
    if rules.check is not None:
        rules.check(dict(params), dict(buffers))
    if scan_values and rules.scan is not None:
        rules.scan(dict(params), dict(buffers))


def scan_values(msg_type: str, content: Mapping[str, Any], buffers: Mapping[str, np.ndarray]) -> None:
    """The checks that read every buffer value (a render's NaN scan): linear in the buffer bytes,
    so a server runs them off its I/O thread. Raises :class:`CurveError`."""
    spec = _rules_of(msg_type, content)
    if spec is not None and spec[1].scan is not None:
        spec[1].scan(dict(spec[2]), dict(buffers))


def _rules_of(msg_type: str, content: Mapping[str, Any]
              ) -> tuple[str, MessageSpec | JobKind, Mapping[str, Any]] | None:
    spec = spec_for(msg_type)
    if spec.role == "reply" and is_error(content):
        return None
    if msg_type == "job_submit":
        kind_name = content.get("kind")
        kind = JOB_KINDS.get(kind_name) if isinstance(kind_name, str) else None
        if kind is None:
            raise SchemaError(f"job_submit: unknown kind {short_repr(kind_name)}", field="kind")
        params = content.get("params", {})
        return f"job_submit {kind_name}", kind, params if isinstance(params, Mapping) else {}
    return msg_type, spec, content


__all__ = [
    "EVENTS",
    "FINAL_JOB_STATES",
    "FRAME_ENCODINGS",
    "JOB_KINDS",
    "JOB_RECORD",
    "JOB_STATES",
    "LOG_LEVELS",
    "MESSAGES",
    "REPLIES",
    "REQUESTS",
    "SERVER_STATES",
    "BufferSpec",
    "Field",
    "JobKind",
    "MessageSpec",
    "is_error",
    "reply_type",
    "scan_values",
    "short_repr",
    "spec_for",
    "validate",
    "validate_buffers",
    "validate_fields",
]
