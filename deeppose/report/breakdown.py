"""Findings of the per-layer breakdown: layer times and rates, the attribution of a framework's extra
time over PyTorch's, and the roofline."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from deeppose import layer_groups, roofline
from deeppose.grid import REFERENCE, Job
from deeppose.records.results import BreakdownResult
from deeppose.report import ceilings
from deeppose.report.ceilings import Peak
from deeppose.report.load import Results

CONFIRM_SHARE = 0.5  # convolutions must explain half of a framework's extra time to confirm the study
TOP_ROWS = 8  # layers listed where two frameworks differ most
ELEMENTWISE = ("relu", "pool", "lrn", "dropout", "loss", "other")


class LayerVerdict(str, Enum):
    CONFIRMS = "confirms"
    PARTLY = "partly confirms"
    REFUTES = "refutes"
    CANNOT_TEST = "cannot test"


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
    layers: tuple[Layer, ...]


@dataclass(frozen=True)
class LayerDifference:
    layer: str
    phase: str
    reference_s: float
    other_s: float


@dataclass(frozen=True)
class Attribution:
    """<framework>'s extra core time over PyTorch's, split over conv, fc, element-wise and overhead."""

    framework: str
    loss: str
    reference_s: float
    other_s: float
    parts_s: dict[str, float]  # conv, fc, elementwise, overhead: they add up to the extra time
    reference_overhead_s: float
    other_overhead_s: float
    largest: LayerDifference | None
    top: tuple[LayerDifference, ...]
    verdict: LayerVerdict
    uncertain: tuple[str, ...]  # frameworks whose layers miss the sum rule

    @property
    def extra_s(self) -> float:
        return self.other_s - self.reference_s

    @property
    def ratio(self) -> float:
        """<framework> / PyTorch core time, of one profiled process each."""
        return self.other_s / self.reference_s

    @property
    def shares(self) -> dict[str, float | None]:
        """Each part's share of the extra time (conv, fc, elementwise, overhead); None when not slower."""
        return {part: s / self.extra_s if self.extra_s > 0 else None for part, s in self.parts_s.items()}


@dataclass(frozen=True)
class RooflinePoint:
    """One conv/fc layer and phase at a batch size: its work and where it sits on the roofline; its
    achieved FLOP/s are the jobs' `Layer`s."""

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
    attributions: tuple[Attribution, ...]
    not_compared: tuple[tuple[str, str], ...]  # (framework, loss) whose comparison lacks a result
    rate_loss: str  # the loss mode whose jobs give the FLOP/s (the layers do not depend on it)
    roofline: tuple[RooflinePoint, ...]
    memory_bound: tuple[str, ...]  # layers below the ridge in both phases


# --- per-layer breakdown ----------------------------------------------------------------------
def _breakdown_job(job: Job, r: BreakdownResult, peak: Peak, rated: bool) -> BreakdownJob:
    """`rated`: the job gives the layers' FLOP/s (one loss mode does; the layers do not depend on it)."""
    layers = []
    for row in r.layers:
        rate = row.get("flops_per_s") if rated else None
        share = ceilings.share(rate, peak, job.device)
        layers.append(Layer(row["layer"], row["phase"], float(row["time_s"]), rate, share))
    return BreakdownJob(
        job.framework,
        job.loss,
        r.core_time_s,
        r.profiled_core_time_s,
        r.layers_time_s,
        r.overhead_s,
        r.sum_rule.get("relative_gap"),
        r.sum_rule.get("tolerance"),
        bool(r.sum_rule.get("ok")),
        tuple(layers),
    )


def attribute(reference: BreakdownJob, other: BreakdownJob) -> Attribution:
    """Split `other`'s extra core time over `reference` into conv, fc, element-wise layers and
    overhead (core minus the layers), which add up to the extra time exactly."""

    def group(job: BreakdownJob, names: tuple[str, ...]) -> float:
        return sum(r.time_s for r in job.layers if r.layer in names)

    extra = other.core_s - reference.core_s
    parts = {
        name: group(other, names) - group(reference, names)
        for name, names in (
            ("conv", layer_groups.CONV_LAYERS),
            ("fc", layer_groups.FC_LAYERS),
            ("elementwise", ELEMENTWISE),
        )
    }
    parts["overhead"] = other.overhead_s - reference.overhead_s
    times = [{(r.layer, r.phase): r.time_s for r in job.layers} for job in (reference, other)]
    # ties in name order: a set's order varies with Python's hash seed, the report's bytes must not
    keys = sorted(
        set(times[0]) | set(times[1]), key=lambda k: (-abs(times[1].get(k, 0.0) - times[0].get(k, 0.0)), k)
    )
    diffs = [LayerDifference(*k, times[0].get(k, 0.0), times[1].get(k, 0.0)) for k in keys]
    if extra <= 0:
        verdict = LayerVerdict.CANNOT_TEST
    elif parts["conv"] / extra >= CONFIRM_SHARE:
        verdict = LayerVerdict.CONFIRMS
    else:
        verdict = (
            LayerVerdict.PARTLY if 1 - parts["overhead"] / extra >= CONFIRM_SHARE else LayerVerdict.REFUTES
        )
    return Attribution(
        other.framework,
        other.loss,
        reference.core_s,
        other.core_s,
        parts,
        reference.overhead_s,
        other.overhead_s,
        max(diffs, key=lambda d: d.other_s - d.reference_s, default=None),
        tuple(diffs[:TOP_ROWS]),
        verdict,
        tuple(j.framework for j in (reference, other) if not j.sum_rule_ok),
    )


def _roofline(
    jobs: list[BreakdownJob], batch: int, peak: Peak
) -> tuple[tuple[RooflinePoint, ...], tuple[str, ...]]:
    traffic = roofline.layer_traffic(batch)
    ridge = peak.ridge

    def bound(intensity: float) -> Bound:
        return Bound.UNKNOWN if ridge is None else Bound.MEMORY if intensity < ridge else Bound.COMPUTE

    rated = dict.fromkeys(
        (r.layer, r.phase) for job in jobs for r in job.layers if r.flops_per_s
    )  # in table order
    points = tuple(
        RooflinePoint(
            layer,
            phase,
            traffic[layer, phase].flops,
            traffic[layer, phase].intensity,
            bound(traffic[layer, phase].intensity),
        )
        for layer, phase in rated
        if (layer, phase) in traffic
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
        points, memory = _roofline(rated, 2**exp, peak)
        batches.append(
            BreakdownBatch(
                2**exp,
                tuple(jobs.values()),
                tuple((j.framework, j.loss) for j, r in loaded.items() if not r.ok),
                tuple(attribute(jobs[REFERENCE, loss], jobs[fw, loss]) for fw, loss in compared),
                tuple(arm for arm in arms if arm not in compared),
                rate_loss,
                points,
                memory,
            )
        )
    return tuple(batches)
