"""Against the original study (PyTorch 0.1.10 against Chainer, 2017): every difference of set-up,
and its findings set against this run's paired ratios, direction and magnitude judged apart."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from deeppose import fmt
from deeppose.compare_stats import Interval, format_interval
from deeppose.grid import REFERENCE
from deeppose.report.device import Device
from deeppose.report.setup import Setup
from deeppose.verdicts import Verdict, classify

AGREE_WITHIN = 0.10  # a magnitude agrees with the study's when its interval lies within 10 % of it
AGREE_TEXT = f"{AGREE_WITHIN * 100:.0f} %"
STUDY_BATCH, STUDY_OPTIMIZER = 32, "momentum_sgd"
# The study's published figures: per-epoch CPU times 8.2 s (Chainer) and 5.0 s (PyTorch) at batch 32;
# 100 epochs of PyTorch took 47.6 h with either backward; at batch 1 the core process was "almost the same".
STUDY_RATIO = {"cpu": 8.2 / 5.0, "cuda": 0.45 / 0.28}
STUDY_FRAMEWORKS = ("pytorch", "chainer")
NOT_MEASURED = "not measured in this run"
STUDY_SETUP = {  # aspect -> the study's value (in params' words), what a difference may move, else measured
    "data loading": (
        "inside its epoch times (Chainer's MultiprocessIterator)",
        "absolute times; ratios where one framework loads more slowly",
        NOT_MEASURED,
    ),
    "data": ("lsp", "accuracy; not the core time (same input shape)", "—"),
    "dropout (fc6, fc7)": ("0.5", "fc6/fc7 time, both frameworks", NOT_MEASURED),
    "LRN": ("none", "conv1/conv2 time", NOT_MEASURED),
    "training batch": ("32", "the framework ratio (it grows with the batch)", NOT_MEASURED),
    "optimiser": ("momentum_sgd", "time per training iteration (the update step)", "not timed"),
    "epochs": ("100", "training totals, not per-iteration ratios", "—"),
    "CPU and threads": ("not stated in part II", "every time and ratio", "one machine only"),
    "kernel libraries": (
        "PyTorch 0.1.10's own C kernels; Chainer's NumPy",
        "the framework ratio",
        "not separable from the framework here",
    ),
    "framework versions": (
        "PyTorch 0.1.10 (0.1.12: Chainer faster), Chainer 1.x",
        "the framework ratio, even its direction (the study's caveat)",
        "one version each",
    ),
    "C allocator": (
        "glibc's default",
        "framework ratios, most at the smallest and largest batches",
        NOT_MEASURED,
    ),
}


@dataclass(frozen=True)
class Difference:
    aspect: str
    study: str
    here: str
    may_move: str
    measured: str  # with its interval, "(single run)", or "not measured in this run"


@dataclass(frozen=True)
class Judged:
    finding: str
    study: str
    here: str  # this run's interval and verdict
    direction: str = "—"
    magnitude: str = "—"


@dataclass(frozen=True)
class Study:
    differences: tuple[Difference, ...]
    judged: tuple[Judged, ...]
    conclusion: str | None  # the study's conclusion (loss backward negligible, network dominant) here


def _ratio(d: Device, framework: str, batch: int, loss: str = "autograd") -> Any:
    arms = (f"{framework}/{loss}", f"{REFERENCE}/{loss}")
    return next((r for r in d.ratios if (r.a, r.b) == arms and r.batch_size == batch), None)


def direction(verdict: Verdict, study: float | None, margin: float) -> str:
    """Which side of the margin a ratio lies on here against the study's, decided only by an interval."""
    if study is None:
        return "the study did not measure it"
    if verdict is Verdict.INCONCLUSIVE:
        return "undecided: the interval spans the margin"
    side = classify(study, study, margin)
    if side is Verdict.EQUIVALENT:
        return "as in the study (equivalent)" if verdict is side else "differs: the study saw none"
    return "as in the study" if verdict is side else "opposite to the study"


