"""Statistics over blocks: a cell's time, comparisons of two arms, verdicts, the controls and
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
* `verdict` gives one of the four verdicts of deeppose.verdicts (slower, faster, equivalent,
  inconclusive) from the interval and the equivalence margin. A comparison's interval is at the
  level its record's design states (`TimingDesign.decision_level`, Pocock-corrected when the
  timing stage looked more than once) and its margin is the record's (`TimingDesign.margin`);
* the controls go through the very same rule: every A/A pair (a cell's twin against the cell)
  should never be called slower or faster (`control_summary` counts the false verdicts, with a
  Clopper-Pearson interval), and the positive control (the cell with a planted slowdown against
  the cell) should be called slower;
* each group states the smallest ratio it could have detected, from its own noise: the pooled
  standard deviation of its comparisons' per-round log ratios (`GroupAnalysis.sd_log`,
  deeppose.verdicts.minimum_detectable_ratio).

The rule changed from "the interval excludes 1 and the ratio is beyond a 5 % threshold" to the
four verdicts against a margin. The simulation that chose the old rule's design (tests/test_blocks.py:
a machine with a slow trend, a random walk of speed, a per-process effect, outlier blocks and sample
spikes) assumed 3 % per-process noise, far less than this kind of host shows (A/A log-ratio SD
0.14-0.22 per round, DESIGN.md section 8); it is being recalibrated on the measured noise, so no
false-positive rate or power is quoted here. `SIMULATED_ROUNDS` and `SIMULATED_REPEATS` are the
design its tests run, not the pipeline's. The controls of every run are the check on the real
machine.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

from deeppose.measure.blocks import PLANTED, Timed, cell_of, final, paired, planted, twin
from deeppose.records.timing import BlockRecord
from deeppose.stats import LEVEL, Interval, positive_times, t_half_width
from deeppose.verdicts import DECISION_LEVEL, Verdict, classify, minimum_detectable_ratio, paired_log_ratio

__all__ = ["DECISION_LEVEL", "LEVEL", "Interval", "Verdict"]  # re-exported for compare and the report

# The design the old rule's simulation chose and the tests' simulated groups run (tests/test_blocks.py,
# tests/simulated_machine.py). Not the pipeline's: params.yaml's timing.blocks and timing.repeats set
# those, and nothing here reads them.
SIMULATED_ROUNDS = 8  # blocks per cell, each round one block of every arm
SIMULATED_REPEATS = 6  # timed samples per block
DISAGREEMENT_ALPHA = 0.01  # between-block test of one group, Bonferroni-split over its cells
CONTROL_LEVEL = 0.95  # the Clopper-Pearson interval of the A/A false-verdict rate
BOOTSTRAP_RESAMPLES = 9999
INTERVAL_METHODS = ("t", "bca")


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
        _, low, high = paired_log_ratio(a, b, level)  # the timing stage's stopping rule reads the same
        low, high = math.log(low), math.log(high)  # type: ignore[arg-type]
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
def verdict(ratio: Interval, margin: float) -> Verdict:
    """The four-valued verdict of a ratio's interval against the equivalence margin
    (deeppose.verdicts.classify): no interval is inconclusive."""
    return classify(ratio.low, ratio.high, margin)


@dataclass(frozen=True)
class Comparison:
    """Arm a against arm b over their shared, undisturbed rounds."""

    a: str
    b: str
    ratio: Interval  # time a / time b, at the level the verdict reads
    difference: Interval  # time a - time b, seconds
    verdict: Verdict
    rounds_used: tuple[int, ...]
    rounds_dropped: tuple[int, ...]  # a block of either arm in that round was disturbed
    log_ratios: tuple[float, ...] = ()  # log(a / b) per used round: the noise a group pools


def series(records: Sequence[BlockRecord], name: str = "samples_s") -> list[BlockRecord]:
    """Stored blocks with their `name` series (core, loss or update times) as the samples that
    these rules read; blocks without that series are left out."""
    return [dataclasses.replace(r, samples_s=getattr(r, name)) for r in records if getattr(r, name)]


def compare(blocks: Sequence[Timed], a: str, b: str, margin: float, level: float) -> Comparison:
    """Compare arms a and b of one group's blocks (final attempts) at the interval `level` and the
    equivalence `margin` of the group's design (TimingDesign.decision_level and .margin); a round
    where either block is still disturbed by other processes after its retries is left out of both
    arms (pairing needs both); a block only noisy on its own counts."""
    both = paired(blocks, a, b)
    used, dropped, ma, mb = both.used, both.dropped, both.a, both.b
    if not used:
        nothing = Interval(None, None, None, 0, level, "no usable round")
        return Comparison(a, b, nothing, nothing, Verdict.INCONCLUSIVE, used, dropped)
    ratio = paired_ratio(ma, mb, level)
    logs = tuple(float(x) for x in _paired_logs(ma, mb))
    difference = paired_difference(ma, mb, level)
    return Comparison(a, b, ratio, difference, verdict(ratio, margin), used, dropped, logs)


# --- the controls -------------------------------------------------------------------------
def clopper_pearson(k: int, n: int, level: float = CONTROL_LEVEL) -> Interval:
    """k events in n trials as a proportion with its exact (Clopper-Pearson) interval; None
    bounds when n is 0."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got {k}, {n}")
    if n == 0:
        return Interval(None, None, None, 0, level, "no trial")
    ci = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return Interval(k / n, float(ci.low), float(ci.high), n, level, "clopper-pearson")


