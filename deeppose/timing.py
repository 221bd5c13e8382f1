"""Stage `time`: one group of interleaved timing blocks, every framework x loss mode of the grid at
one device and batch size.

    python -m deeppose time --device cpu --batch-exp 3

The cells the report compares with each other are measured together (deeppose.measure.blocks): in each of
`timing.blocks` rounds every arm runs one block, a fresh process forked by its framework's block
server (`python -m deeppose time-block --serve`, deeppose.measure.block_server), in an order drawn from a
generator seeded by (seed, device, batch exponent), so drift and interference fall on every arm
alike and two arms pair by round. One cell, the group's first, is
measured twice as two arms: the A/A control, whose comparison shows what noise alone does. Each
block records every raw sample, its warm-ups apart, and what else used the machine meanwhile; a
block that other processes disturbed is rerun at once and every attempt kept.

One result per cell goes to `results/time/<framework>/<loss>/<device>/b<N>.json` (a
`TimingResult`): its blocks, the A/A twin's blocks in the control cell's file, and its time (the
median of its block medians with a t-interval on their logarithms). Nothing is written unless
every block of the group ran.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

import numpy as np

from deeppose import provenance
from deeppose.config import Params, load_params
from deeppose.core import check_memory, job_header
from deeppose.errors import DeepPoseError
from deeppose.grid import DEVICES, Group, Job, check_job
from deeppose.measure.block_server import server_launch
from deeppose.measure.blocks import (
    Block,
    Launch,
    arms_with_control,
    interfered,
    run_blocks,
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
from deeppose.records.results import BlockRecord, IntervalRecord, TimingDesign, TimingResult
from deeppose.stats import cell_estimate
from deeppose.timing_block import LOSS_REPEATS
from deeppose.verdicts import DECISION_LEVEL

BLOCK_TIMEOUT_S = 1800  # a block of AlexNet at batch 4096 on a slow CPU; beyond it, something hangs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help=f"device: {', '.join(DEVICES)} (default: cpu)")
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


def server_commands(params: Params, group: Group, synthetic: bool) -> dict[str, list[str]]:
    """One block server per framework of the group (deeppose.measure.block_server)."""
    commands = {}
    for framework in group.frameworks:
        argv = [
            sys.executable,
            "-m",
            "deeppose",
            "time-block",
            "--serve",
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
        commands[framework] = argv + (["--synthetic-input"] if synthetic else [])
    return commands


def _record(block: Block) -> BlockRecord:
    """A run block as stored: its timing-specific series come from what the block process sent."""
    return BlockRecord.create(
        round=block.round,
        position=block.position,
        arm=block.arm,
        attempt=block.attempt,
        samples_s=list(block.samples_s),
        warmup_s=list(block.warmup_s),
        optimizer_steps_s=block.extra["optimizer_steps_s"],
        loss_s=block.extra["loss_s"],
        compile_s=block.extra["compile_s"],
        memory_bytes=block.extra["memory_bytes"],
        started_at=block.started_at,
        ended_at=block.ended_at,
        interference=block.interference,
        disturbed=block.disturbed,
        reasons=list(block.reasons),
    )


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
    params: Params, group: Group, synthetic: bool, launch: Launch | None = None, **watch: Any
) -> dict[Job, TimingResult]:
    """Run the group's blocks and build one result per cell (see the module docstring). `launch`
    runs one block, by default forked by the framework's block server; `watch` replaces
    run_blocks' machine readings (probe, load, cores), for tests."""
    timing = params.timing
    cells = [f"{job.framework}/{job.loss}" for job in group.jobs()]
    control = cells[0]
    seed = schedule_seed(params, group)
    slots = schedule(arms_with_control(cells, control), timing.blocks, seed)
    try:
        with contextlib.ExitStack() as stack:
            if launch is None:
                commands = server_commands(params, group, synthetic)
                launch = stack.enter_context(server_launch(commands, timeout_s=BLOCK_TIMEOUT_S))
            blocks = run_blocks(slots, launch, **watch)
    except RuntimeError as error:
        raise DeepPoseError(f"time {group.label}: {error}") from None
    environment = describe_environment()
    results = {}
    for job, cell in zip(group.jobs(), cells):
        own = [_record(b) for b in blocks if b.arm == cell]
        twins = [_record(b) for b in blocks if b.arm == twin(cell)]
        time_s = cell_time(own)
        flops = int(total_flops(2**group.batch_exp, params.model.n_joints))
        extra = next(b.extra for b in reversed(blocks) if b.arm == cell)
        results[job] = TimingResult.create(
            **job_header(params, job, synthetic, timing.warmup, timing.repeats),
            rounds=timing.blocks,
            loss_repeats=LOSS_REPEATS,
            schedule_seed=seed,
            group=cells,
            design=TimingDesign.create(
                pairing="blocks",
                first_rounds=timing.blocks,
                max_rounds=timing.blocks,
                looks=1,
                stopped="max_rounds",
                margin=timing.margin,
                decision_level=DECISION_LEVEL,
                planted=timing.planted,
            ),
            controls=[control],
            planted_cell=None,
            blocks=own,
            control_blocks=twins,
            planted_blocks=[],
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
        for job in group.jobs():
            check_memory(params, job)
        results = time_group(params, group, synthetic=args.synthetic_input)
    write_together({paths.timing_result(job): json_text(r.to_dict()).encode() for job, r in results.items()})
    print(f"time {group.label}: " + "; ".join(summary_line(r) for r in results.values()))
