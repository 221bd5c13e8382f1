"""`python -m deeppose compare BASE HEAD`: which differences between two sets of results are real.

    python -m deeppose compare main HEAD                       # two git revisions of this repository
    python -m deeppose compare ../before/results results       # two results folders
    python -m deeppose compare main HEAD --json                # every figure, for programs
    python -m deeppose compare main HEAD --fail-on-regression  # 1: a cell got slower; 2: cannot judge
    python -m deeppose compare their/results results --across-machines

Each side is read through the result records (deeppose.records.results), from a results folder or from
`git archive REV results` (the working tree is never touched). Cells present on both sides are
compared; those on one side only are counted.

* Core-process time: per cell, HEAD/BASE of its block medians with a 95 % interval. The two runs
  share no rounds, so the interval is unpaired and rank-based (`unpaired_ratio`: Hodges-Lehmann
  with the Mann-Whitney interval from 4 blocks a side, Welch on logs below), so that one silent
  outlier block does not decide it; the run's drift over time, common to its cells, is divided out
  first (`_detrended`). A rerun also moves every cell of a timing group together (the machine's
  state that hour: DESIGN.md section 8 saw 12-62 % between jobs), and nothing in one pair of runs
  tells that apart from a change that slows every cell alike. So a group's *shift* is reported on
  its own, and a cell's verdict reads its ratio over its group's shift (`_judge`): one of the four
  verdicts of deeppose.verdicts against a margin m: *slower* or *faster* when the whole interval
  lies beyond 1 + m or below 1 / (1 + m), *equivalent* when it lies inside both, *inconclusive*
  otherwise (never "no change": an interval too wide to tell says so). The margin is by default
  the larger of HEAD's `timing.margin` (its timing records' design) and the A/A spread of the two
  runs (how far apart each run's A/A controls measured two identical arms, the two added in
  quadrature). Only *slower* fails `--fail-on-regression`.
  Measured with this rule on the simulated machine of tests/test_compare.py (tests/simulated_machine.py:
  live arms taking turns, run, process and round noise from benchmarks/archive/2026-12-07-noise,
  outlier rounds, disturbed rounds rerun; 8 rounds, 4 cells): over 1,000 draws a change is called in
  none of 4,000 unchanged cells, and one cell slowed by 20 % is found, and no other cell called, in
  98.6 % of draws.
  Welch's interval on the raw ratios, without the shift, calls about a third of unchanged cells
  changed.
* Training compute per iteration: the same rule; a run's iterations cut into TRAIN_BLOCKS
  consecutive blocks stand for blocks, and a device's training runs for a group.
* Accuracy: the final training loss and the test scores, HEAD against BASE between seeds, paired by
  seed (deeppose.replicates: a ratio for losses, a difference for scores, the four verdicts at the
  margin). Below two distinct seeds a side (train.seeds 1) a difference is one trajectory's: shown,
  never called a change ("not replicated"); runs bit-identical on both sides are "identical".
* Per-layer breakdown: each layer and phase against the median of its job's layers (which moved).

Sides from unlike machines (environment records or fairness manifests that differ in CPU, core
count, library versions, kernel families, threads or environment pins) get no faster/slower verdict
on any time: the differing fields are named. `--across-machines` then compares what a machine does
not set: each cell's fraction of its own machine's measured peak, and framework ratios (X / PyTorch
per round, paired within each run).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import re
import statistics
import subprocess
import tarfile
import tempfile
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deeppose import compare_stats, fmt
from deeppose.compare_stats import (
    LEVEL,
    Interval,
    Verdict,
    format_interval,
    series,
    unpaired_ratio,
)
from deeppose.errors import DeepPoseError
from deeppose.grid import REFERENCE, Job
from deeppose.measure.blocks import twin, usable
from deeppose.records import paths, ranges
from deeppose.records.breakdown import BreakdownResult
from deeppose.records.peak import PeakResult
from deeppose.records.results import RecordError
from deeppose.records.timing import TimingResult
from deeppose.records.training import SeedRun, TrainMetrics, read_log
from deeppose.replicates import between_seeds, identical, per_seed

MIN_GROUP = 3  # cells a group needs before the median of their ratios can stand for the machine's shift
TRAIN_BLOCKS = 8  # a training run's iterations, cut into this many consecutive blocks
SCORES = {"pcp": "PCP@0.5", "pdj": "PDJ@0.2", "pck": "PCK@0.2"}
RESULT_FOLDERS = ("train", "time", "breakdown", "machine")
MAX_FIELDS = 12  # differing machine fields listed in the markdown; the JSON has all
DEFAULT_MARGIN = 0.05  # params.yaml's timing.margin, for a HEAD without a timing record to read it from
NOT_COMPARABLE, NO_INTERVAL, NOT_INTERLEAVED = ("not comparable", "no interval", "not interleaved")
NOT_REPLICATED = "not replicated"  # an accuracy from one seed a side: training variability unmeasured
IDENTICAL = "identical"  # training runs bit-identical on both sides: the same trajectories
WORDS = {verdict: verdict.value for verdict in Verdict}  # slower, faster, equivalent, inconclusive
# a row whose verdict is one of these did not change: equivalent within the margin, or not decided
UNCHANGED = (
    Verdict.EQUIVALENT.value,
    Verdict.INCONCLUSIVE.value,
    NOT_COMPARABLE,
    NO_INTERVAL,
    NOT_INTERLEAVED,
    NOT_REPLICATED,
    IDENTICAL,
)


# --- reading a side -------------------------------------------------------------------------
@dataclass(frozen=True)
class Side:
    """One side's results, read through their records."""

    label: str  # what the user named: a revision or a folder
    timing: dict[Job, TimingResult]
    train: dict[Job, TrainMetrics]
    logs: dict[Job, list[dict[str, Any]]]  # a training job's iteration lines (empty without log.jsonl)
    breakdown: dict[Job, BreakdownResult]
    peak: PeakResult | None
    stray: tuple[str, ...] = ()  # files in the results' folders that are no cell's record (not read)
    log_problems: dict[Job, str] = dataclasses.field(default_factory=dict)  # job -> why it is not compared
    damaged_logs: tuple[str, ...] = ()  # logs with lines skipped, each with its first bad line


