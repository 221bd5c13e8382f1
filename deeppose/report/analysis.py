"""The report's numbers: per-run summaries, the autograd/explicit interval, framework ratios,
fractions of the measured fp32 peak, and the comparison with the study's published figures.

Everything is computed from `load.Results`; nothing here formats text or draws. A value that
cannot be computed (a job not run, a mode not in the grid) is None, never an exception.
"""

from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from scipy import stats as scipy_stats


from deeppose.blocks import Block, Interference, interfered
from deeppose.compare_stats import (
    Comparison, ControlSummary, GroupAnalysis, Interval, analyse_group, compare, control_summary,
)
from deeppose.grid import Job
from deeppose.report.fmt import framework_name
from deeppose.report.load import Results
from deeppose.results import BlockRecord, Scores, TimingResult, TrainMetrics
from deeppose.stats import describe

LEVEL = 0.95  # confidence level of every interval in the report
REFERENCE = "pytorch"  # framework ratios are <framework> / PyTorch, as in the study
AGREE_WITHIN = 0.10  # a ratio agrees with the study's when within 10 % of it
ABOUT_ONE = 0.05  # ... and lies on the same side of 1 when both are above 1.05, both below 0.95 or both within


@dataclass(frozen=True)
class Sample:
    """Summary of a sample of times in seconds: size, mean, variance (ddof=1), median and spread."""

    n: int
    mean: float
    variance: float  # NaN when unknown (one sample)
    median: float | None
    iqr_over_median: float | None
    noisy: bool  # IQR / median above deeppose.stats.NOISY_IQR_OVER_MEDIAN
    source: str  # where the numbers came from, shown in the report

    @property
    def std(self) -> float:
        return math.sqrt(self.variance)

    @classmethod
    def of(cls, values: list[float], source: str) -> Sample | None:
        """From raw samples, with deeppose.stats' definitions (those the stages use)."""
        values = [v for v in values if _is_number(v)]
        return cls.from_stats(describe(values, ci="t"), source) if values else None

    @classmethod
    def from_stats(cls, stats: dict[str, Any], source: str) -> Sample:
        """From the statistics the stages write (deeppose.stats.describe); the variance of a single
        sample is undefined (NaN)."""
        var = float("nan") if stats["variance"] is None else float(stats["variance"])
        return cls(int(stats["n"]), float(stats["mean"]), var, float(stats["median"]), stats["iqr_over_median"],
                   bool(stats["noisy"]), source)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is not positive."""
    if a is None or b is None or not b > 0:
        return None
    return a / b


@dataclass(frozen=True)
class TrainSummary:
    """One training run's times and accuracy."""

    job: Job
    total_s: float  # wall time of the training loop, evaluations excluded
    iterations: int
    epochs: int | None
    batch_size: int | None
    compute: Sample | None  # per-iteration forward+loss+backward+update times
    final_train_loss: float | None
    final_test: dict[str, float]
    baseline_test: dict[str, float]
    gaps: dict[str, AccuracyGap]  # "loss", "pcp": the final network against the mean pose

    @property
    def per_iteration_s(self) -> float | None:
        """Wall time per iteration (data fetching included), the study's "time of 1 epoch"."""
        return self.total_s / self.iterations if self.iterations > 0 else None


ACCURACY_LEVEL = 0.95
ACCURACY_RESAMPLES = 2000


@dataclass(frozen=True)
class AccuracyGap:
    """A trained network against the mean-pose baseline on one test metric, with BCa intervals
    from resampling test images (paired: both predict the same images)."""

    metric: str  # "loss" (lower is better) or "pcp" (higher is better)
    trained: Interval
    baseline: float
    difference: Interval  # trained - baseline

    @property
    def beats_baseline(self) -> bool:
        d = self.difference
        if d.low is None or d.high is None:
            return False
        return d.high < 0 if self.metric == "loss" else d.low > 0


