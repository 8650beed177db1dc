"""Progress reporting and cooperative cancellation, shared by every long-running step.

Track, train, edit and render take an optional ``progress`` callback and an optional
``should_stop`` predicate. The CLI prints the updates; the service turns them into
``job_progress`` events and sets ``should_stop`` when a job is cancelled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


class Cancelled(Exception):  # noqa: N818 - reads better at the raise site than CancelledError
    """Raised inside a step when ``should_stop()`` turned true; the step leaves no partial output."""


@dataclass
class ProgressUpdate:
    """One progress report.

    Attributes:
        stage: what runs ("track", "pti", "train", "edit", "render", ...).
        step: steps done so far (0-based count of finished steps).
        total: steps in this stage.
        losses: latest loss values by name (floats).
        eta: estimated seconds until the stage is done, or None when unknown.
        message: optional human-readable note.
    """

    stage: str
    step: int
    total: int
    losses: dict[str, float] = field(default_factory=dict)
    eta: float | None = None
    message: str = ""

    def to_dict(self) -> dict:
        return {
            "stage": self.stage, "step": self.step, "total": self.total,
            "losses": dict(self.losses), "eta": self.eta, "message": self.message,
        }


ProgressFn = Callable[[ProgressUpdate], None]
StopFn = Callable[[], bool]


def check_cancel(should_stop: StopFn | None) -> None:
    """Raise ``Cancelled`` when a stop was requested."""
    if should_stop is not None and should_stop():
        raise Cancelled("stopped on request")


class EtaClock:
    """Estimates the remaining time of a stage from the mean step time so far."""

    def __init__(self, total: int, start_step: int = 0) -> None:
        self.total = total
        self.start_step = start_step
        self.t0 = time.monotonic()

    def eta(self, step: int) -> float | None:
        done = step - self.start_step
        if done <= 0:
            return None
        return (time.monotonic() - self.t0) / done * max(self.total - step, 0)
