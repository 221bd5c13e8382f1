"""Findings of the core-process timing: each cell's time, the groups' comparisons at their own
design's margin and level, the loss alone, trends, and the controls: whether the verdict rule behaved
where the truth is known (A/A pairs must never be called slower or faster, a planted slowdown must be
called slower, explicit / autograd pairs are near-A/A) and what each group could detect."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from deeppose.compare_stats import (
    Comparison,
    GroupAnalysis,
    Interval,
    analyse_group,
    compare,
    control_summary,
    series,
)
from deeppose.grid import Group, Job
from deeppose.measure import blocks
from deeppose.measure.blocks import interfered
from deeppose.records.timing import TimingDesign, TimingResult
from deeppose.report import ceilings
from deeppose.report.ceilings import Peak
from deeppose.report.load import Results
from deeppose.report.training import TrainRun, sample
from deeppose.verdicts import Verdict, classify


class Trend(str, Enum):
    RISES = "rises"
    FALLS = "falls"
    OVERLAP = "shows no trend its intervals support"


@dataclass(frozen=True)
class Cell:
    framework: str
    loss: str
    batch_size: int
    blocks: int  # rounds with a usable block
    time: Interval  # median of block medians
    mean_s: float  # usable blocks' samples pooled: the spread, as the study reported it
    std_s: float | None
    disturbed: int
    loss_alone_s: float | None
    memory_bytes: float | None
    steps_s: dict[str, float]  # each timed optimiser's update (timing.optimizers), median
    flops_per_s: float | None
    fraction_of_peak: float | None
    compile_s: float | None  # a compiling framework's first call, median of blocks
    caches: dict[str, Any]
    eager_s: float | None = None  # compiling frameworks: eager PyTorch's at the same batch and loss mode
    break_even: int | None = None  # steps after which the compile has paid for itself; None: never


def break_even(compile_s: float, step_s: float, eager_s: float) -> int | None:
    """Steps after which compiling has cost less than eager steps; None: never."""
    saved = eager_s - step_s
    return math.ceil(compile_s / saved) if saved > 0 else None


@dataclass(frozen=True)
class RatioTrend:
    framework: str
    loss: str
    first: tuple[int, Interval]  # (batch size, <framework> / PyTorch core time, paired by round)
    last: tuple[int, Interval]
    lowest: tuple[int, Interval]
    highest: tuple[int, Interval]
    trend: Trend  # rises or falls only when the first and last batches' intervals are disjoint


@dataclass(frozen=True)
class LossEffect:
    framework: str
    batch_size: int | None
    c: Ratio | None  # explicit vs autograd of the loss alone, paired by round: its verdict is the loss's own
    share: Interval | None  # c's difference over the autograd core time's low end: its effect on an iteration
    share_verdict: Verdict | None  # 1 + share classified at the group's margin: the study's question
    train_time_ratio: float | None  # one run each: no verdict
    noise_floor: float | None  # how far apart identical arms came in the A/A control
    absent: tuple[str, ...]  # loss modes without a training result


def _median(values: list[float | None]) -> float | None:
    """The median of the values there are."""
    found = [v for v in values if v is not None]
    return float(statistics.median(found)) if found else None


def timing_cell(job: Job, r: TimingResult, peak: Peak) -> Cell:
    usable = blocks.usable(r.blocks)
    undisturbed = [b for b in usable if not interfered(b.reasons)]
    timed = [b for b in blocks.final(r.blocks) if b.optimizer_steps_s]  # the first round's, disturbed or not
    steps = {
        name: _median([s for b in timed for s in b.optimizer_steps_s.get(name, [])])
        for name in dict.fromkeys(name for b in timed for name in b.optimizer_steps_s)
    }
    pooled = sample([s for b in usable for s in b.samples_s], "blocks")
    core = (len(undisturbed), Interval(**r.time_s.to_dict()), pooled.mean, pooled.std)  # blocks, time, spread
    loss_s, memory = _median([s for b in usable for s in b.loss_s]), _median([b.memory_bytes for b in usable])
    outside = (loss_s, memory, {name: step for name, step in steps.items() if step is not None})
    rate = (r.flops_per_s, ceilings.share(r.flops_per_s, peak, job.device))
    compiled = (_median([b.compile_s for b in usable]), {k: v for k, v in r.compile.items() if "cache" in k})
    disturbed = sum(b.disturbed for b in r.blocks)
    return Cell(job.framework, job.loss, r.batch_size, *core, disturbed, *outside, *rate, *compiled)


def group_analyses(results: Results, device: str) -> dict[int, Any]:
    """Batch size -> (analysis, explicit-vs-autograd loss comparisons, design) of each complete timing
    group, at the margin and level of its own design."""
    found = {}
    both_modes = results.frameworks if {"autograd", "explicit"} <= set(results.loss_modes) else []
    for exp in results.batch_exponents:
        loaded = {job: r for job, r in results.timing.items() if (job.device, job.batch_exp) == (device, exp)}
        if not loaded or not all(r.ok for r in loaded.values()):
            continue
        blocks, loss_blocks = [], []
        for record in (r.record for r in loaded.values()):
            blocks += series(record.blocks) + series(record.control_blocks) + series(record.planted_blocks)
            loss_blocks += series(record.blocks, "loss_s")
        first = next(iter(loaded.values())).record
        design = first.design
        margin, level = design.margin, design.decision_level
        pairs = Group.of(results.params.grid, device, exp).comparisons()
        losses = {
            fw: compare(loss_blocks, f"{fw}/explicit", f"{fw}/autograd", margin, level) for fw in both_modes
        }
        analysis = analyse_group(blocks, pairs, first.controls, first.planted_cell, margin, level)
        found[2**exp] = (analysis, losses, design)
    return found


def ratio_trend(fw: str, loss: str, points: list[tuple[int, Interval]]) -> RatioTrend:
    """A trend only where the smallest and largest batches' paired-ratio intervals separate."""
    (_, r0), (_, r1) = points[0], points[-1]
    trend = Trend.OVERLAP
    if r0.high is not None and r1.low is not None and r1.low > r0.high:
        trend = Trend.RISES
    elif r0.low is not None and r1.high is not None and r1.high < r0.low:
        trend = Trend.FALLS
    lowest, highest = (extreme(points, key=lambda p: p[1].estimate) for extreme in (min, max))
    return RatioTrend(fw, loss, points[0], points[-1], lowest, highest, trend)


