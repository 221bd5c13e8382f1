"""Statistics over blocks: a cell's time, comparisons of two arms, verdicts, the A/A control and
the precision every printed figure is given.

The block (one fresh process, `deeppose.measure.blocks`) is the unit of replication: samples within a
block share the process's memory layout, library choices and the machine's state at that time, so
they are not independent of each other, and an interval from samples is far too narrow (two cells
of one framework that differed only in the loss differed by 12-62 % between jobs). Here every
interval is computed from one number per block, its median:

* a cell's time is the median of its block medians; its interval is a Student-t interval on the
  logarithms of the block medians (timings are multiplicative: a slower machine scales every
  sample), exponentiated;
* two arms that share rounds are compared by the paired t-interval of their per-round log ratios
  (drift common to a round cancels), or, unpaired, by Welch's t-interval on logs; with enough
  rounds a BCa bootstrap (`scipy.stats.bootstrap`) of the mean log ratio is available too. A
  percentile bootstrap is not offered: at 3 to 10 blocks it undercovers badly;
* two *runs* of a cell (deeppose.compare: BASE and HEAD) share no rounds: their block medians
  are compared unpaired by `hodges_lehmann_ratio`, a rank interval that one silent outlier block
  does not widen; accuracies (proportions of test images) by Wilson and Newcombe intervals;
* `verdict` says faster/slower only when the interval excludes 1 *and* the estimated ratio is
  beyond `THRESHOLD`: with many rounds a real but tiny difference is not worth a verdict;
* the A/A control (one cell measured as two arms) goes through the very same rule, and
  `control_summary` reports how often that rule calls a difference where there is none.

The rule's constants (`COMPARE_LEVEL`, `THRESHOLD`) and the design they were chosen at
(`SIMULATED_ROUNDS`, `SIMULATED_REPEATS`) come from the simulation in
tests/test_blocks.py: a machine with a slow trend, a random walk of speed, a 3 % per-process
effect, outlier blocks (5 %, a third of them invisible in /proc/stat) and sample spikes, run
through the schedule, the runner (blocks other processes disturbed rerun), the round filter and
the verdict.
Over 1,000 A/A and 1,000 "10 % slower" groups, at 6 samples per block, a 90 % interval and a 5 %
threshold:

    rounds                      3      4      5      6      7      8
    A/A false-positive rate   3.4 %  2.7 %  3.0 %  2.3 %  1.9 %  1.7 %
    power at a 10 % effect     54 %   76 %   86 %   90 %   90 %   91 %

Three rounds (t quantile 2.92 on 2 degrees of freedom, and one silent outlier block ruins the
interval) cannot reach 90 %; six just do; eight add a little (the simulation's own uncertainty is
+- 1.7 % at 1,000 trials): eight where time allows (`SIMULATED_ROUNDS`). More samples per block do not help:
the variance that matters is between processes (4 samples: 91 %, 10: 89 % at 8 rounds). The 90 %
interval is not what keeps false positives rare: the threshold is (a 95 % interval with a 3 %
threshold gives 3.0 % false positives and 90 % power at 8 rounds: worse on both counts).
The simulated machine is an assumption; the A/A arm of every group is the check on the real one.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
from scipy import stats as scipy_stats

from deeppose.measure.blocks import Timed, cell_of, final, interfered, twin
from deeppose.records.results import BlockRecord
from deeppose.stats import LEVEL, Interval, positive_times, t_half_width

COMPARE_LEVEL = 0.90  # intervals of comparisons, the ones verdicts read (see the module docstring)
# The design the simulation above chose and the tests' simulated groups run (tests/test_blocks.py,
# tests/simulated_machine.py). Not the pipeline's: params.yaml's timing.blocks and timing.repeats set
# those (3 and 3 there, for minutes on 2 cores; params-study.yaml: 10 and 10), and nothing here reads them.
SIMULATED_ROUNDS = 8  # blocks per cell, each round one block of every arm
SIMULATED_REPEATS = 6  # timed samples per block
THRESHOLD = 0.05  # a verdict needs the ratio beyond 1.05 or below 1 / 1.05
DISAGREEMENT_ALPHA = 0.01  # between-block test of one group, Bonferroni-split over its cells
BOOTSTRAP_RESAMPLES = 9999
INTERVAL_METHODS = ("t", "bca")


class Verdict(str, Enum):
    """How arm a's time compares to arm b's."""

    FASTER = "faster"
    SLOWER = "slower"
    NO_DIFFERENCE = "no_difference"
    TOO_FEW_BLOCKS = "too_few_blocks"  # fewer than two usable rounds: no interval at all


def _paired_logs(a: Mapping[int, float], b: Mapping[int, float]) -> np.ndarray:
    """log(a_r) - log(b_r) over the rounds r both arms have."""
    rounds = sorted(set(a) & set(b))
    if not rounds:
        raise ValueError("the two arms share no round")
    return np.log(positive_times([a[r] for r in rounds], "a")) - np.log(
        positive_times([b[r] for r in rounds], "b")
    )


def paired_ratio(
    a: Mapping[int, float], b: Mapping[int, float], level: float = LEVEL, method: str = "t", seed: int = 0
) -> Interval:
    """Ratio a / b of two arms' block medians paired by round (keys): exp of the mean log ratio,
    with a t-interval ("t") or a BCa bootstrap ("bca", seeded) of that mean."""
    if method not in INTERVAL_METHODS:
        raise ValueError(f"unknown interval method {method!r}; allowed: {', '.join(INTERVAL_METHODS)}")
    d = _paired_logs(a, b)
    estimate = math.exp(float(d.mean()))
    if d.size < 2:
        return Interval(estimate, None, None, 1, level, "one round: no interval")
    if method == "t":
        half = t_half_width(d, level)
        low, high = d.mean() - half, d.mean() + half
        name = "paired student t on log ratios"
    else:
        result = scipy_stats.bootstrap(
            (d,),
            np.mean,
            n_resamples=BOOTSTRAP_RESAMPLES,
            confidence_level=level,
            method="BCa",
            rng=np.random.default_rng(seed),
        )
        low, high = result.confidence_interval.low, result.confidence_interval.high
        name = f"BCa bootstrap of the mean log ratio, {BOOTSTRAP_RESAMPLES} resamples, seed {seed}"
    return Interval(estimate, math.exp(float(low)), math.exp(float(high)), int(d.size), level, name)


def welch_ratio(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Interval:
    """Ratio of geometric means of two unpaired sets of block medians, Welch's t-interval on logs."""
    la, lb = np.log(positive_times(a, "a")), np.log(positive_times(b, "b"))
    estimate = math.exp(float(la.mean() - lb.mean()))
    if la.size < 2 or lb.size < 2:
        return Interval(estimate, None, None, min(la.size, lb.size), level, "one block: no interval")
    va, vb = la.var(ddof=1) / la.size, lb.var(ddof=1) / lb.size
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (la.size - 1) + vb**2 / (lb.size - 1)) if se > 0 else la.size + lb.size - 2
    half = float(scipy_stats.t.ppf(0.5 + level / 2, df)) * se
    centre = float(la.mean() - lb.mean())
    return Interval(
        estimate,
        math.exp(centre - half),
        math.exp(centre + half),
        int(min(la.size, lb.size)),
        level,
        "welch t on log block medians",
    )