def _pattern(path: Path) -> str:
    return path.relative_to(paths.RESULTS).as_posix()


def _job(record: TimingResult | TrainMetrics | BreakdownResult) -> Job:
    job = record.job
    return Job(job.framework, job.loss, job.device, job.batch_exp)


# Where each kind of per-cell record lives (deeppose.records.paths): folder, the file name of a cell
# (a regular expression; a batch exponent as its group), and the other files that belong there.
CELL_FILES = {
    "time": (re.compile(r"b(0|[1-9][0-9]*)\.json"), ()),
    "breakdown": (re.compile(r"b(0|[1-9][0-9]*)\.json"), ()),
    "train": (re.compile(r"metrics\.json"), ("log.jsonl", "curve.csv")),
}


def _cells(root: Path, folder: str) -> tuple[dict[Job, Path], list[str]]:
    """Each cell's record file under root/folder, by its place (framework/loss/device/name), and
    the stray files there: anything that is not exactly the file deeppose.records.paths gives a
    cell (a backup `b5.old.json`, a copy, a file at another depth) is named, never read."""
    name, companions = CELL_FILES[folder]
    found: dict[Job, Path] = {}
    stray = []
    top = root / folder
    for path in sorted(top.rglob("*")) if top.is_dir() else []:
        if path.is_dir() and not path.is_symlink():
            continue
        parts = path.relative_to(top).parts
        matched = name.fullmatch(parts[-1]) if len(parts) == 4 else None
        if matched is None:
            if not (len(parts) == 4 and parts[-1] in companions):
                stray.append(path.relative_to(root).as_posix())
            continue
        exp = int(matched.group(1)) if matched.groups() else None
        job = Job(parts[0], parts[1], parts[2], exp)  # type: ignore[arg-type]
        found[job] = path
    return found, stray


def _read_cell(kind: type[Any], path: Path, job: Job) -> Any:
    """The record of `job` at `path`, its values in range and its `job` field naming its place."""
    record = ranges.read(kind, path)
    if _job(record) != job:
        held = _job(record)
        raise RecordError(
            f"{path}: job: it holds the result of {held.label}, not of {job.label} whose place it is"
        )
    return record


def _log(root: Path, job: Job, metrics: TrainMetrics) -> tuple[list[dict[str, Any]], str | None, str | None]:
    """A training job's iteration lines, why they are not compared, and which lines were damaged: a
    log whose last epoch is not the one its metrics.json summarises (a truncated or foreign log) is
    named and not compared; damaged lines are skipped and named."""
    path = root / _pattern(paths.train_log(job))
    shown = path.relative_to(root).as_posix()
    iterations, _, problems = read_log(path)
    if not path.exists():
        return [], None, None  # no learning curve: per-iteration times come from metrics.json
    damaged = problems[0].replace(str(path), shown) if problems else None
    last = max((line["epoch"] for line in iterations), default=None)
    if last != metrics.epochs:
        return [], f"{shown}: its last epoch is {last}, its metrics.json summarises {metrics.epochs}", damaged
    return iterations, None, damaged


def read_side(root: Path, label: str) -> Side:
    """Every result record under `root` (a folder laid out as results/ is): exactly one record per
    cell, read from the place deeppose.records.paths gives it, its values checked."""
    timing_files, stray = _cells(root, "time")
    train_files, stray_train = _cells(root, "train")
    breakdown_files, stray_breakdown = _cells(root, "breakdown")
    timing = {job: _read_cell(TimingResult, path, job) for job, path in timing_files.items()}
    train = {job: _read_cell(TrainMetrics, path, job) for job, path in train_files.items()}
    logs, log_problems, damaged = {}, {}, []
    for job, metrics in train.items():
        logs[job], problem, bad_lines = _log(root, job, metrics)
        if problem:
            log_problems[job] = problem
        if bad_lines:
            damaged.append(bad_lines)
    breakdown = {job: _read_cell(BreakdownResult, path, job) for job, path in breakdown_files.items()}
    peak_file = root / _pattern(paths.matmul_peak())
    return Side(
        label,
        timing,
        train,
        logs,
        breakdown,
        ranges.read(PeakResult, peak_file) if peak_file.exists() else None,
        tuple(stray + stray_train + stray_breakdown),
        log_problems,
        tuple(damaged),
    )


def _holds_results(path: Path) -> bool:
    return any((path / name).is_dir() for name in RESULT_FOLDERS)


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], capture_output=True, check=False)
    except FileNotFoundError:
        raise DeepPoseError("git is not installed: give results folders instead of revisions") from None