def share_of_core(difference: Interval, core: Interval | None) -> Interval | None:
    """The loss alone's difference over the low end of the autograd core time: the share errs large."""
    d = difference
    if core is None or not (core.low or 0) > 0 or None in (d.estimate, d.low, d.high):
        return None
    method = "loss-alone difference / low end of the autograd core time"
    return Interval(d.estimate / core.low, d.low / core.low, d.high / core.low, d.n, d.level, method)


def loss_effect(
    fw: str,
    runs: dict[str, TrainRun],
    groups: dict[int, Any],
    train_batch: int,
    floor: float | None,
    cores: dict[int, Interval],
) -> LossEffect:
    """At the training batch size's group, else the largest measured."""
    size = train_batch if train_batch in groups else max(groups, default=None)
    found = groups[size][1].get(fw) if size else None
    c = ratio(size, found, difference=True) if found else None
    share = share_of_core(c.difference, cores.get(size)) if c else None
    verdict = classify(1 + share.low, 1 + share.high, groups[size][2].margin) if share else None
    auto, explicit = runs.get("autograd"), runs.get("explicit")
    train_ratio = explicit.train_time_s / auto.train_time_s if auto and explicit else None
    return LossEffect(
        fw,
        size if c else None,
        c,
        share,
        verdict,
        train_ratio,
        floor,
        tuple(mode for mode, run in (("autograd", auto), ("explicit", explicit)) if run is None),
    )


EXPLICIT, AUTOGRAD = "explicit", "autograd"


