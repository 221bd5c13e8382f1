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
from deeppose.report.common import ABOUT_ONE, LEVEL
from deeppose.report.controls import Controls, GroupNoise
from deeppose.report.study import AGREE_WITHIN

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
    "AGREE_WITHIN": AGREE_WITHIN,
    "ABOUT_ONE": ABOUT_ONE,
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


def _level(level: float) -> str:
    return f"{fmt.sig(100 * level).rstrip('0').rstrip('.')} %"


def _disagree(value: bool | None) -> str:
    return "n/a (cannot reach its level at these sizes)" if value is None else "yes" if value else "no"


NOISE_HEADERS = [
    "batch",
    "pairing",
    "rounds (looks)",
    "margin",
    "interval level",
    "SD of log ratio per round",
    "minimum detectable ratio",
    "blocks disagree",
]


def noise_rows(groups: tuple[GroupNoise, ...]) -> list[list[Any]]:
    """Each timing group's design, pooled noise and minimum detectable ratio, as table rows."""
    return [
        [
            g.batch_size,
            g.pairing,
            f"{g.rounds} ({g.looks})",
            f"± {_level(g.margin)}",
            _level(g.level),
            fmt.sig(g.sd_log, 2),
            fmt.sig(g.detectable),
            _disagree(g.disagree),
        ]
        for g in groups
    ]


def control_rows(c: Controls, device: str) -> list[list[Any]]:
    """A/A pairs on `device` as rows: batch, cell, twin / cell, verdict (a decided difference is
    false), rounds."""
    return [
        [
            p.batch_size,
            f"{p.framework}/{p.loss}",
            format_interval(p.ratio),
            p.verdict.value + (" (false)" if p.false else ""),
            p.rounds,
        ]
        for p in c.aa
        if p.device == device
    ]


def planted_rows(c: Controls, device: str) -> list[list[Any]]:
    """Positive controls on `device` as rows: batch, cell, planted / cell, expected, verdict, found."""
    return [
        [
            p.batch_size,
            f"{p.framework}/{p.loss}",
            format_interval(p.ratio),
            fmt.sig(p.expected),
            p.verdict.value,
            "yes" if p.found else "no",
        ]
        for p in c.planted
        if p.device == device
    ]


def control_lines(c: Controls) -> list[str]:
    """The controls' sentences: A/A false verdicts pooled, positive controls found, near-A/A calls."""
    lines = []
    if c.aa:
        rate = format_interval(c.false_rate, 100, "%") if c.judged else "n/a (no pair had an interval)"
        lines.append(
            f"A/A pairs (a cell's twin process against the cell), pooled over {len(c.aa)} pairs "
            f"({c.judged} with an interval, {' or '.join(map(str, c.rounds))} rounds): {c.false_verdicts} "
            f"called slower or faster, a false-verdict rate of {rate} "
            f"({_level(c.false_rate.level)} Clopper-Pearson interval)."
        )
    else:
        lines.append("No A/A pair was measured: the run has no check of false verdicts.")
    if c.planted:
        found = sum(p.found for p in c.planted)
        lines.append(
            f"Positive controls (a cell with a planted slowdown against the cell): found (called slower) "
            f"in {found} of {len(c.planted)} groups."
        )
    else:
        lines.append("No positive control was measured: the run does not check that it can see a slowdown.")
    for n in c.near_aa:
        lines.append(
            f"{fmt.framework_name(n.framework)} explicit / autograd core process (near-A/A: the loss is a "
            f"tiny part of it): {n.slower} slower and {n.faster} faster of {n.pairs} groups "
            f"({n.equivalent} equivalent, {n.inconclusive} inconclusive)."
        )
    return lines


def trend_line(t: Any) -> str:
    """A framework ratio's course over batch sizes, from the paired ratios with their intervals."""
    points = [
        f"{format_interval(t.first[1])} at batch {t.first[0]}",
        f"{format_interval(t.last[1])} at batch {t.last[0]}",
    ]
    extremes = [
        f"{word} {format_interval(point[1])} at batch {point[0]}"
        for word, point in (("lowest", t.lowest), ("highest", t.highest))
        if point[0] not in (t.first[0], t.last[0])
    ]
    return (
        f"{fmt.framework_name(t.framework)} / PyTorch core-process time ({t.loss}, paired by round) "
        f"{t.trend.value}: {points[0]} against {points[1]}"
        + ("; " + ", ".join(extremes) if extremes else "")
        + "."
    )


QUESTIONS = {
    "loss backward": "Does writing the loss's backward by hand change the time?",
    "framework": "How does the framework change the core process's time?",
    "layers": "Do the convolutions explain the frameworks' difference (the study's conclusion)?",
    "accuracy": "Do the frameworks reach different accuracy?",
}


def answer_line(a: Any) -> str:
    """One answer: the subject, its verdict, the quantity with its interval (or two significant
    digits marked single run), and the caveat."""
    if a.interval is not None:
        value = format_interval(a.interval, a.scale, a.unit)
    elif a.single is not None:
        value = f"{a.single * a.scale:.2g}{' ' + a.unit if a.unit else ''} (single run)"
    else:
        value = fmt.MISSING
    return f"{a.subject} ({a.device}): **{a.verdict.value}**, {value}; {a.caveat}."


def answer_groups(f: Findings) -> list[tuple[str, list[str]]]:
    """(question, its answer lines) in the order of QUESTIONS, questions without an answer left out."""
    return [
        (text, [answer_line(a) for a in f.answers if a.question == key])
        for key, text in QUESTIONS.items()
        if any(a.question == key for a in f.answers)
    ]


def checks_line(f: Findings) -> str:
    """What the run's own controls say about the verdicts above, in one line."""
    c = f.controls
    parts = []
    if c.judged:
        parts.append(
            f"A/A pairs called slower or faster {c.false_verdicts} of {c.judged} times "
            f"({format_interval(c.false_rate, 100, '%')})"
        )
    else:
        parts.append("no A/A pair with an interval")
    found = sum(p.found for p in c.planted)
    parts.append(
        f"positive control found in {found} of {len(c.planted)} groups"
        if c.planted
        else "no positive control"
    )
    detectable = sorted(
        {fmt.sig(g.detectable) for d in f.devices for g in d.groups if g.detectable}, key=float
    )
    if detectable:
        span = detectable[0] + (f" to {detectable[-1]}" if len(detectable) > 1 else "")
        parts.append(f"smallest detectable ratio per group {span}")
    return "Checks of the timing: " + "; ".join(parts) + " (section 3)."


def margins(f: Findings) -> str:
    """The groups' margins as "± 5 %" (each distinct one), or "as recorded" when none is."""
    found = sorted({g.margin for d in f.devices for g in d.groups})
    return ", ".join(f"± {_level(m)}" for m in found) or "as recorded"


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


def single(x: float | None, unit: str = "") -> str:
    """A number without an interval: two significant digits, said to be one run's."""
    return fmt.MISSING if x is None else f"{fmt.sig(x, 2)}{unit} (single run)"


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


def share(x: float | None) -> str:
    """A share without an interval, in %: two significant digits."""
    return fmt.MISSING if x is None else f"{fmt.sig(100 * x, 2)} %"


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
    "name_layer": lambda x: f"{fmt.framework_name(x[0])} {x[1]} {x[2]}",
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
