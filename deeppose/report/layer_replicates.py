"""The per-layer breakdown's replicates: intervals on layer times, shares and the frameworks' ratio.

Every arm ran `breakdown.processes` fresh processes in interleaved rounds. The loss does not change
the layers, so a framework's processes of both loss modes are its replicates, each paired with
PyTorch's of the same loss mode and round. The convolutions "explain most of the difference" only
when the interval of their share of the extra core time lies above 50 %.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from deeppose import layer_groups
from deeppose.stats import Interval, cell_estimate, t_mean_ci
from deeppose.verdicts import DECISION_LEVEL, Verdict, classify, paired_log_ratio

MOST = 0.5  # "most of the difference": the share's whole interval above it
ELEMENTWISE = ("relu", "pool", "lrn", "dropout", "loss", "other")
PARTS = {"conv": layer_groups.CONV_LAYERS, "fc": layer_groups.FC_LAYERS, "elementwise": ELEMENTWISE}
ROWS = (*layer_groups.CONV_LAYERS, *layer_groups.FC_LAYERS, "elementwise", "overhead", "core")


class ShareVerdict(str, Enum):
    """What the share of a framework's extra time in convolutions says of the study's conclusion."""

    MOST = "the convolutions explain most of the difference"
    LESS = "the convolutions explain less than half of the difference"
    INCONCLUSIVE = "inconclusive"
    CANNOT_TEST = "cannot test"  # not slower in every pair, or fewer than two pairs


@dataclass(frozen=True)
class Replicate:
    """One process of one arm: its core time, overhead and per-layer medians (both phases)."""

    loss: str
    round: int
    core_s: float
    overhead_s: float
    layers_s: Mapping[str, float]  # layer -> forward + backward, median over the process's repeats

    def time(self, row: str) -> float:
        """A row of the tables: one layer, the element-wise layers together, the overhead or the core."""
        if row == "core":
            return self.core_s
        if row == "overhead":
            return self.overhead_s
        return sum(self.layers_s.get(name, 0.0) for name in PARTS.get(row, (row,)))


@dataclass(frozen=True)
class LayerRow:
    row: str
    reference: Interval
    other: Interval
    ratio: Interval
    share: Interval | None  # None where the framework is not slower in every pair


@dataclass(frozen=True)
class LossAgreement:
    """One framework and loss mode: the replicates the loss modes are for the layers."""

    framework: str
    loss: str
    core: Interval
    conv_of_core: Interval  # the convolutions' share of the core time
    ratio: Interval | None  # <framework> / PyTorch in this loss mode; None for PyTorch
    verdict: Verdict | None


@dataclass(frozen=True)
class LossModes:
    """One framework's explicit / autograd core time, paired by round: replicates that should agree."""

    framework: str
    ratio: Interval
    verdict: Verdict


@dataclass(frozen=True)
class ReplicatedComparison:
    """<framework> against PyTorch at one batch size, the loss modes pooled."""

    framework: str
    pairs: int
    ratio: Interval
    verdict: Verdict
    rows: tuple[LayerRow, ...]  # ROWS' order
    shares: Mapping[str, Interval | None]  # conv, fc, elementwise, overhead: of the extra core time
    share_verdict: ShareVerdict  # of the convolutions' share

    @property
    def conv_share(self) -> Interval | None:
        return self.shares["conv"]

    @property
    def most_different(self) -> LayerRow:
        """The layer whose time differs most between the frameworks, by its paired ratio's estimate."""
        layers = [r for r in self.rows if r.row in (*layer_groups.CONV_LAYERS, *layer_groups.FC_LAYERS)]
        return max(layers, key=lambda r: abs(np.log(r.ratio.estimate or 1.0)))


def time_interval(values: Sequence[float], level: float = DECISION_LEVEL) -> Interval:
    """The median with the t-interval of the logs; the mean where a time is not positive (an overhead)."""
    x = np.asarray(values, dtype=np.float64)
    if np.all(x > 0):
        return cell_estimate(list(x), level)
    return mean_interval(x, level, "student t on the replicates")


