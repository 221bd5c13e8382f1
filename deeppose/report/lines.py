"""The sentences and small tables of the first screen and of the timing sections: every verdict
word, count and precision decided in Python, where a test can check it."""

from __future__ import annotations

from typing import Any

from deeppose import fmt
from deeppose.compare_stats import format_interval
from deeppose.fmt import framework_name as name
from deeppose.replicates import WORDS as ACCURACY_WORDS
from deeppose.report.analysis import Findings
from deeppose.report.core_time import Controls, GroupNoise

QUESTIONS = {
    "loss backward": "Does writing the loss's backward by hand change the time?",
    "framework": "How does the framework change the core process's time?",
    "layers": "Do the convolutions explain the frameworks' difference (the study's conclusion)?",
    "accuracy": "Do the frameworks reach different accuracy?",
}


def _level(level: float) -> str:
    return f"{fmt.sig(100 * level).rstrip('0').rstrip('.')} %"


def noise_table(groups: tuple[GroupNoise, ...]) -> str:
    """Each timing group's design, pooled noise and minimum detectable ratio."""
    disagree = {None: "n/a (cannot reach its level at these sizes)", True: "yes", False: "no"}
    rows = [
        [g.batch_size, g.pairing, f"{g.rounds} ({g.looks})", f"± {_level(g.margin)}", _level(g.level)]
        + [fmt.sig(g.sd_log, 2), fmt.sig(g.detectable), disagree[g.disagree]]
        for g in groups
    ]
    headers = "batch|pairing|rounds (looks)|margin|interval level|SD of log ratio per round|minimum "
    return fmt.table((headers + "detectable ratio|blocks disagree").split("|"), rows, right=[0, 5, 6])


def aa_table(c: Controls, device: str) -> str:
    """A/A pairs on `device`: a decided difference is a false verdict."""
    rows = [
        [p.batch_size, f"{p.framework}/{p.loss}", format_interval(p.ratio)]
        + [p.verdict.value + (" (false)" if p.false else ""), p.rounds]
        for p in c.aa
        if p.device == device
    ]
    return fmt.table(["batch", "A/A cell", "twin / cell", "verdict", "rounds"], rows, right=[0, 2, 4])


def planted_table(c: Controls, device: str) -> str:
    rows = [
        [p.batch_size, f"{p.framework}/{p.loss}", format_interval(p.ratio), fmt.sig(p.expected)]
        + [p.verdict.value, "yes" if p.found else "no"]
        for p in c.planted
        if p.device == device
    ]
    headers = ["batch", "cell", "planted / cell", "expected", "verdict", "found"]
    return fmt.table(headers, rows, right=[0, 2, 3])


def control_lines(c: Controls) -> list[str]:
    """The controls' sentences: A/A false verdicts pooled, positive controls found, near-A/A calls."""
    lines = ["No A/A pair was measured: the run has no check of false verdicts."]
    if c.aa:
        rate = format_interval(c.false_rate, 100, "%") if c.judged else "n/a (no pair had an interval)"
        lines[0] = (
            f"A/A pairs (a cell's twin process against the cell), pooled over {len(c.aa)} pairs "
            f"({c.judged} with an interval, {' or '.join(map(str, c.rounds))} rounds): {c.false_verdicts} "
            f"called slower or faster, a false-verdict rate of {rate} "
            f"({_level(c.false_rate.level)} Clopper-Pearson interval)."
        )
    lines.append(
        "Positive controls (a cell with a planted slowdown against the cell): found (called slower) "
        f"in {sum(p.found for p in c.planted)} of {len(c.planted)} groups."
        if c.planted
        else "No positive control was measured: the run does not check that it can see a slowdown."
    )
    return lines + [
        f"{name(n.framework)} explicit / autograd core process (near-A/A: the loss is a tiny part of it): "
        f"{n.slower} slower and {n.faster} faster of {n.pairs} groups ({n.equivalent} equivalent, "
        f"{n.inconclusive} inconclusive)."
        for n in c.near_aa
    ]


def answer_line(a: Any) -> str:
    value = fmt.MISSING if a.interval is None else format_interval(a.interval, a.scale, a.unit)
    word = ACCURACY_WORDS[a.verdict] if a.question == "accuracy" else a.verdict.value
    return f"{a.subject} ({a.device}): **{word}**, {value}; {a.caveat}."


