"""Training runs as replicates: which runs are distinct trajectories, and the between-seed interval
that a claim about two sets of training runs needs.

A training job runs train.seeds runs, one seed each (deeppose.train.run_seeds); run k of every
framework and loss mode starts from the same weights and sees the same batches, so two jobs' runs
pair by seed. One run per job measures one trajectory: float32 kernels of another framework, or of
another CPU, send it elsewhere after a few hundred iterations, so the difference of two single runs
says nothing about the frameworks or the code. Hence:

* runs whose iteration losses are bit-identical (`SeedRun.curve_sha256`: autograd and explicit runs
  of one framework can be) followed one trajectory and count as one replicate (`distinct`);
* with fewer than two distinct seeds on either side, `between_seeds` gives no interval and the
  verdict *inconclusive*, saying that training variability is not measured;
* from two on, a / b of the per-seed values (a ratio, paired Student t on log ratios by seed,
  deeppose.compare_stats.paired_ratio) or a - b (a difference, paired t by seed), judged by the
  four verdicts at the margin (deeppose.verdicts.classify; a difference d is read as the ratio 1 + d).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from deeppose.compare_stats import LEVEL, Interval, Verdict, paired_difference, paired_ratio
from deeppose.records.training import SeedRun
from deeppose.verdicts import classify

ONE_TRAJECTORY = "training variability is not measured"  # fewer than two distinct seeds
# The four verdicts read as a measurement that is higher or lower, not slower or faster.
WORDS = {
    Verdict.SLOWER: "higher",
    Verdict.FASTER: "lower",
    Verdict.EQUIVALENT: "equivalent",
    Verdict.INCONCLUSIVE: "inconclusive",
}


@dataclass(frozen=True)
class BetweenSeeds:
    """a against b over the seeds both have, each seed one replicate."""

    interval: Interval  # a / b (ratio) or a - b (difference); no bounds below two seeds
    verdict: Verdict
    seeds: int  # distinct seeds both sides have
    margin: float  # the verdict's (classify): a ratio within 1 +- margin is equivalent, and so is a
    # difference d whose 1 + d is

    @property
    def word(self) -> str:
        return WORDS[self.verdict]

    @property
    def measured(self) -> bool:
        """Whether training variability is measured: two distinct seeds or more."""
        return self.seeds >= 2


def distinct(runs: Sequence[SeedRun]) -> list[SeedRun]:
    """`runs` less every run whose curve repeats an earlier one's bit for bit (an unknown curve,
    None, is its own)."""
    seen: set[str] = set()
    kept = []
    for run in runs:
        if run.curve_sha256 is None or run.curve_sha256 not in seen:
            kept.append(run)
        if run.curve_sha256 is not None:
            seen.add(run.curve_sha256)
    return kept


def identical(a: Sequence[SeedRun], b: Sequence[SeedRun]) -> bool:
    """Whether two jobs' runs are the same trajectories, seed by seed (one replicate each, not two)."""
    hashes = [r.curve_sha256 for r in a]
    return bool(a) and None not in hashes and hashes == [r.curve_sha256 for r in b]


def per_seed(runs: Sequence[SeedRun], metric: str) -> dict[int, float]:
    """Seed -> a distinct run's value of `metric` ("train_loss": the final training loss; a test
    score: "loss", "pcp", "pdj", "pck"); runs without that score are left out."""
    found = {}
    for run in distinct(runs):
        value = run.final_train_loss if metric == "train_loss" else getattr(run.final_test, metric)
        if value is not None:
            found[run.seed] = float(value)
    return found


def between_seeds(
    a: Mapping[int, float], b: Mapping[int, float], margin: float, ratio: bool, level: float = LEVEL
) -> BetweenSeeds:
    """a against b (seed -> value, from `per_seed`), paired by seed; see the module docstring."""
    seeds = sorted(set(a) & set(b))
    a, b = {s: a[s] for s in seeds}, {s: b[s] for s in seeds}
    if len(seeds) < 2:
        estimate = None
        if seeds:
            x, y = a[seeds[0]], b[seeds[0]]
            estimate = x / y if ratio and y else None if ratio else x - y
        return BetweenSeeds(
            Interval(estimate, None, None, len(seeds), level, f"one seed: {ONE_TRAJECTORY}"),
            Verdict.INCONCLUSIVE,
            len(seeds),
            margin,
        )
    if ratio:
        interval = paired_ratio(a, b, level)
        verdict = classify(interval.low, interval.high, margin)
        method = "paired student t on log ratios, by seed"
    else:
        interval = paired_difference(a, b, level)
        verdict = classify(1 + interval.low, 1 + interval.high, margin)  # type: ignore[operator]
        method = "paired student t on differences, by seed"
    return BetweenSeeds(
        Interval(interval.estimate, interval.low, interval.high, len(seeds), level, method),
        verdict,
        len(seeds),
        margin,
    )
