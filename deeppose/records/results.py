"""Typed result records: the one place that knows the shape of every file a stage writes.

Each record is a frozen dataclass. Files carry `kind` and `schema_version`; reading checks both,
every field's presence and type, and rejects unknown fields and non-finite numbers, each with one
line naming the file and the field. A reader therefore never guesses at a format: a file from
another version or a damaged one is a clear error, and the report needs no defensive re-checks.

Nested parts that describe rather than measure (environment, versions, threads, per-kernel
statistics) are typed as JSON objects; every number a report computes from is a typed field.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from deeppose.errors import DeepPoseError
from deeppose.records.atomic import write_json

SCHEMA_VERSION = 5  # 2: peak ceilings, per-optimiser update times, per-image PDJ/PCK; 3: scored joints,
# the data filtering, lock waits in costs; 4: provenance keeps code hashes without docstrings and
# comments, the byte hashes beside them, and the machine; 5: timing design (adaptive rounds, pairing,
# margin), an A/A twin per framework and a planted positive control

R = TypeVar("R", bound="Record")


class RecordError(DeepPoseError):
    """A result file that cannot be read as its record: one line, naming the file and field."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _finite(value: Any, where: str) -> Any:
    """`value` (any JSON) unchanged, or RecordError naming the first non-finite number in it: no
    stage writes one, so it is damage, and a report built on it would mislead."""
    if isinstance(value, float) and not math.isfinite(value):
        raise RecordError(f"{where}: {value} is not a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            _finite(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _finite(item, f"{where}[{index}]")
    return value


def _convert(value: Any, tp: Any, where: str) -> Any:
    """`value` checked against annotation `tp` (records built, lists and dicts walked)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return _finite(value, where)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, where)
            except RecordError as error:
                errors.append(str(error))
        raise RecordError(
            errors[0] if len(errors) == 1 else f"{where}: {value!r:.60} is not {_type_name(tp)}"
        )
    if isinstance(tp, type) and issubclass(tp, Record):
        return tp.from_dict(value, where)
    if origin is list:
        if not isinstance(value, list):
            raise RecordError(f"{where}: expected a list, found {type(value).__name__}")
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object, found {type(value).__name__}")
        _, item = typing.get_args(tp)
        return {k: _convert(v, item, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecordError(f"{where}: expected a number, found {value!r:.60}")
        if not math.isfinite(value):
            raise RecordError(f"{where}: {value} is not a finite number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecordError(f"{where}: expected an integer, found {value!r:.60}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise RecordError(f"{where}: expected {tp.__name__}, found {value!r:.60}")
        return value
    raise TypeError(f"unsupported annotation {tp!r} at {where}")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """A record class's resolved annotations: resolving them costs more than checking a record."""
    return typing.get_type_hints(cls)


@functools.cache
def _optional(cls: type) -> frozenset[str]:
    """Fields with a default: added after files of this schema version were written, which then
    read as the default says (a record's docstring says what it means)."""
    return frozenset(
        f.name
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclasses.dataclass(frozen=True)
class Record:
    """Base of every record; a subclass with `KIND` is a whole file, one without is a part."""

    KIND: ClassVar[str | None] = None

    @classmethod
    def from_dict(cls: type[R], data: Any, where: str) -> R:
        if not isinstance(data, dict):
            raise RecordError(f"{where}: expected an object, found {type(data).__name__}")
        hints = _hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        if cls.KIND is not None:
            data = dict(data)
            kind, version = data.pop("kind", None), data.pop("schema_version", None)
            if kind != cls.KIND:
                raise RecordError(f"{where}: kind is {kind!r}, expected {cls.KIND!r}")
            if version != SCHEMA_VERSION:
                raise RecordError(
                    f"{where}: schema_version {version!r}, this code reads {SCHEMA_VERSION}; "
                    "rerun the stage that wrote it"
                )
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise RecordError(f"{where}: unknown field {unknown[0]!r} ({cls.__name__} has no such field)")
        missing = [n for n in names if n not in data and n not in _optional(cls)]
        if missing:
            raise RecordError(f"{where}: missing field {missing[0]!r}")
        return cls(
            **{
                n: _convert(data[n], hints[n], f"{where}: {n}" if ":" not in where else f"{where}.{n}")
                for n in names
                if n in data
            }
        )

    @classmethod
    def create(cls: type[R], **fields: Any) -> R:
        """A record from plain values and records, checked as a reader would check it, so that a
        stage cannot write what a reader would refuse."""
        data = {k: _plain(v) for k, v in fields.items()}
        if cls.KIND is not None:
            data.update(kind=cls.KIND, schema_version=SCHEMA_VERSION)
        return cls.from_dict(data, f"{cls.__name__} being written")

    def to_dict(self) -> dict[str, Any]:
        body = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        if self.KIND is not None:
            body = {"kind": self.KIND, "schema_version": SCHEMA_VERSION, **body}
        return body

    @classmethod
    def read(cls: type[R], path: str | Path) -> R:
        """The record in `path`; RecordError (one line) when absent, damaged or of another shape."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RecordError(f"{path}: not found") from None
        except (OSError, UnicodeDecodeError) as error:
            raise RecordError(f"{path}: unreadable ({type(error).__name__}: {error})") from None
        except ValueError as error:
            raise RecordError(f"{path}: not valid JSON ({error})") from None
        return cls.from_dict(data, str(path))

    def write(self, path: str | Path) -> None:
        """Atomically, with sorted keys: equal records give equal bytes."""
        write_json(path, self.to_dict())


# --- parts ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Provenance(Record):
    """What produced a result: a hash of every file of code it ran, the values of the parameters
    it read, and for a measurement the machine (see deeppose.provenance)."""

    stage: str
    code: dict[str, str]  # project-relative path -> sha256 of its behaviour (docstrings, comments and
    # formatting left out): what staleness compares
    code_bytes: dict[str, str]  # path -> sha256 of its bytes, for forensics only
    params: dict[str, Any]  # dotted parameter key -> value read
    params_file: str
    machine: (
        dict[str, Any] | None
    )  # deeppose.measure.machine.fingerprint(); None for stages that measure nothing


@dataclasses.dataclass(frozen=True)
class JobId(Record):
    """Which grid cell a result belongs to, checked against the place it is read for."""

    framework: str
    loss: str
    device: str
    batch_exp: int | None


@dataclasses.dataclass(frozen=True)
class Scores(Record):
    loss: float
    pcp: float | None
    pdj: float | None
    pck: float | None


@dataclasses.dataclass(frozen=True)
class IterationLine(Record):
    """One training iteration in log.jsonl. Epochs, iterations and clocks count within its run."""

    kind: str
    epoch: int
    iteration: int
    loss: float
    elapsed_s: float
    compute_s: float
    run: int = 0  # which of the job's seeds (TrainMetrics.runs[run]); absent before train.seeds


@dataclasses.dataclass(frozen=True)
class EvalLine(Record):
    """One test-set evaluation in log.jsonl."""

    kind: str
    epoch: int
    iteration: int
    elapsed_s: float
    test_loss: float
    pcp: float | None
    pdj: float | None
    pck: float | None
    run: int = 0  # which of the job's seeds, as IterationLine.run


@dataclasses.dataclass(frozen=True)
class SeedRun(Record):
    """One of a training job's runs (train.seeds), one seed each, run one after another: what the
    report and `compare` pool between seeds."""

    seed: int  # its seed (deeppose.train.run_seeds): initial weights, batch order, dropout
    iterations: int
    train_time_s: float  # evaluations excluded
    eval_time_s: float
    final_train_loss: float  # mean over its last epoch's iterations
    final_test: Scores
    test_per_image: dict[str, list[float]]  # its final network's (deeppose.metrics.per_image)
    curve_sha256: str | None  # of its iteration losses (`curve_sha256`): equal hashes, one trajectory;
    # None where no log tells


def curve_sha256(losses: list[float]) -> str:
    """A hash of a run's iteration losses, exact to the bit: two runs with equal hashes followed
    one trajectory (autograd and explicit runs of one framework can) and count as one replicate."""
    return hashlib.sha256(json.dumps([float(x).hex() for x in losses]).encode()).hexdigest()


def log_line(data: Any, where: str) -> IterationLine | EvalLine:
    """One parsed log.jsonl line as its record."""
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind == "iteration":
        return IterationLine.from_dict(data, where)
    if kind == "eval":
        return EvalLine.from_dict(data, where)
    raise RecordError(f"{where}: kind is {kind!r}, expected 'iteration' or 'eval'")


# --- whole files ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PrepareSummary(Record):
    KIND: ClassVar[str] = "prepare"
    source: str
    seed: int
    inputs: list[dict[str, Any]]
    crop: dict[str, int]
    kept: dict[str, int]
    filtering: dict[str, Any]  # per split: the drop rules that apply, and what they dropped
    dropped: dict[str, Any]
    arrays: dict[str, dict[str, Any]]
    sha256: str
    provenance: Provenance


@dataclasses.dataclass(frozen=True)
class TrainMetrics(Record):
    KIND: ClassVar[str] = "train"
    job: JobId
    seed: int
    params: dict[str, Any]
    epochs: int
    iterations: int
    batch_size: int
    train_samples: int
    test_samples: int
    resumed_from_epoch: int
    train_time_s: float
    eval_time_s: float
    iteration_time_s: dict[str, Any]
    final_train_loss: float
    final_test: Scores
    baseline_test: Scores
    scored_joints: str  # which joints the accuracies count: "annotated" (occluded ones too)
    # per test image, from deeppose.metrics.per_image: the final network's and the mean pose's
    # (`baseline_*`), for intervals by resampling images
    test_per_image: dict[str, list[float]]
    threads: dict[str, Any]
    versions: dict[str, str]
    environment: dict[str, Any]
    provenance: Provenance
    # Every run of the job's seeds, in order; the fields above are the first's (seed = `seed`, the
    # parameter file's), timing and per-image data included. Empty in a file written before
    # train.seeds: one run, the fields above (`seed_runs` then derives its entry).
    runs: list[SeedRun] = dataclasses.field(default_factory=list)

    def seed_runs(self, losses: list[float]) -> list[SeedRun]:
        """`runs`, or for a file without them the one run above (`losses`: its log's iteration
        losses; empty where there is no log)."""
        if self.runs:
            return list(self.runs)
        own = {k: v for k, v in self.test_per_image.items() if not k.startswith("baseline_")}
        return [
            SeedRun(
                self.seed,
                self.iterations,
                self.train_time_s,
                self.eval_time_s,
                self.final_train_loss,
                self.final_test,
                own,
                curve_sha256(losses) if losses else None,
            )
        ]


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


@dataclasses.dataclass(frozen=True)
class PeakResult(Record):
    KIND: ClassVar[str] = "peak"
    device: str
    n: int
    kernels: dict[str, dict[str, Any] | None]
    rates_flops_per_s: dict[str, float | None]
    best: str | None
    peak_flops_per_s: float | None  # the best observed kernel rate
    bandwidth: dict[str, Any] | None  # the STREAM triad's samples; None without torch
    bandwidth_bytes_per_s: float | None
    theoretical: dict[str, Any]  # cores x clock x FLOPs per cycle, and what it assumed
    theoretical_flops_per_s: float | None  # None where the microarchitecture is not known
    threads: dict[str, Any]
    environment: dict[str, Any]
    provenance: Provenance


@dataclasses.dataclass(frozen=True)
class ReportSummary(Record):
    """summary.json: the report's headline numbers, and which results were stale when it ran."""

    KIND: ClassVar[str] = "report"
    headlines: dict[str, Any]
    stale: dict[str, list[str]]  # result file -> why it no longer matches the code or parameters
    inputs: dict[str, str]  # every result file read -> sha256 of its content
    provenance: Provenance


@dataclasses.dataclass(frozen=True)
class StageCost(Record):
    """What one job of a stage cost this machine, written by the CLI after the stage succeeds: the
    price of each parameter choice, for the report's cost table, under either engine."""

    KIND: ClassVar[str] = "cost"
    stage: str
    job: str | None  # the job's label (`pytorch/autograd/cpu`, `cpu/b3`); None for a one-job stage
    started_at: float  # Unix time when the stage's code began (after the interpreter started)
    startup_s: float  # from process creation to that point: interpreter and CLI imports
    wall_s: float  # from that point to the end of the stage, its output written
    lock_wait_s: float  # of wall_s, the wait for the measurement lock (another job's measuring)
    cpu_s: float  # user + system, the process and its waited-for children
    max_rss_mb: float  # the larger of the process's and its largest child's peak resident memory


def job_id(job: Any) -> JobId:
    return JobId(job.framework, job.loss, job.device, None if job.batch_exp is None else int(job.batch_exp))


def read_log(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Iteration records, eval records and problems from a log.jsonl (bad lines are skipped)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return [], [], [f"{path}: missing (no learning curve; per-iteration times from metrics.json)"]
    except (OSError, UnicodeDecodeError) as error:
        return [], [], [f"{path}: unreadable ({type(error).__name__})"]
    iterations, evals, bad = [], [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = log_line(json.loads(line), f"{path} line {number}").to_dict()
        except (ValueError, RecordError) as error:
            bad.append(str(error))
            continue
        (iterations if entry["kind"] == "iteration" else evals).append(entry)
    problems = [f"{path}: {len(bad)} unreadable line(s) skipped (first: {bad[0]})"] if bad else []
    return iterations, evals, problems
