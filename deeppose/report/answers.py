"""The report's first screen: the study's questions, each answered with one of the four verdicts
(a share, which is no ratio, says whether its interval lies above or below 50 %), its interval and
the one caveat that limits it.

Computed from the findings of the sections (the answer is never computed twice): the loss alone
for the explicit backward, the paired core-process ratios for the frameworks, the per-layer
breakdown's replicates for the study's conclusion, the training runs for accuracy. Where the
design cannot support a verdict (one training run per arm), the answer is inconclusive and says
why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from deeppose import fmt
from deeppose.compare_stats import Interval, Verdict, format_interval
from deeppose.grid import REFERENCE
from deeppose.replicates import ONE_TRAJECTORY
from deeppose.report.device import Device
from deeppose.report.layer_replicates import ShareVerdict


@dataclass(frozen=True)
class Answer:
    """One line of the first screen."""

    question: str  # "loss backward", "framework", "layers", "accuracy"
    device: str
    subject: str  # what was measured, e.g. "Chainer / PyTorch core process, autograd, batch 8"
    verdict: Verdict | ShareVerdict  # ShareVerdict: a share, not a ratio (the layers question)
    interval: Interval | None  # the measured quantity with its interval; None where none exists
    scale: float  # printed as interval x scale ...
    unit: str  # ... in this unit
    single: float | None  # a number without an interval: two significant digits, "(single run)"
    caveat: str


def _loss(d: Device, train_batch: int) -> list[Answer]:
    """The study's question is the training iteration's time: the loss alone's difference as a share
    of the core process, at the group's margin; the loss's own verdict stays in the caveat."""
    found = []
    for e in d.loss_effects:
        if e.c is None:
            continue
        own = format_interval(e.c.difference, 1e6, "µs")
        found.append(
            Answer(
                "loss backward",
                d.device,
                f"{fmt.framework_name(e.framework)} explicit − autograd, loss alone, as a share of the "
                f"core process, batch {e.batch_size}",
                e.share_verdict or Verdict.INCONCLUSIVE,
                e.share,
                100.0,
                "%",
                None,
                f"divided by the low end of the autograd core time's interval; against the loss's own "
                f"time: {e.c.verdict.value}, {own}; whole training runs (one per arm) get no verdict",
            )
        )
    return found


def _frameworks(d: Device, train_batch: int) -> list[Answer]:
    found = []
    for r in d.ratios:
        framework, _, loss = r.a.partition("/")
        if loss != "autograd" or r.b != f"{REFERENCE}/autograd":
            continue
        batches = sorted({x.batch_size for x in d.ratios if x.a == r.a and x.b == r.b and x.batch_size})
        shown = train_batch if train_batch in batches else max(batches, default=None)
        if r.batch_size != shown:
            continue
        found.append(
            Answer(
                "framework",
                d.device,
                f"{fmt.framework_name(framework)} / PyTorch core process, autograd, batch {r.batch_size}",
                r.verdict,
                r.ratio,
                1.0,
                "",
                None,
                "on this machine only: the ratio depends on the CPU and its kernel libraries (Appendix)",
            )
        )
    return found


def _layers(d: Device, train_batch: int) -> list[Answer]:
    """The share of each framework's extra core time in convolutions, its interval from the
    replicated breakdown (both loss modes pooled); the breakdown's own ratio in the caveat."""
    return [
        Answer(
            "layers",
            d.device,
            f"share of {fmt.framework_name(c.framework)}'s extra core time in convolutions, the loss modes "
            f"pooled ({c.pairs} pairs of processes), batch {b.batch_size}",
            c.share_verdict,
            c.conv_share,
            100.0,
            "%",
            None,
            f"{fmt.framework_name(c.framework)} / PyTorch in the same profiled processes: {c.verdict.value}, "
            f"{format_interval(c.ratio)}",
        )
        for b in d.breakdown
        for c in b.comparisons
    ]


def _accuracy(d: Device, train_batch: int) -> list[Answer]:
    """Between seeds where both frameworks ran two distinct seeds or more; otherwise the first seed's
    networks' test-image interval, inconclusive, saying that training variability is not measured."""
    by_seed = {
        x.framework: x.between
        for x in d.seed_differences
        if x.metric == "pck" and x.loss == "autograd" and x.between.measured
    }
    found = [
        Answer(
            "accuracy",
            d.device,
            f"{fmt.framework_name(framework)} − PyTorch test PCK@0.2, autograd",
            between.verdict,
            between.interval,
            100.0,
            "points",
            None,
            f"between {between.seeds} seeds, paired by seed (same initial weights and batches), margin "
            f"± {100 * between.margin:.3g} points (timing.margin): the interval covers training, on "
            "this test set",
        )
        for framework, between in by_seed.items()
    ]
    return found + [
        Answer(
            "accuracy",
            d.device,
            f"{fmt.framework_name(x.framework)} − PyTorch test PCK@0.2, autograd",
            Verdict.INCONCLUSIVE,
            x.difference,
            100.0,
            "points",
            None,
            f"one training run per framework: {ONE_TRAJECTORY}, so no claim that the frameworks differ "
            "(the interval covers the test images only)",
        )
        for x in d.accuracy_differences
        if x.metric == "pck" and x.loss == "autograd" and x.framework not in by_seed
    ]


def answers(devices: Sequence[Device], train_batch: int) -> tuple[Answer, ...]:
    """The first screen's answers, question by question, device by device."""
    return tuple(
        answer
        for question in (_loss, _frameworks, _layers, _accuracy)
        for d in devices
        for answer in question(d, train_batch)
    )