def load_side(spec: str, role: str) -> Side:
    """The results of `spec`: a results folder (or a project folder holding results/), else a git
    revision of the repository in the working directory, read with `git archive`."""
    path = Path(spec)
    if path.is_dir():
        root = path if _holds_results(path) else path / paths.RESULTS
        if not _holds_results(root):
            raise DeepPoseError(
                f"{role} {spec}: a folder without results; give a results folder (holding "
                f"{', '.join(f'{n}/' for n in RESULT_FOLDERS)} as results/ does) or a git revision"
            )
        return read_side(root, spec)
    commit = _git("rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}")
    if commit.returncode != 0:
        raise DeepPoseError(
            f"{role} {spec!r}: neither a folder nor a git revision of the repository in "
            f"{Path.cwd()}; give a revision (main, HEAD~1, a commit) or a results folder"
        )
    sha = commit.stdout.decode().strip()
    archive = _git("archive", "--format=tar", sha, "--", paths.RESULTS.as_posix())
    if archive.returncode != 0:
        raise DeepPoseError(f"{role} {spec}: revision {sha[:12]} has no {paths.RESULTS}/ folder to compare")
    with tempfile.TemporaryDirectory(prefix="deeppose-compare-") as tmp:
        try:
            with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
                tar.extractall(tmp, filter="data")
        except tarfile.TarError as error:  # an absolute or escaping link, a device file, a bad archive
            raise DeepPoseError(
                f"{role} {spec}: its {paths.RESULTS}/ cannot be read safely: {error}"
            ) from None
        try:
            return read_side(Path(tmp) / paths.RESULTS, spec)
        except RecordError as error:
            raise DeepPoseError(f"{role} {spec}: {str(error).replace(tmp + '/', '')}") from None


# --- what is compared -----------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One figure of one cell on both sides."""

    what: str  # "core time", "training compute per iteration", "test PCK@0.2", ...
    cell: str  # pytorch/autograd/cpu/b5, or a layer: chainer/autograd/cpu/b3 conv1 backward
    base: float | None
    head: float | None
    unit: str  # "s" (times), "%" (scores), "" (losses, ratios)
    change: Interval  # HEAD/BASE; for scores HEAD - BASE
    judged: Interval  # what the verdict reads: `change` over the group's shift
    verdict: str  # faster/slower, lower/higher, better/worse, or one of UNCHANGED

    @property
    def changed(self) -> bool:
        return self.verdict not in UNCHANGED

    @property
    def effect(self) -> float:
        """How far the judged figure moved: |log ratio|, or |difference| for scores."""
        value = self.judged.estimate
        if value is None:
            return 0.0
        return abs(value) if self.unit == "%" else abs(math.log(value))


@dataclass(frozen=True)
class Shift:
    """How far a group's cells moved together: the machine between the runs, or a change to all."""

    group: str  # "cpu b5", "cpu training", or a breakdown job
    ratio: float | None  # median HEAD/BASE of its cells; None below MIN_GROUP cells (not removed)
    cells: int


@dataclass(frozen=True)
class MachineField:
    """A field in which the sides differ: of the machine, or (Changes.params) a parameter."""

    field: str  # dotted, e.g. environment.cpu or fairness.common.kernel_isa, or timing.blocks
    base: Any  # ABSENT where this side does not record it
    head: Any


ABSENT = "(absent)"


@dataclass(frozen=True)
class Changes:
    """Everything `compare` found; the markdown and the JSON are renderings of this value."""

    base: str
    head: str
    level: float
    margin: float
    margin_source: str
    machines: tuple[MachineField, ...]  # fields in which the sides' machines differ; empty: alike
    across_machines: bool
    timing: tuple[Row, ...]
    shifts: tuple[Shift, ...]
    training: tuple[Row, ...]
    accuracy: tuple[Row, ...]
    breakdown: tuple[Row, ...]
    across: tuple[Row, ...]  # machine-independent figures (--across-machines)
    unmatched: dict[str, int]  # "timing cells only in BASE" -> how many
    params: tuple[MachineField, ...] = ()  # parameter values that differ between the sides' records
    problems: tuple[str, ...] = ()  # what makes a verdict on this pair incomplete (missing, apart, logs)
    notes: tuple[str, ...] = ()  # what was named and left out (stray files, damaged log lines)

    @property
    def regressions(self) -> list[Row]:
        """Cells whose time got slower (core process or training)."""
        return [row for row in self.timing + self.training if row.verdict == "slower"]

    @property
    def incomparable(self) -> list[str]:
        """Why this pair cannot pass or fail a regression gate: one line each (empty: it can)."""
        lines = []
        if self.machines:
            first = self.machines[0]
            lines.append(
                f"BASE and HEAD ran on unlike machines: {len(self.machines)} fields differ (first: "
                f"{first.field} {first.base!r:.60} vs {first.head!r:.60})"
            )
        return lines + list(self.problems)


def _label(job: Job) -> str:
    return job.label


def _divide(interval: Interval, by: float) -> Interval:
    def scaled(x: float | None) -> float | None:
        return None if x is None else x / by

    return dataclasses.replace(
        interval, estimate=scaled(interval.estimate), low=scaled(interval.low), high=scaled(interval.high)
    )


def _verdicts(
    rows: list[tuple[str, str, float | None, float | None, Interval]],
    shift: float,
    margin: float,
    comparable: bool,
) -> list[Row]:
    judged = []
    for what, cell, base, head, change in rows:
        relative = _divide(change, shift)
        word = WORDS[compare_stats.verdict(relative, margin)] if comparable else NOT_COMPARABLE
        judged.append(Row(what, cell, base, head, "s", change, relative, word))
    return judged


def _judge(
    rows: list[tuple[str, str, float | None, float | None, Interval]],
    group: str,
    margin: float,
    comparable: bool,
) -> tuple[list[Row], Shift]:
    """Time rows (what, cell, base, head, HEAD/BASE) of one group, judged against its shift.

    The shift is the median of the cells' log ratios. One changed cell of four still pulls that
    median halfway to itself and makes an unchanged cell look changed, so when a cell moved and the
    group has more than MIN_GROUP cells, the shift is taken again without the cell that moved most
    (the mean of the rest) and every cell judged again."""
    logs = {cell: math.log(change.estimate) for _, cell, _, _, change in rows if change.estimate is not None}
    if len(logs) < MIN_GROUP:
        return _verdicts(rows, 1.0, margin, comparable), Shift(group, None, len(rows))
    shift = math.exp(statistics.median(logs.values()))
    judged = _verdicts(rows, shift, margin, comparable)
    moved = [row for row in judged if row.verdict in ("faster", "slower")]
    if moved and len(logs) > MIN_GROUP:
        most = max(moved, key=lambda row: row.effect).cell
        shift = math.exp(statistics.mean(value for cell, value in logs.items() if cell != most))
        judged = _verdicts(rows, shift, margin, comparable)
    return judged, Shift(group, shift, len(rows))


