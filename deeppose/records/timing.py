"""Timing results: a timing group's blocks, intervals and design, one file per cell."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from deeppose.records.results import JobId, Provenance, Record


@dataclasses.dataclass(frozen=True)
class BlockInterference(Record):
    """What other processes did to the machine during one block (deeppose.measure.blocks.interference)."""

    wall_s: float
    machine_busy_s: float
    own_s: float
    other_cpu_s: float
    other_cores: float
    load_before: list[float]  # 1, 5, 15 min, read just before the block
    cores: int


@dataclasses.dataclass(frozen=True)
class BlockRecord(Record):
    """One block (a fresh process) of one arm: every raw sample, warm-ups kept apart."""

    round: int
    position: int  # its place in the round's seeded order
    arm: str  # the cell, its A/A twin (`cell#1`) or its planted positive control (`cell#planted`)
    attempt: int  # 0, or the how-many-th rerun of a disturbed block
    samples_s: list[float]  # the core process (forward + loss + backward)
    warmup_s: list[float]  # untimed runs: the first (or the memory pass), timing.warmup, a calibration
    waiting_cpu_s: list[float]  # per timed run: CPU time its process used while the other arms ran
    settle_s: list[float]  # per timed run: wall time until its process was quiet after it
    optimizer_steps_s: dict[str, list[float]]  # each optimiser's update (timing.optimizers), round 0 only
    loss_s: list[float]  # the loss alone, forward + backward into the predictions
    compile_s: float | None  # a compiling framework's first call (trace + compile + run); None: eager
    memory_bytes: int | None  # peak resident (cpu) or allocator (cuda) memory of one core process
    # above the block's baseline after set-up, in its own untimed pass; None where none is kept
    started_at: float  # Unix time
    ended_at: float
    interference: BlockInterference
    disturbed: bool
    reasons: list[str]


@dataclasses.dataclass(frozen=True)
class IntervalRecord(Record):
    """An estimate and its interval (deeppose.compare_stats.Interval); None where none exists."""

    estimate: float | None
    low: float | None
    high: float | None
    n: int
    level: float
    method: str


@dataclasses.dataclass(frozen=True)
class TimingDesign(Record):
    """How a timing group was measured and when it stopped (deeppose.timing): what every verdict
    on its blocks must be read with."""

    preset: str | None  # `time --fast` or `--rigorous` (deeppose.timing.PRESETS); None: params.yaml's values
    pairing: str  # how a round's arms ran: "turns" (live processes alternating run by run)
    first_rounds: int  # timing.blocks: rounds every group runs
    max_rounds: int  # timing.max_blocks
    looks: int  # times the stopping rule looked at the comparisons (1 + rounds added)
    stopped: str  # "decided": every comparison decided; "max_rounds": some still inconclusive
    margin: float  # timing.margin
    decision_level: float  # the two-sided level of each look's interval (deeppose.verdicts.sequential_level)
    planted: float  # the positive control's planted slowdown, a fraction of its own run time


@dataclasses.dataclass(frozen=True)
class TimingResult(Record):
    """One cell of a timing group: every block of its arm (and of its A/A twin, and of its
    planted positive control, when it has them), and its time from the blocks."""

    KIND: ClassVar[str] = "time"
    job: JobId
    batch_size: int
    warmup: int
    repeats: int  # samples per block
    rounds: int  # rounds the group ran: blocks per arm (timing.blocks to timing.max_blocks)
    loss_repeats: int  # runs of the loss alone per block (loss_s)
    seed: int
    schedule_seed: int  # the group's block order
    input: str
    group: list[str]  # the cells measured interleaved with this one, `framework/loss`
    design: TimingDesign
    controls: list[str]  # the group's cells with an A/A twin (one per framework)
    planted_cell: str | None  # the group's cell with a planted positive control
    blocks: list[BlockRecord]
    control_blocks: list[BlockRecord]  # this cell's A/A twin's blocks (`cell#1`); empty if it has none
    planted_blocks: list[BlockRecord]  # this cell's planted twin's blocks (`cell#planted`); empty if none
    time_s: IntervalRecord  # the core process: median of block medians, t-interval on logs
    flops: int
    flops_per_s: float | None  # flops / time_s.estimate
    threads: dict[str, Any]
    versions: dict[str, str]
    compile: dict[str, Any]  # what the compiler did and which caches were warm; empty when eager
    memory_source: str | None  # what `memory_bytes` counts
    environment: dict[str, Any]  # includes `fairness`, the manifest of the process that timed
    provenance: Provenance
