"""Refusing replayed requests: a date window plus a bounded history of accepted signatures.

Every header carries ``date`` (ISO-8601 UTC) and a random 128-bit ``msg_id`` under the
signature, so two genuine messages never share a signature. A receiver with a
:class:`ReplayGuard` refuses a signed message (:class:`~protocol.errors.ReplayError`) when

- its date is more than ``window`` seconds from the receiver's clock (captured long ago, or
  clocks that disagree: the error says by how much), or
- its signature was accepted before (kept in an LRU of ``history`` signatures, as Jupyter
  keeps message digests), or
- the history had to forget a signature of a date at or after this message's date (the
  ``horizon``): the message might be a replay the history no longer remembers.

Signatures older than the window are forgotten first (they fail the date check anyway), so the
history only fills under more than ``history`` requests per window. The connection key changes
on every backend start, so nothing signed for an earlier run verifies at all.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

from .errors import ReplayError
from .limits import REPLAY_HISTORY, REPLAY_WINDOW_SECONDS


def parse_date(value: object) -> float:
    """Unix seconds of a header ``date`` (``YYYY-MM-DDTHH:MM:SS.ffffffZ``); ReplayError if unreadable."""
    if isinstance(value, str) and 19 <= len(value) <= 40:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise ReplayError(f"header date {str(value)[:40]!r} is not an ISO-8601 UTC time; the sender's clock "
                      "stamp is required to refuse replays")


class ReplayGuard:
    """See the module docstring. Not thread-safe: one per receiving thread."""

    def __init__(self, window: float = REPLAY_WINDOW_SECONDS, history: int = REPLAY_HISTORY,
                 clock: Callable[[], float] = time.time) -> None:
        self.window = float(window)
        self.history = int(history)
        self.clock = clock
        self.horizon = -math.inf
        self.refused = 0
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, signature: bytes, date: object) -> None:
        """Accept (and remember) a message or raise :class:`ReplayError`."""
        when = parse_date(date)
        now = self.clock()
        if abs(when - now) > self.window:
            self.refused += 1
            raise ReplayError(f"message dated {when - now:+.1f} s from this side's clock; at most "
                              f"{self.window:g} s are accepted (a replayed message, or set the clocks right)")
        if when <= self.horizon:
            self.refused += 1
            raise ReplayError("message is older than this side's replay history (more than "
                              f"{self.history} requests in {self.window:g} s); send it again")
        if signature in self._seen:
            self.refused += 1
            raise ReplayError("this exact signed message was already accepted once (a replay); "
                              "every genuine message has a new msg_id")
        self._seen[signature] = when
        self._forget(now)

    def _forget(self, now: float) -> None:
        seen = self._seen
        oldest = now - self.window
        while seen:
            sig, when = next(iter(seen.items()))
            if len(seen) > self.history:
                self.horizon = max(self.horizon, when)
            elif when >= oldest:
                return
            del seen[sig]


__all__ = ["ReplayGuard", "parse_date"]
