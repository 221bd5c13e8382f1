"""`python -m deeppose time-block`: the block server of one framework in one timing group
(deeppose.measure.block_server), which the `time` stage starts.

    python -m deeppose time-block --framework chainer --device cpu --batch-exp 3

It loads the framework, the batch and the weights once, then forks one live child per block
(deeppose.measure.turns), whose session is `CoreSession`:

* set-up: the network from the neutral weights given to it, the batch on the device, a compiling
  framework's first call (`compile_s`), then one untimed first run: in round 0, of an arm's own
  cell (not its twins), the memory pass (deeppose.measure.memory_probe), elsewhere a plain run;
  then `timing.warmup` more untimed runs;
* each turn: one core process (forward in train mode + loss + backward) through
  `deeppose.measure.harness.measure` (gradients cleared outside the timed region, the device
  synchronised before every clock read, no garbage collection inside it). The positive control
  (`cell#planted`) adds counted CPU work inside the timed region, iterations of a Python loop
  calibrated at set-up to `timing.planted` times its own calibration run: a known slowdown the
  group's comparison must find, which other load slows as it slows the core process;
* finish, for a cell's own arm: in round 0 only, the update of each optimiser in
  `timing.optimizers` (the study's MomentumSGD beside the default training's Adam; an update's cost
  depends on neither the batch nor the loss); and the loss alone, forward + backward into the
  network's predictions, `LOSS_REPEATS` times, because at about 0.1 % of the core process only a
  direct measurement can show what the explicit backward changes. Every arm reports the threads,
  versions and fairness manifest of the process that timed.
"""

from __future__ import annotations

import argparse
import gc
import time
from dataclasses import replace
from typing import Any

from deeppose.backends import backend_class
from deeppose.config import TIMING_PRESETS, Params, load_params
from deeppose.core import CoreData, core_data, core_inputs
from deeppose.errors import DeepPoseError
from deeppose.grid import Job, add_job_arguments, job_from_args
from deeppose.measure import fairness
from deeppose.measure.block_server import serve
from deeppose.measure.blocks import PLANTED, Arm, cell_of
from deeppose.measure.harness import measure
from deeppose.measure.memory_probe import peak_memory

LOSS_WARMUP, LOSS_REPEATS = 20, 200  # the loss takes ~0.1-0.3 ms: many runs for microseconds
SPIN_PROBE = 100_000  # iterations of one calibration probe of `spin` (a few ms)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_job_arguments(parser, batch_exp=True)
    parser.add_argument(
        "--synthetic-input", action="store_true", help="seeded random tensors, not the test set"
    )
    presets = parser.add_mutually_exclusive_group()
    for name in TIMING_PRESETS:
        presets.add_argument(
            f"--{name}", dest="preset", action="store_const", const=name, help="the `time` preset"
        )


def spin(iterations: int) -> None:
    """A fixed count of pure-Python iterations: CPU work, so other load stretches it as it stretches
    the core process (a wait on the clock would keep its wall time and shrink under load)."""
    for _ in range(iterations):
        pass


def spin_iterations(seconds: float) -> int:
    """How many `spin` iterations take `seconds` in this process now: the fastest of three probes,
    the one least disturbed by other load."""
    fastest = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        spin(SPIN_PROBE)
        fastest = min(fastest, time.perf_counter() - start)
    return round(seconds / fastest * SPIN_PROBE)


