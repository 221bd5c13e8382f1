"""Findings of training and accuracy: each run's times and scores, its gap to the mean pose, and the
frameworks' differences: by test image (BCa bootstrap) and between seeds, the only ones that speak of
training."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from deeppose.compare_stats import Interval
from deeppose.grid import REFERENCE, Job
from deeppose.records.training import SeedRun, TrainMetrics
from deeppose.replicates import BetweenSeeds, between_seeds, identical, per_seed
from deeppose.report.load import Results
from deeppose.stats import LEVEL, describe

RESAMPLES = 2000  # bootstrap resamples of the test images
SMOOTHING = 0.1  # weight of each new loss in the learning curves' moving average
BOOTSTRAP = dict(paired=True, vectorized=True, n_resamples=RESAMPLES, confidence_level=LEVEL, method="BCa")
RATES = ("pcp", "pdj", "pck")  # hits over counted sticks or joints
ACCURACY = {"loss": ("sq_error", "visible")} | {m: (f"{m}_hits", f"{m}_counted") for m in RATES}  # per image


@dataclass(frozen=True)
class Sample:
    """Times (s) with deeppose.stats' definitions, those the stages use."""

    n: int
    mean: float
    std: float | None
    median: float
    iqr_over_median: float | None
    noisy: bool
    source: str


def sample(values: list[float], source: str) -> Sample | None:
    if not values:
        return None
    s = describe(values, ci="t")
    return Sample(s["n"], s["mean"], s["std"], s["median"], s["iqr_over_median"], s["noisy"], source)


@dataclass(frozen=True)
class Gap:
    difference: Interval  # trained - mean pose, paired by test image
    beats: bool  # the interval excludes zero on the better side


@dataclass(frozen=True)
class Curve:
    elapsed_s: tuple[float, ...]
    loss: tuple[float, ...]
    smoothed: tuple[float, ...]  # exponential moving average, debiased
    eval_s: tuple[float, ...]
    eval_loss: tuple[float, ...]


@dataclass(frozen=True)
class TrainRun:
    framework: str
    loss: str
    setup: str  # optimiser, batch size, epochs
    iterations: int
    epochs: int
    train_time_s: float  # evaluations excluded
    per_iteration_s: float  # wall time, data fetching included: the study's measure
    compute: Sample  # forward + loss + backward + update, per iteration
    core_s: float | None  # the core process at the training batch size (timing), when measured
    final_train_loss: float
    scores: dict[str, Interval]  # bootstrap intervals where per-image data exist
    gaps: dict[str, Gap]
    scored_joints: str  # which joints the accuracies count (deeppose.train.SCORED_JOINTS)
    seeds: int  # runs of the job's seeds (train.seeds); the fields above are the first's

    @property
    def core_share(self) -> float | None:
        """The core process's time (timing stage) over a training iteration's (training stage)."""
        return None if self.core_s is None else self.core_s / self.per_iteration_s


@dataclass(frozen=True)
class AccuracyDifference:
    framework: str  # <framework> - PyTorch, same loss mode, paired by test image
    loss: str
    metric: str
    difference: Interval
    differ: bool


@dataclass(frozen=True)
class SeedDifference:
    """<framework> against PyTorch, same loss mode, between seeds (deeppose.replicates)."""

    framework: str
    loss: str
    metric: str  # "train_loss": the final training loss, a ratio; "pck": test PCK@0.2, a difference
    between: BetweenSeeds


def _bootstrap(numerators: list[np.ndarray], denominator: np.ndarray, seed: int) -> Interval:
    """sum(numerators[0]) / sum(denominator), less that of numerators[1], with a paired BCa bootstrap."""

    def statistic(*arrays: np.ndarray, axis: int = -1) -> np.ndarray:
        *nums, den = arrays
        value = nums[0].sum(axis=axis) / den.sum(axis=axis)
        return value - nums[1].sum(axis=axis) / den.sum(axis=axis) if len(nums) > 1 else value

    data = (*numerators, denominator)
    estimate, n = float(statistic(*data)), len(denominator)
    method = f"BCa bootstrap over {n} test images, {RESAMPLES} resamples"
    with warnings.catch_warnings():  # a degenerate distribution (all equal) gives NaN bounds: no interval
        warnings.simplefilter("ignore")
        rng = np.random.default_rng(seed)
        ci = (
            scipy_stats.bootstrap(data, statistic, random_state=rng, **BOOTSTRAP).confidence_interval
            if n > 1
            else None
        )
    if ci is None or not (np.isfinite(ci.low) and np.isfinite(ci.high)):
        return Interval(estimate, None, None, n, LEVEL, method)
    return Interval(estimate, float(ci.low), float(ci.high), n, LEVEL, method)


