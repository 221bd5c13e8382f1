"""Number formatting and Markdown tables for the report: 3 significant figures, units on times.

Every function returns a string and maps a missing value (None, NaN) to an em dash, so a table
built from partial results still renders.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MISSING = "—"
DIGITS = 3

FRAMEWORK_NAMES = {"pytorch": "PyTorch", "chainer": "Chainer", "jax": "JAX", "pytorch_compile": "PyTorch compiled"}


def framework_name(framework: str) -> str:
    return FRAMEWORK_NAMES.get(framework, framework)


def _missing(x: float | None) -> bool:
    return x is None or not math.isfinite(x)


def sig(x: float | None, digits: int = DIGITS) -> str:
    """`x` to `digits` significant figures, without an exponent between 1e-4 and 1e6."""
    if _missing(x):
        return MISSING
    if x == 0:
        return "0"
    rounded = float(f"{x:.{digits}g}")
    exponent = math.floor(math.log10(abs(rounded)))
    if exponent >= 6 or exponent < -4:
        return f"{x:.{digits - 1}e}"
    return f"{rounded:.{max(0, digits - 1 - exponent)}f}"


# (threshold in seconds, unit, seconds per unit), largest first: a value uses the first unit
# whose threshold it reaches after rounding.
_TIME_UNITS = ((36000.0, "h", 3600.0), (600.0, "min", 60.0), (1.0, "s", 1.0), (1e-3, "ms", 1e-3), (0.0, "µs", 1e-6))


def seconds(x: float | None, signed: bool = False) -> str:
    """A duration with a unit chosen for it: µs, ms, s, min (from 10 min) or h (from 10 h)."""
    if _missing(x):
        return MISSING
    magnitude = abs(float(f"{x:.{DIGITS}g}"))
    for threshold, unit, scale in _TIME_UNITS:
        if magnitude >= threshold:
            text = sig(x / scale)
            if signed and x > 0:
                text = "+" + text
            return f"{text} {unit}"
    raise AssertionError("unreachable")


def variance(v: float | None) -> str:
    """A variance in the largest squared unit (s², ms², µs²) in which it is at least 0.001."""
    if _missing(v):
        return MISSING
    for _, unit, scale in _TIME_UNITS[2:]:
        if abs(v) / scale**2 >= 1e-3:
            return f"{sig(v / scale**2)} {unit}²"
    return f"{sig(v / 1e-12)} µs²"


def mean_std(mean: float | None, std: float | None) -> str:
    if _missing(mean):
        return MISSING
    return f"{seconds(mean)} ± {seconds(std)}"


def ratio(x: float | None) -> str:
    return sig(x)


def percent(x: float | None) -> str:
    """A fraction shown as a percentage."""
    return MISSING if _missing(x) else f"{sig(100 * x)} %"


def flops(x: float | None) -> str:
    if _missing(x):
        return MISSING
    for scale, unit in ((1e12, "TFLOP/s"), (1e9, "GFLOP/s"), (1e6, "MFLOP/s")):
        if abs(float(f"{x:.{DIGITS}g}")) >= scale:
            return f"{sig(x / scale)} {unit}"
    return f"{sig(x)} FLOP/s"


def escape(text: object) -> str:
    """Text safe inside a Markdown table cell (no column breaks, no HTML tags)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace("|", "\\|").replace("\n", " ")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = ()) -> str:
    """A GitHub Markdown table; columns whose index is in `right` are right-aligned (numbers)."""
    align = ["---:" if i in right else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(escape(h) for h in headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(escape(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def join_words(items: Sequence[str], last: str = "and") -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {last} " + items[-1]
