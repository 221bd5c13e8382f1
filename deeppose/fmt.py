"""Numbers as the report prints them (3 significant figures, a unit on every time) and Markdown
tables. A missing value (None) prints as an em dash."""

from __future__ import annotations

import math
from collections.abc import Sequence

MISSING = "—"
DIGITS = 3
FRAMEWORK_NAMES = {
    "pytorch": "PyTorch",
    "chainer": "Chainer",
    "jax": "JAX",
    "pytorch_compile": "PyTorch compiled",
}
# (threshold in seconds, unit, seconds per unit), largest first: a value takes the first unit it reaches
_TIME_UNITS = (
    (36000.0, "h", 3600.0),
    (600.0, "min", 60.0),
    (1.0, "s", 1.0),
    (1e-3, "ms", 1e-3),
    (0.0, "µs", 1e-6),
)


def framework_name(framework: str) -> str:
    return FRAMEWORK_NAMES.get(framework, framework)


def sig(x: float | None, digits: int = DIGITS) -> str:
    """`x` to `digits` significant figures, without an exponent between 1e-4 and 1e6."""
    if x is None or not math.isfinite(x):
        return MISSING
    if x == 0:
        return "0"
    rounded = float(f"{x:.{digits}g}")
    exponent = math.floor(math.log10(abs(rounded)))
    if exponent >= 6 or exponent < -4:
        return f"{x:.{digits - 1}e}"
    return f"{rounded:.{max(0, digits - 1 - exponent)}f}"


def seconds(x: float | None, signed: bool = False) -> str:
    """A duration in µs, ms, s, min (from 10 min) or h (from 10 h)."""
    if x is None:
        return MISSING
    magnitude = abs(float(f"{x:.{DIGITS}g}"))
    threshold, unit, scale = next(u for u in _TIME_UNITS if magnitude >= u[0])
    return f"{'+' if signed and x > 0 else ''}{sig(x / scale)} {unit}"


def percent(x: float | None) -> str:
    """A fraction as a percentage."""
    return MISSING if x is None else f"{sig(100 * x)} %"


def flops(x: float | None, unit: str = "FLOP/s") -> str:
    if x is None:
        return MISSING
    scale, prefix = next(
        (
            (s, p)
            for s, p in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1.0, ""))
            if abs(float(f"{x:.{DIGITS}g}")) >= s
        ),
        (1.0, ""),
    )
    return f"{sig(x / scale)} {prefix}{unit}"


def escape(text: object) -> str:
    """Text safe inside a Markdown table cell (no column breaks, no HTML tags)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace("|", "\\|").replace("\n", " ")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = ()) -> str:
    """A GitHub Markdown table; columns whose index is in `right` are right-aligned (numbers)."""
    align = ["---:" if i in right else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(escape(h) for h in headers) + " |", "| " + " | ".join(align) + " |"]
    return "\n".join(lines + ["| " + " | ".join(escape(cell) for cell in row) + " |" for row in rows])


def join_words(items: Sequence[str], last: str = "and") -> str:
    items = list(items)
    return "".join(items) if len(items) <= 1 else ", ".join(items[:-1]) + f" {last} " + items[-1]


def scaled(x: float | None, scale: float, signed: bool = False) -> str:
    """`x` / `scale` to 3 significant figures: a column whose unit is in its header (ms, µs, s)."""
    return MISSING if x is None else ("+" if signed and x > 0 else "") + sig(x / scale)