MAGNITUDE = {
    Verdict.EQUIVALENT: f"agrees (within {AGREE_TEXT})",
    Verdict.SLOWER: "larger than the study's",
    Verdict.FASTER: "smaller than the study's",
    Verdict.INCONCLUSIVE: "undecided",
}


def magnitude(ratio: Interval, study: float) -> str:
    scaled = dataclasses.replace(
        ratio, estimate=ratio.estimate / study, low=ratio.low / study, high=ratio.high / study
    )
    verdict = classify(scaled.low, scaled.high, AGREE_WITHIN)
    return f"{format_interval(scaled)} x the study's: {MAGNITUDE[verdict]}"


def _judged(d: Device, framework: str, margin: float) -> list[Judged]:
    name, study = f"{fmt.framework_name(framework)} / PyTorch", STUDY_RATIO.get(d.device)
    r, one = _ratio(d, framework, STUDY_BATCH), _ratio(d, framework, 1)
    smallest = min((x.batch_size for x in d.ratios if x.batch_size), default=None)
    rows = [
        Judged(
            f"{name} at batch 32 (core process, autograd, {d.device})",
            f"{fmt.sig(study)} (its epoch times, data loading and update included)",
            f"{format_interval(r.ratio)} {r.verdict.value}" if r else "not measured",
            direction(r.verdict, study, margin) if r else "—",
            magnitude(r.ratio, study) if r and r.ratio.low is not None else "—",
        ),
        Judged(
            f"{name} at batch 1 (core process, autograd, {d.device})",
            '"almost the same" (no number)',
            f"{format_interval(one.ratio)} {one.verdict.value}"
            if one
            else f"not measured (smallest: {smallest})",
            direction(one.verdict, 1.0, margin) if one else "—",
            "no number to compare",
        ),
    ]
    return rows + [
        Judged(
            f"{fmt.framework_name(e.framework)} explicit − autograd backward (loss alone, share of the "
            f"core process, batch {e.batch_size})",
            "47.6 h both (PyTorch, 100 epochs)" if e.framework == REFERENCE else "not measured",
            f"{format_interval(e.share, 100, '%')} {e.share_verdict.value}",
            direction(e.share_verdict, 1.0 if e.framework == REFERENCE else None, margin),
            "no number to compare",
        )
        for e in d.loss_effects
        if e.share is not None and e.framework in STUDY_FRAMEWORKS
    ]


