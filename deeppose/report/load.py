"""Read every result of the grid, tolerating missing, unreadable and partial files.

A job whose file is absent or unusable is loaded as "not run" with a reason a reader can act on,
and smaller defects (a truncated log line, a log missing beside its metrics, a non-finite raw
timing sample, left out) are kept as `problems` for the report to show. The one thing that stops
the report is a non-finite number (NaN, Infinity) where a value belongs: no stage writes one, so
it is damage, and a report built around it would mislead; the error names the file and field.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deeppose import paths
from deeppose.backends.base import DEVICES
from deeppose.config import Job, Params
from deeppose.errors import DeepPoseError

NO_FILE = "no result file (the job failed or was not run)"


@dataclass
class Loaded:
    """One JSON result: `data` when usable, otherwise `missing` says why not."""

    path: Path
    data: dict[str, Any] | None = None
    missing: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.data is not None


@dataclass
class TrainRun(Loaded):
    """A training job's metrics.json plus its log.jsonl split into iteration and eval records."""

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

    @property
    def devices(self) -> list[str]:
        return list(self.params.raw["grid"]["devices"])

    @property
    def frameworks(self) -> list[str]:
        return list(self.params.raw["grid"]["frameworks"])

    @property
    def loss_modes(self) -> list[str]:
        return list(self.params.raw["grid"]["loss_modes"])

    @property
    def batch_exponents(self) -> list[int]:
        return sorted(self.params.raw["grid"]["batch_exponents"])


def read_json(path: Path, required: tuple[str, ...] = ()) -> Loaded:
    """A JSON object from `path`, or the reason it cannot be used."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Loaded(path, missing=NO_FILE)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return Loaded(path, missing=f"result file unreadable ({type(error).__name__}: {error})")
    if not isinstance(data, dict):
        return Loaded(path, missing="result file is not a JSON object")
    problems = _check_finite(data, path)
    absent = [key for key in required if data.get(key) is None]
    if absent:
        return Loaded(path, missing=f"result file lacks {', '.join(absent)}")
    return Loaded(path, data=data, problems=problems)


def _is_bad(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _check_finite(node: Any, path: Path, where: str = "") -> list[str]:
    """Leave non-finite raw samples (lists under a `*samples_s` key) out of `node`, with a note
    each; raise DeepPoseError at any other non-finite number (see the module docstring)."""
    notes = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in list(items):
        at = f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}".lstrip(".")
        if isinstance(key, str) and key.endswith("samples_s") and isinstance(value, list):
            kept = [v for v in value if not _is_bad(v)]
            if len(kept) < len(value):
                node[key] = kept
                notes.append(f"{path}: {at}: {len(value) - len(kept)} of {len(value)} samples not finite, left out")
        elif _is_bad(value):
            raise DeepPoseError(f"{path}: {at} is {value}; a result holds finite numbers only: rerun its stage")
        else:
            notes += _check_finite(value, path, at)
    return notes


def _check_identity(loaded: Loaded, job: Job) -> None:
    """Note when a file's own framework/loss/device fields disagree with where it lies."""
    if not loaded.ok:
        return
    for key in ("framework", "loss", "device"):
        value = loaded.data.get(key)
        if value is not None and value != getattr(job, key):
            loaded.problems.append(f"{loaded.path}: says {key} {value!r}, expected {getattr(job, key)!r}")