def _outside(cells: list[list[tuple[float, float]]], durations: list[float]) -> list[bool]:
    """Which cells have a block outside the time span most cells of their group share.

    A timing group's cells are interleaved block by block, so each cell's blocks span the same
    stretch of the run: [the median of the cells' first start times, the median of their last],
    widened by one round (the median of the cells' spacing between blocks) and the longest block, as
    a cell's first block may open its round. A cell outside it did not run with its group (restored
    from an older run, or its timestamps moved): the group's drift and shift say nothing about it.
    Where half the cells or more lie apart, no span is shared, and every cell outside the medians'
    span is named."""
    timed = [cell for cell in cells if cell]
    if len(timed) < 2:
        return [False] * len(cells)
    low = statistics.median(min(t for t, _ in cell) for cell in timed)
    high = statistics.median(max(t for t, _ in cell) for cell in timed)
    rounds = [(max(t for t, _ in c) - min(t for t, _ in c)) / (len(c) - 1) for c in timed if len(c) > 1]
    slack = (statistics.median(rounds) if rounds else 0.0) + max(durations, default=0.0)
    return [any(not low - slack <= t <= high + slack for t, _ in cell) for cell in cells]


def _detrended(results: list[TimingResult]) -> tuple[list[list[float]], list[bool]]:
    """Each cell's undisturbed block medians with the run's drift divided out, and which cells were
    left as measured because their blocks lie outside their group's time span (`_outside`).

    A machine drifts over a run (the simulated one by 15 %), and a cell's blocks are spread over
    it, so the drift widens every cell's interval though it is common to all of them. It is taken
    as one slope of log block median on the block's start time per run: the median of the slopes
    between every two blocks of one cell (Theil-Sen within cells: a changed cell moves its level,
    not the slope, and a silent outlier block moves the median little). One figure per run, so the
    intervals keep the between-block spread that is not drift. The slope is fitted on, and applied
    within, the span the group's interleaved cells cover: never extrapolated to a block outside it
    (one block from 10 minutes later, at the slope of a 4-second run, made a cell 1.9x slower)."""
    blocks = [
        [(b.started_at, math.log(statistics.median(b.samples_s))) for b in usable(r.blocks)] for r in results
    ]
    durations = [b.ended_at - b.started_at for r in results for b in usable(r.blocks)]
    apart = _outside(blocks, durations)
    inside = [cell for cell, out in zip(blocks, apart) if not out and cell]
    slopes = [
        (y2 - y1) / (t2 - t1)
        for cell in inside
        for i, (t1, y1) in enumerate(cell)
        for t2, y2 in cell[i + 1 :]
        if t2 != t1
    ]
    slope = statistics.median(slopes) if slopes else 0.0
    times = [t for cell in inside for t, _ in cell]
    if not times:
        return [[math.exp(y) for _, y in cell] for cell in blocks], apart
    centre, low, high = statistics.mean(times), min(times), max(times)

    def steady(t: float, y: float) -> float:
        return math.exp(y - slope * (min(max(t, low), high) - centre))

    return [
        [math.exp(y) for _, y in cell] if out else [steady(t, y) for t, y in cell]
        for cell, out in zip(blocks, apart)
    ], apart


def _cell_time(result: TimingResult) -> float:
    """The median of the cell's block medians, from its blocks (what time_s records when written)."""
    return statistics.median(statistics.median(block.samples_s) for block in usable(result.blocks))


def _timing(
    base: Side, head: Side, margin: float, comparable: bool
) -> tuple[list[Row], list[Shift], list[str]]:
    """Core-time rows and group shifts, and a line for each cell whose blocks lie outside its
    group's time span on a side: it keeps its ratio, uncorrected, gets no verdict and is left out of
    its group's shift."""
    groups: dict[tuple[str, int | None], list[Job]] = {}
    for job in sorted(set(base.timing) & set(head.timing), key=_label):
        groups.setdefault((job.device, job.batch_exp), []).append(job)
    rows, shifts, apart = [], [], []
    for (device, exp), jobs in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1] or 0)):
        (b_steady, b_apart), (h_steady, h_apart) = (
            _detrended([side.timing[job] for job in jobs]) for side in (base, head)
        )
        cells, loose = [], []
        for job, b, h, out_b, out_h in zip(jobs, b_steady, h_steady, b_apart, h_apart):
            cell = (
                "core time",
                _label(job),
                _cell_time(base.timing[job]),
                _cell_time(head.timing[job]),
                unpaired_ratio(h, b),
            )
            sides = [name for name, out in (("BASE", out_b), ("HEAD", out_h)) if out]
            if sides:
                loose.append(cell)
                apart.append(
                    f"{_label(job)}: its blocks on {' and '.join(sides)} lie outside the time span of its "
                    "timing group (restored from another run, or its timestamps moved): not corrected "
                    "for drift, no verdict"
                )
            else:
                cells.append(cell)
        judged, shift = _judge(cells, f"{device} b{exp}", margin, comparable)
        by_cell = {row.cell: row for row in judged} | {
            cell: Row(what, cell, b, h, "s", change, change, NOT_INTERLEAVED)
            for what, cell, b, h, change in loose
        }
        rows += [by_cell[_label(job)] for job in jobs]
        shifts.append(shift)
    return rows, shifts, apart