def _differences(d: Device, setup: Setup, framework: str) -> list[Difference]:
    raw = setup.params
    train, model = raw["train"], raw["model"]
    runs = {(r.framework, r.loss): r for r in d.training}
    fetch = [
        f"{fmt.framework_name(fw)} {fmt.sig(100 * (1 - r.compute.mean / r.per_iteration_s), 2)} %"
        for (fw, loss), r in runs.items()
        if loss == "autograd"
    ]
    at_train, at_study = _ratio(d, framework, train["batch_size"]), _ratio(d, framework, STUDY_BATCH)
    batch_measured = (
        f"{fmt.framework_name(framework)} / PyTorch core: {format_interval(at_train.ratio)} at batch "
        f"{train['batch_size']}, {format_interval(at_study.ratio)} at 32"
        if at_train and at_study
        else NOT_MEASURED
    )
    cells = {(c.framework, c.loss, c.batch_size): c for c in d.cells}
    timed = [
        b for b in (train["batch_size"], STUDY_BATCH) if any(c.steps_s for k, c in cells.items() if k[2] == b)
    ]
    at = timed[0] if timed else None
    a, b = (cells.get((fw, "autograd", at)) for fw in (framework, REFERENCE))
    updates = [
        f"{name} {fmt.sig(a.steps_s[name] / b.steps_s[name], 2)}"
        for name in (a.steps_s if a and b else {})
        if b.steps_s.get(name)
    ]
    a, b = (cells.get((fw, "autograd", STUDY_BATCH)) for fw in (framework, REFERENCE))
    with_update = ""
    if a and b and STUDY_OPTIMIZER in a.steps_s and STUDY_OPTIMIZER in b.steps_s:
        ratio = (a.time.estimate + a.steps_s[STUDY_OPTIMIZER]) / (
            b.time.estimate + b.steps_s[STUDY_OPTIMIZER]
        )
        with_update = f"; core + MomentumSGD update at batch 32: {fmt.sig(ratio, 2)} (single run)"
    env = [e for e in setup.environment if e.device == d.device and e.version]
    libraries = [
        (e.framework, c.get("kernel_library"))
        for f in setup.fairness
        for e in env
        if f.device == d.device and (c := f.common.get(e.framework))
    ]
    pin = raw["allocator"]["mmap_threshold_mib"]
    here = {
        "data loading": "outside the core process; inside the training wall time",
        "data": raw["data"]["source"],
        "dropout (fc6, fc7)": str(model["dropout"]),
        "LRN": "on" if model["lrn"] else "none",
        "training batch": str(train["batch_size"]),
        "optimiser": train["optimizer"],
        "epochs": str(train["epochs"]),
        "CPU and threads": ", ".join(sorted({f"{e.cpu}, {e.usable_cores} usable cores" for e in env})),
        "kernel libraries": "; ".join(f"{fmt.framework_name(fw)} {lib}" for fw, lib in libraries if lib),
        "framework versions": ", ".join(f"{fmt.framework_name(e.framework)} {e.version}" for e in env),
        "C allocator": "glibc's default" if pin is None else f"pinned (allocator.mmap_threshold_mib: {pin})",
    }
    measured = {
        "data loading": "data fetching's share of a training iteration (autograd): "
        f"{', '.join(fetch) or '—'} (single run)",
        "training batch": batch_measured,
        "optimiser": f"{fmt.framework_name(framework)} / PyTorch update at batch {at}, round 0: "
        f"{', '.join(updates)} (single run){with_update}"
        if updates
        else "not timed",
        "C allocator": "this run is the unpinned measurement"
        if pin is None
        else "not measured in this run (docs/pipeline.md cites an earlier unpinned run)",
    }
    return [
        Difference(aspect, study, here[aspect] or fmt.MISSING, may_move, measured.get(aspect, unmeasured))
        for aspect, (study, may_move, unmeasured) in STUDY_SETUP.items()
        if study != here[aspect]
    ]


def study_findings(devices: dict[str, Device], setup: Setup) -> Study:
    """On the devices the study timed, for Chainer (else the first framework beside PyTorch)."""
    differences, judged, conclusion = [], [], None
    for d in devices.values():
        others = [fw for fw in dict.fromkeys(r.a.split("/")[0] for r in d.ratios) if fw != REFERENCE]
        if d.device not in STUDY_RATIO:
            continue
        if not others:
            judged.append(
                Judged(f"Chainer / PyTorch on {d.device}", fmt.sig(STUDY_RATIO[d.device]), "no result")
            )
            continue
        framework = "chainer" if "chainer" in others else others[0]
        margin = setup.params["timing"]["margin"]
        judged += _judged(d, framework, margin)
        differences += _differences(d, setup, framework)
        size = next((e.batch_size for e in d.loss_effects if e.batch_size), None)  # the loss's batch
        network = _ratio(d, framework, size)
        effects = [e.share_verdict for e in d.loss_effects if e.share_verdict]
        if network and effects:
            same = network.verdict in (Verdict.SLOWER, Verdict.FASTER) and all(
                v is Verdict.EQUIVALENT for v in effects
            )
            conclusion = (
                f"On {d.device}, as in the study, the network's implementation changes the core process "
                f"({network.verdict.value}) while the loss's backward does not (equivalent)"
                if same
                else f"On {d.device} this run does not reproduce the study's conclusion with decided "
                f"verdicts: the network ratio is {network.verdict.value}, the loss's share "
                f"{', '.join(v.value for v in effects)}"
            )
    judged += [
        Judged(f"Chainer / PyTorch on {device}", fmt.sig(study), "not in this run's grid")
        for device, study in STUDY_RATIO.items()
        if device not in devices
    ]
    return Study(tuple(differences), tuple(judged), conclusion)
