"""Findings of the per-layer breakdown: layer times and rates, the replicated comparisons and the roofline."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from itertools import groupby

from deeppose import layer_groups, roofline
from deeppose.grid import REFERENCE, Job
from deeppose.records.breakdown import BreakdownResult
from deeppose.report import ceilings
from deeppose.report import layer_replicates as replicated
from deeppose.report.ceilings import Peak
from deeppose.report.layer_replicates import LossAgreement, LossModes, Replicate, ReplicatedComparison
from deeppose.report.load import Results


class Bound(str, Enum):
    COMPUTE = "compute-bound"
    MEMORY = "memory-bound"
    UNKNOWN = "bandwidth not measured"


@dataclass(frozen=True)
class Layer:
    layer: str
    phase: str
    time_s: float
    flops_per_s: float | None  # the layer's FLOPs are its RooflinePoint's, once per batch size
    fraction_of_peak: float | None


@dataclass(frozen=True)
class BreakdownJob:
    framework: str
    loss: str
    core_s: float
    profiled_s: float
    layers_s: float
    overhead_s: float
    gap: float
    tolerance: float
    sum_rule_ok: bool
    layers: tuple[Layer, ...]  # pooled over the job's processes


@dataclass(frozen=True)
class RooflinePoint:
    layer: str
    phase: str
    flops: int  # forward and backward counted apart (deeppose.model.layer_flops)
    intensity: float  # FLOP per byte moved (deeppose.roofline)
    bound: Bound


@dataclass(frozen=True)
class BreakdownBatch:
    batch_size: int
    jobs: tuple[BreakdownJob, ...]
    absent: tuple[tuple[str, str], ...]  # (framework, loss) without a result
    comparisons: tuple[ReplicatedComparison, ...]  # each framework against PyTorch, loss modes pooled
    agreement: tuple[LossAgreement, ...]  # each framework and loss mode: the loss modes as replicates
    loss_modes: tuple[LossModes, ...]  # each framework's explicit / autograd, paired by round
    not_compared: tuple[tuple[str, str], ...]  # (framework, loss) whose comparison lacks a result
    rate_loss: str  # the loss mode whose jobs give the FLOP/s (the layers do not depend on it)
    roofline: tuple[RooflinePoint, ...]
    memory_bound: tuple[str, ...]  # layers below the ridge in both phases


def _breakdown_job(job: Job, r: BreakdownResult, peak: Peak, rated: bool) -> BreakdownJob:
    """`rated`: the job gives the layers' FLOP/s (one loss mode does; the layers do not depend on it)."""
    rates = [row.get("flops_per_s") if rated else None for row in r.layers]
    layers = tuple(
        Layer(row["layer"], row["phase"], float(row["time_s"]), rate, ceilings.share(rate, peak, job.device))
        for row, rate in zip(r.layers, rates)
    )
    rule = (r.sum_rule.get("relative_gap"), r.sum_rule.get("tolerance"), bool(r.sum_rule.get("ok")))
    times = (r.core_time_s, r.profiled_core_time_s, r.layers_time_s, r.overhead_s)
    return BreakdownJob(job.framework, job.loss, *times, *rule, layers)


def _replicates(job: Job, r: BreakdownResult) -> tuple[Replicate, ...]:
    """Each process of the job apart: its core time, overhead and layers (both phases together)."""
    replicates = []
    for p in r.processes:
        rows = groupby(sorted(p.layers, key=lambda row: row["layer"]), lambda row: row["layer"])
        layers = {layer: sum(float(row["time_s"]) for row in group) for layer, group in rows}
        replicates.append(Replicate(job.loss, p.round, p.core_time_s, p.overhead_s, layers))
    return tuple(replicates)