def _iteration_blocks(metrics: TrainMetrics, log: list[dict[str, Any]]) -> list[float]:
    """Medians of TRAIN_BLOCKS consecutive runs of iterations (compute time), or the run's mean."""
    times = [line["compute_s"] for line in log if line["compute_s"] > 0]
    if len(times) < TRAIN_BLOCKS:
        return [metrics.train_time_s / metrics.iterations] if metrics.iterations > 0 else []
    return [float(np.median(chunk)) for chunk in np.array_split(np.asarray(times), TRAIN_BLOCKS)]


def _training(base: Side, head: Side, margin: float, comparable: bool) -> tuple[list[Row], list[Shift]]:
    by_device: dict[str, list[Job]] = {}
    for job in sorted(set(base.train) & set(head.train), key=_label):
        if job not in base.log_problems and job not in head.log_problems:  # named in Changes.problems
            by_device.setdefault(job.device, []).append(job)
    rows, shifts = [], []
    for device, jobs in sorted(by_device.items()):
        cells = []
        for job in jobs:
            b = _iteration_blocks(base.train[job], base.logs[job])
            h = _iteration_blocks(head.train[job], head.logs[job])
            if b and h:
                cells.append(
                    (
                        "training compute per iteration",
                        _label(job),
                        statistics.median(b),
                        statistics.median(h),
                        unpaired_ratio(h, b),
                    )
                )
        judged, shift = _judge(cells, f"{device} training", margin, comparable)
        rows += judged
        shifts.append(shift)
    return rows, shifts


def _seed_runs(side: Side, job: Job) -> list[SeedRun]:
    """A side's runs of `job` (its train.seeds), the first run's log lines standing for a record
    written before train.seeds."""
    return side.train[job].seed_runs([line["loss"] for line in side.logs[job] if line["run"] == 0])


ACCURACY = {  # per_seed's metric -> the row's figure, and whether it is compared as a ratio
    "train_loss": ("final training loss", True),
    "loss": ("test loss", True),
    **{key: (f"test {name}", False) for key, name in SCORES.items()},
}
SEED_WORDS = {  # the four verdicts of a ratio (losses) and of a difference (scores)
    True: {"slower": "higher", "faster": "lower"},
    False: {"slower": "better", "faster": "worse"},
}


def _accuracy(base: Side, head: Side, margin: float) -> list[Row]:
    """Final training loss and test scores of every training job on both sides, HEAD against BASE
    between seeds, paired by seed (deeppose.replicates). One seed is one trajectory: float32
    kernels of another CPU or library send it elsewhere, so below two distinct seeds a side's
    difference is shown but never called a change; runs identical bit for bit on both sides are."""
    rows = []
    for job in sorted(set(base.train) & set(head.train), key=_label):
        if job in base.log_problems or job in head.log_problems:  # named in Changes.problems
            continue
        b, h = _seed_runs(base, job), _seed_runs(head, job)
        same = identical(b, h)
        for metric, (what, ratio) in ACCURACY.items():
            vb, vh = per_seed(b, metric), per_seed(h, metric)
            if not vb or not vh:
                continue
            between = between_seeds(vh, vb, margin, ratio)
            if same:
                word = IDENTICAL
            elif not between.measured:
                word = NOT_REPLICATED
            else:
                word = SEED_WORDS[ratio].get(between.verdict.value, between.verdict.value)
            rows.append(
                Row(
                    what,
                    _label(job),
                    statistics.mean(vb.values()),
                    statistics.mean(vh.values()),
                    "" if ratio else "%",
                    between.interval,
                    between.interval,
                    word,
                )
            )
    return rows


def _breakdown(base: Side, head: Side, margin: float, comparable: bool) -> tuple[list[Row], list[Shift]]:
    rows, shifts = [], []
    for job in sorted(set(base.breakdown) & set(head.breakdown), key=_label):
        layers = {(r["layer"], r["phase"]): r["samples_s"] for r in base.breakdown[job].layers}
        cells = []
        for layer in head.breakdown[job].layers:
            b, h = layers.get((layer["layer"], layer["phase"])), layer["samples_s"]
            if b and h and min(b) > 0 and min(h) > 0:
                cells.append(
                    (
                        "layer time",
                        f"{_label(job)} {layer['layer']} {layer['phase']}",
                        statistics.median(b),
                        statistics.median(h),
                        unpaired_ratio(h, b),
                    )
                )
        judged, shift = _judge(cells, _label(job), margin, comparable)
        rows += judged
        shifts.append(shift)
    return rows, shifts


def _framework_ratio_blocks(side: Side, job: Job) -> list[float] | None:
    """Per round: the block median of `job` over that of PyTorch's same cell, paired in the run."""
    reference = Job(REFERENCE, job.loss, job.device, job.batch_exp)
    if reference not in side.timing:
        return None

    def by_round(result: TimingResult) -> dict[int, float]:
        return {b.round: statistics.median(b.samples_s) for b in usable(result.blocks)}

    ours, theirs = by_round(side.timing[job]), by_round(side.timing[reference])
    return [ours[r] / theirs[r] for r in sorted(set(ours) & set(theirs))] or None


