"""Training results: one run's log lines and its metrics, per seed."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar

from deeppose.records.results import JobId, Provenance, Record, RecordError


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
