"""Compute first: `analyse(results)` turns the result records into one frozen `Findings` value.

Every number, interval and verdict the report states is here (verdicts as enums), and every job
without a result. Nothing here formats text or draws: sections and figures are functions of
`Findings`, and summary.json holds `to_json(findings)`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import warnings
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from deeppose import layer_groups, roofline
from deeppose.asymmetries import asymmetries
from deeppose.compare_stats import (
    Comparison,
    Interval,
    Verdict,
    analyse_group,
    compare,
    control_summary,
    round_to_interval,
    series,
)
from deeppose.grid import DEVICES, NO_BREAKDOWN, REFERENCE, Job
from deeppose.measure import blocks
from deeppose.measure.blocks import interfered
from deeppose.records import paths
from deeppose.records.results import BreakdownResult, TimingResult, TrainMetrics
from deeppose.report import ceilings
from deeppose.report.ceilings import Peak
from deeppose.report.load import Results
from deeppose.stats import describe

LEVEL = 0.95  # every interval of a cell's time or of an accuracy
AGREE_WITHIN = 0.10  # a ratio agrees with the study's when within 10 % of it
ABOUT_ONE = 0.05  # ... on the same side of 1 when both are above 1.05, both below 0.95 or both between
STUDY_BATCH_EXP, STUDY_OPTIMIZER = 5, "momentum_sgd"  # the study's batch 32 and MomentumSGD
CONFIRM_SHARE = 0.5  # convolutions must explain half of a framework's extra time to confirm the study
TOP_ROWS = 8  # layers listed where two frameworks differ most
RESAMPLES = 2000  # bootstrap resamples of the test images
SMOOTHING = 0.1  # weight of each new loss in the learning curves' moving average
ACCURACY = {
    "loss": ("sq_error", "visible"),
    "pcp": ("pcp_hits", "pcp_counted"),
    "pdj": ("pdj_hits", "pdj_counted"),
    "pck": ("pck_hits", "pck_counted"),
}
STUDY = {  # the study's published figures (its per-iteration times at batch 32), per device
    "per_iteration": {"cpu": 1.64, "cuda": 1.61},
    "explicit_over_autograd": {"cpu": 1.00, "cuda": 0.96},
    "seconds_b32": {"cpu": {"chainer": 8.2, "pytorch": 5.0}, "cuda": {"chainer": 0.45, "pytorch": 0.28}},
}
ELEMENTWISE = ("relu", "pool", "lrn", "dropout", "loss", "other")
PACKAGE = {"pytorch": "torch", "pytorch_compile": "torch", "chainer": "chainer", "jax": "jax"}
Largest = dict[
    tuple[str, str], TimingResult | TrainMetrics
]  # (framework, device) -> its largest timing cell's record


class StudyVerdict(str, Enum):
    AGREES = "agrees"
    SAME_SIDE = "same side of 1"
    DISAGREES = "disagrees"
    NOT_COMPARABLE = "not comparable"


class LayerVerdict(str, Enum):
    CONFIRMS = "confirms"
    PARTLY = "partly confirms"
    REFUTES = "refutes"
    CANNOT_TEST = "cannot test"


class Bound(str, Enum):
    COMPUTE = "compute-bound"
    MEMORY = "memory-bound"
    UNKNOWN = "bandwidth not measured"


class Trend(str, Enum):
    RISES = "rises"
    FALLS = "falls"
    FLAT = "is about the same"


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


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or not b > 0 else a / b


@dataclass(frozen=True)
class Environment:
    framework: str
    device: str
    cpu: str | None
    cpu_id: dict[str, Any]  # vendor, family, model_number, stepping (the fairness manifest's)
    usable_cores: int | None
    cores: int | None
    gpu: str | None
    python: str | None
    version: str | None  # the framework's own package
    libraries: dict[str, str]
    threads: dict[str, int]


@dataclass(frozen=True)
class Fairness:
    device: str
    cpu: str | None
    isa_flags: tuple[str, ...]
    common: dict[str, dict[str, Any]]  # framework -> its manifest's common fields
    env: dict[str, dict[str, Any]]
    asymmetries: tuple[tuple[str, dict[str, Any], str], ...]  # (field, framework -> value, may bias)


@dataclass(frozen=True)
class StageCost:
    stage: str
    recorded: int
    jobs: int
    wall_s: float  # the jobs' own: waits for the measurement lock (another job measuring) left out
    startup_s: float
    lock_wait_s: float
    memory_bytes: float | None


@dataclass(frozen=True)
class Setup:
    params: dict[str, Any]
    params_path: str
    prepared: dict[str, Any] | None
    prepared_missing: str | None
    preview: str | None  # the prepare stage's sample image, relative to report.md
    environment: tuple[Environment, ...]
    packages: dict[str, str]
    commits: tuple[str, ...]
    peak: Peak
    fairness: tuple[Fairness, ...]
    costs: tuple[StageCost, ...]
    loss_repeats: int | None  # runs of the loss alone per timing block, from the records


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


@dataclass(frozen=True)
class AccuracyDifference:
    framework: str  # <framework> - PyTorch, same loss mode, paired by test image
    loss: str
    metric: str
    difference: Interval
    differ: bool


@dataclass(frozen=True)
class Cell:
    framework: str
    loss: str
    batch_size: int
    blocks: int  # rounds with a usable block
    time: Interval  # median of block medians
    mean_s: float  # usable blocks' samples pooled: the spread, as the study reported it
    std_s: float | None
    disturbed: int
    loss_alone_s: float | None
    memory_bytes: float | None
    steps_s: dict[str, float]  # each timed optimiser's update (timing.optimizers), median
    flops_per_s: float | None
    fraction_of_peak: float | None
    compile_s: float | None  # a compiling framework's first call, median of blocks
    caches: dict[str, Any]
    eager_s: float | None = None  # compiling frameworks: eager PyTorch's time at the same batch and loss mode
    break_even: int | None = (
        None  # steps after which the compile has paid for itself; None: never (or no eager)
    )


def break_even(compile_s: float, step_s: float, eager_s: float) -> int | None:
    """Steps after which compiling (compile_s once, then step_s a step) has cost less than eager
    steps of eager_s; None when the compiled step is not faster: never."""
    saved = eager_s - step_s
    return math.ceil(compile_s / saved) if saved > 0 else None


@dataclass(frozen=True)
class Ratio:
    """deeppose.compare_stats.Comparison of arm a against arm b, with the rounds counted."""

    batch_size: int | None
    a: str
    b: str
    ratio: Interval  # time a / time b
    difference: Interval | None  # time a - time b, seconds: kept where the report states it (the loss alone)
    verdict: Verdict
    rounds: int  # undisturbed rounds both arms share
    disagree: bool = False  # (A/A control) a cell's blocks differ more than their spread explains


def ratio(batch_size: int | None, c: Comparison, disagree: bool = False, difference: bool = False) -> Ratio:
    return Ratio(
        batch_size,
        c.a,
        c.b,
        c.ratio,
        c.difference if difference else None,
        c.verdict,
        len(c.rounds_used),
        disagree,
    )


@dataclass(frozen=True)
class RatioTrend:
    framework: str
    loss: str
    first: tuple[int, float]  # (batch size, <framework> / PyTorch core time)
    last: tuple[int, float]
    lowest: tuple[int, float]
    highest: tuple[int, float]
    trend: Trend


@dataclass(frozen=True)
class LossEffect:
    framework: str
    batch_size: int | None
    c: Ratio | None  # explicit vs autograd of the loss alone, paired by round
    share_of_iteration: float | None
    train_time_ratio: float | None  # one run each: no verdict
    noise_floor: float | None  # how far apart identical arms came in the A/A control
    absent: tuple[str, ...]  # loss modes without a training result


@dataclass(frozen=True)
class Layer:
    layer: str
    phase: str
    time_s: float
    flops_per_s: float | None  # the layer's FLOPs are its RooflinePoint's, once per batch size
    fraction_of_peak: float | None


@dataclass(frozen=True)
class BreakdownJob:
    framework: str
    loss: str
    core_s: float
    profiled_s: float
    layers_s: float
    overhead_s: float
    gap: float
    tolerance: float
    sum_rule_ok: bool
    layers: tuple[Layer, ...]


@dataclass(frozen=True)
class LayerDifference:
    layer: str
    phase: str
    reference_s: float
    other_s: float


@dataclass(frozen=True)
class Attribution:
    """<framework>'s extra core time over PyTorch's, split over conv, fc, element-wise and overhead."""

    framework: str
    loss: str
    reference_s: float
    other_s: float
    parts_s: dict[str, float]  # conv, fc, elementwise, overhead: they add up to the extra time
    reference_overhead_s: float
    other_overhead_s: float
    largest: LayerDifference | None
    top: tuple[LayerDifference, ...]
    verdict: LayerVerdict
    uncertain: tuple[str, ...]  # frameworks whose layers miss the sum rule

    @property
    def extra_s(self) -> float:
        return self.other_s - self.reference_s


@dataclass(frozen=True)
class RooflinePoint:
    """One conv/fc layer and phase at a batch size: its work and where it sits on the roofline; its
    achieved FLOP/s are the jobs' `Layer`s."""

    layer: str
    phase: str
    flops: int  # forward and backward counted apart (deeppose.model.layer_flops)
    intensity: float  # FLOP per byte moved (deeppose.roofline)
    bound: Bound