def _across(base: Side, head: Side, margin: float) -> list[Row]:
    """What a machine does not set: fraction of each side's own peak, and framework ratios."""
    rows = []
    peaks = [side.peak.peak_flops_per_s if side.peak else None for side in (base, head)]
    for job in sorted(set(base.timing) & set(head.timing), key=_label):
        rates = [side.timing[job].flops_per_s for side in (base, head)]
        if job.device == "cpu" and None not in rates and all(peaks):
            fb, fh = rates[0] / peaks[0], rates[1] / peaks[1]  # type: ignore[operator]
            rows.append(
                Row(
                    "fraction of peak",
                    _label(job),
                    fb,
                    fh,
                    "",
                    Interval(fh / fb, None, None, 1, LEVEL, "values only"),
                    Interval(fh / fb, None, None, 1, LEVEL, "values only"),
                    NO_INTERVAL,
                )
            )
        if job.framework != REFERENCE:
            b, h = _framework_ratio_blocks(base, job), _framework_ratio_blocks(head, job)
            if b and h:
                ratio = unpaired_ratio(h, b)
                word = WORDS[compare_stats.verdict(ratio, margin)]
                rows.append(
                    Row(
                        f"{fmt.framework_name(job.framework)} / {fmt.framework_name(REFERENCE)} core time",
                        _label(job),
                        statistics.median(b),
                        statistics.median(h),
                        "",
                        ratio,
                        ratio,
                        word,
                    )
                )
    return rows


# Environment fields that describe a moment, not the machine: the commit differs by design, the load
# average with whatever ran a minute before.
TRANSIENT = ("commit", "fairness", "load_average_1m")


