"""Style files: the stage-2 result, i.e. a style translator and/or skip-connection weights, plus meta.

Format (``SUBJECT/styles/<name>.style``, written atomically): a ``torch.save`` of a plain dict
that loads with ``torch.load(weights_only=True)``::

    {"format": "emo-avatar-style", "version": 2,
     "meta_json": "<JSON text>",             # see REQUIRED_META and edit_avatar for the fields
     "skips": {"<param name>": Tensor, ...},  # avatar.skips.state_dict(); {} when the edit kept them
     "translator": {"config": {...}, "state": {...}}}  # optional: backend.style.translator

Version 1 files (the paper's skip-only edit) hold no translator and read as such. Meta names the
subject id and the SHA-256 of the stage-1 checkpoint the style was made on; ``apply_style``
refuses a style from another subject or checkpoint: skip weights only make sense on top of the
frozen network they were trained with, and a translator learned that network's renders.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from backend.train.checkpoint import torch_load_reason
from protocol.fileio import atomic_path

log = logging.getLogger(__name__)

STYLE_FORMAT = "emo-avatar-style"
STYLE_VERSION = 2
REQUIRED_META = ("subject_id", "checkpoint_sha256")


class StyleError(ValueError):
    """A style file cannot be read or used; the message says why."""


class StyleMismatchError(StyleError):
    """The style was made for another subject or another base checkpoint."""


@dataclass
class Style:
    """A loaded style: the skip-module state (may be empty), the translator entry (or None) and meta."""

    skips: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    translator: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or (self.path.stem if self.path else "style"))


def _skips(avatar: nn.Module) -> nn.Module:
    skips = getattr(avatar, "skips", None)
    if not isinstance(skips, nn.Module):
        raise TypeError(
            f"{type(avatar).__name__} has no `skips` module; styles hold the skip-connection weights"
        )
    return skips


def save_style(path: Path | str, avatar: nn.Module | None, meta: dict[str, Any],
               translator: nn.Module | None = None) -> Path:
    """Write a style file atomically.

    Args:
        path: the ``.style`` file.
        avatar: whose ``skips`` weights to store (the paper's edit), or None when the edit left
            the skips as trained in stage 1.
        meta: JSON-serialisable meta; needs ``subject_id`` and ``checkpoint_sha256``.
        translator: a ``StyleTranslator`` applied after the generator, or None.
    Raises:
        StyleError: meta lacks a required field, or neither skips nor a translator is given.
    """
    from backend.style.translator import translator_state

    missing = [k for k in REQUIRED_META if not meta.get(k)]
    if missing:
        raise StyleError(f"style meta needs {', '.join(missing)}")
    if avatar is None and translator is None:
        raise StyleError("a style needs skip weights, a translator, or both")
    state = {} if avatar is None else {
        k: v.detach().cpu().clone() for k, v in _skips(avatar).state_dict().items()
    }
    blob: dict[str, Any] = {
        "format": STYLE_FORMAT,
        "version": STYLE_VERSION,
        "meta_json": json.dumps(meta, sort_keys=True),
        "skips": state,
    }
    if translator is not None:
        blob["translator"] = translator_state(translator)
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    n_values = sum(v.numel() for v in state.values())
    if translator is not None:
        n_values += sum(p.numel() for p in translator.parameters())
    kind = "translator, " if translator is not None else ""
    log.info("style written: %s (%s%d values)", path, kind, n_values)
    return path


def load_style(path: Path | str) -> Style:
    """Read a style file (safe loader: tensors, strings and numbers only).

    Raises:
        FileNotFoundError: no such file.
        StyleError: the file is not a style file, or of a newer version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"style file {path} not found")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for foreign or corrupt files
        raise StyleError(f"{path} is not a readable style file: {torch_load_reason(e)}") from e
    if not isinstance(blob, dict) or blob.get("format") != STYLE_FORMAT:
        raise StyleError(f"{path} is not an Emo-Avatar style file (written by `emo-avatar edit`)")
    if int(blob.get("version", 0)) > STYLE_VERSION:
        raise StyleError(
            f"{path} has style format version {blob['version']}; this build reads up to {STYLE_VERSION}"
        )
    skips = blob.get("skips")
    if not isinstance(skips, dict) or not all(isinstance(v, torch.Tensor) for v in skips.values()):
        raise StyleError(f"{path} holds no skip-connection weights")
    translator = blob.get("translator")
    if translator is not None and not isinstance(translator, dict):
        raise StyleError(f"{path} has a malformed translator entry")
    if not skips and translator is None:
        raise StyleError(f"{path} holds neither skip weights nor a translator")
    try:
        meta = json.loads(blob.get("meta_json", "{}"))
    except json.JSONDecodeError as e:
        raise StyleError(f"{path} has unreadable meta: {e}") from e
    return Style(skips=skips, meta=meta, path=path, translator=translator)


def check_style(style: Style, *, subject_id: str, checkpoint_sha256: str) -> None:
    """Raise StyleMismatchError when ``style`` was made for another subject or base checkpoint."""
    where = f"style {style.path or style.name!s}"
    got_subject = style.meta.get("subject_id")
    if got_subject != subject_id:
        raise StyleMismatchError(
            f"{where} belongs to subject {got_subject!r}, not {subject_id!r}; "
            "run `emo-avatar edit` on this subject to make a style for it"
        )
    got_ckpt = style.meta.get("checkpoint_sha256")
    if got_ckpt != checkpoint_sha256:
        raise StyleMismatchError(
            f"{where} was tuned on base checkpoint sha256 {str(got_ckpt)[:12]}..., but this avatar's "
            f"checkpoint is {checkpoint_sha256[:12]}... (retrained since?); "
            "run `emo-avatar edit` again on the current checkpoint"
        )


def apply_style(avatar: nn.Module, style: Style, *, subject_id: str,
                checkpoint_sha256: str) -> nn.Module | None:
    """Load the style into ``avatar`` after checking it belongs to it.

    Skip weights (if the style has any) replace the avatar's; the translator, if any, is built and
    returned: the caller runs it on every rendered image (``backend.style.translator``).

    Returns:
        The ``StyleTranslator`` (eval mode, on the avatar's device) or None.
    Raises:
        StyleMismatchError: other subject, other checkpoint, skip modules of another shape, or a
            translator whose weights do not fit.
    """
    check_style(style, subject_id=subject_id, checkpoint_sha256=checkpoint_sha256)
    translator = None
    if style.translator is not None:
        from backend.style.translator import translator_from_state

        try:
            translator = translator_from_state(style.translator)
        except ValueError as e:
            raise StyleMismatchError(f"style {style.name}: {e}") from e
        device = next(avatar.parameters()).device
        translator = translator.to(device)
    if style.skips:
        _load_skips(avatar, style)
    log.info("applied style %s%s", style.name, " (translator)" if translator is not None else "")
    return translator


def _load_skips(avatar: nn.Module, style: Style) -> None:
    skips = _skips(avatar)
    own = skips.state_dict()
    bad = sorted(set(own) ^ set(style.skips))
    bad += [k for k in own if k in style.skips and own[k].shape != style.skips[k].shape]
    if bad:
        raise StyleMismatchError(
            f"style {style.name} does not fit this avatar's skip modules (differs at {bad[:5]})"
        )
    with torch.no_grad():
        skips.load_state_dict({k: v.to(own[k].device, own[k].dtype) for k, v in style.skips.items()})