@dataclass(frozen=True)
class BreakdownBatch:
    batch_size: int
    jobs: tuple[BreakdownJob, ...]
    absent: tuple[tuple[str, str], ...]  # (framework, loss) without a result
    attributions: tuple[Attribution, ...]
    not_compared: tuple[tuple[str, str], ...]  # (framework, loss) whose comparison lacks a result
    rate_loss: str  # the loss mode whose jobs give the FLOP/s (the layers do not depend on it)
    roofline: tuple[RooflinePoint, ...]
    memory_bound: tuple[str, ...]  # layers below the ridge in both phases
    above_peak: tuple[
        tuple[str, str, str], ...
    ]  # (framework, layer, phase) faster than the best observed rate


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
    controls: tuple[Ratio, ...]
    trends: tuple[RatioTrend, ...]
    breakdown: tuple[BreakdownBatch, ...]
    missing: dict[str, int]  # kind -> jobs of this device without a result
    jobs: dict[str, int]  # kind -> jobs of this device


@dataclass(frozen=True)
class AAPair:
    """One A/A control: a cell measured as two arms (`twin` / cell) under the comparisons' rule."""

    framework: str
    loss: str
    device: str
    batch_size: int | None
    ratio: Interval  # twin / cell
    difference: Interval  # twin - cell, seconds
    significant: bool  # the rule called identical arms different: a false positive


