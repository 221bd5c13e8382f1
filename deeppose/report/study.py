"""Findings against the original study: its published ratios set like for like against this run's."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from deeppose.grid import DEVICES, REFERENCE
from deeppose.report.common import ABOUT_ONE, safe_ratio
from deeppose.report.device import Device
from deeppose.report.load import Results

AGREE_WITHIN = 0.10  # a ratio agrees with the study's when within 10 % of it
STUDY_BATCH_EXP, STUDY_OPTIMIZER = 5, "momentum_sgd"  # the study's batch 32 and MomentumSGD
STUDY = {  # the study's published figures (its per-iteration times at batch 32), per device
    "per_iteration": {"cpu": 1.64, "cuda": 1.61},
    "explicit_over_autograd": {"cpu": 1.00, "cuda": 0.96},
    "seconds_b32": {"cpu": {"chainer": 8.2, "pytorch": 5.0}, "cuda": {"chainer": 0.45, "pytorch": 0.28}},
}


class StudyVerdict(str, Enum):
    AGREES = "agrees"
    SAME_SIDE = "same side of 1"
    DISAGREES = "disagrees"
    NOT_COMPARABLE = "not comparable"


@dataclass(frozen=True)
class StudyRow:
    device: str
    quantity: str  # "per_iteration": Chainer / PyTorch; "explicit_over_autograd": of `framework`
    framework: str
    basis: str  # "timing" (core + update at the study's batch and optimiser) or "training"
    setup: str
    study: float | None
    ours: float | None
    verdict: StudyVerdict
    why_not: str | None  # why it is not comparable


@dataclass(frozen=True)
class Absolute:
    device: str
    framework: str
    study_s: float
    iteration_s: float | None  # core + update at batch 32 (timing)
    training_s: float | None  # wall per training iteration
    training_setup: str | None


@dataclass(frozen=True)
class Dominance:
    device: str
    framework: str
    framework_ratio: float  # Chainer / PyTorch per training iteration
    loss_framework: str
    loss_ratio: float  # explicit / autograd training time, the larger effect
    framework_matters_more: bool


# --- against the study --------------------------------------------------------------------------
def study_verdict(ours: float, study: float) -> StudyVerdict:
    """Within 10 %: agrees; else on the same side of 1 (both above 1.05, both below 0.95 or both between)."""
    if abs(ours / study - 1) <= AGREE_WITHIN:
        return StudyVerdict.AGREES
    side = [(x > 1 + ABOUT_ONE) - (x < 1 - ABOUT_ONE) for x in (ours, study)]
    return StudyVerdict.SAME_SIDE if side[0] == side[1] else StudyVerdict.DISAGREES


ONE_RUN = "one training run per arm: no interval, so no verdict"  # the study's training-time ratios


def _study_row(
    device: str,
    quantity: str,
    fw: str,
    basis: str,
    setup: str,
    ours: float | None,
    why_not: str | None = None,
) -> StudyRow:
    study = (
        STUDY[quantity][device] if fw == ("chainer" if quantity == "per_iteration" else REFERENCE) else None
    )
    if why_not is None and (ours is None or study is None):
        why_not = "not run here" if ours is None else "not measured by the study"
    verdict = StudyVerdict.NOT_COMPARABLE if why_not else study_verdict(ours, study)
    return StudyRow(device, quantity, fw, basis, setup, study, ours, verdict, why_not)


def study_rows(
    results: Results, devices: dict[str, Device]
) -> tuple[list[StudyRow], list[Absolute], list[Dominance]]:
    rows, absolute, dominance = [], [], []
    for device in DEVICES:
        d = devices.get(device)
        if d is None:
            rows += [
                _study_row(device, quantity, fw, basis, "", None, "not in this run's grid")
                for quantity, fw, basis in (
                    ("per_iteration", "chainer", "timing"),
                    ("per_iteration", "chainer", "training"),
                    ("explicit_over_autograd", REFERENCE, "training"),
                )
            ]
            continue
        cells = {(c.framework, c.loss, c.batch_size): c for c in d.cells}
        runs = {(r.framework, r.loss): r for r in d.training}
        for fw in [f for f in results.frameworks if f != REFERENCE and REFERENCE in results.frameworks]:
            a = cells.get((fw, "autograd", 2**STUDY_BATCH_EXP))
            b = cells.get((REFERENCE, "autograd", 2**STUDY_BATCH_EXP))
            why = (
                "no timing result at batch 32"
                if not (a and b)
                else f"the timing did not time the MomentumSGD update (timing.optimizers: "
                f"{', '.join(a.steps_s) or 'none'})"
                if STUDY_OPTIMIZER not in a.steps_s or STUDY_OPTIMIZER not in b.steps_s
                else None
            )
            ratio = (
                None
                if why
                else safe_ratio(
                    a.time.estimate + a.steps_s[STUDY_OPTIMIZER], b.time.estimate + b.steps_s[STUDY_OPTIMIZER]
                )
            )
            setup = f"core + {STUDY_OPTIMIZER} update, batch 32"
            rows.append(_study_row(device, "per_iteration", fw, "timing", setup, ratio, why))
            ra, rb = runs.get((fw, "autograd")), runs.get((REFERENCE, "autograd"))
            train_setup = ra.setup if ra else ""
            same = ra is not None and train_setup.startswith(f"{STUDY_OPTIMIZER}, batch 32,")
            why = (
                None
                if ra is None
                else ONE_RUN
                if same
                else f"trained with {train_setup}, not the study's set-up"
            )
            rows.append(
                _study_row(
                    device,
                    "per_iteration",
                    fw,
                    "training",
                    train_setup,
                    safe_ratio(ra and ra.per_iteration_s, rb and rb.per_iteration_s),
                    why,
                )
            )
        for e in d.loss_effects:
            setup = runs[e.framework, "autograd"].setup if (e.framework, "autograd") in runs else ""
            rows.append(
                _study_row(
                    device,
                    "explicit_over_autograd",
                    e.framework,
                    "training",
                    setup,
                    e.train_time_ratio,
                    ONE_RUN if e.framework == REFERENCE else None,
                )
            )
        for fw in ("chainer", "pytorch"):
            c, r = cells.get((fw, "autograd", 2**STUDY_BATCH_EXP)), runs.get((fw, "autograd"))
            step = c.steps_s.get(STUDY_OPTIMIZER) if c else None
            absolute.append(
                Absolute(
                    device,
                    fw,
                    STUDY["seconds_b32"][device][fw],
                    None if step is None else c.time.estimate + step,
                    r and r.per_iteration_s,
                    r and r.setup,
                )
            )
        framework = [
            (row.framework, row.ours)
            for row in rows
            if row.device == device
            and row.quantity == "per_iteration"
            and row.basis == "training"
            and row.ours is not None
        ]
        loss = [(e.framework, e.train_time_ratio) for e in d.loss_effects if e.train_time_ratio is not None]
        if framework and loss:
            (fw, fr), (lfw, lr) = (max(x, key=lambda p: abs(p[1] - 1)) for x in (framework, loss))
            dominance.append(Dominance(device, fw, fr, lfw, lr, abs(fr - 1) > abs(lr - 1)))
    return rows, absolute, dominance
