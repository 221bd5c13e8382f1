"""Stage `time`: one timing group, every framework x loss mode of the grid at one device and
batch size, measured together in rounds (docs/timing.md).

    python -m deeppose time --device cpu --batch-exp 3 [--fast | --rigorous]

Each round runs every arm of the group as a fresh live process, forked by its framework's block
server (deeppose.measure.block_server, `python -m deeppose time-block`): the cells, an A/A twin of
each framework's first cell (identical arms: what noise alone does) and a planted positive
control (the group's first cell with a known slowdown: what the design can see). The arms of a
round take turns run by run in alternating order (deeppose.measure.turns), so each round's paired
ratios come from runs seconds apart; the round order is drawn from a generator seeded by (seed,
device, batch exponent). After timing.blocks rounds, one more is added while any of the group's
comparisons is inconclusive (deeppose.verdicts), up to timing.max_blocks, every look at Pocock's
widened level. A round that other processes disturbed is run again at once, every attempt kept.

One result per cell goes to `results/time/<framework>/<loss>/<device>/b<N>.json` (a
`TimingResult`): its blocks, its twin's and planted control's blocks when it has them, the design,
and its time (the median of its round medians with a t-interval on their logarithms). Nothing is
written unless every round of the group ran.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deeppose import provenance
from deeppose.config import TIMING_PRESETS, Params, load_params
from deeppose.core import check_memory, job_header
from deeppose.errors import DeepPoseError
from deeppose.grid import DEVICES, Group, Job, check_job
from deeppose.measure.block_server import server_pool
from deeppose.measure.blocks import (
    PLANTED,
    Arm,
    Pool,
    Slot,
    count_cpus,
    interfered,
    paired,
    planted,
    run_rounds,
    schedule,
    twin,
    usable,
)
from deeppose.measure.environment import describe as describe_environment
from deeppose.measure.lock import measurement_lock
from deeppose.memory import check_machine
from deeppose.model import total_flops
from deeppose.records import paths
from deeppose.records.atomic import json_text, write_together
from deeppose.records.timing import BlockRecord, IntervalRecord, TimingDesign, TimingResult
from deeppose.stats import cell_estimate
from deeppose.timing_block import LOSS_REPEATS
from deeppose.verdicts import classify, paired_log_ratio, sequential_level

BLOCK_TIMEOUT_S = 1800  # a block of AlexNet at batch 4096 on a slow CPU; beyond it, something hangs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help=f"device: {', '.join(DEVICES)} (default: cpu)")
    presets = parser.add_mutually_exclusive_group()
    for name, values in TIMING_PRESETS.items():
        settings = ", ".join(f"timing.{key} {value}" for key, value in values.items())
        presets.add_argument(
            f"--{name}", dest="preset", action="store_const", const=name, help=f"{settings} (recorded)"
        )
    parser.add_argument("--batch-exp", type=int, required=True, help="batch size 2^N")
    parser.add_argument(
        "--synthetic-input", action="store_true", help="seeded random tensors, not the test set"
    )


def schedule_seed(params: Params, group: Group) -> int:
    return int(
        np.random.SeedSequence([params.seed, DEVICES.index(group.device), group.batch_exp]).generate_state(1)[
            0
        ]
    )


def server_commands(
    params: Params, group: Group, synthetic: bool, preset: str | None = None
) -> dict[str, list[str]]:
    """One block server per framework of the group (deeppose.measure.block_server)."""
    commands = {}
    for framework in group.frameworks:
        argv = [
            sys.executable,
            "-m",
            "deeppose",
            "time-block",
            "--params",
            str(params.path),
            "--framework",
            framework,
            "--loss",
            group.loss_modes[0],
            "--device",
            group.device,
            "--batch-exp",
            str(group.batch_exp),
        ]
        commands[framework] = (
            argv + (["--synthetic-input"] if synthetic else []) + ([f"--{preset}"] if preset else [])
        )
    return commands


def group_arms(group: Group) -> tuple[tuple[Arm, ...], list[str], str]:
    """Every cell of the group, an A/A twin of each framework's first cell and a positive control
    (`cell#planted`) of the group's first cell; with the twinned cells and the planted one."""
    cells = [f"{job.framework}/{job.loss}" for job in group.jobs()]
    controls = [f"{framework}/{group.loss_modes[0]}" for framework in group.frameworks]
    arms = tuple(Arm(cell) for cell in cells) + tuple(Arm(cell, 1) for cell in controls)
    return arms + (Arm(cells[0], PLANTED),), controls, cells[0]


def undecided(
    blocks: Sequence[BlockRecord], pairs: Sequence[tuple[str, str]], margin: float, level: float
) -> list[tuple[str, str]]:
    """The pairs whose paired ratio's interval at `level` is still inconclusive (deeppose.verdicts)."""
    found = []
    for a, b in pairs:
        both = paired(blocks, a, b)
        _, low, high = paired_log_ratio(both.a, both.b, level)
        if not classify(low, high, margin).decided:
            found.append((a, b))
    return found


