"""Summary statistics of timing samples, computed from the kept (timed, post-warm-up) samples only.

Every value is a plain Python float/int/bool or None (never NaN), so a result can go straight to
`deeppose.records.atomic.write_json`. Quartiles use numpy's default (linear, "type 7") interpolation.
The 95% confidence interval of the mean comes from a seeded BCa bootstrap by default
(`scipy.stats.bootstrap`, bias-corrected and accelerated: timing samples are skewed, with a long
right tail, which a t-interval ignores and a percentile bootstrap undercovers; BCa still undercovers
a little at a few samples, tests/test_stats.py measures by how much); a Student-t interval is
available for comparison. `ci_method` in the result says which was used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# At import, not when first used: scipy brings its own OpenBLAS, which must be loaded before a
# measuring stage limits every native thread pool (deeppose.measure.threads).
from scipy import stats as scipy_stats

NOISY_IQR_OVER_MEDIAN = 0.10  # a measurement whose IQR exceeds 10% of its median is flagged
BOOTSTRAP_RESAMPLES = 2000
BATCH_VALUES = 2**20  # the most values one bootstrap batch holds (8 MiB of float64)
LEVEL = 0.95  # every interval of this module: a sample's and a cell's time
CI_METHODS = ("bootstrap", "t")

STAT_KEYS = (
    "n",
    "mean",
    "variance",
    "std",
    "median",
    "q1",
    "q3",
    "iqr",
    "min",
    "max",
    "ci95_low",
    "ci95_high",
    "ci_method",
    "iqr_over_median",
    "noisy",
)


def _float(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def bootstrap_mean_ci(
    samples: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0, level: float = LEVEL
) -> tuple[float, float]:
    """BCa-bootstrap interval of the mean; the same samples and seed give the same interval.
    Samples that are all equal have a point as interval (BCa's acceleration is undefined there)."""
    samples = np.asarray(samples, dtype=np.float64)
    if np.all(samples == samples[0]):
        return float(samples[0]), float(samples[0])
    result = scipy_stats.bootstrap(
        (samples,),
        np.mean,
        n_resamples=resamples,
        confidence_level=level,
        method="BCa",
        rng=np.random.default_rng(seed),
        # Resamples (and BCa's jackknife, n x (n - 1) without it) in batches of about 2^20 values: a
        # training run's per-iteration times are tens of thousands of samples.
        batch=max(1, min(resamples, BATCH_VALUES // samples.size)),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def t_mean_ci(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Student-t interval of the mean (assumes roughly normal samples)."""
    half = (
        scipy_stats.t.ppf(0.5 + level / 2, samples.size - 1) * samples.std(ddof=1) / math.sqrt(samples.size)
    )
    mean = float(samples.mean())
    return mean - float(half), mean + float(half)


def describe(
    samples: Sequence[float],
    ci: str = "bootstrap",
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Statistics of `samples` (seconds): the keys of `STAT_KEYS`.

    variance and std use ddof=1 (sample statistics); with one sample they, and the interval, are
    None. `noisy` is True when iqr / median > 0.10.
    """
    if ci not in CI_METHODS:
        raise ValueError(f"unknown CI method {ci!r}; allowed: {', '.join(CI_METHODS)}")
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("describe() needs a non-empty 1-D sequence of samples")
    if not np.all(np.isfinite(x)):
        raise ValueError("timing samples must be finite")
    n = int(x.size)
    q1, median, q3 = (float(v) for v in np.percentile(x, [25, 50, 75]))
    iqr = q3 - q1
    if n >= 2:
        variance: float | None = float(x.var(ddof=1))
        std: float | None = float(x.std(ddof=1))
        low, high = bootstrap_mean_ci(x, resamples, seed) if ci == "bootstrap" else t_mean_ci(x)
        ci_low, ci_high = _float(low), _float(high)
    else:
        variance = std = ci_low = ci_high = None
    ratio = iqr / median if median > 0 else None
    method = f"bootstrap BCa, {resamples} resamples, seed {seed}" if ci == "bootstrap" else "student t"
    return {
        "n": n,
        "mean": float(x.mean()),
        "variance": variance,
        "std": std,
        "median": median,
        "q1": q1,
        "q3": q3,
        "iqr": iqr,
        "min": float(x.min()),
        "max": float(x.max()),
        "ci95_low": ci_low,
        "ci95_high": ci_high,
        "ci_method": method,
        "iqr_over_median": ratio,
        "noisy": bool(ratio is not None and ratio > NOISY_IQR_OVER_MEDIAN),
    }


# --- a cell's time and its interval, from block medians (deeppose.compare_stats builds on these) ---
@dataclass(frozen=True)
class Interval:
    """An estimate with its interval (None when one block cannot give one) and how it was made.
    Never NaN, so that `dataclasses.asdict` of any result here is strict JSON."""

    estimate: float | None  # None only when no block at all was usable
    low: float | None
    high: float | None
    n: int  # blocks (cell) or rounds (comparison) it rests on
    level: float
    method: str

    @property
    def half_width(self) -> float | None:
        return None if self.low is None or self.high is None else (self.high - self.low) / 2

    def excludes(self, value: float) -> bool:
        return self.low is not None and self.high is not None and not self.low <= value <= self.high


# --- the t machinery, on logs ---------------------------------------------------------------
def t_half_width(values: np.ndarray, level: float) -> float:
    return float(
        scipy_stats.t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    )


def positive_times(values: Sequence[float], what: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)) or np.any(x <= 0):
        raise ValueError(f"{what} must be a non-empty sequence of positive finite times, got {values!r}")
    return x


def cell_estimate(block_medians: Sequence[float], level: float = LEVEL) -> Interval:
    """A cell's time: the median of its block medians, with a t-interval of the log block medians
    (the interval is centred on their geometric mean, which sits beside the median)."""
    x = positive_times(block_medians, "block medians")
    estimate = float(np.median(x))
    if x.size < 2:
        return Interval(estimate, None, None, 1, level, "one block: no interval")
    logs = np.log(x)
    half = t_half_width(logs, level)
    centre = float(logs.mean())
    return Interval(
        estimate,
        math.exp(centre - half),
        math.exp(centre + half),
        int(x.size),
        level,
        "student t on log block medians",
    )