def accuracy_gaps(
    per_image: dict[str, list[float]], seed: int = 0
) -> tuple[dict[str, Interval], dict[str, Gap]]:
    """Each metric's interval, and its difference from the mean pose where the baseline's were kept."""
    a = {k: np.asarray(v, dtype=float) for k, v in per_image.items()}
    scores, gaps = {}, {}
    for metric, (num, den) in ACCURACY.items():
        if not {num, den} <= a.keys() or a[den].sum() == 0:
            continue
        scores[metric] = _bootstrap([a[num]], a[den], seed)
        if f"baseline_{num}" in a:
            d = _bootstrap([a[num], a[f"baseline_{num}"]], a[den], seed)
            better = d.high is not None and (d.high < 0 if metric == "loss" else d.low > 0)
            gaps[metric] = Gap(d, better)
    return scores, gaps


def curves(results: Results) -> dict[tuple[str, str, str], Curve]:
    """(device, framework, loss) -> its learning curve, for the figure only (not part of `Findings`)."""
    return {
        (job.device, job.framework, job.loss): _curve(run.iterations, run.evals)
        for job, run in results.train.items()
        if run.ok and run.iterations
    }


def _curve(iterations: list[dict[str, Any]], evals: list[dict[str, Any]]) -> Curve:
    loss = np.array([r["loss"] for r in iterations])
    average, smoothed = 0.0, []
    for i, value in enumerate(loss, 1):
        average = (1 - SMOOTHING) * average + SMOOTHING * value
        smoothed.append(average / (1 - (1 - SMOOTHING) ** i))
    elapsed, eval_s = (tuple(r["elapsed_s"] for r in rows) for rows in (iterations, evals))
    return Curve(elapsed, tuple(loss.tolist()), tuple(smoothed), eval_s, tuple(r["test_loss"] for r in evals))


def train_run(job: Job, m: TrainMetrics, run: Any, core_s: dict[Job, tuple[int, float]]) -> TrainRun:
    """`core_s`: each timing cell's (batch size, core-process time), for the run's own batch."""
    compute = sample([r["compute_s"] for r in run.iterations], "log.jsonl compute_s") or Sample(
        *(m.iteration_time_s[k] for k in ("n", "mean", "std", "median", "iqr_over_median", "noisy")),
        "metrics.json iteration_time_s",
    )
    scores, gaps = accuracy_gaps(m.test_per_image, m.seed)
    for metric, value in m.final_test.to_dict().items():
        if metric not in scores and value is not None:
            scores[metric] = Interval(value, None, None, m.test_samples, LEVEL, "no per-image data")
    core = core_s.get(Job(job.framework, job.loss, job.device, m.batch_size.bit_length() - 1))
    setup = f"{m.params['train']['optimizer']}, batch {m.batch_size}, {m.epochs} epochs"
    times = (m.iterations, m.epochs, m.train_time_s, m.train_time_s / m.iterations, compute)
    core_time = core[1] if core and core[0] == m.batch_size else None
    accuracy = (m.final_train_loss, scores, gaps, m.scored_joints)
    return TrainRun(job.framework, job.loss, setup, *times, core_time, *accuracy, len(seed_runs(m, run)))


def seed_runs(m: TrainMetrics, run: Any) -> list[SeedRun]:
    """Every run of a job's seeds, the loaded first run's log standing in for a record without them."""
    return m.seed_runs([r["loss"] for r in run.iterations])


def accuracy_differences(results: Results, device: str) -> tuple[AccuracyDifference, ...]:
    found = []
    for loss in results.loss_modes:
        ref = results.train.get(Job(REFERENCE, loss, device))
        for fw in results.frameworks:
            other = results.train.get(Job(fw, loss, device))
            if fw == REFERENCE or not (ref and ref.ok and other and other.ok):
                continue
            a, b = other.record.test_per_image, ref.record.test_per_image
            for metric, (num, den) in ACCURACY.items():
                if {num, den} <= a.keys() & b.keys() and a[den] == b[den] and sum(a[den]):
                    d = _bootstrap(
                        [np.asarray(a[num]), np.asarray(b[num])], np.asarray(a[den]), other.record.seed
                    )
                    found.append(AccuracyDifference(fw, loss, metric, d, d.excludes(0.0)))
    return tuple(found)


def seed_differences(runs: dict[Job, list[SeedRun]], margin: float) -> tuple[SeedDifference, ...]:
    """Per loss mode, paired by seed: the final training loss as a ratio, PCK@0.2 as a difference."""
    found = []
    for job, run in runs.items():
        ref = runs.get(Job(REFERENCE, job.loss, job.device))
        if job.framework == REFERENCE or ref is None:
            continue
        for metric, ratio in (("train_loss", True), ("pck", False)):
            a, b = per_seed(run, metric), per_seed(ref, metric)
            if a and b:
                found.append(
                    SeedDifference(job.framework, job.loss, metric, between_seeds(a, b, margin, ratio))
                )
    return tuple(found)


def identical_modes(runs: dict[Job, list[SeedRun]]) -> tuple[str, ...]:
    """Frameworks whose autograd and explicit runs followed the same trajectories bit for bit."""
    explicit = {
        job: runs.get(Job(job.framework, "explicit", job.device)) for job in runs if job.loss == "autograd"
    }
    return tuple(
        dict.fromkeys(
            job.framework for job, other in explicit.items() if other and identical(runs[job], other)
        )
    )
