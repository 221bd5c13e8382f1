"""`python -m deeppose breakdown-process`: one fresh process of one breakdown arm (the `breakdown`
stage's child; deeppose.breakdown runs every arm's processes in interleaved rounds).

    python -m deeppose breakdown-process --framework chainer --loss autograd --batch-exp 3 --out F

It builds the network from the seeded neutral weights, puts 2^N prepared test samples (centre
crops, as the `time` stage does) or, with `--synthetic-input`, seeded random tensors on the device,
and then:

1. runs `timing.warmup` untimed core processes (forward + loss + backward), and one profiled one;
2. `breakdown.repeats` times, alternately: one core process timed without any profiler
   (`deeppose.measure.harness.measure`: perf_counter_ns, device synchronised, gradients cleared
   outside), and one under the framework's own profiler (`Backend.profile_core`: torch.profiler,
   Chainer's function hooks), which gives one raw event per top-level framework call.

It writes the raw events and both series of core times as JSON to `--out`; the grouping into
layers and the sum rule are the parent's (deeppose.layer_groups).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from deeppose.config import Params, load_params
from deeppose.grid import Job, add_job_arguments, job_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_job_arguments(parser, batch_exp=True)
    parser.add_argument(
        "--synthetic-input", action="store_true", help="seeded random tensors, not the test set"
    )
    parser.add_argument("--out", required=True, help="JSON file the measurement goes to")


def measure_process(params: Params, job: Job, synthetic: bool) -> dict[str, Any]:
    """One process's raw measurement (see the module docstring)."""
    from deeppose.core import core_inputs
    from deeppose.measure.harness import measure

    load_before = os.getloadavg()  # other processes on the machine make layer times noisy: say so
    backend, (images, targets, visible) = core_inputs(params, job, synthetic)

    def core() -> Any:
        return backend.forward_backward(images, targets, visible, job.loss)

    def timed_core(runs: int) -> list[float]:
        return measure(core, repeats=runs, setup=backend.zero_grad, sync=backend.synchronize).samples_s

    if params.timing.warmup:
        timed_core(params.timing.warmup)  # the warm-up runs, times dropped
    backend.profile_core(images, targets, visible, job.loss, 1)  # the profiler's own first-use costs
    core_samples: list[float] = []
    profiled_samples: list[float] = []
    events: list[dict[str, Any]] = []
    tool = time_basis = ""
    for repeat in range(params.breakdown.repeats):  # alternate, so that load drift hits both alike
        core_samples += timed_core(1)
        profile = backend.profile_core(images, targets, visible, job.loss, 1)
        profiled_samples += profile["core_time_s"]
        events += [dict(event, repeat=repeat) for event in profile["events"]]
        tool, time_basis = profile["tool"], profile["time_basis"]
    return {
        "events": events,
        "core_samples_s": core_samples,
        "profiled_core_samples_s": profiled_samples,
        "tool": tool,
        "time_basis": time_basis,
        "threads": backend.thread_info(),
        "versions": backend.versions(),
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},  # 1, 5, 15 min
    }


def run(args: argparse.Namespace) -> None:
    params, job = load_params(args.params), job_from_args(args)
    measured = measure_process(params, job, args.synthetic_input)
    Path(args.out).write_text(json.dumps(measured), encoding="utf-8")