@dataclass(frozen=True)
class StudyRow:
    device: str
    quantity: str  # "per_iteration": Chainer / PyTorch; "explicit_over_autograd": of `framework`
    framework: str
    basis: str  # "timing" (core + update at the study's batch and optimiser) or "training"
    setup: str
    study: float | None
    ours: float | None
    verdict: StudyVerdict
    why_not: str | None  # why it is not comparable


@dataclass(frozen=True)
class Absolute:
    device: str
    framework: str
    study_s: float
    iteration_s: float | None  # core + update at batch 32 (timing)
    training_s: float | None  # wall per training iteration
    training_setup: str | None


@dataclass(frozen=True)
class Dominance:
    device: str
    framework: str
    framework_ratio: float  # Chainer / PyTorch per training iteration
    loss_framework: str
    loss_ratio: float  # explicit / autograd training time, the larger effect
    framework_matters_more: bool


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
    aa_control: tuple[AAPair, ...]
    aa_false_positive_rate: float | None  # over the pairs with an interval; None if none had one
    aa_blocks: tuple[int, ...]  # blocks per cell (the records' `rounds`) of the groups holding the pairs
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
    report's: LEVEL, or COMPARE_LEVEL for a comparison), other numbers to four significant digits;
    a field that is None or empty is left out. Records of one kind that hold no records themselves
    (cells, layers, ratios) form a table, {"columns": [...], "rows": [[...], ...]}, so that no key is
    repeated per record."""
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


# --- set-up ----------------------------------------------------------------------------------
def _threads(threads: dict[str, Any]) -> dict[str, int]:
    found = {k: v for k, v in sorted(threads.items()) if isinstance(v, int) and not isinstance(v, bool)}
    return found | {
        lib["library"]: lib["num_threads"] for lib in threads.get("native", []) if isinstance(lib, dict)
    }


def _largest(results: Results) -> Largest:
    """(framework, device) -> the record of its largest timing cell, else of its training run."""
    found: Largest = {}
    for job, r in [*sorted(results.timing.items(), key=lambda i: -i[0].batch_exp), *results.train.items()]:
        if r.ok:
            found.setdefault((job.framework, job.device), r.record)
    return found


def _environment(results: Results, largest: Largest) -> tuple[Environment, ...]:
    """One row per framework and device, from its largest timing cell (else its training run)."""
    rows = []
    for device in results.devices:
        for fw in results.frameworks:
            r = largest.get((fw, device))
            if r is None:
                rows.append(Environment(fw, device, None, {}, None, None, None, None, None, {}, {}))
                continue
            env = r.environment
            versions = {k: v for k, v in r.versions.items() if k != "gpu"}
            cpu = env.get("fairness", {}).get("cpu", {})
            cpu_id = {
                k: cpu[k] for k in ("vendor", "family", "model_number", "stepping") if cpu.get(k) is not None
            }
            rows.append(
                Environment(
                    fw,
                    device,
                    env.get("cpu"),
                    cpu_id,
                    env.get("usable_cores"),
                    env.get("cores"),
                    r.versions.get("gpu"),
                    env.get("python"),
                    versions.pop(PACKAGE.get(fw, fw), None),
                    versions,
                    _threads(r.threads),
                )
            )
    return tuple(rows)


def _fairness(device: str, largest: Largest) -> Fairness | None:
    """The timing processes' fairness manifests (a training run has none) on `device`."""
    manifests = {
        fw: r.environment["fairness"]
        for (fw, d), r in largest.items()
        if d == device and isinstance(r, TimingResult)
    }
    if not manifests:
        return None
    cpu = next(iter(manifests.values()))["cpu"]
    return Fairness(
        device,
        cpu.get("model"),
        tuple(cpu.get("isa_flags", [])),
        {fw: m["common"] for fw, m in manifests.items()},
        {fw: m["env"] for fw, m in manifests.items()},
        tuple((a.field, a.values, a.may_bias) for a in asymmetries(manifests)),
    )


