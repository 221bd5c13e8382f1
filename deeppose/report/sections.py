"""Render second: report.md is the template report.md.j2 applied to `Findings` and the names of the
figures drawn. The prose and tables live in the template; this module gives it the filters that
format a number or a cell, so that the template computes nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import jinja2

from deeppose import fmt
from deeppose.compare_stats import Interval, format_interval
from deeppose.report.analysis import Findings
from deeppose.report.breakdown import CONFIRM_SHARE
from deeppose.report.common import LEVEL
from deeppose.report.lines import (
    NOISE_HEADERS,
    answer_groups,
    checks_line,
    control_lines,
    control_rows,
    core_share_line,
    loss_effect_line,
    margins,
    noise_rows,
    planted_rows,
    share,
    single,
    trend_line,
)
from deeppose.report.study import AGREE_TEXT

FINDINGS = "Findings"
APPENDIX = "Appendix: set-up, environment, fairness and cost"
HEADINGS = (
    "Effect of automatic differentiation",
    "Impact of the network implementation",
    "Per-layer breakdown of the core process",
    "Accuracy",
    "Against the original study",
    "Summary",
    APPENDIX,
)
METRICS = {"loss": "test loss", "pcp": "PCP@0.5", "pdj": "PDJ@0.2", "pck": "PCK@0.2"}
FAIRNESS = (
    "dtype",
    "threads",
    "kernel_library",
    "kernel_isa",
    "fp32_math",
    "runtime_checks",
    "optimizer_kernel",
    "allocator",
)
CONSTANTS = {
    "CI": f"{round(LEVEL * 100)} % CI",
    "CONFIRM_SHARE": CONFIRM_SHARE,
    "AGREE_TEXT": AGREE_TEXT,
    "METRICS": METRICS,
    "FAIRNESS": FAIRNESS,
}


def _cells(values: Iterable[Any]) -> list[Any]:
    """Cells with nested lists and generators spliced in (Jinja has no star in a list)."""
    out = []
    for value in values:
        nested = isinstance(value, (list, tuple)) or hasattr(value, "__next__")
        out += _cells(value) if nested else [value]
    return out


def head(headers: list[Any], right: Iterable[int] = ()) -> str:
    """A Markdown table's header; columns whose index is in `right` are right-aligned (numbers)."""
    return fmt.table(_cells(headers), [], right=list(right))


def row(*cells: Any) -> str:
    """One table row, each cell escaped; None prints as an em dash."""
    return "| " + " | ".join(fmt.MISSING if c is None else fmt.escape(c) for c in _cells(cells)) + " |"


def flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts as (dotted key, value as written in the file) rows; long lists of objects counted."""
    if isinstance(data, dict) and data:
        return [pair for k, v in data.items() for pair in flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(data, list) and len(data) > 3 and all(isinstance(item, dict) for item in data):
        return [(prefix, f"{len(data)} entries (see the file)")]
    plain = isinstance(data, (dict, list, bool)) or data is None
    return [(prefix, json.dumps(data, sort_keys=True) if plain else str(data))]


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return "".join(c for c in heading.lower() if c.isalnum() or c in "- ").replace(" ", "-")


def score(metric: str, scores: dict[str, Any]) -> str:
    """A test score (an interval, or a bare number for the baseline): the loss as is, the rest in %."""
    value = scores.get(metric)
    if value is None:
        return fmt.MISSING
    if not isinstance(value, Interval) or value.low is None:
        estimate = value.estimate if isinstance(value, Interval) else value
        return fmt.sig(estimate) if metric == "loss" else fmt.percent(estimate)
    return format_interval(value) if metric == "loss" else format_interval(value, 100, "%")


def gap(metric: str, gaps: dict[str, Any]) -> str:
    """A run's difference from the mean pose, with whether it beats it."""
    g = gaps.get(metric)
    if g is None:
        return fmt.MISSING
    shown = (
        format_interval(g.difference) if metric == "loss" else format_interval(g.difference, 100, "points")
    )
    return f"{shown}: {'beats it' if g.beats else 'does not beat it'}"


def arms_title(arms: tuple[str, str]) -> str:
    """ "Chainer / PyTorch, autograd" for a framework ratio, "Chainer explicit / autograd" for a loss one."""
    (fa, la), (fb, lb) = (arm.split("/") for arm in arms)
    if la == lb:
        return f"{fmt.framework_name(fa)} / {fmt.framework_name(fb)}, {la}"
    return f"{fmt.framework_name(fa)} {la} / {lb}"


def comparison(r: Any, ratios: list[Any] | None = None) -> str:
    """A ratio with its verdict; given `ratios`, `r` is the (a, b) arms of the one to show."""
    if ratios is not None:
        r = next((x for x in ratios if (x.a, x.b) == r), None)
    return f"{format_interval(r.ratio)} {r.verdict.value}" if r else fmt.MISSING


