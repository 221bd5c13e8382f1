"""What the report's finding modules share: the level of their intervals and a ratio that may be missing."""

from __future__ import annotations

LEVEL = 0.95  # every interval of a cell's time or of an accuracy


def safe_ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or not b > 0 else a / b