def _measure(
    params: Params, group: Group, pool: Pool, slots: Sequence[Slot], preset: str | None, **watch: Any
) -> tuple[list[BlockRecord], dict[str, dict[str, Any]], TimingDesign]:
    """Rounds until every comparison of the group is decided or timing.max_blocks have run: the
    first timing.blocks rounds, then one more while any is inconclusive, each look at the per-look
    level that keeps the chance of a false decision over all looks at DECISION_LEVEL's."""
    timing = params.timing
    level = sequential_level(timing.blocks, timing.max_blocks)
    pairs = group.comparisons()
    rounds = timing.blocks
    blocks, extras = run_rounds(pool, [s for s in slots if s.round < rounds], timing.repeats, **watch)
    looks = 1
    open_pairs = undecided(blocks, pairs, timing.margin, level)
    while open_pairs and rounds < timing.max_blocks:
        more, reported = run_rounds(pool, [s for s in slots if s.round == rounds], timing.repeats, **watch)
        blocks += more
        extras.update(reported)
        rounds += 1
        looks += 1
        open_pairs = undecided(blocks, pairs, timing.margin, level)
    design = TimingDesign.create(
        preset=preset,
        pairing="turns",
        first_rounds=timing.blocks,
        max_rounds=timing.max_blocks,
        looks=looks,
        stopped="max_rounds" if open_pairs else "decided",
        margin=timing.margin,
        decision_level=level,
        planted=timing.planted,
    )
    return blocks, extras, design


def cell_time(blocks: list[BlockRecord]) -> IntervalRecord:
    """The median of the final block medians that no other process disturbed, with its t-interval
    on logarithms; when every final block stayed disturbed through its retries, of all of them, and
    the method says so."""
    kept = usable(blocks)
    interval = cell_estimate([float(np.median(b.samples_s)) for b in kept])
    method = (
        f"{interval.method}, every block disturbed"
        if all(interfered(b.reasons) for b in kept)
        else interval.method
    )
    return IntervalRecord(interval.estimate, interval.low, interval.high, interval.n, interval.level, method)


def time_group(
    params: Params,
    group: Group,
    synthetic: bool,
    pool: Pool | None = None,
    preset: str | None = None,
    **watch: Any,
) -> dict[Job, TimingResult]:
    """Run the group's rounds and build one result per cell (see the module docstring). `pool`
    runs the live arms, by default forked by each framework's block server; `preset` replaces the
    file's timing values (deeppose.config.TIMING_PRESETS) and is recorded; `watch` replaces
    run_round's machine readings (probe, load, cores), for tests."""
    params = params.with_preset(preset)
    arms, controls, planted_cell = group_arms(group)
    cells = [arm.cell for arm in arms if arm.replica == 0]
    seed = schedule_seed(params, group)
    slots = schedule(arms, params.timing.max_blocks, seed)
    watch.setdefault("cores", count_cpus(Path("/proc/stat").read_text()))
    try:
        with contextlib.ExitStack() as stack:
            if pool is None:
                commands = server_commands(params, group, synthetic, preset)
                pool = stack.enter_context(server_pool(commands, timeout_s=BLOCK_TIMEOUT_S))
            blocks, extras, design = _measure(params, group, pool, slots, preset, **watch)
    except RuntimeError as error:
        raise DeepPoseError(f"time {group.label}: {error}") from None
    environment = describe_environment()
    results = {}
    for job, cell in zip(group.jobs(), cells):
        own = [b for b in blocks if b.arm == cell]
        time_s = cell_time(own)
        flops = int(total_flops(2**group.batch_exp, params.model.n_joints))
        extra = extras[cell]
        results[job] = TimingResult.create(
            **job_header(params, job, synthetic, params.timing.warmup, params.timing.repeats),
            rounds=len({b.round for b in own}),
            loss_repeats=LOSS_REPEATS,
            schedule_seed=seed,
            group=cells,
            design=design,
            controls=controls,
            planted_cell=planted_cell,
            blocks=own,
            control_blocks=[b for b in blocks if b.arm == twin(cell)],
            planted_blocks=[b for b in blocks if b.arm == planted(cell)],
            time_s=time_s,
            flops=flops,
            flops_per_s=flops / time_s.estimate if time_s.estimate else None,
            threads=extra["threads"],
            versions=extra["versions"],
            compile=extra["compile"],
            memory_source=extra["memory_source"],
            environment={**environment, "fairness": extra["fairness"]},
            provenance=provenance.record("time", params, group),
        )
    return results


def summary_line(result: TimingResult) -> str:
    t = result.time_s
    spread = f" [{t.low * 1e3:.4g}, {t.high * 1e3:.4g}]" if t.low is not None and t.high is not None else ""
    disturbed = sum(b.disturbed for b in result.blocks)
    estimate_ms = t.estimate * 1e3 if t.estimate else float("nan")
    return (
        f"{result.job.framework}/{result.job.loss}: {estimate_ms:.4g}{spread} ms "
        f"over {len({b.round for b in result.blocks})} blocks ({disturbed} disturbed attempts)"
    )


def run(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    check_machine(params)
    check_job(params.grid.frameworks[0], params.grid.loss_modes[0], args.device, args.batch_exp)
    group = Group.of(params.grid, args.device, args.batch_exp)
    with measurement_lock(f"time {group.label}"):
        live = [Job(*arm.cell.split("/"), group.device, group.batch_exp) for arm in group_arms(group)[0]]
        check_memory(params, live)  # a round's arms are alive together
        results = time_group(params, group, synthetic=args.synthetic_input, preset=args.preset)
    write_together({paths.timing_result(job): json_text(r.to_dict()).encode() for job, r in results.items()})
    print(f"time {group.label}: " + "; ".join(summary_line(r) for r in results.values()))
