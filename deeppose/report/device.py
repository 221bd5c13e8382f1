"""One device's findings, from the section modules."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from deeppose.grid import REFERENCE, Job
from deeppose.report import breakdown, core_time, training
from deeppose.report.load import Results
from deeppose.report.setup import Peak


@dataclass(frozen=True)
class Device:
    device: str
    training: tuple[training.TrainRun, ...]
    baseline: dict[str, float]  # the mean-pose predictor's test scores
    baseline_differs: int  # runs whose baseline differs from the first's: not the same test data
    accuracy_differences: tuple[training.AccuracyDifference, ...]  # the first seed's networks, by test image
    seed_differences: tuple[training.SeedDifference, ...]  # between seeds: what speaks of training
    identical_modes: tuple[str, ...]  # frameworks whose explicit runs repeat the autograd ones bit for bit
    loss_effects: tuple[core_time.LossEffect, ...]
    cells: tuple[core_time.Cell, ...]
    ratios: tuple[core_time.Ratio, ...]
    groups: tuple[core_time.GroupNoise, ...]  # each timing group's design, noise and minimum detectable ratio
    trends: tuple[core_time.RatioTrend, ...]
    breakdown: tuple[breakdown.BreakdownBatch, ...]
    missing: dict[str, int]  # kind -> jobs of this device without a result
    jobs: dict[str, int]  # kind -> jobs of this device


def build_device(results: Results, device: str, peak: Peak, groups: dict[int, Any]) -> Device:
    kinds = {"training": results.train, "timing": results.timing, "breakdown": results.breakdown}
    on = {kind: {j: r for j, r in found.items() if j.device == device} for kind, found in kinds.items()}
    timed = sorted(on["timing"].items(), key=lambda i: i[0].batch_exp)
    cells = {j: core_time.timing_cell(j, r.record, peak) for j, r in timed if r.ok}
    for j, c in cells.items():
        eager = cells.get(Job(REFERENCE, j.loss, j.device, j.batch_exp))
        if c.compile_s is not None and eager is not None:
            even = core_time.break_even(c.compile_s, c.time.estimate, eager.time.estimate)
            cells[j] = dataclasses.replace(c, eager_s=eager.time.estimate, break_even=even)
    core_s = {j: (c.batch_size, c.time.estimate) for j, c in cells.items()}
    runs = {j: training.train_run(j, r.record, r, core_s) for j, r in on["training"].items() if r.ok}
    replicates = {j: training.seed_runs(r.record, r) for j, r in on["training"].items() if r.ok}
    aa = [c for g, _, _ in groups.values() for c in g.controls]
    reach = [max(c.ratio.high - 1, 1 - c.ratio.low) for c in aa if c.ratio.low is not None]
    floor = max(reach, default=None)
    effects = ()
    if {"autograd", "explicit"} <= set(results.loss_modes):
        train_batch = results.params.train.batch_size
        effects = tuple(
            core_time.loss_effect(
                fw,
                {j.loss: s for j, s in runs.items() if j.framework == fw},
                groups,
                train_batch,
                floor,
                {c.batch_size: c.time for j, c in cells.items() if (j.framework, j.loss) == (fw, "autograd")},
            )
            for fw in results.frameworks
        )
    ratios = tuple(core_time.ratio(b, c) for b, (g, _, _) in groups.items() for c in g.comparisons)
    trends = []
    for fw in results.frameworks:
        for loss in results.loss_modes:
            arms = (f"{fw}/{loss}", f"{REFERENCE}/{loss}")
            points = [(r.batch_size, r.ratio) for r in ratios if (r.a, r.b) == arms and r.ratio.estimate]
            trends += [core_time.ratio_trend(fw, loss, points)] if fw != REFERENCE and points else []
    baselines = [r.record.baseline_test.to_dict() for r in on["training"].values() if r.ok]
    baseline = {k: v for k, v in (baselines or [{}])[0].items() if v is not None}
    return Device(
        device,
        tuple(runs.values()),
        baseline,
        sum(b != baselines[0] for b in baselines),
        training.accuracy_differences(results, device),
        training.seed_differences(replicates, results.params.timing.margin),
        training.identical_modes(replicates),
        effects,
        tuple(cells.values()),
        ratios,
        tuple(core_time.group_noise(b, g, design) for b, (g, _, design) in groups.items()),
        tuple(trends),
        breakdown.breakdown_batches(results, device, peak),
        {k: sum(not r.ok for r in v.values()) for k, v in on.items()},
        {k: len(v) for k, v in on.items()},
    )