def _setup(results: Results) -> Setup:
    envs = [r.record.environment for r in [*results.train.values(), *results.timing.values()] if r.ok]
    largest, prepared, preview = _largest(results), results.prepared, paths.preview_image()
    summary = prepared.record.to_dict() if prepared.ok else None
    costs = tuple(
        StageCost(
            stage,
            len(done := [c for c in jobs if c]),
            len(jobs),
            sum(c.wall_s + c.startup_s - c.lock_wait_s for c in done),
            sum(c.startup_s for c in done),
            sum(c.lock_wait_s for c in done),
            max((c.max_rss_mb * 2**20 for c in done), default=None),
        )
        for stage, jobs in results.costs.items()
    )
    return Setup(
        results.params.value(),
        results.params.path.as_posix(),
        summary and {k: v for k, v in summary.items() if k not in ("provenance", "kind", "schema_version")},
        None if prepared.ok else f"`{prepared.path.as_posix()}`: {prepared.missing}",
        os.path.relpath(preview, paths.report_markdown().parent) if preview.exists() else None,
        _environment(results, largest),
        dict(sorted({k: v for env in envs for k, v in env.get("packages", {}).items()}.items())),
        tuple(sorted({str(env.get("commit")) for env in envs})),
        ceilings.peak(results),
        tuple(f for d in results.devices if (f := _fairness(d, largest))),
        costs,
        next((r.record.loss_repeats for r in results.timing.values() if r.ok), None),
    )


# --- training and accuracy --------------------------------------------------------------------
def _bootstrap(numerators: list[np.ndarray], denominator: np.ndarray, seed: int) -> Interval:
    """sum(numerators[0]) / sum(denominator), minus the same of numerators[1] when given, with a
    paired BCa bootstrap over test images."""

    def statistic(*arrays: np.ndarray, axis: int = -1) -> np.ndarray:
        *nums, den = arrays
        value = nums[0].sum(axis=axis) / den.sum(axis=axis)
        return value - nums[1].sum(axis=axis) / den.sum(axis=axis) if len(nums) > 1 else value

    data = (*numerators, denominator)
    estimate, n = float(statistic(*data)), len(denominator)
    method = f"BCa bootstrap over {n} test images, {RESAMPLES} resamples"
    with warnings.catch_warnings():  # a degenerate distribution (all equal) gives NaN bounds: no interval
        warnings.simplefilter("ignore")
        ci = (
            scipy_stats.bootstrap(
                data,
                statistic,
                paired=True,
                vectorized=True,
                n_resamples=RESAMPLES,
                confidence_level=LEVEL,
                method="BCa",
                random_state=np.random.default_rng(seed),
            ).confidence_interval
            if n > 1
            else None
        )
    if ci is None or not (np.isfinite(ci.low) and np.isfinite(ci.high)):
        return Interval(estimate, None, None, n, LEVEL, method)
    return Interval(estimate, float(ci.low), float(ci.high), n, LEVEL, method)


def accuracy_gaps(
    per_image: dict[str, list[float]], seed: int = 0
) -> tuple[dict[str, Interval], dict[str, Gap]]:
    """Each metric with per-image data: its interval, and its difference from the mean pose where
    the baseline's numerators were kept too."""
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
    """(device, framework, loss) -> its learning curve, for the figure only: not part of `Findings`
    (reports/learning_curves.csv holds the series)."""
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
    return Curve(
        tuple(r["elapsed_s"] for r in iterations),
        tuple(loss.tolist()),
        tuple(smoothed),
        tuple(r["elapsed_s"] for r in evals),
        tuple(r["test_loss"] for r in evals),
    )