def mean_interval(x: np.ndarray, level: float, method: str) -> Interval:
    if x.size < 2:
        return Interval(float(x.mean()), None, None, int(x.size), level, "one replicate: no interval")
    low, high = t_mean_ci(x, level)
    return Interval(float(x.mean()), low, high, int(x.size), level, method)


def paired_ratio(a: Mapping[Any, float], b: Mapping[Any, float]) -> Interval:
    estimate, low, high = paired_log_ratio(a, b, DECISION_LEVEL)
    n = len(set(a) & set(b))
    return Interval(estimate, low, high, n, DECISION_LEVEL, "paired t on log ratios of replicates")


def share_interval(parts: Sequence[float], extras: Sequence[float]) -> Interval | None:
    """The mean per-pair share with its t-interval; None unless every pair's extra time is positive."""
    extra = np.asarray(extras, dtype=np.float64)
    if extra.size == 0 or np.any(extra <= 0):
        return None
    return mean_interval(np.asarray(parts) / extra, DECISION_LEVEL, "student t on per-pair shares")


def share_verdict(share: Interval | None) -> ShareVerdict:
    if share is None:
        return ShareVerdict.CANNOT_TEST
    if share.low is None or share.high is None:
        return ShareVerdict.INCONCLUSIVE
    return (
        ShareVerdict.MOST
        if share.low > MOST
        else ShareVerdict.LESS
        if share.high < MOST
        else ShareVerdict.INCONCLUSIVE
    )


def _keyed(replicates: Sequence[Replicate], row: str) -> dict[tuple[str, int], float]:
    return {(r.loss, r.round): r.time(row) for r in replicates}


def compare(
    framework: str, reference: Sequence[Replicate], other: Sequence[Replicate], margin: float
) -> ReplicatedComparison:
    """<framework> (`other`) against PyTorch (`reference`), pairs by (loss mode, round)."""
    ref = {(r.loss, r.round): r for r in reference}
    pairs = [(ref[r.loss, r.round], r) for r in other if (r.loss, r.round) in ref]
    extras = [o.core_s - p.core_s for p, o in pairs]
    rows = tuple(
        LayerRow(
            row,
            time_interval([p.time(row) for p, _ in pairs]),
            time_interval([o.time(row) for _, o in pairs]),
            paired_ratio(_keyed([o for _, o in pairs], row), _keyed([p for p, _ in pairs], row))
            if all(p.time(row) > 0 and o.time(row) > 0 for p, o in pairs)
            else Interval(None, None, None, 0, DECISION_LEVEL, "a time not positive: no ratio"),
            share_interval([o.time(row) - p.time(row) for p, o in pairs], extras),
        )
        for row in ROWS
    )
    ratio = next(r.ratio for r in rows if r.row == "core")
    shares = {
        part: share_interval([o.time(part) - p.time(part) for p, o in pairs], extras)
        for part in (*PARTS, "overhead")
    }
    verdict = classify(ratio.low, ratio.high, margin)
    return ReplicatedComparison(
        framework, len(pairs), ratio, verdict, rows, shares, share_verdict(shares["conv"])
    )


def agreement(
    framework: str, loss: str, own: Sequence[Replicate], reference: Sequence[Replicate] | None, margin: float
) -> LossAgreement:
    """`reference`: PyTorch's replicates of the loss mode (None for PyTorch itself)."""
    ratio = paired_ratio(_keyed(own, "core"), _keyed(reference, "core")) if reference is not None else None
    conv = np.array([r.time("conv") / r.core_s for r in own])
    conv_share = mean_interval(conv, DECISION_LEVEL, "student t on the replicates")
    verdict = classify(ratio.low, ratio.high, margin) if ratio is not None else None
    return LossAgreement(framework, loss, time_interval([r.core_s for r in own]), conv_share, ratio, verdict)


def loss_mode_ratio(
    framework: str, autograd: Sequence[Replicate], explicit: Sequence[Replicate], margin: float
) -> LossModes:
    """<framework>'s explicit / autograd core time, its processes paired by round."""
    ratio = paired_ratio({r.round: r.core_s for r in explicit}, {r.round: r.core_s for r in autograd})
    return LossModes(framework, ratio, classify(ratio.low, ratio.high, margin))
