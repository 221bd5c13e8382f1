"""Compute first: `analyse(results)` turns the result records into one frozen `Findings` value.

Every number, interval and verdict the report states is here (verdicts as enums), and every job
without a result. Nothing here formats text or draws: sections and figures are functions of
`Findings`, and summary.json holds `to_json(findings)`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any

from deeppose.compare_stats import Interval, round_to_interval
from deeppose.grid import NO_BREAKDOWN, REFERENCE, Job
from deeppose.report.breakdown import BreakdownBatch, breakdown_batches
from deeppose.report.controls import Controls, GroupNoise, Ratio, controls, group_noise, ratio
from deeppose.report.core_time import (
    Cell,
    LossEffect,
    RatioTrend,
    break_even,
    group_analyses,
    loss_effect,
    ratio_trend,
    timing_cell,
)
from deeppose.report.load import Results
from deeppose.report.setup import Peak, Setup, build_setup
from deeppose.report.study import Absolute, Dominance, StudyRow, study_rows
from deeppose.report.training import ACCURACY, AccuracyDifference, TrainRun, accuracy_differences, train_run


@dataclass(frozen=True)
class Device:
    device: str
    training: tuple[TrainRun, ...]
    baseline: dict[str, float]  # the mean-pose predictor's test scores
    baseline_differs: int  # runs whose baseline differs from the first's: not the same test data
    accuracy_differences: tuple[AccuracyDifference, ...]
    loss_effects: tuple[LossEffect, ...]
    cells: tuple[Cell, ...]
    ratios: tuple[Ratio, ...]
    groups: tuple[GroupNoise, ...]  # each timing group's design, noise and minimum detectable ratio
    trends: tuple[RatioTrend, ...]
    breakdown: tuple[BreakdownBatch, ...]
    missing: dict[str, int]  # kind -> jobs of this device without a result
    jobs: dict[str, int]  # kind -> jobs of this device


@dataclass(frozen=True)
class Missing:
    kind: str  # training, timing, per-layer breakdown, fp32 peak
    job: str
    batch_sizes: tuple[int, ...]
    reason: str


@dataclass(frozen=True)
class Findings:
    setup: Setup
    frameworks: tuple[str, ...]
    loss_modes: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    devices: tuple[Device, ...]
    off_grid: dict[str, int]  # device outside the grid -> result files found for it (not read)
    controls: Controls  # the A/A pairs pooled over groups, the positive controls, the near-A/A pairs
    study: tuple[StudyRow, ...]
    absolute: tuple[Absolute, ...]
    dominance: tuple[Dominance, ...]
    jobs: dict[str, dict[str, int]]  # kind -> expected, present
    no_breakdown: dict[str, str]  # framework -> why it has no per-layer breakdown (deeppose.grid)
    missing: tuple[Missing, ...]
    stale: dict[str, list[str]]
    problems: tuple[str, ...]
    metrics: tuple[str, ...]  # the accuracy metrics some run has


def to_json(value: Any) -> Any:
    """`Findings` as summary.json holds it: interval bounds to two significant digits of the
    half-width (deeppose.compare_stats.round_to_interval) as [estimate, low, high] (its level is the
    report's: LEVEL, or the group's decision level for a comparison), other numbers to four
    significant digits; a field that is None or empty is left out. Records of one kind that hold
    no records themselves (cells, layers, ratios) form a table, {"columns": [...], "rows":
    [[...], ...]}, so that no key is repeated per record."""
    if isinstance(value, Interval) and value.half_width is not None and value.estimate is not None:
        return [
            float(f"{round_to_interval(x, value.half_width).value:.6g}")
            for x in (value.estimate, value.low, value.high)
        ]
    if isinstance(value, Interval):
        return [to_json(value.estimate), None, None]
    if dataclasses.is_dataclass(value):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.name != "method"}
        return {k: to_json(v) for k, v in fields.items() if v is not None and v != {} and v != ()}
    if isinstance(value, tuple) and len(value) > 1 and _one_kind(value):
        rows = [to_json(record) for record in value]
        columns = list(dict.fromkeys(k for r in rows for k in r))
        return {"columns": columns, "rows": [[r.get(k) for k in columns] for r in rows]}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


def _one_kind(records: tuple[Any, ...]) -> bool:
    """Records of one dataclass, none holding a tuple of records (a Device is no table row)."""
    kind = type(records[0])
    if not dataclasses.is_dataclass(kind) or kind is Interval or any(type(r) is not kind for r in records):
        return False
    values = [getattr(r, f.name) for r in records for f in dataclasses.fields(kind)]
    return not any(isinstance(v, tuple) and v and dataclasses.is_dataclass(v[0]) for v in values)


# --- one device ---------------------------------------------------------------------------------
def _device(results: Results, device: str, peak: Peak, groups: dict[int, Any]) -> Device:
    on = {
        kind: {j: r for j, r in found.items() if j.device == device}
        for kind, found in (
            ("training", results.train),
            ("timing", results.timing),
            ("breakdown", results.breakdown),
        )
    }
    cells = {
        j: timing_cell(j, r.record, peak)
        for j, r in sorted(on["timing"].items(), key=lambda i: i[0].batch_exp)
        if r.ok
    }
    for j, c in cells.items():
        eager = cells.get(Job(REFERENCE, j.loss, j.device, j.batch_exp))
        if c.compile_s is not None and eager is not None:
            cells[j] = dataclasses.replace(
                c,
                eager_s=eager.time.estimate,
                break_even=break_even(c.compile_s, c.time.estimate, eager.time.estimate),
            )
    runs = {j: train_run(j, r.record, r, cells) for j, r in on["training"].items() if r.ok}
    aa = [c for g, _, _ in groups.values() for c in g.controls]
    reach = [max(c.ratio.high - 1, 1 - c.ratio.low) for c in aa if c.ratio.low is not None]
    floor = max(reach, default=None)
    effects = ()
    if {"autograd", "explicit"} <= set(results.loss_modes):
        train_batch = results.params.train.batch_size
        effects = tuple(
            loss_effect(
                fw, {j.loss: s for j, s in runs.items() if j.framework == fw}, groups, train_batch, floor
            )
            for fw in results.frameworks
        )
    ratios = tuple(ratio(b, c) for b, (g, _, _) in groups.items() for c in g.comparisons)
    trends = []
    for fw in results.frameworks:
        for loss in results.loss_modes:
            arms = (f"{fw}/{loss}", f"{REFERENCE}/{loss}")
            points = [(r.batch_size, r.ratio) for r in ratios if (r.a, r.b) == arms and r.ratio.estimate]
            trends += [ratio_trend(fw, loss, points)] if fw != REFERENCE and points else []
    baselines = [r.record.baseline_test.to_dict() for r in on["training"].values() if r.ok]
    baseline = {k: v for k, v in (baselines or [{}])[0].items() if v is not None}
    return Device(
        device,
        tuple(runs.values()),
        baseline,
        sum(b != baselines[0] for b in baselines),
        accuracy_differences(results, device),
        effects,
        tuple(cells.values()),
        ratios,
        tuple(group_noise(b, g, design) for b, (g, _, design) in groups.items()),
        tuple(trends),
        breakdown_batches(results, device, peak),
        {k: sum(not r.ok for r in v.values()) for k, v in on.items()},
        {k: len(v) for k, v in on.items()},
    )


# --- the whole ----------------------------------------------------------------------------------
def _missing(results: Results) -> list[Missing]:
    found = [Missing("training", job.label, (), r.missing) for job, r in results.train.items() if not r.ok]
    for kind, loaded in (("timing", results.timing), ("per-layer breakdown", results.breakdown)):
        grouped: dict[tuple[str, str], list[int]] = {}
        for job, r in loaded.items():
            if not r.ok:
                label = Job(job.framework, job.loss, job.device).label
                grouped.setdefault((label, r.missing), []).append(2**job.batch_exp)
        found += [Missing(kind, label, tuple(sizes), reason) for (label, reason), sizes in grouped.items()]
    return found + ([Missing("fp32 peak", "peak", (), results.peak.missing)] if results.peak.missing else [])


def analyse(results: Results) -> Findings:
    """Every figure of the report from `results`; deterministic (seeded bootstraps)."""
    setup = build_setup(results)
    grouped = {d: group_analyses(results, d) for d in results.devices}
    devices = {d: _device(results, d, setup.peak, grouped[d]) for d in results.devices}
    groups = [
        (device, batch, analysis, design)
        for device in results.devices
        for batch, (analysis, _, design) in grouped[device].items()
    ]
    found_controls = controls(groups, [r for d in devices.values() for r in d.ratios])
    study, absolute, dominance = study_rows(results, devices)
    jobs = {
        kind: {"expected": len(found), "present": sum(r.ok for r in found.values())}
        for kind, found in (
            ("train", results.train),
            ("timing", results.timing),
            ("breakdown", results.breakdown),
        )
    }
    return Findings(
        setup,
        tuple(results.frameworks),
        tuple(results.loss_modes),
        tuple(2**e for e in results.batch_exponents),
        tuple(devices.values()),
        dict(results.off_grid),
        found_controls,
        tuple(study),
        tuple(absolute),
        tuple(dominance),
        jobs,
        {fw: NO_BREAKDOWN[fw] for fw in results.frameworks if fw in NO_BREAKDOWN},
        tuple(_missing(results)),
        results.stale,
        tuple(p for r in results.everything() for p in r.problems),
        tuple(m for m in ACCURACY if any(m in r.scores for d in devices.values() for r in d.training)),
    )