def _unordered(value: Any) -> Any:
    """Lists of records (the native libraries a process loaded) in a canonical order: the order
    libraries were loaded in is not a property of the machine."""
    if isinstance(value, dict):
        return {k: _unordered(v) for k, v in value.items()}
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return sorted((_unordered(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    return value


def _description(record: TimingResult | TrainMetrics | BreakdownResult) -> dict[str, Any]:
    """What the machine and libraries were, for comparing sides: the environment record (less
    TRANSIENT fields), the fairness manifest, threads, versions and the machine fingerprint of the
    record's provenance (deeppose.measure.machine)."""
    environment = {k: v for k, v in record.environment.items() if k not in TRANSIENT}
    return _unordered(
        {
            "environment": environment,
            "fairness": record.environment.get("fairness", {}),
            "threads": record.threads,
            "versions": record.versions,
            "machine": record.provenance.machine,
        }
    )


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted field -> value of nested objects (lists are values)."""
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flat(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def _field_differences(pairs: Iterable[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[MachineField, ...]:
    """Every dotted field in which a BASE description differs from its HEAD one; a field present
    on one side only is a difference (ABSENT on the other), never taken as equal."""
    found: dict[str, MachineField] = {}
    for ours, theirs in pairs:
        b, h = _flat(ours), _flat(theirs)
        for field in sorted(set(b) | set(h)):
            vb, vh = b.get(field, ABSENT), h.get(field, ABSENT)
            if vb != vh:
                found.setdefault(field, MachineField(field, vb, vh))
    return tuple(found[name] for name in sorted(found))


def _matched(base: Side, head: Side) -> list[tuple[Any, Any]]:
    """Every record matched between the sides (timing cells, training runs, breakdown jobs)."""
    pairs = []
    for kind in ("timing", "train", "breakdown"):
        ours, theirs = getattr(base, kind), getattr(head, kind)
        pairs += [(ours[job], theirs[job]) for job in sorted(set(ours) & set(theirs), key=_label)]
    return pairs


def machine_differences(base: Side, head: Side) -> tuple[MachineField, ...]:
    """Every field in which a matched result's machine description differs between the sides."""
    return _field_differences((_description(b), _description(h)) for b, h in _matched(base, head))


def parameter_differences(base: Side, head: Side) -> tuple[MachineField, ...]:
    """The parameter values (dotted keys, as each record's provenance read them) that differ
    between the sides' matched records: what the two runs were asked to do differently."""
    return _field_differences((b.provenance.params, h.provenance.params) for b, h in _matched(base, head))


def aa_spread(side: Side) -> tuple[float, str] | None:
    """How far apart this run's A/A controls measured two identical arms: the largest |ratio - 1|
    of twin / cell (paired by round, deeppose.compare_stats.compare, as the report's A/A control)
    over the run's timing groups, and which group that was."""
    worst: tuple[float, str] | None = None
    for job, result in sorted(side.timing.items(), key=lambda item: _label(item[0])):
        if not result.control_blocks:
            continue
        cell = f"{job.framework}/{job.loss}"
        design = result.design
        ratio = compare_stats.compare(
            series(result.blocks) + series(result.control_blocks),
            twin(cell),
            cell,
            design.margin,
            design.decision_level,
        ).ratio.estimate
        if ratio is not None and (worst is None or abs(ratio - 1) > worst[0]):
            worst = (abs(ratio - 1), f"{job.device} b{job.batch_exp}")
    return worst


def head_margin(head: Side) -> tuple[float, str]:
    """HEAD's equivalence margin (`timing.margin`, as its timing records' designs hold it; the
    largest if they differ), or DEFAULT_MARGIN when HEAD has no timing record."""
    margins = {result.design.margin for result in head.timing.values()}
    if not margins:
        return (
            DEFAULT_MARGIN,
            f"the default timing.margin, {_percent(DEFAULT_MARGIN)} (HEAD has no timing record)",
        )
    return max(margins), f"HEAD's timing.margin, {_percent(max(margins))}"


def _margin(base: Side, head: Side, given: float | None) -> tuple[float, str]:
    """--margin, or the larger of HEAD's timing.margin and the A/A spread of the two runs: a
    comparison of two runs carries the noise of both, so their A/A spreads add in quadrature."""
    if given is not None:
        if not 0 < given < 1:
            raise DeepPoseError(f"--margin {given}: give a fraction between 0 and 1 (0.07 for 7 %)")
        return given, "--margin"
    floor, source = head_margin(head)
    spreads = {side.label: found for side in (base, head) if (found := aa_spread(side)) is not None}
    if not spreads:
        return floor, f"{source}; neither run has an A/A control"
    measured = math.sqrt(sum(spread**2 for spread, _ in spreads.values()))
    parts = ", ".join(f"{label} {_percent(spread)} at {where}" for label, (spread, where) in spreads.items())
    return max(floor, measured), (
        f"the larger of {source} and the two runs' A/A spread, {_percent(measured)} ({parts})"
    )


def _unmatched(base: Side, head: Side) -> dict[str, int]:
    counts = {}
    for kind, name in (
        ("timing", "timing cells"),
        ("train", "training runs"),
        ("breakdown", "breakdown jobs"),
    ):
        ours, theirs = set(getattr(base, kind)), set(getattr(head, kind))
        for side, jobs in (("BASE", ours - theirs), ("HEAD", theirs - ours)):
            if jobs:
                counts[f"{name} only in {side}"] = len(jobs)
    return counts


def compare_sides(
    base: Side, head: Side, margin: float | None = None, across_machines: bool = False
) -> Changes:
    """Match the two sides' cells and judge each (see the module docstring)."""
    if not (set(base.timing) & set(head.timing) or set(base.train) & set(head.train)):

        def has(side: Side) -> str:
            return f"{len(side.timing)} timing cells, {len(side.train)} training runs"

        raise DeepPoseError(
            f"BASE ({base.label}: {has(base)}) and HEAD ({head.label}: {has(head)}) share no "
            "timing cell or training run; compare needs results of the same grid cells"
        )
    margin, source = _margin(base, head, margin)
    machines = machine_differences(base, head)
    comparable = not machines
    timing, shifts, apart = _timing(base, head, margin, comparable)
    problems = [
        f"HEAD lacks {n} {what.removesuffix(' only in BASE')} that BASE has"
        for what, n in _unmatched(base, head).items()
        if what.endswith("only in BASE")
    ]
    problems += apart
    problems += [f"{side.label}: {line}" for side in (base, head) for line in side.log_problems.values()]
    notes = [
        f"{side.label}: stray file {name} (not a cell's record; not read)"
        for side in (base, head)
        for name in side.stray
    ]
    notes += [f"{side.label}: {line}" for side in (base, head) for line in side.damaged_logs]
    training, train_shifts = _training(base, head, margin, comparable)
    breakdown, _ = _breakdown(base, head, margin, comparable)
    return Changes(
        base=base.label,
        head=head.label,
        level=LEVEL,
        margin=margin,
        margin_source=source,
        machines=machines,
        across_machines=across_machines,
        timing=tuple(timing),
        shifts=tuple(shifts + train_shifts),
        training=tuple(training),
        accuracy=tuple(_accuracy(base, head, margin)),
        breakdown=tuple(breakdown),
        across=tuple(_across(base, head, margin)) if across_machines else (),
        unmatched=_unmatched(base, head),
        params=parameter_differences(base, head),
        problems=tuple(problems),
        notes=tuple(notes),
    )


# --- rendering ------------------------------------------------------------------------------
def _percent(x: float) -> str:
    return f"{100 * x:.2g} %" if x < 0.01 else f"{100 * x:.1f} %".replace(".0 %", " %")


def _value(value: float | None, unit: str) -> str:
    if unit == "s":
        return fmt.seconds(value)
    return fmt.percent(value) if unit == "%" else fmt.sig(value)


def _change(row: Row) -> str:
    if row.unit == "%":
        return format_interval(row.change, 100, "points")
    return format_interval(row.change)


def _counts(rows: Iterable[Row]) -> str:
    tally: dict[str, int] = {}
    for row in rows:
        tally[row.verdict] = tally.get(row.verdict, 0) + 1
    return ", ".join(f"{n} {word}" for word, n in sorted(tally.items(), key=lambda item: -item[1]))


def _table(title: str, rows: tuple[Row, ...], judged_column: bool) -> str:
    """Only the rows that changed, largest effect first; the rest counted."""
    if not rows:
        return ""
    changed = sorted((r for r in rows if r.changed), key=lambda r: (-r.effect, r.cell))
    if not changed:
        return f"**{title}**: {_counts(rows)}."
    rest = [r for r in rows if not r.changed]
    text = f"**{title}**: {len(changed)} of {len(rows)} changed" + (
        f"; the rest {_counts(rest)}." if rest else "."
    )
    headers = ["cell", "figure", "BASE", "HEAD", f"HEAD vs BASE [{_percent(LEVEL)}]"]
    headers += ["over group shift"] if judged_column else []
    body = []
    for r in changed:
        cells = [r.cell, r.what, _value(r.base, r.unit), _value(r.head, r.unit), _change(r)]
        cells += [fmt.sig(r.judged.estimate)] if judged_column else []
        body.append(cells + [f"**{r.verdict}**"])
    return text + "\n\n" + fmt.table(headers + ["verdict"], body, right=(2, 3))


def _shift_line(shifts: tuple[Shift, ...]) -> str:
    measured = [s for s in shifts if s.ratio is not None and "training" not in s.group]
    if not measured:
        return ""
    most = max(measured, key=lambda s: abs(math.log(s.ratio or 1.0)))
    text = (
        f"Whole timing groups moved by up to x{fmt.sig(most.ratio)} ({most.group}): the machine between the "
        "runs, or a change that moves every cell alike (compare cannot tell which); each cell is judged "
        "over its group's shift."
    )
    small = [s.group for s in shifts if s.ratio is None and s.cells]
    if small:
        text += f" Groups of fewer than {MIN_GROUP} cells are judged unshifted: {', '.join(small)}."
    return text


def render_markdown(changes: Changes) -> str:
    """A pull-request comment: a summary line, then only what changed, the rest counted. Titles are
    bold lines, not headings, so the text nests under any heading (the report's section)."""
    slower = sum(r.verdict == "slower" for r in changes.timing)
    faster = sum(r.verdict == "faster" for r in changes.timing)
    equivalent = sum(r.verdict == Verdict.EQUIVALENT.value for r in changes.timing)
    inconclusive = sum(r.verdict == Verdict.INCONCLUSIVE.value for r in changes.timing)
    head = f"**deeppose compare** `{changes.base}` → `{changes.head}`: "
    if changes.machines:
        head += (
            f"**no time verdict**: the two sides ran on unlike machines ({len(changes.machines)} fields "
            "differ, below)."
        )
    else:
        head += (
            f"{slower} of {len(changes.timing)} timing cells slower, {faster} faster, {equivalent} "
            f"equivalent, {inconclusive} inconclusive "
            f"(margin {_percent(changes.margin)}: {changes.margin_source}; "
            f"{_percent(changes.level)} intervals)."
        )
    parts = [head]
    if changes.machines:
        rows = [
            [f"`{m.field}`", fmt.escape(m.base), fmt.escape(m.head)] for m in changes.machines[:MAX_FIELDS]
        ]
        more = len(changes.machines) - MAX_FIELDS
        more_text = f"\n\n...and {more} more (`--json`)." if more > 0 else ""
        parts.append(fmt.table(["field", "BASE", "HEAD"], rows) + more_text)
        parts.append(
            "Machine-independent figures (fraction of each machine's own peak, framework ratios) "
            + (
                "are compared below instead."
                if changes.across_machines
                else "are compared with `--across-machines`."
            )
        )
    sections = [
        ("Core-process time", changes.timing, True),
        ("Training compute per iteration", changes.training, True),
        ("Accuracy", changes.accuracy, False),
        ("Per-layer breakdown", changes.breakdown, True),
    ]
    if changes.across_machines:
        sections.append(("Across machines (fraction of own peak, framework ratios)", changes.across, False))
    parts += [text for title, rows, judged in sections if (text := _table(title, rows, judged))]
    if any(r.verdict == NOT_REPLICATED for r in changes.accuracy):
        parts.append(
            "Accuracy from one training run (seed) per job on a side measures one trajectory, not training "
            "variability: no accuracy difference is called a change (train.seeds >= 2 gives a between-seed "
            "interval)."
        )
    if not changes.machines and (line := _shift_line(changes.shifts)):
        parts.append(line)
    if changes.params:
        rows = [[f"`{p.field}`", fmt.escape(p.base), fmt.escape(p.head)] for p in changes.params[:MAX_FIELDS]]
        more = len(changes.params) - MAX_FIELDS
        parts.append(
            f"**Parameters that differ** ({len(changes.params)}; the verdicts compare runs asked to do "
            "different things):\n\n"
            + fmt.table(["parameter", "BASE", "HEAD"], rows)
            + (f"\n\n...and {more} more (`--json`)." if more > 0 else "")
        )
    if changes.unmatched:
        parts.append(
            "Not compared: " + ", ".join(f"{n} {what}" for what, n in changes.unmatched.items()) + "."
        )
    if changes.problems:
        parts.append("**Incomplete** (no regression gate passes this pair):\n\n" + _bullets(changes.problems))
    if changes.notes:
        parts.append("Named and left out:\n\n" + _bullets(changes.notes))
    return "\n\n".join(parts) + "\n"


def _bullets(lines: Iterable[str]) -> str:
    listed = list(lines)
    shown = [f"- {fmt.escape(line)}" for line in listed[:MAX_FIELDS]]
    more = len(listed) - MAX_FIELDS
    return "\n".join(shown + ([f"- ...and {more} more (`--json`)"] if more > 0 else []))


def to_json(changes: Changes) -> str:
    return json.dumps(dataclasses.asdict(changes), indent=2, sort_keys=True, default=str) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base", metavar="BASE", help="git revision or results folder")
    parser.add_argument("head", metavar="HEAD", help="git revision or results folder")
    parser.add_argument(
        "--margin",
        type=float,
        default=None,
        help="equivalence margin of a ratio, as a fraction (default: the larger of HEAD's timing.margin "
        "and the runs' A/A spread)",
    )
    parser.add_argument("--json", action="store_true", help="print every figure as JSON instead of markdown")
    parser.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit with status 1 when a cell got slower, 2 when the pair cannot be judged (unlike "
        "machines, cells missing on HEAD, damaged results)",
    )
    parser.add_argument(
        "--across-machines",
        action="store_true",
        help="compare machine-independent figures (fraction of peak, framework ratios)",
    )


def run(args: argparse.Namespace) -> int:
    """Exit status: 0 (no regression, or no --fail-on-regression), 1 (--fail-on-regression: a cell
    got slower), 2 (an input or usage error, or a pair no gate can judge: unlike machines, cells
    missing on HEAD, cells apart from their group, logs that do not match their metrics). An
    unforeseen failure is reported as 2 as well, in one line: never as a traceback's 1, which a
    gate would read as "slower"."""
    try:
        changes = compare_sides(
            load_side(args.base, "BASE"), load_side(args.head, "HEAD"), args.margin, args.across_machines
        )
    except DeepPoseError:
        raise
    except Exception as error:  # noqa: BLE001 (a gate must never read a crash as a regression)
        where = traceback.extract_tb(error.__traceback__)[-1]
        raise DeepPoseError(
            f"no verdict: {type(error).__name__}: {error} (at {Path(where.filename).name}:{where.lineno}; "
            "a bug: please report it with the two sides)"
        ) from error
    print(to_json(changes) if args.json else render_markdown(changes), end="")
    if not args.fail_on_regression:
        return 0
    if changes.incomparable:  # neither "no regression" nor "a regression": exit 2, one line each
        raise DeepPoseError("\n".join(f"no regression verdict: {line}" for line in changes.incomparable))
    return 1 if changes.regressions else 0