class CoreSession:
    """One arm of one round in its live child (see the module docstring)."""

    def __init__(
        self, params: Params, job: Job, arm: Arm, round_: int, synthetic: bool, data: CoreData
    ) -> None:
        self.params, self.job, self.arm, self.round = params, job, arm, round_
        self.own = arm.replica == 0
        backend, (images, targets, visible) = core_inputs(params, job, synthetic, data)
        self.backend, self.inputs = backend, (images, targets, visible)

        def core() -> Any:
            return backend.forward_backward(images, targets, visible, job.loss)

        # A compiling framework's first call (trace + compile + one run), before anything else runs
        # the step; None for eager frameworks, which run nothing here.
        self.compile_s = backend.compile_core(images, targets, visible, job.loss)
        backend.zero_grad()
        self.memory = None
        if self.own and round_ == 0:
            try:
                self.memory = peak_memory(backend, core)  # its own untimed pass: the first steady call
            except (
                DeepPoseError
            ):  # a kernel that refuses /proc/self/clear_refs: no figure, not a failed block
                pass
            first = []
        else:
            first = self._runs(core, 1)
        self.warmup_s = first + self._runs(core, params.timing.warmup)
        self.timed = core
        if arm.replica == PLANTED:
            # Calibrated on a run of its own, after warm-up, so that the slowdown is a share of
            # this process's own speed; counted once here, so the timed runs all do the same work.
            calibration = self._runs(core, 1)
            self.warmup_s += calibration
            iterations = spin_iterations(params.timing.planted * calibration[0])
            self.timed = lambda: (core(), spin(iterations))
        # Everything set up so far lives until the child exits: freezing it keeps the full
        # collection before each turn (deeppose.measure.harness) from walking the framework's
        # whole heap (0.12 s a turn for PyTorch, on a 2-core EPYC).
        gc.collect()
        gc.freeze()

    def _runs(self, run: Any, repeats: int) -> list[float]:
        if repeats == 0:
            return []
        backend = self.backend
        return measure(run, repeats=repeats, setup=backend.zero_grad, sync=backend.synchronize).samples_s

    def run(self) -> float:
        return self._runs(self.timed, 1)[0]

    def finish(self) -> dict[str, Any]:
        backend, params = self.backend, self.params
        steps_s: dict[str, list[float]] = {}
        loss_s: list[float] = []
        if self.own:
            for name in params.timing.optimizers if self.round == 0 else ():
                # Every update applies the gradients the last timed core run left (an update's cost
                # does not depend on the gradients' values), so no core run is repeated for them.
                backend.set_optimizer(replace(params.optimizer, name=name))
                # At least one untimed update: the first allocates the optimiser's state (Adam's moments).
                step_run = measure(
                    backend.optimizer_step,
                    repeats=params.timing.repeats,
                    warmup=max(params.timing.warmup, 1),
                    sync=backend.synchronize,
                )
                steps_s[name] = step_run.samples_s
            images, targets, visible = self.inputs
            pred = backend.to_numpy(backend.forward(images, train=True))
            run, setup = backend.loss_probe(
                pred, backend.to_numpy(targets), backend.to_numpy(visible), self.job.loss
            )
            loss_s = measure(
                run, repeats=LOSS_REPEATS, warmup=LOSS_WARMUP, setup=setup, sync=backend.synchronize
            ).samples_s
        return {
            "warmup_s": self.warmup_s,
            "optimizer_steps_s": steps_s,
            "loss_s": loss_s,
            "compile_s": self.compile_s,
            "memory_bytes": self.memory.above_baseline_bytes if self.memory else None,
            "memory_source": self.memory.source if self.memory else None,
            "compile": backend.compile_info(),
            # Read after the runs: a library loaded lazily by the first run shows here too.
            "threads": backend.thread_info(),
            "versions": backend.versions(),
            "fairness": fairness.collect(self.job.framework, self.job.device, str(backend.dtype)),
        }


def run(args: argparse.Namespace) -> None:
    params, job = load_params(args.params).with_preset(args.preset), job_from_args(args)
    backend_class(job.framework)  # imports the framework before any fork
    data = core_data(params, int(job.batch_exp), args.synthetic_input)

    def open_arm(name: str, round_: int) -> Any:
        arm = Arm.parse(name)
        framework, loss = cell_of(name).split("/")
        job_of_arm = replace(job, framework=framework, loss=loss)
        return lambda: CoreSession(params, job_of_arm, arm, round_, args.synthetic_input, data)

    serve(open_arm)
