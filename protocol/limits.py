"""Every bound the protocol enforces, in one place (docs/protocol.md prints this table).

Decoding checks them in this order: frame count and dict frame sizes (before the HMAC is
computed), then msgpack limits while unpacking (lengths, nesting), then the message table
(field lengths, int ranges, list lengths), then buffer descriptors (dimensions, sizes). A
message over any bound is refused with a :class:`~protocol.errors.ProtocolError` subclass
naming the bound; a receiver never allocates more than the bound allows.
"""

from __future__ import annotations

DEFAULT_MAX_MESSAGE_BYTES = 512 * 1024 * 1024
"""Summed frame bytes of one message (serve --max-message-mb). 512 MiB hold ~1300 UV maps of
256x256x3 float16, the biggest buffer a client sends (a shot's UV maps in one render job).
libzmq's per-frame cap (``ZMQ_MAXMSGSIZE``) is the same number: no single buffer can be bigger
than the message holding it."""
MAX_FRAMES = 1024
"""Frames per message: identities + delimiter + signature + 3 dicts + buffers."""
MAX_IDENTITIES = 16
"""ROUTER routing identities before the delimiter."""
MAX_DICT_BYTES = 4 * 1024 * 1024
"""Each of header, parent_header and content (big data goes in buffers). Checked before the
HMAC runs, so an unauthenticated peer costs at most 3 x 4 MiB of hashing."""
MAX_NESTING = 32
"""Depth of maps and lists inside one dict (content = depth 1)."""
MAX_LIST_ITEMS = 4096
"""Items of any list in a message (also msgpack's array limit)."""
MAX_MAP_ITEMS = 1024
"""Keys of any map in a message (also msgpack's map limit)."""
MAX_STR_BYTES = 65536
"""Bytes of any string or binary value in a message."""
MAX_HEADER_STR = 64
"""Characters of the header's msg_id, session, msg_type and proto."""
MAX_NAMES = 4096
"""Curve names per curve set (a render job's ``names``, a rig's names)."""
MAX_NAME_CHARS = 256
"""Characters of one curve name."""
MAX_FIELD_CHARS = 4096
"""Characters of a free-text field (paths, reasons, client names, error texts)."""
MAX_ROWS = 1_000_000
"""Rows (frames) of a curve set or a render job."""
MAX_DIM = 2**31
"""Largest buffer dimension."""
MAX_NDIM = 8
"""Most dimensions of a buffer."""
MAX_BUFFERS = MAX_FRAMES - 6
"""Buffers per message (what MAX_FRAMES leaves after the fixed frames)."""
INT_MIN, INT_MAX = -(2**53), 2**53
"""Range of every int field without its own range (exact in a double, safe in JSON)."""
FRAME_MIN, FRAME_MAX = -(2**31), 2**31 - 1
"""Range of frame numbers (``frame_start``, ``frame_range``, ``frame_start + rows - 1``)."""
REPLAY_WINDOW_SECONDS = 120.0
"""A request whose header date is further than this from the receiver's clock is refused."""
REPLAY_HISTORY = 65536
"""Signatures of accepted requests remembered to refuse a replay within the window."""
MAX_CREDIT_BYTES = 64 * 1024 * 1024
"""Frame bytes in flight per stream: a server clamps a stream's frame credit to
``max(1, MAX_CREDIT_BYTES // frame bytes)`` and the client grants no more than that."""
MAX_KEYFRAMES = 4
"""(reference, subject frame) pairs of one style edit: the ``edit`` job's first reference and up to
three more (``more_frames``)."""
JOB_LIST_PAGE = 100
"""Default page size of job_list; at most MAX_JOB_LIST_PAGE."""
MAX_JOB_LIST_PAGE = 500

BOUNDS: tuple[tuple[str, str, str], ...] = (
    ("message bytes (all frames)", f"{DEFAULT_MAX_MESSAGE_BYTES:,} default (`serve --max-message-mb`)",
     "MessageTooLarge"),
    ("bytes of one frame (libzmq MAXMSGSIZE)", "= message bytes; a bigger frame drops the peer", "-"),
    ("frames per message", f"{MAX_FRAMES:,}", "FrameError"),
    ("routing identities", f"{MAX_IDENTITIES}", "FrameError"),
    ("header / parent_header / content frame", f"{MAX_DICT_BYTES:,} bytes each (before the HMAC)",
     "MessageTooLarge"),
    ("nesting of maps and lists", f"{MAX_NESTING}", "FrameError"),
    ("items in any list", f"{MAX_LIST_ITEMS:,}", "FrameError"),
    ("keys in any map", f"{MAX_MAP_ITEMS:,}", "FrameError"),
    ("bytes of any string / binary value", f"{MAX_STR_BYTES:,}", "FrameError"),
    ("header msg_id, session, msg_type, proto", f"{MAX_HEADER_STR} characters", "FrameError"),
    ("free-text fields (paths, names of things, reasons)", f"{MAX_FIELD_CHARS:,} characters",
     "SchemaError"),
    ("curve names per curve set (a render's `names`, `Curves`)", f"{MAX_NAMES:,}",
     "FrameError (list bound) / CurveError"),
    ("characters of a curve name", f"{MAX_NAME_CHARS}", "SchemaError / CurveError"),
    ("rows of a render job", f"{MAX_ROWS:,}", "BufferSpecError"),
    ("buffer dimensions", f"at most {MAX_NDIM}, each <= 2^31", "BufferSpecError"),
    ("buffers per message", f"{MAX_BUFFERS:,}", "BufferSpecError"),
    ("int fields without their own range", "-2^53 .. 2^53", "SchemaError"),
    ("frame numbers (frame_start, frame_range, last frame)", "-2^31 .. 2^31-1", "SchemaError"),
    ("header date vs the receiver's clock", f"+-{REPLAY_WINDOW_SECONDS:g} s", "ReplayError"),
    ("remembered request signatures (replay history)", f"{REPLAY_HISTORY:,}", "ReplayError"),
    ("frame bytes in flight per stream (credit)", f"{MAX_CREDIT_BYTES:,} (at least one frame)", "-"),
    ("job_list page", f"{JOB_LIST_PAGE} default, at most {MAX_JOB_LIST_PAGE}", "SchemaError"),
    ("references of an edit job (keyframes)", f"{MAX_KEYFRAMES}", "SchemaError"),
)
"""(bound, value, error) rows of the table in docs/protocol.md."""


def bounds_markdown() -> str:
    """The bounds table as markdown (docs/protocol.md embeds it)."""
    rows = ["| bound | value | refused with |", "|---|---|---|"]
    rows += [f"| {a} | {b} | `{c}` |" if c != "-" else f"| {a} | {b} | - |" for a, b, c in BOUNDS]
    return "\n".join(rows)


__all__ = [name for name in dir() if name.isupper()] + ["bounds_markdown"]