def _u_null_counts(m: int, n: int) -> np.ndarray:
    """How many of the C(m+n, m) orderings of two untied samples give each Mann-Whitney U (0..mn):
    the coefficients of the Gaussian binomial, by the recurrence over the largest value's owner."""
    previous = [np.ones(1) for _ in range(n + 1)]  # row i - 1 of the table, one array per j
    for i in range(1, m + 1):
        row = [np.ones(1)]
        for j in range(1, n + 1):
            counts = np.zeros(i * j + 1)
            counts[j : j + previous[j].size] += previous[j]  # the largest value is from a: beats all j
            counts[: row[j - 1].size] += row[j - 1]  # ... from b
            row.append(counts)
        previous = row
    return previous[n]


EXACT_RANKS = 2500  # exact Mann-Whitney quantiles up to this many pairs (m x n), normal beyond


def _rank_depth(m: int, n: int, level: float) -> int:
    """k such that the k-th smallest and k-th largest of the m x n pairwise differences bound a
    `level` interval of the shift (Bauer 1972): the largest k with P(U <= k - 1) <= (1 - level) / 2
    under no shift. 0: too few values for any interval at this level."""
    alpha = (1 - level) / 2
    if m * n <= EXACT_RANKS:
        cdf = np.cumsum(_u_null_counts(m, n))
        return int(np.searchsorted(cdf / cdf[-1], alpha * (1 + 1e-12), side="right"))
    z = float(scipy_stats.norm.ppf(1 - alpha))
    return max(int(math.floor(m * n / 2 - z * math.sqrt(m * n * (m + n + 1) / 12))), 0)


