"""The report's first screen: the study's questions, each answered with one of the four verdicts
(a share says whether its interval lies above or below 50 %), its interval and the one caveat that
limits it, taken from the sections' findings so that no answer is computed twice."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from deeppose.compare_stats import Interval, Verdict, format_interval
from deeppose.fmt import framework_name as name
from deeppose.grid import REFERENCE
from deeppose.replicates import ONE_TRAJECTORY
from deeppose.report.device import Device
from deeppose.report.layer_replicates import ShareVerdict


@dataclass(frozen=True)
class Answer:
    question: str  # "loss backward", "framework", "layers", "accuracy"
    device: str
    subject: str  # what was measured, e.g. "Chainer / PyTorch core process, autograd, batch 8"
    verdict: Verdict | ShareVerdict  # ShareVerdict: a share, not a ratio (the layers question)
    interval: Interval | None  # None where none exists
    scale: float = 100.0  # printed as interval x scale in unit
    unit: str = "%"
    caveat: str = ""


def _loss(d: Device, train_batch: int) -> list[Answer]:
    """The study asked about the training time: the loss alone's difference as a share of the core process."""
    found = []
    for e in (e for e in d.loss_effects if e.c is not None):
        subject = f"{name(e.framework)} explicit − autograd, loss alone, as a share of the core process"
        own = f"{e.c.verdict.value}, {format_interval(e.c.difference, 1e6, 'µs')}"
        caveat = (
            "divided by the low end of the autograd core time's interval; against the loss's own time: "
            f"{own}; whole training runs (one per arm) get no verdict"
        )
        verdict = e.share_verdict or Verdict.INCONCLUSIVE
        found.append(
            Answer(
                "loss backward", d.device, f"{subject}, batch {e.batch_size}", verdict, e.share, caveat=caveat
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
        if r.batch_size == (train_batch if train_batch in batches else max(batches, default=None)):
            subject = f"{name(framework)} / PyTorch core process, autograd, batch {r.batch_size}"
            caveat = "on this machine only: the ratio depends on the CPU and its kernel libraries (Appendix)"
            found.append(Answer("framework", d.device, subject, r.verdict, r.ratio, 1.0, "", caveat))
    return found


def _layers(d: Device, train_batch: int) -> list[Answer]:
    """The convolutions' share of each framework's extra core time, from the replicated breakdown."""
    found = []
    for b, c in ((b, c) for b in d.breakdown for c in b.comparisons):
        subject = f"share of {name(c.framework)}'s extra core time in convolutions, the loss modes pooled "
        subject += f"({c.pairs} pairs of processes), batch {b.batch_size}"
        caveat = f"{name(c.framework)} / PyTorch in the same profiled processes: {c.verdict.value}, "
        caveat += format_interval(c.ratio)
        found.append(Answer("layers", d.device, subject, c.share_verdict, c.conv_share, caveat=caveat))
    return found


def _accuracy(d: Device, train_batch: int) -> list[Answer]:
    """Between seeds where both frameworks ran two distinct seeds or more; otherwise the test-image
    interval of one run each, inconclusive: training variability is not measured."""
    pck = [x for x in d.seed_differences if x.metric == "pck" and x.loss == "autograd" and x.between.measured]
    by_seed = {x.framework: x.between for x in pck}
    subject = "{} − PyTorch test PCK@0.2, autograd"
    found = []
    for framework, between in by_seed.items():
        caveat = (
            f"between {between.seeds} seeds, paired by seed (same initial weights and batches), margin "
            f"± {100 * between.margin:.3g} points (timing.margin): the interval covers training, on this "
            "test set"
        )
        what = subject.format(name(framework))
        found.append(
            Answer(
                "accuracy", d.device, what, between.verdict, between.interval, unit="points", caveat=caveat
            )
        )
    caveat = (
        f"one training run per framework: {ONE_TRAJECTORY}, so no claim that the frameworks differ "
        "(the interval covers the test images only)"
    )
    for x in d.accuracy_differences:
        if x.metric == "pck" and x.loss == "autograd" and x.framework not in by_seed:
            what, undecided = subject.format(name(x.framework)), Verdict.INCONCLUSIVE
            found.append(
                Answer("accuracy", d.device, what, undecided, x.difference, unit="points", caveat=caveat)
            )
    return found


def answers(devices: Sequence[Device], train_batch: int) -> tuple[Answer, ...]:
    """The first screen's answers, question by question, device by device."""
    questions = (_loss, _frameworks, _layers, _accuracy)
    return tuple(answer for question in questions for d in devices for answer in question(d, train_batch))