def _compared(
    jobs: dict[tuple[str, str], tuple[Replicate, ...]], loss_modes: tuple[str, ...], margin: float
) -> tuple[tuple[ReplicatedComparison, ...], tuple[LossAgreement, ...], tuple[LossModes, ...]]:
    """Each framework against PyTorch, loss modes pooled; each framework and loss mode; explicit/autograd."""

    def replicates(framework: str) -> list[Replicate]:
        return [r for loss in loss_modes if (framework, loss) in jobs for r in jobs[framework, loss]]

    frameworks = list(dict.fromkeys(fw for fw, _ in jobs))
    comparisons = tuple(
        replicated.compare(fw, replicates(REFERENCE), replicates(fw), margin)
        for fw in frameworks
        if fw != REFERENCE and any((fw, loss) in jobs and (REFERENCE, loss) in jobs for loss in loss_modes)
    )
    agreements = tuple(
        replicated.agreement(
            fw,
            loss,
            jobs[fw, loss],
            jobs[REFERENCE, loss] if fw != REFERENCE and (REFERENCE, loss) in jobs else None,
            margin,
        )
        for fw in frameworks
        for loss in loss_modes
        if (fw, loss) in jobs
    )
    pairs = tuple(
        replicated.loss_mode_ratio(fw, jobs[fw, "autograd"], jobs[fw, "explicit"], margin)
        for fw in frameworks
        if (fw, "autograd") in jobs and (fw, "explicit") in jobs
    )
    return comparisons, agreements, pairs


def _roofline(
    jobs: list[BreakdownJob], batch: int, peak: Peak
) -> tuple[tuple[RooflinePoint, ...], tuple[str, ...]]:
    traffic = roofline.layer_traffic(batch)
    ridge = peak.ridge

    def bound(intensity: float) -> Bound:
        return Bound.UNKNOWN if ridge is None else Bound.MEMORY if intensity < ridge else Bound.COMPUTE

    rated = dict.fromkeys(
        (r.layer, r.phase) for job in jobs for r in job.layers if r.flops_per_s
    )  # table order
    points = tuple(
        RooflinePoint(layer, phase, t.flops, t.intensity, bound(t.intensity))
        for layer, phase in rated
        if (t := traffic.get((layer, phase)))
    )
    memory = tuple(
        layer
        for layer in (*layer_groups.CONV_LAYERS, *layer_groups.FC_LAYERS)
        if all(bound(traffic[layer, phase].intensity) is Bound.MEMORY for phase in layer_groups.PHASES)
    )
    return points, memory


def breakdown_batches(results: Results, device: str, peak: Peak) -> tuple[BreakdownBatch, ...]:
    batches = []
    for exp in sorted(results.params.breakdown.batch_exponents):
        loaded = {
            job: r for job, r in results.breakdown.items() if (job.device, job.batch_exp) == (device, exp)
        }
        if not any(r.ok for r in loaded.values()):
            continue
        rate_loss = next(j.loss for j, r in loaded.items() if r.ok)
        jobs = {
            (j.framework, j.loss): _breakdown_job(j, r.record, peak, j.loss == rate_loss)
            for j, r in loaded.items()
            if r.ok
        }
        arms = [
            (fw, loss)
            for loss in results.loss_modes
            for fw in results.frameworks
            if fw != REFERENCE and REFERENCE in results.frameworks and Job(fw, loss, device, exp) in loaded
        ]
        compared = [(fw, loss) for fw, loss in arms if (fw, loss) in jobs and (REFERENCE, loss) in jobs]
        rated = [j for (_, loss), j in jobs.items() if loss == rate_loss]
        replicates = {(j.framework, j.loss): _replicates(j, r.record) for j, r in loaded.items() if r.ok}
        absent = tuple((j.framework, j.loss) for j, r in loaded.items() if not r.ok)
        pooled = _compared(replicates, results.loss_modes, results.params.timing.margin)
        not_compared = tuple(arm for arm in arms if arm not in compared)
        roof = _roofline(rated, 2**exp, peak)
        batches.append(
            BreakdownBatch(2**exp, tuple(jobs.values()), absent, *pooled, not_compared, rate_loss, *roof)
        )
    return tuple(batches)
