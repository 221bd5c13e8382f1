"""The report's numbers: per-run summaries, the autograd/explicit interval, framework ratios,
fractions of the measured fp32 peak, and the comparison with the study's published figures.

Everything is computed from `load.Results`; nothing here formats text or draws. A value that
cannot be computed (a job not run, a mode not in the grid) is None, never an exception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from scipy import stats as scipy_stats

from deeppose.results import Scores, TimingResult, TrainMetrics
from deeppose.grid import Job
from deeppose.stats import NOISY_IQR_OVER_MEDIAN, describe
from deeppose.report.fmt import framework_name
from deeppose.report.load import Results

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


@dataclass(frozen=True)
class Interval:
    """A confidence interval for a difference of means (b - a)."""

    diff: float
    low: float
    high: float
    df: float
    method: str

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return self.low > 0 or self.high < 0


def welch_interval(a: Sample, b: Sample, level: float = LEVEL) -> Interval | None:
    """Welch's t-interval for mean(b) - mean(a); None without two samples of each."""
    if a.n < 2 or b.n < 2 or not (math.isfinite(a.variance) and math.isfinite(b.variance)):
        return None
    diff = b.mean - a.mean
    va, vb = a.variance / a.n, b.variance / b.n
    se = math.sqrt(va + vb)
    if se == 0:
        return Interval(diff, diff, diff, float("inf"), "Welch's t-interval")
    df = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    half = float(scipy_stats.t.ppf(0.5 + level / 2, df)) * se
    return Interval(diff, diff - half, diff + half, df, "Welch's t-interval")


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

    @property
    def per_iteration_s(self) -> float | None:
        """Wall time per iteration (data fetching included), the study's "time of 1 epoch"."""
        return self.total_s / self.iterations if self.iterations > 0 else None


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
    )


@dataclass(frozen=True)
class AutodiffEffect:
    """Explicit versus autograd loss backward for one framework on one device."""

    framework: str
    device: str
    autograd: TrainSummary | None
    explicit: TrainSummary | None

    @property
    def interval(self) -> Interval | None:
        """explicit - autograd of the mean per-iteration compute time."""
        if self.autograd is None or self.explicit is None:
            return None
        if self.autograd.compute is None or self.explicit.compute is None:
            return None
        return welch_interval(self.autograd.compute, self.explicit.compute)

    @property
    def train_time_ratio(self) -> float | None:
        """explicit / autograd of the total training time (the study's comparison)."""
        if self.autograd is None or self.explicit is None:
            return None
        return _ratio(self.explicit.total_s, self.autograd.total_s)


@dataclass(frozen=True)
class TimingCell:
    """One core-process timing job: forward + loss + backward at one batch size."""

    job: Job
    batch_size: int
    core: Sample
    flops_per_s: float | None
    optimizer_step: Sample | None


def summarize_timing(job: Job, result: TimingResult) -> TimingCell:
    step = result.measurements.get("optimizer_step")
    return TimingCell(
        job=job,
        batch_size=result.batch_size,
        core=Sample.from_stats(result.measurements["core"].stats, "stats"),
        flops_per_s=result.flops_per_s,
        optimizer_step=Sample.from_stats(step.stats, "stats") if step is not None else None,
    )


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
        """<framework> / PyTorch of the mean core-process time at batch 2^batch_exp."""
        ours = self.timing_cell(framework, loss, device, batch_exp)
        ref = self.timing_cell(REFERENCE, loss, device, batch_exp)
        return _ratio(ours and ours.core.mean, ref and ref.core.mean)

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