def layer_rate(job: Any, layer: str, phase: str) -> str:
    """A layer's achieved GFLOP/s, with its share of the best observed kernel rate in brackets."""
    x = next((y for y in job.layers if (y.layer, y.phase) == (layer, phase) and y.flops_per_s), None)
    return f"{fmt.sig(x.flops_per_s / 1e9)} ({fmt.percent(x.fraction_of_peak)})" if x else fmt.MISSING


def by_pair(diffs: Iterable[Any]) -> list[tuple[tuple[str, str], list[Any]]]:
    """Accuracy differences grouped by (framework, loss), in their order."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for x in diffs:
        groups.setdefault((x.framework, x.loss), []).append(x)
    return list(groups.items())


def pairs(items: Any, sep: str = ", ") -> str:
    """A mapping (or its items) as "key value" pairs: steering variables, an allocator policy."""
    return sep.join(f"{k} {v}" for k, v in dict(items).items())


def _setting(v: Any) -> Any:
    return v if isinstance(v, str) or v is None else pairs(v) if isinstance(v, dict) else json.dumps(v)


def fairness_table(fair: Any) -> tuple[list[str], list[list[Any]]]:
    """A fairness manifest comparison with one column per framework and one row per setting (so the
    table stays narrow however many settings there are)."""
    frameworks = list(fair.common)
    rows = [[field] + [_setting(fair.common[fw].get(field)) for fw in frameworks] for field in FAIRNESS]
    rows.append(["steering variables"] + [pairs(sorted(fair.env[fw].items())) or "none" for fw in frameworks])
    return ["setting"] + [fmt.framework_name(fw) for fw in frameworks], rows


def in_units(x: float | None, scale: float, decimals: int | None = None) -> str:
    """`x` times `scale`, to three significant digits (or `decimals` places); a dash when absent."""
    if x is None:
        return fmt.MISSING
    return fmt.sig(x * scale) if decimals is None else f"{x * scale:.{decimals}f}"


FILTERS = {
    "name": fmt.framework_name,
    "sig": fmt.sig,
    "seconds": fmt.seconds,
    "percent": fmt.percent,
    "flops": fmt.flops,
    "ms": lambda x, signed=False: fmt.scaled(x, 1e-3, signed),
    "interval": format_interval,
    "single": single,
    "in_units": in_units,
    "share": share,
    "words": fmt.join_words,
    "cell": fmt.escape,
    "flatten": flatten,
    "anchor": anchor,
    "score": score,
    "gap": gap,
    "arms_title": arms_title,
    "comparison": comparison,
    "layer_rate": layer_rate,
    "by_pair": by_pair,
    "code": lambda x: f"`{x}`",
    "pairs": pairs,
    "kernels": lambda rates: ", ".join(
        f"{k.replace('_', ' ')} {fmt.flops(v)}" for k, v in rates.items() if v
    ),
    "setting": _setting,
    "extract": lambda key, mapping: mapping.get(key),
    "format_with": lambda value, text: text.replace("{}", str(value)),
    "verdict": lambda v: v.value,
    "arms": lambda r: (r.a, r.b),
}
TESTS = {"beats_all": lambda r: bool(r.gaps) and all(g.beats for g in r.gaps.values())}


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("deeppose.report", "."),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(FILTERS)
    env.tests.update(TESTS)
    env.globals.update(
        CONSTANTS,
        head=head,
        row=row,
        noise_rows=noise_rows,
        control_rows=control_rows,
        planted_rows=planted_rows,
        control_lines=control_lines,
        margins=margins,
        trend_line=trend_line,
        answer_groups=answer_groups,
        fairness_table=fairness_table,
        core_share_line=core_share_line,
        loss_effect_line=loss_effect_line,
        checks_line=checks_line,
        NOISE_HEADERS=NOISE_HEADERS,
    )
    return env


def document(f: Findings, figures: set[str], title: str, changes: str | None = None) -> str:
    """The whole report.md; `changes` (deeppose.compare's markdown, its first line the baseline)
    opens it as its own section."""
    baseline, _, markdown = (changes or "").partition("\n")
    headings = [FINDINGS] + ([f"Changes since {baseline}"] if changes else []) + list(HEADINGS)
    text = (
        _environment()
        .get_template("report.md.j2")
        .render(
            f=f,
            figures=figures,
            title=title,
            headings=headings,
            changes={"baseline": baseline, "markdown": markdown.strip()} if changes else None,
        )
    )
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def section(heading: str, f: Findings, figures: set[str]) -> str:
    """One section's body (e.g. "Per-layer breakdown of the core process"), as the whole report has it."""
    text = document(f, figures, "")
    start = re.search(rf"^## \d+\. {re.escape(heading)}\n", text, flags=re.M)
    stop = re.search(r"^## ", text[start.end() :], flags=re.M)
    return text[start.end() : start.end() + stop.start() if stop else None].strip() + "\n"
