"""Per-layer breakdown: each arm's pooled times and every process apart."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from deeppose.records.results import JobId, Provenance, Record


@dataclasses.dataclass(frozen=True)
class BreakdownProcess(Record):
    """One fresh process of one breakdown arm: its own per-layer times (every repeat's, in each
    layer's `samples_s`) and sum rule. Its events are the result's, tagged with its index."""

    round: int
    position: int  # its place in the round's order (alternated round by round)
    core_samples_s: list[float]
    profiled_core_samples_s: list[float]
    core_time_s: float
    profiled_core_time_s: float
    layers: list[dict[str, Any]]
    layers_time_s: float
    overhead_s: float
    sum_rule: dict[str, Any]
    grouping_notes: list[str]
    load_average: dict[str, list[float]]


@dataclasses.dataclass(frozen=True)
class BreakdownResult(Record):
    """One arm of a breakdown group: the per-layer times pooled over its processes (medians over
    every repeat of every process), and each process apart (`processes`): the replicates."""

    KIND: ClassVar[str] = "breakdown"
    VERSION: ClassVar[int] = 6  # 6: one process apart per replicate (`processes`)
    job: JobId
    batch_size: int
    warmup: int
    repeats: int
    seed: int
    input: str
    model: dict[str, Any]
    tool: str
    time_basis: str
    core_samples_s: list[float]
    profiled_core_samples_s: list[float]
    core_time_s: float
    profiled_core_time_s: float
    layers: list[dict[str, Any]]
    layers_time_s: float
    phase_time_s: dict[str, float]
    overhead_s: float
    profiled_overhead_s: float
    profiler_slowdown: float
    sum_rule: dict[str, Any]
    events: list[dict[str, Any]]
    grouping_notes: list[str]
    processes: list[BreakdownProcess]
    peak_flops_per_s: float | None
    peak: dict[str, Any]
    threads: dict[str, Any]
    versions: dict[str, str]
    environment: dict[str, Any]
    provenance: Provenance