def _train_run(job: Job, m: TrainMetrics, run: Any, cells: dict[Job, Cell]) -> TrainRun:
    compute = sample([r["compute_s"] for r in run.iterations], "log.jsonl compute_s") or Sample(
        *(m.iteration_time_s[k] for k in ("n", "mean", "std", "median", "iqr_over_median", "noisy")),
        "metrics.json iteration_time_s",
    )
    scores, gaps = accuracy_gaps(m.test_per_image, m.seed)
    for metric, value in m.final_test.to_dict().items():
        if metric not in scores and value is not None:
            scores[metric] = Interval(value, None, None, m.test_samples, LEVEL, "no per-image data")
    core = cells.get(Job(job.framework, job.loss, job.device, m.batch_size.bit_length() - 1))
    setup = f"{m.params['train']['optimizer']}, batch {m.batch_size}, {m.epochs} epochs"
    return TrainRun(
        job.framework,
        job.loss,
        setup,
        m.iterations,
        m.epochs,
        m.train_time_s,
        m.train_time_s / m.iterations,
        compute,
        core.time.estimate if core and core.batch_size == m.batch_size else None,
        m.final_train_loss,
        scores,
        gaps,
        m.scored_joints,
    )


def _accuracy_differences(results: Results, device: str) -> tuple[AccuracyDifference, ...]:
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


# --- timing -------------------------------------------------------------------------------------
def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _cell(job: Job, r: TimingResult, peak: Peak) -> Cell:
    usable = blocks.usable(r.blocks)
    undisturbed = [b for b in usable if not interfered(b.reasons)]
    timed = [b for b in blocks.final(r.blocks) if b.optimizer_steps_s]  # the first round's, disturbed or not
    steps = {
        name: _median([s for b in timed for s in b.optimizer_steps_s.get(name, [])])
        for name in dict.fromkeys(name for b in timed for name in b.optimizer_steps_s)
    }
    pooled = sample([s for b in usable for s in b.samples_s], "blocks")
    return Cell(
        job.framework,
        job.loss,
        r.batch_size,
        len(undisturbed),
        Interval(**r.time_s.to_dict()),
        pooled.mean,
        pooled.std,
        sum(b.disturbed for b in r.blocks),
        _median([s for b in usable for s in b.loss_s]),
        _median([b.memory_bytes for b in usable if b.memory_bytes is not None]),
        {name: step for name, step in steps.items() if step is not None},
        r.flops_per_s,
        ceilings.share(r.flops_per_s, peak, job.device),
        _median([b.compile_s for b in usable if b.compile_s is not None]),
        {k: v for k, v in r.compile.items() if "cache" in k},
    )


def _groups(results: Results, device: str) -> dict[int, Any]:
    """Batch size -> (core-process analysis, explicit-vs-autograd loss comparisons) of each timing
    group whose every cell has a result, by deeppose.compare_stats' rules."""
    found = {}
    compared = [fw for fw in results.frameworks if fw != REFERENCE] if REFERENCE in results.frameworks else []
    both_modes = results.frameworks if {"autograd", "explicit"} <= set(results.loss_modes) else []
    for exp in results.batch_exponents:
        loaded = {job: r for job, r in results.timing.items() if (job.device, job.batch_exp) == (device, exp)}
        if not loaded or not all(r.ok for r in loaded.values()):
            continue
        blocks, loss_blocks = [], []
        for r in loaded.values():
            blocks += series(r.record.blocks) + series(r.record.control_blocks)
            loss_blocks += series(r.record.blocks, "loss_s")
        pairs = [(f"{fw}/{loss}", f"{REFERENCE}/{loss}") for fw in compared for loss in results.loss_modes]
        pairs += [(f"{fw}/explicit", f"{fw}/autograd") for fw in both_modes]
        losses = {fw: compare(loss_blocks, f"{fw}/explicit", f"{fw}/autograd") for fw in both_modes}
        found[2**exp] = (analyse_group(blocks, pairs, next(iter(loaded.values())).record.control), losses)
    return found


def _trend(fw: str, loss: str, points: list[tuple[int, float]]) -> RatioTrend:
    (_, r0), (_, r1) = points[0], points[-1]
    trend = Trend.FLAT if abs(r1 / r0 - 1) <= ABOUT_ONE else Trend.RISES if r1 > r0 else Trend.FALLS
    return RatioTrend(
        fw,
        loss,
        points[0],
        points[-1],
        min(points, key=lambda p: p[1]),
        max(points, key=lambda p: p[1]),
        trend,
    )


def _loss_effect(
    fw: str, runs: dict[str, TrainRun], groups: dict[int, Any], train_batch: int, floor: float | None
) -> LossEffect:
    """At the training batch size's group, else the largest measured."""
    size = train_batch if train_batch in groups else max(groups, default=None)
    found = groups[size][1].get(fw) if size else None
    c = ratio(size, found, difference=True) if found else None
    auto, explicit = runs.get("autograd"), runs.get("explicit")
    share = None
    if c and auto and c.difference.estimate is not None:
        share = _ratio(c.difference.estimate, auto.compute.mean)
    train_ratio = _ratio(explicit and explicit.train_time_s, auto and auto.train_time_s)
    return LossEffect(
        fw,
        size if c else None,
        c,
        share,
        train_ratio,
        floor,
        tuple(mode for mode, run in (("autograd", auto), ("explicit", explicit)) if run is None),
    )