@dataclass(frozen=True)
class ControlSummary:
    """How often the verdict rule called identical arms different (the A/A pairs)."""

    false: tuple[bool, ...]  # per pair: called slower or faster, though both arms are one cell
    false_verdicts: int
    judged: int  # pairs with an interval (the others cannot be called anything but inconclusive)
    rate: Interval  # false_verdicts / judged, Clopper-Pearson


def control_summary(pairs: Sequence[Comparison], level: float = CONTROL_LEVEL) -> ControlSummary:
    """`pairs`: each A/A comparison (twin against cell) under the rule."""
    false = tuple(c.verdict in (Verdict.SLOWER, Verdict.FASTER) for c in pairs)
    judged = sum(c.ratio.low is not None for c in pairs)
    return ControlSummary(false, sum(false), judged, clopper_pearson(sum(false), judged, level))


def pooled_sd(comparisons: Sequence[Comparison]) -> tuple[float | None, int]:
    """The pooled standard deviation of the comparisons' per-round log ratios (each about its own
    mean: the ratios differ, their noise is what is pooled), and its degrees of freedom."""
    df = sum(len(c.log_ratios) - 1 for c in comparisons if len(c.log_ratios) > 1)
    if df == 0:
        return None, 0
    squares = sum(
        float(np.var(c.log_ratios, ddof=1)) * (len(c.log_ratios) - 1)
        for c in comparisons
        if len(c.log_ratios) > 1
    )
    return math.sqrt(squares / df), df


# --- do a group's blocks agree? -----------------------------------------------------------
@dataclass(frozen=True)
class Agreement:
    """Kruskal-Wallis test of one cell's blocks: do they share one distribution of samples?"""

    cell: str
    p_value: float | None  # None: fewer than two blocks, or every sample identical
    smallest_p: float | None  # the smallest p the test can give at these block sizes
    alpha: float  # the level this cell is tested at (DISAGREEMENT_ALPHA over the group's cells)
    disagree: bool | None  # None: n/a, the test cannot reach `alpha` at these sizes


def smallest_kruskal_p(sizes: Sequence[int]) -> float | None:
    """The smallest p-value scipy.stats.kruskal (chi-square approximation, no ties) can return for
    groups of these sizes: its H is largest when the groups hold consecutive runs of ranks (the
    order of unequal groups tried over every permutation up to 6 groups, largest first beyond)."""
    sizes = [n for n in sizes if n > 0]
    if len(sizes) < 2:
        return None
    total = sum(sizes)
    orders = itertools.permutations(sizes) if len(sizes) <= 6 else [sorted(sizes, reverse=True)]
    best = 0.0
    for order in orders:
        start, h = 0, 0.0
        for n in order:
            rank_sum = n * (start + 1 + start + n) / 2
            h += rank_sum**2 / n
            start += n
        best = max(best, 12 / (total * (total + 1)) * h - 3 * (total + 1))
    return float(scipy_stats.chi2.sf(best, len(sizes) - 1))


