"""`python -m deeppose time-block`: timing blocks, the child processes of the `time` stage.

    python -m deeppose time-block --framework chainer --loss explicit --device cpu --batch-exp 3
    python -m deeppose time-block --serve --framework chainer --device cpu --batch-exp 3

With `--serve` it is the framework's block server of one group (deeppose.measure.block_server): it loads
the framework, the batch and the weights once, then forks one block per `framework/loss round`
line read from stdin.

A block is one fresh process that loads one framework and times one cell (deeppose.measure.blocks): the
core process (forward in train mode + loss + backward) `timing.warmup` + `timing.repeats` times
through `deeppose.measure.harness.measure` (gradients cleared outside the timed region, the device
synchronised before every clock read, no garbage collection inside it); in a group's first round
only, the update of each optimiser in `timing.optimizers` the same way (the study's MomentumSGD
beside the default training's Adam, so that both set-ups' iterations can be built from timing
results; an update's cost depends on neither the batch nor the loss, and Chainer's take 0.5 s each,
so the other rounds skip them); and the loss alone, forward + backward into the
network's predictions, `LOSS_REPEATS` times, because at about 0.1 % of the core process only a
direct measurement can show what the explicit backward changes. It writes no file: its result is
the last line of its stdout (`blocks.emit_block`), with the threads, versions and fairness
manifest of the process that timed.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from deeppose.backends import backend_class
from deeppose.config import Params, load_params
from deeppose.core import CoreData, core_data, core_inputs
from deeppose.errors import DeepPoseError
from deeppose.grid import Job, add_job_arguments, job_from_args
from deeppose.measure import fairness
from deeppose.measure.block_server import serve
from deeppose.measure.blocks import BlockOutput, emit_block
from deeppose.measure.harness import measure
from deeppose.measure.memory_probe import peak_memory

LOSS_WARMUP, LOSS_REPEATS = 20, 200  # the loss takes ~0.1-0.3 ms: many runs for microseconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_job_arguments(parser, batch_exp=True)
    parser.add_argument(
        "--synthetic-input", action="store_true", help="seeded random tensors, not the test set"
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="fork one block per `framework/loss round` line on stdin (--loss is ignored)",
    )


def measure_block(
    params: Params, job: Job, synthetic: bool, data: CoreData | None = None, updates: bool = True
) -> BlockOutput:
    """Every measurement of one block of `job` (see the module docstring); `updates`: time the
    optimisers' updates too (a group's first round)."""
    warmup, repeats = params.timing.warmup, params.timing.repeats
    backend, (images, targets, visible) = core_inputs(params, job, synthetic, data)

    def core() -> Any:
        return backend.forward_backward(images, targets, visible, job.loss)

    # A compiling framework's first call (trace + compile + one run), before anything else runs
    # the step; None for eager frameworks, which run nothing here.
    compile_s = backend.compile_core(images, targets, visible, job.loss)
    backend.zero_grad()
    try:
        memory = peak_memory(backend, core)  # its own untimed pass: the first steady call
    except DeepPoseError:  # a kernel that refuses /proc/self/clear_refs: no figure, not a failed block
        memory = None
    core_run = measure(
        core, repeats=repeats, warmup=warmup, setup=backend.zero_grad, sync=backend.synchronize
    )
    steps_s: dict[str, list[float]] = {}
    for name in params.timing.optimizers if updates else ():
        # Every update applies the gradients the last timed core run left (an update's cost does
        # not depend on the gradients' values), so no core run is repeated for them.
        backend.set_optimizer(replace(params.optimizer, name=name))
        # At least one untimed update: the first allocates the optimiser's state (Adam's moments).
        step_run = measure(
            backend.optimizer_step, repeats=repeats, warmup=max(warmup, 1), sync=backend.synchronize
        )
        steps_s[name] = step_run.samples_s
    pred = backend.to_numpy(backend.forward(images, train=True))
    run, setup = backend.loss_probe(pred, backend.to_numpy(targets), backend.to_numpy(visible), job.loss)
    loss_s = measure(
        run, repeats=LOSS_REPEATS, warmup=LOSS_WARMUP, setup=setup, sync=backend.synchronize
    ).samples_s
    extra = {
        "optimizer_steps_s": steps_s,
        "loss_s": loss_s,
        "compile_s": compile_s,
        "memory_bytes": memory.above_baseline_bytes if memory else None,
        "memory_source": memory.source if memory else None,
        "compile": backend.compile_info(),
        # Read after the runs: a library loaded lazily by the first run shows here too.
        "threads": backend.thread_info(),
        "versions": backend.versions(),
        "fairness": fairness.collect(job.framework, job.device, str(backend.dtype)),
    }
    return BlockOutput(tuple(core_run.samples_s), tuple(w / 1e9 for w in core_run.warmup_ns), extra)


def run(args: argparse.Namespace) -> None:
    params, job = load_params(args.params), job_from_args(args)
    if not args.serve:
        emit_block(measure_block(params, job, args.synthetic_input))
        return
    backend_class(job.framework)  # imports the framework before any fork
    data = core_data(params, int(job.batch_exp), args.synthetic_input)

    def run_block(request: str) -> BlockOutput:
        cell, round_ = request.split()
        framework, loss = cell.split("/")
        job_of_cell = replace(job, framework=framework, loss=loss)
        return measure_block(params, job_of_cell, args.synthetic_input, data, updates=int(round_) == 0)

    serve(run_block)