def answer_groups(f: Findings) -> list[tuple[str, list[str]]]:
    """(question, its answer lines) in the order of QUESTIONS, questions without an answer left out."""
    return [
        (text, [answer_line(a) for a in f.answers if a.question == key])
        for key, text in QUESTIONS.items()
        if any(a.question == key for a in f.answers)
    ]


def checks_line(f: Findings) -> str:
    """What the run's own controls say about the verdicts above, in one line."""
    c = f.controls
    parts = [
        f"A/A pairs called slower or faster {c.false_verdicts} of {c.judged} times "
        f"({format_interval(c.false_rate, 100, '%')})"
        if c.judged
        else "no A/A pair with an interval",
        f"positive control found in {sum(p.found for p in c.planted)} of {len(c.planted)} groups"
        if c.planted
        else "no positive control",
    ]
    detectable = sorted(
        {fmt.sig(g.detectable) for d in f.devices for g in d.groups if g.detectable}, key=float
    )
    if detectable:
        span = detectable[0] + (f" to {detectable[-1]}" if len(detectable) > 1 else "")
        parts.append(f"smallest detectable ratio per group {span}")
    return "Checks of the timing: " + "; ".join(parts) + " (section 3)."


def margins(f: Findings) -> str:
    """The groups' margins as "± 5 %" (each distinct one), or "as recorded" when none is."""
    found = sorted({g.margin for d in f.devices for g in d.groups})
    return ", ".join(f"± {_level(m)}" for m in found) or "as recorded"


def core_share_line(r: Any) -> str:
    """The core process's share of a training iteration (two single measurements); above 100 % only
    through drift between the timing and the training processes, and flagged so."""
    text = (
        f"{name(r.framework)} {r.loss}: the core process at the training batch size takes "
        f"{fmt.seconds(r.core_s)}, {fmt.sig(100 * r.core_share, 2)} % of a training iteration "
        f"({fmt.seconds(r.per_iteration_s)})"
    )
    if r.core_share > 1:
        text += (
            ": more than the whole, so the two stages' processes ran at different speeds (drift between "
            "processes, not a cost)"
        )
    return text + "."


def loss_effect_line(e: Any, device: str) -> str:
    """Section 2's line for one framework: the loss alone's difference with its own verdict, its
    share of the core process with the study-level verdict, and the single-run training ratio."""
    text = f"{name(e.framework)} on {device}: "
    if e.c is None:
        text += "no timing group measured the loss alone"
    else:
        text += (
            f"the explicit backward changes the loss's own forward + backward by "
            f"{format_interval(e.c.difference, 1e6, 'µs')} at batch {e.batch_size} ({e.c.verdict.value} "
            f"against the loss's own time, {e.c.rounds} rounds)"
        )
        if e.share is not None:
            share = format_interval(e.share, 100, "%")
            text += f", {share} of the autograd core process ({e.share_verdict.value})"
    if e.train_time_ratio is None:
        return text + f"; no training comparison, {fmt.join_words(e.absent)} not run."
    ratio = fmt.sig(e.train_time_ratio, 2)
    text += f"; whole training runs: explicit / autograd = {ratio} (single run), no verdict"
    if e.noise_floor is not None:
        text += f"; identical arms in the timing's A/A control came up to {fmt.percent(e.noise_floor)} apart"
    return text + "."


def network_lines(d: Any) -> list[str]:
    """Section 3's conclusions on one device: each framework ratio's course over batch sizes (a
    trend only where its ends' intervals separate), and the core process's share of an iteration."""
    return [trend_line(t) for t in d.trends] + [
        core_share_line(r) for r in d.training if r.core_s is not None
    ]


def trend_line(t: Any) -> str:
    extremes = [
        f"{word} {format_interval(point[1])} at batch {point[0]}"
        for word, point in (("lowest", t.lowest), ("highest", t.highest))
        if point[0] not in (t.first[0], t.last[0])
    ]
    return (
        f"{name(t.framework)} / PyTorch core-process time ({t.loss}, paired by round) {t.trend.value}: "
        f"{format_interval(t.first[1])} at batch {t.first[0]} against {format_interval(t.last[1])} at batch "
        f"{t.last[0]}" + ("; " + ", ".join(extremes) if extremes else "") + "."
    )
