"""Read every result of the grid through its typed record. Nothing raises for a bad result: it is
loaded as "not run" with the reader's one-line reason; one produced by other code or parameters than
the tree's is loaded and marked stale, so the report says so."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deeppose import provenance
from deeppose.config import Params
from deeppose.grid import DEVICES, Job, breakdown_groups, timing_groups
from deeppose.records import paths, ranges
from deeppose.records.breakdown import BreakdownResult
from deeppose.records.data import PrepareSummary
from deeppose.records.peak import PeakResult
from deeppose.records.results import Record, RecordError, StageCost, job_id
from deeppose.records.timing import TimingResult
from deeppose.records.training import TrainMetrics, read_log

NO_FILE = "no result file (the job failed or was not run)"


@dataclass
class Loaded:
    path: Path
    record: Record | None = None
    missing: str | None = None
    problems: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.record is not None


@dataclass
class TrainRun(Loaded):
    """A training job's metrics.json plus its first run's log.jsonl lines."""

    iterations: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Results:
    params: Params
    train: dict[Job, TrainRun]
    timing: dict[Job, Loaded]
    breakdown: dict[Job, Loaded]
    peak: Loaded
    prepared: Loaded
    off_grid: dict[str, int]  # device outside the grid -> result files found for it (not read)
    costs: dict[str, list[StageCost | None]] = field(default_factory=dict)  # stage -> per job, None: none

    @property
    def devices(self) -> list[str]:
        return list(self.params.grid.devices)

    @property
    def frameworks(self) -> list[str]:
        return list(self.params.grid.frameworks)

    @property
    def loss_modes(self) -> list[str]:
        return list(self.params.grid.loss_modes)

    @property
    def batch_exponents(self) -> list[int]:
        return sorted(self.params.grid.batch_exponents)

    def everything(self) -> list[Loaded]:
        return [
            self.prepared,
            self.peak,
            *self.train.values(),
            *self.timing.values(),
            *self.breakdown.values(),
        ]

    def machines(self) -> dict[str, list[Path]]:
        """Each machine the measurements record (its fingerprint as JSON) -> the files measured there."""
        found: dict[str, list[Path]] = {}
        for loaded in self.everything():
            fingerprint = loaded.record.provenance.machine if loaded.ok else None
            if fingerprint is not None:
                found.setdefault(json.dumps(fingerprint, sort_keys=True), []).append(loaded.path)
        return found

    def input_hashes(self) -> dict[str, str]:
        """Content hash of every result file there is to read (relative to the working folder)."""
        files = [loaded.path for loaded in self.everything()] + [paths.train_log(job) for job in self.train]
        return {path.as_posix(): provenance.file_hash(path, Path.cwd()) for path in files if path.exists()}

    @property
    def stale(self) -> dict[str, list[str]]:
        """Result file -> why it does not match the current code or parameters."""
        return {
            loaded.path.as_posix(): loaded.stale for loaded in self.everything() if loaded.ok and loaded.stale
        }


def read(kind: type[Record], path: Path, params: Params, job: Job | None = None) -> Loaded:
    """The record in `path` for `job`, or why it cannot be used; stale reasons from its provenance."""
    if not path.exists():
        return Loaded(path, missing=NO_FILE)
    try:
        record = ranges.read(kind, path)
    except RecordError as error:
        return Loaded(path, missing=f"unusable: {str(error).removeprefix(f'{path}: ')}")
    recorded = getattr(record, "job", None)
    if job is not None and recorded != job_id(job):
        return Loaded(
            path,
            missing=f"unusable: it holds the result of {recorded.framework}/{recorded.loss}/"
            f"{recorded.device} b{recorded.batch_exp}, not of this job",
        )
    return Loaded(path, record, stale=provenance.stale_reasons(record.provenance, params, job))


def load_train(params: Params, job: Job) -> TrainRun:
    run = TrainRun(**vars(read(TrainMetrics, paths.train_metrics(job), params, job)))
    if run.ok:
        iterations, evals, problems = read_log(paths.train_log(job))
        run.iterations = [line for line in iterations if line["run"] == 0]
        run.evals = [line for line in evals if line["run"] == 0]
        run.problems += problems
    return run


def _explain_missing(results: dict[Job, Loaded]) -> None:
    """Add to each missing job's reason whether its device produced any result at all."""
    for device in DEVICES:
        jobs = [job for job in results if job.device == device]
        missing = [job for job in jobs if not results[job].ok]
        if not missing:
            continue
        if len(missing) == len(jobs):
            question = "was a GPU available?" if device == "cuda" else "has the stage been run?"
            note = f"no {device} job of this kind has a result ({question})"
        else:
            note = f"other {device} jobs have results, so this one failed or was not run"
        for job in missing:
            if results[job].missing == NO_FILE:
                results[job].missing = f"{NO_FILE}; {note}"


def _count_off_grid(devices: list[str]) -> dict[str, int]:
    """Result files on disk for devices the grid leaves out (they are not read)."""
    patterns = ("train/*/*/{}/metrics.json", "time/*/*/{}/b*.json", "breakdown/*/*/{}/b*.json")
    return {
        device: sum(len(list(paths.RESULTS.glob(p.format(device)))) for p in patterns)
        for device in DEVICES
        if device not in devices
    }


def _cost(stage: str, label: str | None) -> StageCost | None:
    try:
        return StageCost.read(paths.stage_cost(stage, label))
    except (FileNotFoundError, RecordError):
        return None


def load_costs(params: Params) -> dict[str, list[StageCost | None]]:
    """What each job of this grid's stages cost, in pipeline order."""
    labels: dict[str, list[str | None]] = {
        "prepare": [None],
        "train": [job.label for job in params.train_jobs()],
        "time": [group.label for group in timing_groups(params.grid)],
        "peak": [None],
        "breakdown": [
            group.label for group in breakdown_groups(params.grid, params.breakdown.batch_exponents)
        ],
    }
    if params.data.source == "synthetic":
        labels = {"synthesize": [None], **labels}
    return {stage: [_cost(stage, label) for label in jobs] for stage, jobs in labels.items()}


def load_results(params: Params) -> Results:
    """Everything the report reads, for every job of `params`' grid (paths relative to the cwd)."""
    train = {job: load_train(params, job) for job in params.train_jobs()}
    timing = {job: read(TimingResult, paths.timing_result(job), params, job) for job in params.timing_jobs()}
    breakdown = {
        job: read(BreakdownResult, paths.breakdown_result(job), params, job)
        for job in params.breakdown_jobs()
    }
    for results in (train, timing, breakdown):
        _explain_missing(results)
    return Results(
        params,
        train,
        timing,
        breakdown,
        read(PeakResult, paths.matmul_peak(), params),
        read(PrepareSummary, paths.prepared_summary(), params),
        _count_off_grid(list(params.grid.devices)),
        load_costs(params),
    )