def _ratio_interval(numerators: list[np.ndarray], denominator: np.ndarray, seed: int) -> Interval:
    """sum(numerators[0]) / sum(denominator), minus the same of numerators[1] when given, with a
    paired BCa bootstrap over images."""
    def statistic(*arrays: np.ndarray, axis: int = -1) -> np.ndarray:
        *nums, den = arrays
        value = nums[0].sum(axis=axis) / den.sum(axis=axis)
        return value - nums[1].sum(axis=axis) / den.sum(axis=axis) if len(nums) > 1 else value

    data = (*numerators, denominator)
    estimate = float(statistic(*data))
    method = f"BCa bootstrap over {len(denominator)} test images, {ACCURACY_RESAMPLES} resamples"
    if len(denominator) < 2:
        return Interval(estimate, None, None, len(denominator), ACCURACY_LEVEL, method)
    with warnings.catch_warnings():  # a degenerate distribution gives NaN bounds, handled below
        warnings.simplefilter("ignore", scipy_stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        result = scipy_stats.bootstrap(
            data, statistic, paired=True, vectorized=True, n_resamples=ACCURACY_RESAMPLES,
            confidence_level=ACCURACY_LEVEL, method="BCa", random_state=np.random.default_rng(seed),
        )
    low, high = (float(v) for v in (result.confidence_interval.low, result.confidence_interval.high))
    if not (math.isfinite(low) and math.isfinite(high)):  # a degenerate resample distribution
        return Interval(estimate, None, None, len(denominator), ACCURACY_LEVEL, method)
    return Interval(estimate, low, high, len(denominator), ACCURACY_LEVEL, method)


def accuracy_gaps(per_image: dict[str, list[float]], seed: int = 0) -> dict[str, AccuracyGap]:
    """Test loss and each accuracy of the trained network and of the mean pose, and their difference."""
    a = {k: np.asarray(v, dtype=float) for k, v in per_image.items()}
    gaps = {}
    for metric, (trained, baseline, counted) in {
        "loss": ("sq_error", "baseline_sq_error", "visible"),
        **{name: (f"{name}_hits", f"baseline_{name}_hits", f"{name}_counted") for name in ("pcp", "pdj", "pck")},
    }.items():
        if not {trained, baseline, counted} <= a.keys() or a[counted].sum() == 0:
            continue
        gaps[metric] = AccuracyGap(
            metric,
            _ratio_interval([a[trained]], a[counted], seed),
            float(a[baseline].sum() / a[counted].sum()),
            _ratio_interval([a[trained], a[baseline]], a[counted], seed),
        )
    return gaps


def summarize_train(job: Job, metrics: TrainMetrics, iterations: list[dict[str, Any]]) -> TrainSummary:
    """Per-iteration times from the log when it is there, else from metrics.json's statistics."""
    compute = Sample.of([r["compute_s"] for r in iterations], "log.jsonl compute_s") or Sample.from_stats(
        metrics.iteration_time_s, "metrics.json iteration_time_s"
    )

    def scores(value: Scores) -> dict[str, float]:
        return {k: v for k, v in value.to_dict().items() if v is not None}

    return TrainSummary(
        job=job,
        total_s=metrics.train_time_s,
        iterations=metrics.iterations,
        epochs=metrics.epochs,
        batch_size=metrics.batch_size,
        compute=compute,
        final_train_loss=metrics.final_train_loss,
        final_test=scores(metrics.final_test),
        baseline_test=scores(metrics.baseline_test),
        gaps=accuracy_gaps(metrics.test_per_image, seed=metrics.seed),
    )


@dataclass(frozen=True)
class AutodiffEffect:
    """Explicit versus autograd loss backward for one framework on one device."""

    framework: str
    device: str
    autograd: TrainSummary | None
    explicit: TrainSummary | None

    @property
    def train_time_ratio(self) -> float | None:
        """explicit / autograd of the total training time (the study's comparison)."""
        if self.autograd is None or self.explicit is None:
            return None
        return _ratio(self.explicit.total_s, self.autograd.total_s)


@dataclass(frozen=True)
class TimingCell:
    """One core-process timing cell: forward + loss + backward at one batch size, over blocks.

    `time` (median of block medians, interval from the blocks) is the figure comparisons use;
    `core` pools the usable blocks' samples to describe the spread as the study did."""

    job: Job
    batch_size: int
    time: Interval
    core: Sample
    flops_per_s: float | None
    optimizer_steps: dict[str, Sample | None]  # optimiser -> its update's samples
    loss: Sample | None  # the loss alone, forward + backward into the predictions
    blocks: int  # rounds with a usable block
    disturbed: int  # attempts flagged disturbed, reruns included
    compile: Sample | None  # a compiling framework's first call per block; None when eager
    memory_bytes: float | None  # median over blocks of the core process's peak above set-up


def final_blocks(records: list[BlockRecord]) -> list[BlockRecord]:
    """The last attempt of each round (what the statistics use), in round order."""
    last: dict[int, BlockRecord] = {}
    for block in records:
        if block.round not in last or block.attempt > last[block.round].attempt:
            last[block.round] = block
    return [last[r] for r in sorted(last)]


def usable_blocks(records: list[BlockRecord]) -> list[BlockRecord]:
    """The final attempts that no other process disturbed, or all final attempts when every one
    was: the blocks a cell's figures come from."""
    return [b for b in final_blocks(records) if not interfered(b.reasons)] or final_blocks(records)


def summarize_timing(job: Job, result: TimingResult) -> TimingCell:
    usable = usable_blocks(result.blocks)
    return TimingCell(
        job=job,
        batch_size=result.batch_size,
        time=Interval(**result.time_s.to_dict()),
        core=Sample.of([s for b in usable for s in b.samples_s], "blocks"),
        flops_per_s=result.flops_per_s,
        optimizer_steps={
            name: Sample.of([s for b in usable for s in b.optimizer_steps_s.get(name, [])], "blocks")
            for name in dict.fromkeys(name for b in usable for name in b.optimizer_steps_s)
        },
        loss=Sample.of([s for b in usable for s in b.loss_s], "blocks"),
        blocks=len([b for b in final_blocks(result.blocks) if not interfered(b.reasons)]),
        disturbed=sum(b.disturbed for b in result.blocks),
        compile=Sample.of([b.compile_s for b in usable if b.compile_s is not None], "blocks"),
        memory_bytes=_median([b.memory_bytes for b in usable if b.memory_bytes is not None]),
    )


def _median(values: list[int]) -> float | None:
    return float(statistics.median(values)) if values else None


def as_blocks(records: list[BlockRecord], cell: str, series: str = "samples_s") -> list[Block]:
    """Records back as deeppose.blocks.Block, with `series` (core, loss or update times) as samples,
    so that deeppose.compare_stats applies its rules to what was stored."""
    return [
        Block(round=r.round, position=r.position, arm=r.arm, cell=cell, attempt=r.attempt,
              samples_s=tuple(getattr(r, series)), warmup_s=tuple(r.warmup_s), started_at=r.started_at,
              ended_at=r.ended_at, interference=Interference(**{**r.interference.to_dict(),
                                                                 "load_before": tuple(r.interference.load_before)}),
              disturbed=r.disturbed, reasons=tuple(r.reasons))
        for r in records if getattr(r, series)
    ]


@dataclass(frozen=True)
class GroupFindings:
    """One timing group's comparisons, by deeppose.compare_stats' rules."""

    device: str
    batch_exp: int
    analysis: GroupAnalysis  # core process: cell times, comparisons, the A/A control
    loss: dict[str, Comparison]  # framework -> explicit vs autograd of the loss alone


# The study's published figures (DESIGN.md section 1), per device.
STUDY = {
    "chainer_over_pytorch_per_iteration": {"cpu": 1.64, "cuda": 1.61},
    "explicit_over_autograd_train_time": {"cpu": 1.00, "cuda": 0.96},  # PyTorch only
    "seconds_per_iteration_b32": {
        "cpu": {"chainer": 8.2, "pytorch": 5.0},
        "cuda": {"chainer": 0.45, "pytorch": 0.28},
    },
    "hours_100_epochs": {  # PyTorch, 100 epochs of LSP + LSPET at batch 32
        "cpu": {"autograd": 47.6, "explicit": 47.6},
        "cuda": {"autograd": 2.60, "explicit": 2.49},
    },
}


def side_of_one(x: float) -> str:
    if x > 1 + ABOUT_ONE:
        return "above 1"
    if x < 1 - ABOUT_ONE:
        return "below 1"
    return "about 1"


def verdict(ours: float | None, study: float | None) -> str:
    """'agrees' (within 10 %), 'same side of 1' (differs more, same side), 'disagrees', or 'n/a'."""
    if ours is None or study is None:
        return "n/a"
    if abs(ours / study - 1) <= AGREE_WITHIN:
        return "agrees"
    if side_of_one(ours) == side_of_one(study):
        return "same side of 1"
    return "disagrees"


class Analysis:
    """Derived numbers over a `Results`, computed once each."""

    def __init__(self, results: Results) -> None:
        self.results = results

    @cached_property
    def train(self) -> dict[Job, TrainSummary]:
        return {
            job: summarize_train(job, run.record, run.iterations)
            for job, run in self.results.train.items()
            if run.ok
        }

    @cached_property
    def timing(self) -> dict[Job, TimingCell]:
        cells = {}
        for job, loaded in self.results.timing.items():
            if loaded.ok:
                cells[job] = summarize_timing(job, loaded.record)
        return cells

    @property
    def peak_flops_per_s(self) -> float | None:
        peak = self.results.peak
        return peak.record.peak_flops_per_s if peak.ok else None

    def peak_for(self, device: str) -> float | None:
        """The measured peak that applies to `device`: the file's own (CPU) one on cpu; on cuda only
        a `cuda` entry with `flops_per_s`, if the peak stage wrote one."""
        if device == "cpu":
            return self.peak_flops_per_s
        entry = self.results.peak.data.get(device) if self.results.peak.ok else None
        if isinstance(entry, dict) and _is_number(entry.get("flops_per_s")):
            return float(entry["flops_per_s"])
        return None

    def fraction_of_peak(self, cell: TimingCell) -> float | None:
        return _ratio(cell.flops_per_s, self.peak_for(cell.job.device))

    def train_summary(self, framework: str, loss: str, device: str) -> TrainSummary | None:
        return self.train.get(Job(framework, loss, device))

    def timing_cell(self, framework: str, loss: str, device: str, batch_exp: int) -> TimingCell | None:
        return self.timing.get(Job(framework, loss, device, batch_exp))

    def autodiff(self, device: str) -> list[AutodiffEffect]:
        """One effect per framework of the grid, when both loss modes are in the grid."""
        if not {"autograd", "explicit"} <= set(self.results.loss_modes):
            return []
        return [
            AutodiffEffect(
                fw, device, self.train_summary(fw, "autograd", device), self.train_summary(fw, "explicit", device)
            )
            for fw in self.results.frameworks
        ]

    @property
    def compared_frameworks(self) -> list[str]:
        """Frameworks compared against PyTorch (empty when PyTorch is not in the grid)."""
        frameworks = self.results.frameworks
        return [fw for fw in frameworks if fw != REFERENCE] if REFERENCE in frameworks else []

    def per_iteration_ratio(self, framework: str, loss: str, device: str) -> float | None:
        """<framework> / PyTorch of the wall time per training iteration."""
        ours, ref = self.train_summary(framework, loss, device), self.train_summary(REFERENCE, loss, device)
        return _ratio(ours and ours.per_iteration_s, ref and ref.per_iteration_s)

    def core_ratio(self, framework: str, loss: str, device: str, batch_exp: int) -> float | None:
        """<framework> / PyTorch of the core-process time (median of block medians) at 2^batch_exp."""
        ours = self.timing_cell(framework, loss, device, batch_exp)
        ref = self.timing_cell(REFERENCE, loss, device, batch_exp)
        return _ratio(ours and ours.time.estimate, ref and ref.time.estimate)

    @cached_property
    def groups(self) -> dict[tuple[str, int], GroupFindings]:
        """Every timing group with a result for each of its cells: its blocks, compared."""
        found = {}
        for device in self.results.devices:
            for exp in self.results.batch_exponents:
                loaded = {job: self.results.timing[job] for job in self.results.timing
                          if job.device == device and job.batch_exp == exp}
                if not loaded or not all(r.ok for r in loaded.values()):
                    continue
                found[device, exp] = self._group(device, exp, {j: r.record for j, r in loaded.items()})
        return found

    def _group(self, device: str, exp: int, records: dict[Job, TimingResult]) -> GroupFindings:
        blocks, loss_blocks = [], {}
        control = next(iter(records.values())).control
        for job, result in records.items():
            cell = f"{job.framework}/{job.loss}"
            blocks += as_blocks(result.blocks, cell) + as_blocks(result.control_blocks, cell)
            loss_blocks[cell] = as_blocks(result.blocks, cell, "loss_s")
        loss_modes, frameworks = self.results.loss_modes, self.results.frameworks
        pairs = [(f"{fw}/{loss}", f"{REFERENCE}/{loss}") for fw in self.compared_frameworks for loss in loss_modes]
        if {"autograd", "explicit"} <= set(loss_modes):
            pairs += [(f"{fw}/explicit", f"{fw}/autograd") for fw in frameworks]
        loss = {}
        if {"autograd", "explicit"} <= set(loss_modes):
            for fw in frameworks:
                both = loss_blocks[f"{fw}/explicit"] + loss_blocks[f"{fw}/autograd"]
                loss[fw] = compare(both, f"{fw}/explicit", f"{fw}/autograd")
        return GroupFindings(device, exp, analyse_group(blocks, pairs, control), loss)

    def comparison(self, device: str, exp: int, a: str, b: str) -> Comparison | None:
        group = self.groups.get((device, exp))
        if group is None:
            return None
        return next((c for c in group.analysis.comparisons if (c.a, c.b) == (a, b)), None)

    def loss_effect(self, framework: str, device: str) -> tuple[int, Comparison] | None:
        """(batch exponent, explicit vs autograd of the loss alone) at the training batch size's
        group, else the largest batch measured: the loss's own cost, paired by round."""
        size = int(self.results.params.raw["train"]["batch_size"])
        exps = [e for (d, e) in self.groups if d == device]
        if not exps:
            return None
        exp = size.bit_length() - 1 if size & (size - 1) == 0 and size.bit_length() - 1 in exps else max(exps)
        found = self.groups[device, exp].loss.get(framework)
        return (exp, found) if found is not None else None

    def noise_floor(self, device: str) -> float | None:
        """How far from 1 the A/A controls' ratio intervals on `device` reach: what noise alone can do
        to the ratio of two identical arms measured by these rules."""
        reach = [max(abs(c.ratio.high - 1), abs(1 - c.ratio.low)) for (d, _), g in self.groups.items()
                 if d == device and (c := g.analysis.control).ratio.low is not None and c.ratio.high is not None]
        return max(reach) if reach else None

    def manifests(self, device: str) -> dict[str, dict[str, Any]]:
        """Framework -> the fairness manifest of its blocks on `device` (from its largest batch's
        first cell), for deeppose.fairness.asymmetries."""
        found: dict[str, dict[str, Any]] = {}
        for job, loaded in sorted(self.results.timing.items(), key=lambda item: -(item[0].batch_exp or 0)):
            manifest = loaded.record.environment.get("fairness") if loaded.ok else None
            if job.device == device and manifest and job.framework not in found:
                found[job.framework] = manifest
        return found

    @cached_property
    def control(self) -> ControlSummary:
        """The A/A comparisons of every group, and how often the verdict rule fired on them."""
        return control_summary([g.analysis.control for g in self.groups.values()])

    def study_ratios(self, device: str) -> list[tuple[str, float | None, float | None]]:
        """(quantity, study's value, this run's value) for each ratio compared with the study."""
        rows = []
        for fw in self.compared_frameworks:
            if fw == "chainer":
                ours = self.per_iteration_ratio(fw, "autograd", device)
                study = STUDY["chainer_over_pytorch_per_iteration"][device]
                rows.append(("Chainer / PyTorch, training time per iteration (autograd)", study, ours))
        for effect in self.autodiff(device):
            study = STUDY["explicit_over_autograd_train_time"][device] if effect.framework == REFERENCE else None
            quantity = f"explicit / autograd, training time ({framework_name(effect.framework)})"
            rows.append((quantity, study, effect.train_time_ratio))
        return rows

