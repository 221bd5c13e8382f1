"""The four verdicts of a ratio of two times, and the interval level that keeps them honest when
a group looks at its data more than once.

A ratio a / b with interval [low, high] and an equivalence margin m (timing.margin) is:

* *slower* when the whole interval lies above 1 + m, *faster* when it lies below 1 / (1 + m):
  a difference larger than the margin, on that side;
* *equivalent* when the whole interval lies inside [1 / (1 + m), 1 + m] (two one-sided tests,
  TOST: a 90 % interval gives each side 5 %);
* *inconclusive* otherwise, or when there is no interval at all. "We could not tell" is never
  read as equality.

Because slower/faster and equivalent need disjoint intervals, two runs can disagree only by one
of them being inconclusive, unless an interval misses the truth: a reversal or slower against
equivalent is then a contradiction worth reporting.

The timing stage adds rounds while a comparison is inconclusive (deeppose.timing), so each group
looks at its comparisons up to `max_rounds - first_rounds + 1` times. `sequential_level` widens
the interval at every look so that the chance of any false decision over all looks stays what a
single look at `level` would give (Pocock's constant boundary, found by simulating the looks'
normal statistics with a fixed seed).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from enum import Enum

import numpy as np
from scipy import stats as scipy_stats

from deeppose.stats import positive_times, t_half_width

DECISION_LEVEL = 0.90  # the interval verdicts read: 5 % per side (TOST's usual choice)
POCOCK_DRAWS = 200_000  # simulated sequences for the boundary; its Monte Carlo error is < 0.002 in z


class Verdict(str, Enum):
    """How time a compares to time b, given an interval of a / b and a margin."""

    SLOWER = "slower"
    FASTER = "faster"
    EQUIVALENT = "equivalent"
    INCONCLUSIVE = "inconclusive"

    @property
    def decided(self) -> bool:
        return self is not Verdict.INCONCLUSIVE


def classify(low: float | None, high: float | None, margin: float) -> Verdict:
    """The verdict of an interval [low, high] of a ratio (see the module docstring)."""
    if not margin > 0:
        raise ValueError(f"the margin must be > 0, got {margin}")
    if low is None or high is None:
        return Verdict.INCONCLUSIVE
    upper, lower = 1 + margin, 1 / (1 + margin)
    if low > upper:
        return Verdict.SLOWER
    if high < lower:
        return Verdict.FASTER
    if lower <= low and high <= upper:
        return Verdict.EQUIVALENT
    return Verdict.INCONCLUSIVE


def paired_log_ratio(
    a: Mapping[int, float], b: Mapping[int, float], level: float
) -> tuple[float | None, float | None, float | None]:
    """Ratio a / b of two arms' times paired by key (round): exp of the mean log ratio, with the
    paired Student-t interval of that mean at `level`; (None, None, None) without a shared key,
    no interval from one."""
    keys = sorted(set(a) & set(b))
    if not keys:
        return None, None, None
    d = np.log(positive_times([a[k] for k in keys], "a")) - np.log(positive_times([b[k] for k in keys], "b"))
    centre = float(d.mean())
    if d.size < 2:
        return math.exp(centre), None, None
    half = t_half_width(d, level)
    return math.exp(centre), math.exp(centre - half), math.exp(centre + half)


@functools.lru_cache(maxsize=64)
def sequential_level(first_rounds: int, max_rounds: int, level: float = DECISION_LEVEL) -> float:
    """The two-sided level of each look's interval when a group looks after `first_rounds`
    rounds and again after every added round up to `max_rounds`: Pocock's boundary c, with
    P(|Z_n| > c at some look) = 1 - level for the partial-sum statistics Z_n of independent
    rounds, as a level 2 Phi(c) - 1. One look: `level` itself."""
    if not 2 <= first_rounds <= max_rounds:
        raise ValueError(f"need 2 <= first_rounds <= max_rounds, got {first_rounds}, {max_rounds}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if first_rounds == max_rounds:
        return level
    rng = np.random.Generator(np.random.PCG64(0))
    sums = np.cumsum(rng.standard_normal((POCOCK_DRAWS, max_rounds)), axis=1)
    looks = np.arange(first_rounds, max_rounds + 1)
    z = np.abs(sums[:, looks - 1]) / np.sqrt(looks)
    c = float(np.quantile(z.max(axis=1), level))
    return 2 * float(scipy_stats.norm.cdf(c)) - 1


def minimum_detectable_ratio(
    sd_log: float, rounds: int, margin: float, level: float, power: float = 0.8
) -> float | None:
    """The smallest true ratio a / b that a paired comparison of `rounds` rounds, with per-round
    log-ratio standard deviation `sd_log`, calls slower with probability `power` under `classify`
    (its interval must clear 1 + margin): (1 + margin) exp((t_level + t_power) sd / sqrt(n)).
    None below two rounds."""
    if rounds < 2 or not math.isfinite(sd_log) or sd_log < 0:
        return None
    df = rounds - 1
    t_side = float(scipy_stats.t.ppf(0.5 + level / 2, df))
    t_power = float(scipy_stats.t.ppf(power, df))
    return (1 + margin) * math.exp((t_side + t_power) * sd_log / math.sqrt(rounds))