def hodges_lehmann_ratio(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Interval:
    """Ratio a / b of two unpaired sets of block medians (two runs of a cell): exp of the
    Hodges-Lehmann shift of their logarithms (the median of every pairwise log ratio), with the
    interval that inverts the two-sided Mann-Whitney test (exact up to EXACT_RANKS pairs).

    Rank-based, so one silent outlier block (a disturbance /proc/stat did not see) moves neither the
    estimate nor the interval much; Welch's interval on logs widens and centres on it (asv compares
    runs with Mann-Whitney for the same reason)."""
    la, lb = np.log(positive_times(a, "a")), np.log(positive_times(b, "b"))
    pairs = np.sort((la[:, None] - lb[None, :]).ravel())
    estimate = math.exp(float(np.median(pairs)))
    n = int(min(la.size, lb.size))
    k = _rank_depth(la.size, lb.size, level)
    if k == 0:
        return Interval(estimate, None, None, n, level, "too few blocks for a rank interval")
    return Interval(
        estimate,
        math.exp(float(pairs[k - 1])),
        math.exp(float(pairs[pairs.size - k])),
        n,
        level,
        "hodges-lehmann shift of log block medians, mann-whitney interval",
    )


def unpaired_ratio(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Interval:
    """Ratio a / b of two runs' block medians: the rank interval when there are blocks enough for
    one at `level` (4 a side at 95 %), else Welch's interval on logs (3 blocks a side: wide)."""
    ranks = hodges_lehmann_ratio(a, b, level)
    return ranks if ranks.low is not None else welch_ratio(a, b, level)


def wilson_interval(fraction: float, n: int, level: float = LEVEL) -> Interval:
    """A proportion (a PCK over `n` test images) with Wilson's score interval, which stays inside
    [0, 1] and keeps its coverage near 0 and 1 where the normal interval does not."""
    if not 0 <= fraction <= 1 or n < 1:
        raise ValueError(f"need a fraction in [0, 1] and n >= 1, got {fraction}, {n}")
    z = float(scipy_stats.norm.ppf(0.5 + level / 2))
    centre = (fraction + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(fraction * (1 - fraction) / n + z * z / (4 * n * n))
    return Interval(fraction, max(centre - half, 0.0), min(centre + half, 1.0), n, level, "wilson score")


def newcombe_difference(a: Interval, b: Interval) -> Interval:
    """Difference a - b of two independent proportions from their Wilson intervals (Newcombe 1998,
    method 10): the interval a reviewer needs to see whether an accuracy moved."""
    if None in (a.estimate, a.low, a.high, b.estimate, b.low, b.high):
        raise ValueError("both proportions need an interval")
    pa, la, ha, pb, lb, hb = a.estimate, a.low, a.high, b.estimate, b.low, b.high  # type: ignore[misc]
    d = pa - pb
    return Interval(
        d,
        d - math.sqrt((pa - la) ** 2 + (hb - pb) ** 2),
        d + math.sqrt((ha - pa) ** 2 + (pb - lb) ** 2),
        min(a.n, b.n),
        a.level,
        "newcombe hybrid score",
    )


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], level: float = LEVEL) -> Interval:
    """Difference a - b (seconds) of block medians paired by round, with a paired t-interval."""
    rounds = sorted(set(a) & set(b))
    if not rounds:
        raise ValueError("the two arms share no round")
    d = np.array([a[r] - b[r] for r in rounds], dtype=np.float64)
    if d.size < 2:
        return Interval(float(d[0]), None, None, 1, level, "one round: no interval")
    half = t_half_width(d, level)
    return Interval(
        float(d.mean()),
        float(d.mean() - half),
        float(d.mean() + half),
        int(d.size),
        level,
        "paired student t on differences",
    )


# --- verdicts -----------------------------------------------------------------------------
def verdict(ratio: Interval, threshold: float = THRESHOLD) -> Verdict:
    """faster/slower when the ratio's interval excludes 1 and the ratio is beyond 1 +- threshold
    (multiplicatively: below 1 / (1 + threshold) or above 1 + threshold)."""
    if ratio.low is None or ratio.estimate is None:
        return Verdict.TOO_FEW_BLOCKS
    if ratio.excludes(1.0) and ratio.estimate > 1 + threshold:
        return Verdict.SLOWER
    if ratio.excludes(1.0) and ratio.estimate < 1 / (1 + threshold):
        return Verdict.FASTER
    return Verdict.NO_DIFFERENCE


@dataclass(frozen=True)
class Comparison:
    """Arm a against arm b over their shared, undisturbed rounds."""

    a: str
    b: str
    ratio: Interval  # time a / time b
    difference: Interval  # time a - time b, seconds
    verdict: Verdict
    rounds_used: tuple[int, ...]
    rounds_dropped: tuple[int, ...]  # a block of either arm in that round was disturbed


def series(records: Sequence[BlockRecord], name: str = "samples_s") -> list[BlockRecord]:
    """Stored blocks with their `name` series (core, loss or update times) as the samples that
    these rules read; blocks without that series are left out."""
    return [dataclasses.replace(r, samples_s=getattr(r, name)) for r in records if getattr(r, name)]


def block_medians(blocks: Sequence[Timed], arm: str) -> dict[int, float]:
    """An arm's block medians keyed by round (the final attempt of each)."""
    return {
        block.round: float(statistics.median(block.samples_s)) for block in final(blocks) if block.arm == arm
    }


def compare(
    blocks: Sequence[Timed], a: str, b: str, threshold: float = THRESHOLD, level: float = COMPARE_LEVEL
) -> Comparison:
    """Compare arms a and b of one group's blocks (final attempts); a round where either block is
    still disturbed by other processes after its retries is left out of both arms (pairing needs
    both); a block only noisy on its own counts."""
    blocks = final(blocks)
    ma, mb = block_medians(blocks, a), block_medians(blocks, b)
    disturbed = {block.round for block in blocks if block.arm in (a, b) and interfered(block.reasons)}
    shared = sorted(set(ma) & set(mb))
    used = tuple(r for r in shared if r not in disturbed)
    dropped = tuple(r for r in shared if r in disturbed)
    if not used:
        nothing = Interval(None, None, None, 0, level, "no usable round")
        return Comparison(a, b, nothing, nothing, Verdict.TOO_FEW_BLOCKS, used, dropped)
    ma, mb = {r: ma[r] for r in used}, {r: mb[r] for r in used}
    ratio = paired_ratio(ma, mb, level)
    return Comparison(a, b, ratio, paired_difference(ma, mb, level), verdict(ratio, threshold), used, dropped)


# --- the A/A control ----------------------------------------------------------------------
@dataclass(frozen=True)
class ControlSummary:
    """How often the verdict rule fired on the A/A comparisons (one per group)."""

    significant: tuple[bool, ...]  # per comparison: the rule called a difference between identical arms
    false_positives: int
    false_positive_rate: float | None  # over comparisons that had an interval; None if none had


def control_summary(verdicts: Sequence[Verdict]) -> ControlSummary:
    """`verdicts`: the rule's verdict on each A/A comparison."""
    significant = tuple(v in (Verdict.FASTER, Verdict.SLOWER) for v in verdicts)
    judged = sum(v is not Verdict.TOO_FEW_BLOCKS for v in verdicts)
    return ControlSummary(significant, sum(significant), sum(significant) / judged if judged else None)


# --- do a group's blocks agree? -----------------------------------------------------------
@dataclass(frozen=True)
class Agreement:
    """Kruskal-Wallis test of one cell's blocks: do they share one distribution of samples?"""

    cell: str
    p_value: float | None  # None: fewer than two blocks, or every sample identical
    disagree: bool


def block_agreement(blocks: Sequence[Timed], alpha: float = DISAGREEMENT_ALPHA) -> tuple[Agreement, ...]:
    """Per cell of one group: do its blocks differ by more than their within-block spread explains?

    Rank-based (Kruskal-Wallis), so one wild sample does not decide it; `alpha` is split over the
    group's cells (Bonferroni). A flagged group is not wrong (the block intervals already carry the
    between-block spread), but its blocks measured different machines in effect: say so.
    """
    blocks = final(blocks)
    cells = sorted({cell_of(block.arm) for block in blocks})
    found = []
    for cell in cells:
        samples = [block.samples_s for block in blocks if cell_of(block.arm) == cell]
        p: float | None = None
        if len(samples) >= 2 and len({s for block in samples for s in block}) > 1:
            p = float(scipy_stats.kruskal(*samples).pvalue)
        found.append(Agreement(cell, p, p is not None and p < alpha / len(cells)))
    return tuple(found)


# --- one group, start to finish -----------------------------------------------------------
@dataclass(frozen=True)
class GroupAnalysis:
    """Everything the report needs from one group's blocks (one device and batch size)."""

    comparisons: tuple[Comparison, ...]
    control: Comparison  # the control cell's twin arm against its own arm
    disagree: bool  # some cell's blocks disagree beyond their within-block spread (block_agreement)


def analyse_group(
    blocks: Sequence[Timed],
    pairs: Sequence[tuple[str, str]],
    control: str,
    threshold: float = THRESHOLD,
    level: float = COMPARE_LEVEL,
) -> GroupAnalysis:
    """The comparisons `pairs` (a, b: time a / time b), the A/A control of `control` and the
    between-block agreement of one group's blocks, all by the rules of this module (a cell's own
    time is deeppose.timing.cell_time's, recorded in its result)."""
    return GroupAnalysis(
        comparisons=tuple(compare(blocks, a, b, threshold, level) for a, b in pairs),
        control=compare(blocks, twin(control), control, threshold, level),
        disagree=any(found.disagree for found in block_agreement(blocks)),
    )


# --- printing precision -------------------------------------------------------------------
FLOAT_NOISE = 1e-12  # relative: a half-width this small is float64 rounding, not a measurement


@dataclass(frozen=True)
class Rounded:
    """A value and its half-width rounded to the half-width's `digits` significant digits."""

    value: float
    half_width: float
    decimals: int  # may be negative: 12340 +- 230 has decimals -1

    def _text(self, x: float) -> str:
        return f"{x:.{max(self.decimals, 0)}f}"

    @property
    def text(self) -> str:
        return self._text(self.value)

    def __str__(self) -> str:
        return f"{self._text(self.value)} ± {self._text(self.half_width)}"


def round_to_interval(value: float, half_width: float, digits: int = 2) -> Rounded:
    """Round `value` to the decimal place of the `digits`-th significant digit of `half_width`.

    A zero half-width (every block identical) supports no particular precision: the value keeps
    `digits` + 1 significant digits of its own. So does a half-width within float64's rounding of
    the value (a ratio of identical samples), which would otherwise print 17 decimals.
    """
    if not math.isfinite(value) or not math.isfinite(half_width) or half_width < 0:
        raise ValueError(f"need a finite value and half-width >= 0, got {value}, {half_width}")
    if digits < 1:
        raise ValueError(f"digits must be >= 1, got {digits}")
    if half_width <= FLOAT_NOISE * abs(value):
        half_width = 0.0
    scale = half_width if half_width > 0 else abs(value)
    if scale == 0:
        return Rounded(0.0, 0.0, 0)
    if half_width == 0:
        digits += 1
    decimals = digits - 1 - math.floor(math.log10(scale))
    if round(scale, decimals) >= 10 ** (digits - decimals):  # 0.0996 -> 0.10: one place fewer
        decimals -= 1
    return Rounded(round(value, decimals), round(half_width, decimals), decimals)


def format_interval(interval: Interval, scale: float = 1.0, unit: str = "") -> str:
    """'estimate [low, high] unit' to the precision of the interval (times `scale`, e.g. 1e3 for
    ms); an interval-less estimate keeps 2 significant digits and says so."""
    suffix = f" {unit}" if unit else ""
    if interval.estimate is None:
        return "n/a (no usable block)"
    if interval.half_width is None or interval.low is None or interval.high is None:
        return f"{interval.estimate * scale:.2g}{suffix} (no interval)"
    rounded = round_to_interval(interval.estimate * scale, interval.half_width * scale)
    low = round_to_interval(interval.low * scale, interval.half_width * scale)
    high = round_to_interval(interval.high * scale, interval.half_width * scale)
    return f"{rounded.text} [{low.text}, {high.text}]{suffix}"