# --- per-layer breakdown ----------------------------------------------------------------------
def _breakdown_job(job: Job, r: BreakdownResult, peak: Peak, rated: bool) -> BreakdownJob:
    """`rated`: the job gives the layers' FLOP/s (one loss mode does; the layers do not depend on it)."""
    layers = []
    for row in r.layers:
        rate = row.get("flops_per_s") if rated else None
        share = ceilings.share(rate, peak, job.device)
        layers.append(Layer(row["layer"], row["phase"], float(row["time_s"]), rate, share))
    return BreakdownJob(
        job.framework,
        job.loss,
        r.core_time_s,
        r.profiled_core_time_s,
        r.layers_time_s,
        r.overhead_s,
        r.sum_rule.get("relative_gap"),
        r.sum_rule.get("tolerance"),
        bool(r.sum_rule.get("ok")),
        tuple(layers),
    )


def attribute(reference: BreakdownJob, other: BreakdownJob) -> Attribution:
    """Split `other`'s extra core time over `reference` into conv, fc, element-wise layers and
    overhead (core minus the layers), which add up to the extra time exactly."""

    def group(job: BreakdownJob, names: tuple[str, ...]) -> float:
        return sum(r.time_s for r in job.layers if r.layer in names)

    extra = other.core_s - reference.core_s
    parts = {
        name: group(other, names) - group(reference, names)
        for name, names in (
            ("conv", layer_groups.CONV_LAYERS),
            ("fc", layer_groups.FC_LAYERS),
            ("elementwise", ELEMENTWISE),
        )
    }
    parts["overhead"] = other.overhead_s - reference.overhead_s
    times = [{(r.layer, r.phase): r.time_s for r in job.layers} for job in (reference, other)]
    # ties in name order: a set's order varies with Python's hash seed, the report's bytes must not
    keys = sorted(
        set(times[0]) | set(times[1]), key=lambda k: (-abs(times[1].get(k, 0.0) - times[0].get(k, 0.0)), k)
    )
    diffs = [LayerDifference(*k, times[0].get(k, 0.0), times[1].get(k, 0.0)) for k in keys]
    if extra <= 0:
        verdict = LayerVerdict.CANNOT_TEST
    elif parts["conv"] / extra >= CONFIRM_SHARE:
        verdict = LayerVerdict.CONFIRMS
    else:
        verdict = (
            LayerVerdict.PARTLY if 1 - parts["overhead"] / extra >= CONFIRM_SHARE else LayerVerdict.REFUTES
        )
    return Attribution(
        other.framework,
        other.loss,
        reference.core_s,
        other.core_s,
        parts,
        reference.overhead_s,
        other.overhead_s,
        max(diffs, key=lambda d: d.other_s - d.reference_s, default=None),
        tuple(diffs[:TOP_ROWS]),
        verdict,
        tuple(j.framework for j in (reference, other) if not j.sum_rule_ok),
    )


def _roofline(
    jobs: list[BreakdownJob], batch: int, peak: Peak
) -> tuple[tuple[RooflinePoint, ...], tuple[str, ...]]:
    traffic = roofline.layer_traffic(batch)
    ridge = peak.ridge

    def bound(intensity: float) -> Bound:
        return Bound.UNKNOWN if ridge is None else Bound.MEMORY if intensity < ridge else Bound.COMPUTE

    rated = dict.fromkeys(
        (r.layer, r.phase) for job in jobs for r in job.layers if r.flops_per_s
    )  # in table order
    points = tuple(
        RooflinePoint(
            layer,
            phase,
            traffic[layer, phase].flops,
            traffic[layer, phase].intensity,
            bound(traffic[layer, phase].intensity),
        )
        for layer, phase in rated
        if (layer, phase) in traffic
    )
    memory = tuple(
        layer
        for layer in (*layer_groups.CONV_LAYERS, *layer_groups.FC_LAYERS)
        if all(bound(traffic[layer, phase].intensity) is Bound.MEMORY for phase in layer_groups.PHASES)
    )
    return points, memory


