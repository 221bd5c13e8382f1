"""Section 5's tables and sentences: scores beside the mean pose's, and the frameworks' differences
(between seeds where two or more ran; with one run each, never a claim that the frameworks differ)."""

from __future__ import annotations

from typing import Any

from deeppose import fmt
from deeppose.compare_stats import Interval, format_interval
from deeppose.replicates import ONE_TRAJECTORY

METRICS = {"loss": "test loss", "pcp": "PCP@0.5", "pdj": "PDJ@0.2", "pck": "PCK@0.2"}
SEED_METRICS = {"train_loss": "final training loss", "pck": "test PCK@0.2"}
BEATS = {True: "beats it", False: "does not beat it"}


def _score(metric: str, value: Any) -> str:
    """A test score (an interval, or a bare number for the baseline): the loss as is, the rest in %."""
    if value is None:
        return fmt.MISSING
    if isinstance(value, Interval) and value.low is not None:
        return format_interval(value) if metric == "loss" else format_interval(value, 100, "%")
    value = value.estimate if isinstance(value, Interval) else value
    return fmt.sig(value) if metric == "loss" else fmt.percent(value)


def _difference(metric: str, value: Interval) -> str:
    return format_interval(value) if metric == "loss" else format_interval(value, 100, "points")


def accuracy(devices: Any, metrics: Any, ci: str) -> str:
    """Each run's final training loss and test scores beside the mean pose's, then its gap to it."""
    scores, gaps = [], []
    for d in devices:
        for r in d.training:
            name = fmt.framework_name(r.framework)
            scores.append(
                [name, r.loss, d.device, fmt.sig(r.final_train_loss)]
                + [_score(m, r.scores.get(m)) for m in metrics]
            )
            beats = {m: f"{_difference(m, g.difference)}: {BEATS[g.beats]}" for m, g in r.gaps.items()}
            gaps.append(
                [name, r.loss, d.device, beats.get("loss", fmt.MISSING), beats.get("pcp", fmt.MISSING)]
            )
        if d.baseline:
            scores.append(
                ["mean pose (baseline)", fmt.MISSING, d.device, fmt.MISSING]
                + [_score(m, d.baseline.get(m)) for m in metrics]
            )
    scored = [f"{METRICS[m]} ({ci})" for m in metrics]
    headers = ["framework", "loss", "device", "final training loss", *scored]
    against = ["framework", "loss", "device", f"test loss − mean pose ({ci})", f"PCP@0.5 − mean pose ({ci})"]
    return (
        fmt.table(headers, scores, right=range(3, 4 + len(metrics)))
        + "\n\nAgainst the mean pose, paired by test image:\n\n"
        + fmt.table(against, gaps, right=[3, 4])
    )


def accuracy_lines(d: Any) -> list[str]:
    """Per framework and loss mode its differences from PyTorch: between seeds, the only claim about
    training; else the first seed's networks by test image, with the warning that one run measures no
    training variability."""
    counts = sorted({r.seeds for r in d.training})
    ran = f"Each training job on {d.device} ran {fmt.join_words(map(str, counts), 'or')} seeds"
    lines = [f"{ran}; the tables above show each job's first."] if counts and counts != [1] else []
    measured: dict[tuple[str, str], list[Any]] = {}
    for x in d.seed_differences:
        if x.between.measured:
            measured.setdefault((x.framework, x.loss), []).append(x)
    lines += [
        f"{fmt.framework_name(fw)} against PyTorch on {d.device} ({loss}), between "
        f"{diffs[0].between.seeds} seeds paired by seed ({_margin(diffs[0].between.margin)}): "
        + "; ".join(f"{SEED_METRICS[x.metric]} {_between(x)}: **{x.between.word}**" for x in diffs)
        + "."
        for (fw, loss), diffs in measured.items()
    ]
    pairs_: dict[tuple[str, str], list[Any]] = {}
    for x in d.accuracy_differences:
        pairs_.setdefault((x.framework, x.loss), []).append(x)
    for (fw, loss), diffs in pairs_.items():
        text = "; ".join(f"{METRICS[x.metric]} {_difference(x.metric, x.difference)}" for x in diffs)
        clear = [METRICS[x.metric] for x in diffs if x.differ]
        excludes = f"the test-image interval excludes zero on {fmt.join_words(clear)}" if clear else ""
        one = f"; one training run each: {ONE_TRAJECTORY}, so no claim that the frameworks differ."
        end = "." if (fw, loss) in measured else one
        lines.append(
            f"{fmt.framework_name(fw)} − PyTorch on {d.device} ({loss}), the first seed's networks by test "
            f"image: {text}: {excludes or 'no interval excludes zero'}{end}"
        )
    lines += [
        f"{fmt.framework_name(fw)}'s explicit runs repeat its autograd runs bit for bit (one trajectory): "
        "they count as one replicate per seed, not two."
        for fw in d.identical_modes
    ]
    return lines


def _margin(margin: float) -> str:
    """What the between-seed verdicts count as equivalent."""
    return (
        f"equivalence margin timing.margin: a loss ratio within ×/÷ {1 + margin:.3g}, PCK within "
        f"{100 * margin:.3g} points"
    )


def _between(x: Any) -> str:
    """A between-seed difference: the training loss as a ratio, PCK in points."""
    if x.metric == "train_loss":
        return f"{fmt.framework_name(x.framework)} / PyTorch {format_interval(x.between.interval)}"
    return format_interval(x.between.interval, 100, "points")


def scoring_note(f: Any) -> str:
    """Which joints the accuracies score and which test images the prepare stage kept."""
    scored = sorted({r.scored_joints for d in f.devices for r in d.training})
    text = ""
    if scored == ["annotated"]:
        text = (
            "Joints scored: every annotated joint, occluded ones too (LSP annotates them at an estimated "
            "position), and also one outside the 227 centre crop (its target lies outside [0, 1]), as the "
            "standard LSP protocol scores them; only the test loss stays the training objective, over the "
            "visible joints inside the crop. "
        )
    elif scored:
        text = f"Joints scored: {', '.join(scored)}. "
    t = (f.setup.prepared or {}).get("filtering", {}).get("test")
    if not t:
        return text + "Test images: those the prepare stage kept (no data summary says which rules applied)."
    return text + (
        f"Test images: unfiltered where the data allow. The prepare stage dropped only those with "
        f"{', '.join(t['drop_rules'])} ({t['dropped']} dropped); it kept "
        f"{sum(t['kept_breaking_train_rules'].values())} that the training split's crop rules would have "
        f"dropped, and {t['kept_with_joint_outside_centre_crop']} test images have an annotated joint "
        "outside the centre crop."
    )