@dataclass(frozen=True)
class Ratio:
    batch_size: int | None
    a: str
    b: str
    ratio: Interval  # time a / time b
    difference: Interval | None  # time a - time b, seconds: kept where the report states it (the loss alone)
    verdict: Verdict
    rounds: int  # undisturbed rounds both arms share


def ratio(batch_size: int | None, c: Comparison, difference: bool = False) -> Ratio:
    kept = c.difference if difference else None
    return Ratio(batch_size, c.a, c.b, c.ratio, kept, c.verdict, len(c.rounds_used))


@dataclass(frozen=True)
class GroupNoise:
    batch_size: int
    pairing: str  # how a round's arms ran (TimingDesign.pairing)
    rounds: int  # rounds its comparisons used (the most any did)
    looks: int  # times the stopping rule looked
    margin: float
    level: float  # the level of each look's interval (TimingDesign.decision_level)
    sd_log: float | None  # pooled SD of its comparisons' per-round log ratios
    detectable: float | None  # the smallest ratio called slower with 80 % power
    disagree: bool | None  # a cell's blocks disagree beyond their spread; None: the test cannot fire


def group_noise(batch_size: int, analysis: GroupAnalysis, design: TimingDesign) -> GroupNoise:
    return GroupNoise(
        batch_size,
        design.pairing,
        analysis.rounds,
        design.looks,
        design.margin,
        design.decision_level,
        analysis.sd_log,
        analysis.detectable,
        analysis.disagree,
    )


@dataclass(frozen=True)
class AAPair:
    framework: str
    loss: str
    device: str
    batch_size: int | None
    ratio: Interval  # twin / cell
    verdict: Verdict
    false: bool  # called slower or faster: a false verdict
    rounds: int  # undisturbed rounds both arms share


@dataclass(frozen=True)
class Planted:
    framework: str
    loss: str
    device: str
    batch_size: int | None
    ratio: Interval  # planted / cell
    expected: float  # 1 + the planted fraction
    verdict: Verdict
    found: bool  # called slower


@dataclass(frozen=True)
class NearAA:
    framework: str
    pairs: int
    slower: int
    faster: int
    equivalent: int
    inconclusive: int


@dataclass(frozen=True)
class Controls:
    aa: tuple[AAPair, ...]
    false_verdicts: int
    judged: int  # A/A pairs with an interval
    false_rate: Interval  # false verdicts / judged, Clopper-Pearson 95 %
    planted: tuple[Planted, ...]
    near_aa: tuple[NearAA, ...]
    rounds: tuple[int, ...]  # rounds the A/A pairs rest on


def _split(cell: str) -> tuple[str, str]:
    framework, _, loss = cell.partition("#")[0].partition("/")
    return framework, loss


def controls(
    groups: Iterable[tuple[str, int, GroupAnalysis, TimingDesign]], ratios: Sequence[Ratio]
) -> Controls:
    """Over every group (device, batch size, analysis, design); `ratios` for the near-A/A pairs."""
    groups = list(groups)
    pairs = [(device, batch, c) for device, batch, g, _ in groups for c in g.controls]
    summary = control_summary([c for _, _, c in pairs])
    aa = tuple(
        AAPair(*_split(c.b), device, batch, c.ratio, c.verdict, false, len(c.rounds_used))
        for (device, batch, c), false in zip(pairs, summary.false)
    )
    planted = tuple(
        Planted(
            *_split(p.b), device, batch, p.ratio, 1 + design.planted, p.verdict, p.verdict is Verdict.SLOWER
        )
        for device, batch, g, design in groups
        if (p := g.planted) is not None
    )
    near = []
    for framework in dict.fromkeys(_split(r.a)[0] for r in ratios):
        verdicts = [
            r.verdict for r in ratios if (r.a, r.b) == (f"{framework}/{EXPLICIT}", f"{framework}/{AUTOGRAD}")
        ]
        if verdicts:
            near.append(NearAA(framework, len(verdicts), *(verdicts.count(v) for v in Verdict)))
    rounds = tuple(sorted({len(c.rounds_used) for _, _, c in pairs}))
    return Controls(aa, summary.false_verdicts, summary.judged, summary.rate, planted, tuple(near), rounds)
