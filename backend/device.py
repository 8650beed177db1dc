"""The one device switch: CUDA when present, CPU otherwise, `--device` to force."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def pick_device(requested: str | None = None) -> torch.device:
    """Return ``torch.device(requested)`` or the best available one.

    ``requested`` is ``None``/``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. Asking for CUDA
    on a machine without it, or a string that names no device, raises ``RuntimeError`` with the reason
    instead of failing later.
    """
    if requested in (None, "", "auto"):
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(requested)
        except RuntimeError:
            raise RuntimeError(f"--device {requested!r} is not a device; use cpu, cuda or cuda:N") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"--device {requested} asked for CUDA, but torch sees no CUDA device here")
    log.info("device: %s", device)
    return device