def block_agreement(blocks: Sequence[Timed], alpha: float = DISAGREEMENT_ALPHA) -> tuple[Agreement, ...]:
    """Per cell of one group: do its blocks differ by more than their within-block spread explains?

    Rank-based (Kruskal-Wallis), so one wild sample does not decide it; `alpha` is split over the
    group's cells (Bonferroni). A cell's own blocks and its A/A twin's count; the positive control's
    (a planted slowdown) do not. When even perfectly separated blocks could not reach the split
    alpha at these sizes (3 blocks of 3 samples: p >= 0.027), the answer is n/a (None), not a
    guaranteed "no". A flagged group is not wrong (the block intervals already carry the
    between-block spread), but its blocks measured different machines in effect: say so.
    """
    blocks = [block for block in final(blocks) if not block.arm.endswith(f"#{PLANTED}")]
    cells = sorted({cell_of(block.arm) for block in blocks})
    found = []
    for cell in cells:
        samples = [block.samples_s for block in blocks if cell_of(block.arm) == cell]
        each = alpha / len(cells)
        smallest = smallest_kruskal_p([len(s) for s in samples])
        p: float | None = None
        if len(samples) >= 2 and len({s for block in samples for s in block}) > 1:
            p = float(scipy_stats.kruskal(*samples).pvalue)
        testable = smallest is not None and smallest < each
        found.append(Agreement(cell, p, smallest, each, (p is not None and p < each) if testable else None))
    return tuple(found)


def any_disagree(agreements: Sequence[Agreement]) -> bool | None:
    """True when some cell's blocks disagree; None when no cell could be tested (n/a)."""
    tested = [found.disagree for found in agreements if found.disagree is not None]
    return any(tested) if tested else None


# --- one group, start to finish -----------------------------------------------------------
@dataclass(frozen=True)
class GroupAnalysis:
    """Everything the report needs from one group's blocks (one device and batch size)."""

    comparisons: tuple[Comparison, ...]
    controls: tuple[Comparison, ...]  # each A/A pair: the control cell's twin against the cell
    planted: Comparison | None  # the positive control: the planted arm against its cell
    disagree: bool | None  # some cell's blocks disagree beyond their spread; None: the test cannot fire
    sd_log: float | None  # pooled SD of the comparisons' per-round log ratios
    rounds: int  # rounds the comparisons used (the most any did)
    detectable: float | None  # the smallest ratio called slower with 80 % power at this noise


def analyse_group(
    blocks: Sequence[Timed],
    pairs: Sequence[tuple[str, str]],
    controls: Sequence[str],
    planted_cell: str | None,
    margin: float,
    level: float,
) -> GroupAnalysis:
    """The comparisons `pairs` (a, b: time a / time b), the A/A pair of every cell in `controls`,
    the positive control of `planted_cell`, the between-block agreement and the group's noise and
    minimum detectable ratio, all at the group's `margin` and `level` (its TimingDesign). A cell's
    own time is deeppose.timing.cell_time's, recorded in its result."""
    comparisons = tuple(compare(blocks, a, b, margin, level) for a, b in pairs)
    sd, _ = pooled_sd(comparisons)
    rounds = max((len(c.rounds_used) for c in comparisons), default=0)
    return GroupAnalysis(
        comparisons=comparisons,
        controls=tuple(compare(blocks, twin(cell), cell, margin, level) for cell in controls),
        planted=compare(blocks, planted(planted_cell), planted_cell, margin, level) if planted_cell else None,
        disagree=any_disagree(block_agreement(blocks)),
        sd_log=sd,
        rounds=rounds,
        detectable=None if sd is None else minimum_detectable_ratio(sd, rounds, margin, level),
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
