"""The tables and sentences of the timing, the per-layer breakdown and the run's cost, built in
Python so that the template only places them and a test can check them."""

from __future__ import annotations

import dataclasses
from typing import Any

from deeppose import fmt
from deeppose.compare_stats import format_interval
from deeppose.fmt import MISSING
from deeppose.fmt import framework_name as name
from deeppose.grid import REFERENCE
from deeppose.report.appendix import pairs
from deeppose.report.breakdown import BreakdownBatch
from deeppose.report.layer_replicates import ReplicatedComparison, ShareVerdict
from deeppose.stats import Interval

SHARE_SENTENCE = {
    ShareVerdict.MOST: "This supports the study's conclusion on this machine: the interval of the "
    "convolutions' share lies above 50 %, so the convolutions explain most of the difference.",
    ShareVerdict.LESS: "This does not support the study's conclusion on this machine: the interval of the "
    "convolutions' share lies below 50 %, so the convolutions explain less than half of the difference.",
    ShareVerdict.INCONCLUSIVE: "Whether the convolutions explain most of the difference is not settled: the "
    "interval of their share reaches across 50 % (or there is none).",
    ShareVerdict.CANNOT_TEST: "{other} is not slower than PyTorch in every pair of processes, so some pair "
    "has no extra time to attribute and the study's conclusion is not tested here.",
}
ROW_NAMES = {"elementwise": "element-wise layers", "overhead": "overhead", "core": "core process"}


def _ms(x: float | None, signed: bool = False) -> str:
    return fmt.scaled(x, 1e-3, signed)


def _interval(x: Interval | None, scale: float = 1.0) -> str:
    return MISSING if x is None or x.estimate is None else format_interval(x, scale)


def _table(headers: str, rows: list[list[Any]], right: Any = ()) -> str:
    """A table whose headers are one string, split at "|"."""
    return fmt.table(headers.split("|"), rows, right)


def breakdown_jobs(b: BreakdownBatch) -> str:
    """Each profiled job's core time, its layers' sum and the sum rule; jobs not run as such."""
    rows = [
        [name(j.framework), j.loss, _ms(j.core_s), _ms(j.profiled_s), _ms(j.layers_s)]
        + [
            _ms(j.overhead_s, True),
            fmt.sig(100 * j.gap),
            f"{'yes' if j.sum_rule_ok else 'NO'} (±{fmt.percent(j.tolerance)})",
        ]
        for j in b.jobs
    ] + [[name(fw), loss, "not run"] + [MISSING] * 5 for fw, loss in b.absent]
    headers = "Framework|Loss|Core time (ms)|Profiled core (ms)|Σ layers (ms)|Overhead (ms)|Gap / core (%)"
    return _table(headers + "|Sum rule met", rows, range(2, 7))


def comparison_table(c: ReplicatedComparison) -> str:
    """Per layer (both phases), the element-wise layers, the overhead and the core process: both
    frameworks' times, their paired ratio and the row's share of the framework's extra time."""
    other = name(c.framework)
    rows = [
        [ROW_NAMES.get(r.row, r.row), _interval(r.reference, 1e3), _interval(r.other, 1e3)]
        + [_interval(r.ratio), _interval(r.share, 100)]
        for r in c.rows
    ]
    headers = f"Layer|PyTorch (ms)|{other} (ms)|{other}/PyTorch|Share of extra time (%)"
    return _table(headers, rows, range(1, 5))


def agreement_table(b: BreakdownBatch) -> str:
    """Each framework and loss mode apart: replicates for the layers, so they should agree."""
    rows = [
        [name(a.framework), a.loss, a.core.n, _interval(a.core, 1e3), _interval(a.conv_of_core, 100)]
        + [MISSING if a.ratio is None else f"{_interval(a.ratio)} ({a.verdict.value if a.verdict else ''})"]
        for a in b.agreement
    ]
    headers = "Framework|Loss|Processes|Core time (ms)|Convolutions' share of core (%)|Core / PyTorch's"
    return _table(headers, rows, range(2, 6))


def loss_modes_sentence(b: BreakdownBatch) -> str:
    if not b.loss_modes:
        return "No framework ran both loss modes here, so their agreement is not shown."
    parts = [f"{name(m.framework)} {_interval(m.ratio)} ({m.verdict.value})" for m in b.loss_modes]
    return (
        "Explicit / autograd core time in the same rounds (the loss modes as replicates, which should "
        f"agree): {'; '.join(parts)}."
    )