def read_log(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Iteration records, eval records and problems from a log.jsonl (bad lines are skipped)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return [], [], [f"{path}: missing (no learning curve; per-iteration times from metrics.json)"]
    except (OSError, UnicodeDecodeError) as error:
        return [], [], [f"{path}: unreadable ({type(error).__name__})"]
    iterations, evals, bad = [], [], 0
    problems = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if not isinstance(record, dict):
            bad += 1
        elif any(_is_bad(value) for value in record.values()):
            fields = ", ".join(sorted(key for key, value in record.items() if _is_bad(value)))
            problems.append(f"{path}: line {number}: {fields} not finite, line left out")
        elif record.get("kind") == "iteration" and _numbers(record, "loss", "elapsed_s"):
            iterations.append(record)
        elif record.get("kind") == "eval" and _numbers(record, "elapsed_s"):
            evals.append(record)
    if bad:
        problems.append(f"{path}: {bad} unreadable line(s) skipped")
    return iterations, evals, problems


def _numbers(record: dict[str, Any], *keys: str) -> bool:
    return all(isinstance(record.get(key), (int, float)) and not isinstance(record.get(key), bool) for key in keys)


def load_train(job: Job) -> TrainRun:
    loaded = read_json(paths.train_metrics(job), required=("train_time_s", "iterations"))
    if loaded.ok and not all(_numbers(loaded.data, key) for key in ("train_time_s", "iterations")):
        loaded = Loaded(loaded.path, missing="result file has a non-numeric train_time_s or iterations")
    run = TrainRun(loaded.path, loaded.data, loaded.missing, loaded.problems)
    _check_identity(run, job)
    if run.ok:
        run.iterations, run.evals, problems = read_log(paths.train_log(job))
        run.problems += problems
    return run


def load_timing(job: Job) -> Loaded:
    loaded = read_json(paths.timing_result(job), required=("measurements",))
    measurements = loaded.data["measurements"] if loaded.ok else None
    core = measurements.get("core") if isinstance(measurements, dict) else None
    if loaded.ok and not (isinstance(core, dict) and (core.get("samples_s") or core.get("stats"))):
        return Loaded(loaded.path, missing="result file lacks measurements.core samples or stats")
    _check_identity(loaded, job)
    return loaded


BREAKDOWN_FIELDS = ("framework", "loss", "device", "batch_size", "core_time_s", "profiled_core_time_s",
                    "layers", "layers_time_s", "overhead_s", "sum_rule")


def load_breakdown(job: Job) -> Loaded:
    """A breakdown stage's result, usable only with every field the section reads: a file from a
    killed stage or an older format is shown as not run instead of breaking the section."""
    loaded = read_json(paths.breakdown_result(job), required=BREAKDOWN_FIELDS)
    if not loaded.ok:
        return loaded
    layers = loaded.data["layers"]
    if not isinstance(layers, list) or not all(
        isinstance(row, dict) and isinstance(row.get("layer"), str) and isinstance(row.get("phase"), str)
        and _numbers(row, "time_s")
        for row in layers
    ):
        return Loaded(loaded.path, missing="result file has a layer row without layer, phase or a numeric time_s")
    data = loaded.data
    times = ("core_time_s", "profiled_core_time_s", "layers_time_s", "overhead_s")
    if not _numbers(data, *times) or data["core_time_s"] <= 0:
        return Loaded(loaded.path, missing="result file lacks a positive core_time_s or numeric layer/overhead times")
    if not isinstance(data["sum_rule"], dict):
        return Loaded(loaded.path, missing="result file's sum_rule is not an object")
    _check_identity(loaded, job)
    return loaded


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
    counts = {}
    for device in DEVICES:
        if device in devices:
            continue
        found = [
            p
            for pattern in (
                f"train/*/*/{device}/metrics.json", f"time/*/*/{device}/b*.json", f"breakdown/*/*/{device}/b*.json"
            )
            for p in paths.RESULTS.glob(pattern)
        ]
        counts[device] = len(found)
    return counts


def load_results(params: Params) -> Results:
    """Everything the report reads, for every job of `params`' grid (paths relative to the cwd)."""
    train = {job: load_train(job) for job in params.train_jobs()}
    timing = {job: load_timing(job) for job in params.timing_jobs()}
    breakdown = {job: load_breakdown(job) for job in params.breakdown_jobs()}
    for results in (train, timing, breakdown):
        _explain_missing(results)
    peak = read_json(paths.matmul_peak())
    if peak.ok and not isinstance(peak.data.get("peak_flops_per_s"), (int, float)):
        peak = Loaded(peak.path, missing="peak_flops_per_s absent")
    return Results(
        params=params,
        train=train,
        timing=timing,
        breakdown=breakdown,
        peak=peak,
        prepared=read_json(paths.prepared_summary()),
        off_grid=_count_off_grid(list(params.raw["grid"]["devices"])),
    )
