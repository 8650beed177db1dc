"""Integer range expressions as Open Job Description writes them: ``"1-10"``, ``"7"``,
``"1-3,5,7-20:2"`` (ends inclusive, optional ``:step``). One parser for the chunk runner and the
bundle writer, and the inverse for log lines and parameter values."""

from __future__ import annotations

from collections.abc import Iterable


class RangeError(ValueError):
    """Not a valid integer range expression."""


def parse_range(expr: str) -> list[int]:
    """``"1-3,5,7-11:2"`` -> ``[1, 2, 3, 5, 7, 9, 11]`` (sorted, unique).

    Raises:
        RangeError: empty, not integers, a descending range or a step below 1.
    """
    text = expr.strip()
    if not text:
        raise RangeError("empty frame range (use e.g. 1001-1100)")
    out: set[int] = set()
    for part in text.split(","):
        item = part.strip()
        try:
            if ":" in item:
                span, step_text = item.split(":", 1)
                step = int(step_text)
            else:
                span, step = item, 1
            # a leading '-' is a negative number, the next '-' separates the ends
            cut = span.find("-", 1)
            lo, hi = (int(span), int(span)) if cut < 0 else (int(span[:cut]), int(span[cut + 1:]))
        except ValueError:
            raise RangeError(f"{expr!r}: {item!r} is not N, A-B or A-B:STEP (integers)") from None
        if step < 1:
            raise RangeError(f"{expr!r}: step {step} must be at least 1")
        if hi < lo:
            raise RangeError(f"{expr!r}: {item!r} runs backwards (write {hi}-{lo})")
        out.update(range(lo, hi + 1, step))
    return sorted(out)


def format_range(values: Iterable[int]) -> str:
    """Sorted unique integers -> the shortest ``"A-B,C"`` expression (contiguous runs only)."""
    vals = sorted(set(values))
    runs: list[str] = []
    i = 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        runs.append(str(vals[i]) if i == j else f"{vals[i]}-{vals[j]}")
        i = j + 1
    return ",".join(runs)