def _breakdown(results: Results, device: str, peak: Peak) -> tuple[BreakdownBatch, ...]:
    batches = []
    for exp in sorted(results.params.breakdown.batch_exponents):
        loaded = {
            job: r for job, r in results.breakdown.items() if (job.device, job.batch_exp) == (device, exp)
        }
        if not any(r.ok for r in loaded.values()):
            continue
        rate_loss = next(j.loss for j, r in loaded.items() if r.ok)
        jobs = {
            (j.framework, j.loss): _breakdown_job(j, r.record, peak, j.loss == rate_loss)
            for j, r in loaded.items()
            if r.ok
        }
        arms = [
            (fw, loss)
            for loss in results.loss_modes
            for fw in results.frameworks
            if fw != REFERENCE and REFERENCE in results.frameworks and Job(fw, loss, device, exp) in loaded
        ]
        compared = [(fw, loss) for fw, loss in arms if (fw, loss) in jobs and (REFERENCE, loss) in jobs]
        rated = [j for (_, loss), j in jobs.items() if loss == rate_loss]
        points, memory = _roofline(rated, 2**exp, peak)
        above = sorted(
            {
                (j.framework, x.layer, x.phase)
                for j in rated
                for x in j.layers
                if (x.fraction_of_peak or 0) > 1
            }
        )
        batches.append(
            BreakdownBatch(
                2**exp,
                tuple(jobs.values()),
                tuple((j.framework, j.loss) for j, r in loaded.items() if not r.ok),
                tuple(attribute(jobs[REFERENCE, loss], jobs[fw, loss]) for fw, loss in compared),
                tuple(arm for arm in arms if arm not in compared),
                rate_loss,
                points,
                memory,
                tuple(above),
            )
        )
    return tuple(batches)