def comparison_sentence(c: ReplicatedComparison, b: BreakdownBatch, device: str) -> str:
    """What the replicated breakdown says of the study's conclusion; uncertain where a compared
    job's layers miss the sum rule."""
    other = name(c.framework)
    text = (
        f"On {device} at batch {b.batch_size}, the loss modes pooled ({c.pairs} pairs of processes, "
        f"{round(100 * c.ratio.level)} % intervals), {other}'s core process took {_interval(c.ratio)} "
        f"times PyTorch's ({c.verdict.value} at the margin)."
    )
    if c.conv_share is not None:
        s = {part: _interval(x, 100) + " %" for part, x in c.shares.items()}
        top = c.most_different
        text += (
            f" Of {other}'s extra time, convolutions account for {s['conv']}, fully-connected layers for "
            f"{s['fc']}, element-wise layers (ReLU, pooling, dropout, loss, reshapes) for {s['elementwise']} "
            f"and unattributed overhead for {s['overhead']}; the layer whose time differs most is {top.row} "
            f"({_interval(top.ratio)} times)."
        )
    text += " " + SHARE_SENTENCE[c.share_verdict].format(other=other)
    missed = [
        name(j.framework) for j in b.jobs if j.framework in (REFERENCE, c.framework) and not j.sum_rule_ok
    ]
    if missed:
        text += (
            f" (The layers of {fmt.join_words(list(dict.fromkeys(missed)))} do not add up to the measured "
            "core time within the stated tolerance, so this attribution is uncertain.)"
        )
    return text


def throughput(cells: Any, ceiling: float | None) -> str:
    """Each timed cell's achieved GFLOP/s and its share of the compute ceiling."""
    rows = [
        [c.batch_size, name(c.framework), c.loss, fmt.sig(c.flops_per_s / 1e9)]
        + [fmt.sig(100 * c.fraction_of_peak) if c.fraction_of_peak else MISSING]
        for c in cells
        if c.flops_per_s
    ]
    return _table("batch|framework|loss|achieved (GFLOP/s)|% of ceiling", rows, [0, 3, 4])


def costs(stages: Any) -> str:
    """What each stage's jobs cost, and the whole run."""
    rows = [
        [f"`{c.stage}`", f"{c.recorded} of {c.jobs}"]
        + ([f"{c.wall_s:.0f}", f"{c.startup_s:.1f}", f"{c.lock_wait_s:.0f}"] if c.recorded else [MISSING] * 3)
        + [f"{c.memory_bytes / 2**30:.1f}" if c.memory_bytes else MISSING]
        for c in stages
    ]
    wall, wait = sum(c.wall_s for c in stages), sum(c.lock_wait_s for c in stages)
    rows.append(
        ["all of the above", sum(c.recorded for c in stages), f"**{wall:.0f}**", "", f"{wait:.0f}", ""]
    )
    headers = (
        "stage|jobs recorded|wall time (s)|of which start-up (s)|left out: lock wait (s)|peak memory (GiB)"
    )
    return _table(headers, rows, [2, 3, 4, 5])


def missing(d: Any, kind: str, what: str) -> str:
    """Whether some or all of a device's jobs of one kind have no result; empty when all have."""
    lacking, jobs = d.missing[kind], d.jobs[kind]
    where = "see *Jobs without results* in the Appendix."
    if lacking and lacking == jobs:
        return f"No {what} result on {d.device} ({jobs} jobs): {where}"
    return f"{lacking} of {jobs} {what} jobs on {d.device} have no usable result: {where}" if lacking else ""


def training(runs: Any) -> str:
    """Each training run's wall times, then its per-iteration compute (one run: a spread, no interval)."""
    times = [
        [name(r.framework), r.loss, r.setup, r.iterations, fmt.sig(r.train_time_s), _ms(r.per_iteration_s)]
        for r in runs
    ]
    compute = [
        [name(r.framework), r.loss, _ms(r.compute.mean), _ms(r.compute.std), _ms(r.compute.median)]
        + [fmt.sig(r.compute.iqr_over_median) + (" (noisy)" if r.compute.noisy else "")]
        + [f"{r.compute.n} ({r.compute.source})"]
        for r in runs
    ]
    head = "framework|loss|set-up|iterations|training time (s)|wall per iteration (ms)"
    spread = "framework|loss|mean (ms)|std (ms)|median (ms)|IQR / median|samples (source)"
    return (
        _table(head, times, range(3, 6))
        + "\n\nCompute per iteration (one run each: the spread of its iterations, not an interval):\n\n"
        + _table(spread, compute, range(2, 6))
    )


