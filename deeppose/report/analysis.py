"""Compute first: `analyse(results)` turns the records into one frozen `Findings`, every number,
interval and verdict the report states; summary.json holds `to_json(findings)`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any

from deeppose.compare_stats import Interval, round_to_interval
from deeppose.grid import NO_BREAKDOWN, Job
from deeppose.report.answers import Answer, answers
from deeppose.report.core_time import Controls, controls, group_analyses
from deeppose.report.device import Device, build_device
from deeppose.report.load import Results
from deeppose.report.setup import Setup, build_setup
from deeppose.report.study import Study, study_findings
from deeppose.report.training import ACCURACY


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
    answers: tuple[Answer, ...]  # the study's questions answered: the report's first screen
    controls: Controls  # the A/A pairs pooled over groups, the positive controls, the near-A/A pairs
    study: Study
    jobs: dict[str, dict[str, int]]  # kind -> expected, present
    no_breakdown: dict[str, str]  # framework -> why it has no per-layer breakdown (deeppose.grid)
    missing: tuple[Missing, ...]
    stale: dict[str, list[str]]
    problems: tuple[str, ...]
    metrics: tuple[str, ...]  # the accuracy metrics some run has


def to_json(value: Any) -> Any:
    """`Findings` as summary.json holds it: an interval as [estimate, low, high] to the precision its
    half-width supports, other numbers to 4 digits, empty fields left out; flat records of one kind
    as a table {"columns": [...], "rows": [...]}, so that no key is repeated per record."""
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
    kind = type(records[0])
    if not dataclasses.is_dataclass(kind) or kind is Interval or any(type(r) is not kind for r in records):
        return False
    values = [getattr(r, f.name) for r in records for f in dataclasses.fields(kind)]
    return not any(isinstance(v, tuple) and v and dataclasses.is_dataclass(v[0]) for v in values)


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
    setup = build_setup(results)
    grouped = {d: group_analyses(results, d) for d in results.devices}
    devices = {d: build_device(results, d, setup.peak, grouped[d]) for d in results.devices}
    groups = [
        (device, batch, analysis, design)
        for device in results.devices
        for batch, (analysis, _, design) in grouped[device].items()
    ]
    found_controls = controls(groups, [r for d in devices.values() for r in d.ratios])
    kinds = {"train": results.train, "timing": results.timing, "breakdown": results.breakdown}
    jobs = {
        k: {"expected": len(found), "present": sum(r.ok for r in found.values())}
        for k, found in kinds.items()
    }
    return Findings(
        setup,
        tuple(results.frameworks),
        tuple(results.loss_modes),
        tuple(2**e for e in results.batch_exponents),
        tuple(devices.values()),
        dict(results.off_grid),
        answers(tuple(devices.values()), results.params.train.batch_size),
        found_controls,
        study_findings(devices, setup),
        jobs,
        {fw: NO_BREAKDOWN[fw] for fw in results.frameworks if fw in NO_BREAKDOWN},
        tuple(_missing(results)),
        results.stale,
        tuple(p for r in results.everything() for p in r.problems),
        tuple(m for m in ACCURACY if any(m in r.scores for d in devices.values() for r in d.training)),
    )