# --- one device ---------------------------------------------------------------------------------
def _device(results: Results, device: str, peak: Peak) -> Device:
    on = {
        kind: {j: r for j, r in found.items() if j.device == device}
        for kind, found in (
            ("training", results.train),
            ("timing", results.timing),
            ("breakdown", results.breakdown),
        )
    }
    cells = {
        j: _cell(j, r.record, peak)
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
    runs = {j: _train_run(j, r.record, r, cells) for j, r in on["training"].items() if r.ok}
    groups = _groups(results, device)
    controls = tuple(ratio(b, g.control, g.disagree, difference=True) for b, (g, _) in groups.items())
    reach = [max(c.ratio.high - 1, 1 - c.ratio.low) for c in controls if c.ratio.low is not None]
    floor = max(reach, default=None)
    effects = ()
    if {"autograd", "explicit"} <= set(results.loss_modes):
        train_batch = results.params.train.batch_size
        effects = tuple(
            _loss_effect(
                fw, {j.loss: s for j, s in runs.items() if j.framework == fw}, groups, train_batch, floor
            )
            for fw in results.frameworks
        )
    trends = []
    for fw in results.frameworks:
        for loss in results.loss_modes:
            points = [
                (2**e, r)
                for e in results.batch_exponents
                if fw != REFERENCE
                and (a := cells.get(Job(fw, loss, device, e)))
                and (b := cells.get(Job(REFERENCE, loss, device, e)))
                and (r := _ratio(a.time.estimate, b.time.estimate)) is not None
            ]
            trends += [_trend(fw, loss, points)] if points else []
    baselines = [r.record.baseline_test.to_dict() for r in on["training"].values() if r.ok]
    baseline = {k: v for k, v in (baselines or [{}])[0].items() if v is not None}
    return Device(
        device,
        tuple(runs.values()),
        baseline,
        sum(b != baselines[0] for b in baselines),
        _accuracy_differences(results, device),
        effects,
        tuple(cells.values()),
        tuple(ratio(b, c) for b, (g, _) in groups.items() for c in g.comparisons),
        controls,
        tuple(trends),
        _breakdown(results, device, peak),
        {k: sum(not r.ok for r in v.values()) for k, v in on.items()},
        {k: len(v) for k, v in on.items()},
    )


# --- against the study --------------------------------------------------------------------------
def study_verdict(ours: float, study: float) -> StudyVerdict:
    """Within 10 %: agrees; else on the same side of 1 (both above 1.05, both below 0.95 or both between)."""
    if abs(ours / study - 1) <= AGREE_WITHIN:
        return StudyVerdict.AGREES
    side = [(x > 1 + ABOUT_ONE) - (x < 1 - ABOUT_ONE) for x in (ours, study)]
    return StudyVerdict.SAME_SIDE if side[0] == side[1] else StudyVerdict.DISAGREES


ONE_RUN = "one training run per arm: no interval, so no verdict"  # the study's training-time ratios


def _study_row(
    device: str,
    quantity: str,
    fw: str,
    basis: str,
    setup: str,
    ours: float | None,
    why_not: str | None = None,
) -> StudyRow:
    study = (
        STUDY[quantity][device] if fw == ("chainer" if quantity == "per_iteration" else REFERENCE) else None
    )
    if why_not is None and (ours is None or study is None):
        why_not = "not run here" if ours is None else "not measured by the study"
    verdict = StudyVerdict.NOT_COMPARABLE if why_not else study_verdict(ours, study)
    return StudyRow(device, quantity, fw, basis, setup, study, ours, verdict, why_not)


def _study(
    results: Results, devices: dict[str, Device]
) -> tuple[list[StudyRow], list[Absolute], list[Dominance]]:
    rows, absolute, dominance = [], [], []
    for device in DEVICES:
        d = devices.get(device)
        if d is None:
            rows += [
                _study_row(device, quantity, fw, basis, "", None, "not in this run's grid")
                for quantity, fw, basis in (
                    ("per_iteration", "chainer", "timing"),
                    ("per_iteration", "chainer", "training"),
                    ("explicit_over_autograd", REFERENCE, "training"),
                )
            ]
            continue
        cells = {(c.framework, c.loss, c.batch_size): c for c in d.cells}
        runs = {(r.framework, r.loss): r for r in d.training}
        for fw in [f for f in results.frameworks if f != REFERENCE and REFERENCE in results.frameworks]:
            a = cells.get((fw, "autograd", 2**STUDY_BATCH_EXP))
            b = cells.get((REFERENCE, "autograd", 2**STUDY_BATCH_EXP))
            why = (
                "no timing result at batch 32"
                if not (a and b)
                else f"the timing did not time the MomentumSGD update (timing.optimizers: "
                f"{', '.join(a.steps_s) or 'none'})"
                if STUDY_OPTIMIZER not in a.steps_s or STUDY_OPTIMIZER not in b.steps_s
                else None
            )
            ratio = (
                None
                if why
                else _ratio(
                    a.time.estimate + a.steps_s[STUDY_OPTIMIZER], b.time.estimate + b.steps_s[STUDY_OPTIMIZER]
                )
            )
            setup = f"core + {STUDY_OPTIMIZER} update, batch 32"
            rows.append(_study_row(device, "per_iteration", fw, "timing", setup, ratio, why))
            ra, rb = runs.get((fw, "autograd")), runs.get((REFERENCE, "autograd"))
            train_setup = ra.setup if ra else ""
            same = ra is not None and train_setup.startswith(f"{STUDY_OPTIMIZER}, batch 32,")
            why = (
                None
                if ra is None
                else ONE_RUN
                if same
                else f"trained with {train_setup}, not the study's set-up"
            )
            rows.append(
                _study_row(
                    device,
                    "per_iteration",
                    fw,
                    "training",
                    train_setup,
                    _ratio(ra and ra.per_iteration_s, rb and rb.per_iteration_s),
                    why,
                )
            )
        for e in d.loss_effects:
            setup = runs[e.framework, "autograd"].setup if (e.framework, "autograd") in runs else ""
            rows.append(
                _study_row(
                    device,
                    "explicit_over_autograd",
                    e.framework,
                    "training",
                    setup,
                    e.train_time_ratio,
                    ONE_RUN if e.framework == REFERENCE else None,
                )
            )
        for fw in ("chainer", "pytorch"):
            c, r = cells.get((fw, "autograd", 2**STUDY_BATCH_EXP)), runs.get((fw, "autograd"))
            step = c.steps_s.get(STUDY_OPTIMIZER) if c else None
            absolute.append(
                Absolute(
                    device,
                    fw,
                    STUDY["seconds_b32"][device][fw],
                    None if step is None else c.time.estimate + step,
                    r and r.per_iteration_s,
                    r and r.setup,
                )
            )
        framework = [
            (row.framework, row.ours)
            for row in rows
            if row.device == device
            and row.quantity == "per_iteration"
            and row.basis == "training"
            and row.ours is not None
        ]
        loss = [(e.framework, e.train_time_ratio) for e in d.loss_effects if e.train_time_ratio is not None]
        if framework and loss:
            (fw, fr), (lfw, lr) = (max(x, key=lambda p: abs(p[1] - 1)) for x in (framework, loss))
            dominance.append(Dominance(device, fw, fr, lfw, lr, abs(fr - 1) > abs(lr - 1)))
    return rows, absolute, dominance


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
    setup = _setup(results)
    devices = {d: _device(results, d, setup.peak) for d in results.devices}
    controls = [(d.device, c) for d in devices.values() for c in d.controls]
    summary = control_summary([c.verdict for _, c in controls])
    aa = tuple(
        AAPair(*c.b.split("/"), device, c.batch_size, c.ratio, c.difference, significant)  # type: ignore[arg-type]
        for (device, c), significant in zip(controls, summary.significant)
    )
    aa_groups = {(pair.device, pair.batch_size) for pair in aa}
    aa_blocks = sorted(
        {
            r.record.rounds
            for job, r in results.timing.items()
            if r.ok and job.batch_exp is not None and (job.device, 2**job.batch_exp) in aa_groups
        }
    )
    study, absolute, dominance = _study(results, devices)
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
        aa,
        summary.false_positive_rate,
        tuple(aa_blocks),
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