def cells(found: Any, ci: str) -> str:
    """Each timed cell's core time with its interval, the samples' spread and the disturbed attempts;
    then the loss alone, peak memory and each timed update."""
    steps = list(dict.fromkeys(step for c in found for step in c.steps_s))
    core = [
        [c.batch_size, name(c.framework), c.loss, c.blocks, format_interval(c.time, 1e3)]
        + [_ms(c.mean_s), _ms(c.std_s), c.disturbed]
        for c in found
    ]
    outside = [
        [c.batch_size, name(c.framework), c.loss, fmt.scaled(c.loss_alone_s, 1e-6)]
        + [MISSING if c.memory_bytes is None else f"{c.memory_bytes / 2**20:.0f}"]
        + [_ms(c.steps_s.get(step)) for step in steps]
        for c in found
    ]
    head = f"batch|framework|loss|blocks|time, {ci} (ms)|mean of samples (ms)|std (ms)|disturbed attempts"
    updates = "".join(f"|{step} update (ms)" for step in steps)
    outside_head = f"batch|framework|loss|loss alone (µs)|peak memory (MiB){updates}"
    return (
        _table(head, core, [0, 3, 4, 5, 6, 7])
        + "\n\nOutside the core process, per cell (medians of blocks; the updates of round 0 only):\n\n"
        + _table(outside_head, outside, [0, *range(3, 5 + len(steps))])
    )


def compiled(found: Any) -> str:
    """Compiling frameworks' first call against eager PyTorch, with the break-even step; empty when none."""
    rows = [
        [c.batch_size, name(c.framework), c.loss, fmt.sig(c.compile_s), _ms(c.time.estimate), _ms(c.eager_s)]
        + [c.break_even if c.break_even is not None else "never" if c.eager_s else MISSING]
        for c in found
        if c.compile_s is not None
    ]
    if not rows:
        return ""
    caches = {c.framework: c.caches for c in found if c.compile_s is not None}
    head = "batch|framework|loss|compile (s)|then per step (ms)|eager PyTorch per step (ms)"
    head += "|break-even (steps)"
    return (
        "Compile time: the first call (trace, compile and one run), measured in every block before its "
        "steady-state runs (median of blocks), against eager PyTorch at the same batch size and loss mode; "
        "break-even is the number of steps after which compiling has cost less than running eager "
        '("never": the compiled step is not faster).\n\n'
        + _table(head, rows, [0, 3, 4, 5, 6])
        + "\n\nCaches: "
        + "; ".join(f"{name(fw)}: {pairs(v) or 'none recorded'}" for fw, v in caches.items())
        + "."
    )


def _arms_title(a: str, b: str) -> str:
    """ "Chainer / PyTorch, autograd" for a framework ratio, "Chainer explicit / autograd" for a loss one."""
    (fa, la), (fb, lb) = a.split("/"), b.split("/")
    return f"{name(fa)} / {name(fb)}, {la}" if la == lb else f"{name(fa)} {la} / {lb}"


def ratios(found: Any) -> str:
    """Every paired ratio of core-process times with its verdict: one column per pair of arms."""
    columns = list(dict.fromkeys((r.a, r.b) for r in found))
    shown = {(r.batch_size, r.a, r.b): f"{format_interval(r.ratio)} {r.verdict.value}" for r in found}
    batches = dict.fromkeys(r.batch_size for r in found)
    rows = [[b] + [shown.get((b, *arms), MISSING) for arms in columns] for b in batches]
    return fmt.table(["batch"] + [_arms_title(*arms) for arms in columns], rows, range(1, len(columns) + 1))


def records(headers: list[str], items: Any) -> str:
    """A table of dataclass records, one column per field in order: rows built in Python already."""
    return fmt.table(headers, [[getattr(x, f.name) for f in dataclasses.fields(x)] for x in items])


def layer_rates(b: BreakdownBatch) -> str:
    """Each conv/fc layer's FLOPs and achieved GFLOP/s per framework, with its share of the ceiling."""
    rated = [j for j in b.jobs if j.loss == b.rate_loss]
    rows = []
    for x in b.roofline:
        row = [x.layer, x.phase, fmt.sig(x.flops / 1e9)]
        for j in rated:
            y = next(
                (y for y in j.layers if (y.layer, y.phase) == (x.layer, x.phase) and y.flops_per_s), None
            )
            row.append(
                f"{fmt.sig(y.flops_per_s / 1e9)} ({fmt.percent(y.fraction_of_peak)})" if y else MISSING
            )
        rows.append(row)
    headers = ["Layer", "Phase", "GFLOP"] + [name(j.framework) for j in rated]
    return fmt.table(headers, rows, right=range(2, 3 + len(rated)))


def roofline_sentence(b: BreakdownBatch, bandwidth: float | None) -> str:
    """Which layers the roofline classes memory-bound at this batch size, and what that means."""
    if bandwidth is None:
        return "The memory bandwidth was not measured by this run, so no layer is classed memory-bound here."
    if not b.memory_bound:
        return f"At batch {b.batch_size} every layer lies above the ridge point: all are compute-bound."
    why = " (the fully connected layers move every weight once per batch of only a few images)"
    return (
        f"At batch {b.batch_size} {fmt.join_words(b.memory_bound)} lie below the ridge point in both phases: "
        "they are memory-bound, so their percentage of the compute peak understates how well they run"
        + (why if any(layer.startswith("fc") for layer in b.memory_bound) else "")
        + "."
    )
