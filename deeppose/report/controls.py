"""The timing's controls and noise: whether the verdict rule behaved where the truth is known (A/A
pairs must never be called slower or faster; a planted slowdown must be called slower; explicit /
autograd pairs are near-A/A), and what each group could detect."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from deeppose.compare_stats import Comparison, GroupAnalysis, Interval, Verdict, control_summary
from deeppose.records.timing import TimingDesign

EXPLICIT, AUTOGRAD = "explicit", "autograd"


@dataclass(frozen=True)
class Ratio:
    batch_size: int | None
    a: str
    b: str
    ratio: Interval  # time a / time b
    difference: Interval | None  # time a - time b, seconds: kept where the report states it (the loss alone)
    verdict: Verdict
    rounds: int  # undisturbed rounds both arms share


def ratio(batch_size: int | None, c: Comparison, difference: bool = False) -> Ratio:
    kept = c.difference if difference else None
    return Ratio(batch_size, c.a, c.b, c.ratio, kept, c.verdict, len(c.rounds_used))


@dataclass(frozen=True)
class GroupNoise:
    batch_size: int
    pairing: str  # how a round's arms ran (TimingDesign.pairing)
    rounds: int  # rounds its comparisons used (the most any did)
    looks: int  # times the stopping rule looked
    margin: float
    level: float  # the level of each look's interval (TimingDesign.decision_level)
    sd_log: float | None  # pooled SD of its comparisons' per-round log ratios
    detectable: float | None  # the smallest ratio called slower with 80 % power
    disagree: bool | None  # a cell's blocks disagree beyond their spread; None: the test cannot fire


def group_noise(batch_size: int, analysis: GroupAnalysis, design: TimingDesign) -> GroupNoise:
    return GroupNoise(
        batch_size,
        design.pairing,
        analysis.rounds,
        design.looks,
        design.margin,
        design.decision_level,
        analysis.sd_log,
        analysis.detectable,
        analysis.disagree,
    )


@dataclass(frozen=True)
class AAPair:
    framework: str
    loss: str
    device: str
    batch_size: int | None
    ratio: Interval  # twin / cell
    verdict: Verdict
    false: bool  # called slower or faster: a false verdict
    rounds: int  # undisturbed rounds both arms share


@dataclass(frozen=True)
class Planted:
    framework: str
    loss: str
    device: str
    batch_size: int | None
    ratio: Interval  # planted / cell
    expected: float  # 1 + the planted fraction
    verdict: Verdict
    found: bool  # called slower


@dataclass(frozen=True)
class NearAA:
    framework: str
    pairs: int
    slower: int
    faster: int
    equivalent: int
    inconclusive: int


@dataclass(frozen=True)
class Controls:
    aa: tuple[AAPair, ...]
    false_verdicts: int
    judged: int  # A/A pairs with an interval
    false_rate: Interval  # false verdicts / judged, Clopper-Pearson 95 %
    planted: tuple[Planted, ...]
    near_aa: tuple[NearAA, ...]
    rounds: tuple[int, ...]  # rounds the A/A pairs rest on


def _split(cell: str) -> tuple[str, str]:
    framework, _, loss = cell.partition("#")[0].partition("/")
    return framework, loss


def controls(
    groups: Iterable[tuple[str, int, GroupAnalysis, TimingDesign]], ratios: Sequence[Ratio]
) -> Controls:
    """Over every group (device, batch size, analysis, design); `ratios` for the near-A/A pairs."""
    groups = list(groups)
    pairs = [(device, batch, c) for device, batch, g, _ in groups for c in g.controls]
    summary = control_summary([c for _, _, c in pairs])
    aa = tuple(
        AAPair(*_split(c.b), device, batch, c.ratio, c.verdict, false, len(c.rounds_used))
        for (device, batch, c), false in zip(pairs, summary.false)
    )
    planted = tuple(
        Planted(
            *_split(p.b), device, batch, p.ratio, 1 + design.planted, p.verdict, p.verdict is Verdict.SLOWER
        )
        for device, batch, g, design in groups
        if (p := g.planted) is not None
    )
    near = []
    for framework in dict.fromkeys(_split(r.a)[0] for r in ratios):
        verdicts = [
            r.verdict for r in ratios if (r.a, r.b) == (f"{framework}/{EXPLICIT}", f"{framework}/{AUTOGRAD}")
        ]
        if verdicts:
            near.append(NearAA(framework, len(verdicts), *(verdicts.count(v) for v in Verdict)))
    rounds = tuple(sorted({len(c.rounds_used) for _, _, c in pairs}))
    return Controls(aa, summary.false_verdicts, summary.judged, summary.rate, planted, tuple(near), rounds)
