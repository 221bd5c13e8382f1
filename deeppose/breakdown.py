"""Stage `breakdown`: time each layer's forward and backward inside the core process.

    python -m deeppose breakdown --framework chainer --loss autograd --device cpu --batch-exp 4

The study guessed from totals that "the dominant influence on the learning time is the
implementation of each layer such as convolution"; this stage measures it. For one job it builds
the network from the seeded neutral weights, puts 2^N prepared test samples (centre crops, as the
`time` stage does) or, with `--synthetic-input`, seeded random tensors on the device, and then:

1. runs `timing.warmup` untimed core processes (forward + loss + backward), and one profiled one;
2. `breakdown.repeats` times, alternately: one core process timed without any profiler
   (`deeppose.measure.harness.measure`: perf_counter_ns, device synchronised, gradients cleared outside),
   and one under the framework's own profiler (`Backend.profile_core`: torch.profiler, Chainer's
   function hooks), which gives one raw event per top-level framework call;
3. groups the events into layers once for every framework (`deeppose.layer_groups`): conv1..conv5,
   fc6..fc8, relu, pool, lrn, dropout, loss, other; forward and backward each; median over repeats;
4. checks the sum rule: the layers must add up to the un-profiled core time within
   `layer_groups.SUM_RULE_TOLERANCE`; the remainder is the overhead, always shown;
5. measures the machine's fp32 peak in a child process (so that no library it loads stays in this
   one) with the `peak` stage's kernels (`deeppose.peak.measure_rates`, n = `--peak-size`) on the
   job's device, recorded beside the layers with the `peak` stage's best rate when its file exists.
   The record holds no share of a peak: the report's one ceiling takes these rates with every other
   rate of the run (`deeppose.report.ceilings`).

The result goes to `results/breakdown/<framework>/<loss>/<device>/b<N>.json`; a failed sum rule is
recorded (`sum_rule.ok`) and printed, not fatal: the report shows it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

from deeppose import layer_groups, provenance
from deeppose.config import Params, load_params
from deeppose.core import check_memory
from deeppose.errors import DeepPoseError
from deeppose.grid import Job, add_job_arguments, job_from_args
from deeppose.measure.lock import measurement_lock
from deeppose.memory import check_machine
from deeppose.records import paths
from deeppose.records.results import BreakdownResult, PeakResult, RecordError

PEAK_SIZE = 2048  # ~17 GFLOP per product: ~0.1 s here, big enough for the BLAS to reach its best
PEAK_REPEATS = 5
PEAK_TIMEOUT_S = 300


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_job_arguments(parser, batch_exp=True)
    parser.add_argument(
        "--synthetic-input",
        action="store_true",
        help="profile on seeded random tensors instead of the prepared test set (needs no data)",
    )
    parser.add_argument(
        "--peak-size",
        type=int,
        default=PEAK_SIZE,
        help=f"matrix size n of the peak measurement (default {PEAK_SIZE})",
    )


# --- the machine's peak, measured in a child process -------------------------------------
def measure_peak(device: str, size: int, threads: int, repeats: int = PEAK_REPEATS) -> dict[str, Any]:
    """`deeppose.peak.measure_rates` in a fresh interpreter; its JSON on the last line of stdout."""
    code = (
        "import json; from deeppose.peak import measure_rates; "
        f"print(json.dumps(measure_rates({device!r}, {int(size)}, {int(threads)}, 1, {int(repeats)})))"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=PEAK_TIMEOUT_S, check=True
        )
    except subprocess.CalledProcessError as error:
        tail = (error.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise DeepPoseError(f"the peak measurement on {device} failed: {tail[0]}") from None
    except subprocess.TimeoutExpired:
        raise DeepPoseError(f"the peak measurement on {device} took over {PEAK_TIMEOUT_S} s") from None
    return json.loads(done.stdout.strip().splitlines()[-1])


def peak_record(device: str, size: int, threads: int) -> dict[str, Any]:
    """The peak measured here, with the `peak` stage's value beside it when its file exists."""
    record = measure_peak(device, size, threads)
    record["source"] = "measured in this stage (child process), best of the rates"
    stage_file = paths.matmul_peak()
    try:
        stage = PeakResult.read(stage_file)
        record["peak_stage"] = {"path": str(stage_file), "peak_flops_per_s": stage.peak_flops_per_s}
    except RecordError:
        record["peak_stage"] = None
    return record


# --- the job ----------------------------------------------------------------------------
def breakdown_job(params: Params, job: Job, synthetic: bool, peak_size: int = PEAK_SIZE) -> BreakdownResult:
    """Measure one job (see the module docstring) and return its result."""
    from deeppose.core import core_inputs, job_header
    from deeppose.measure.environment import describe as describe_environment
    from deeppose.measure.harness import measure

    warmup, threads = params.timing.warmup, params.timing.threads
    repeats = params.breakdown.repeats
    batch_size = 2 ** int(job.batch_exp)
    config = params.model

    load_before = os.getloadavg()  # other processes on the machine make layer times noisy: say so
    backend, (images, targets, visible) = core_inputs(params, job, synthetic)

    def core() -> Any:
        return backend.forward_backward(images, targets, visible, job.loss)  # noqa: F821 (del below)

    def timed_core(runs: int) -> list[float]:
        return measure(core, repeats=runs, setup=backend.zero_grad, sync=backend.synchronize).samples_s  # noqa: F821

    if warmup:
        timed_core(warmup)  # the warm-up runs, times dropped
    backend.profile_core(images, targets, visible, job.loss, 1)  # the profiler's own first-use costs
    core_samples: list[float] = []
    profiled_samples: list[float] = []
    events: list[dict[str, Any]] = []
    tool = time_basis = ""
    for repeat in range(repeats):  # alternate, so that a drift in machine load hits both alike
        core_samples += timed_core(1)
        profile = backend.profile_core(images, targets, visible, job.loss, 1)
        profiled_samples += profile["core_time_s"]
        events += [dict(event, repeat=repeat) for event in profile["events"]]
        tool, time_basis = profile["tool"], profile["time_basis"]
    threads_info, versions = backend.thread_info(), backend.versions()
    load_after = os.getloadavg()
    del backend, images, targets, visible

    peak = peak_record(job.device, peak_size, threads)
    summary = layer_groups.summarize(events, core_samples, profiled_samples, batch_size, config.n_joints)
    return BreakdownResult.create(
        **job_header(params, job, synthetic, warmup, repeats),
        model={"dropout": config.dropout, "lrn": config.lrn},
        tool=tool,
        time_basis=time_basis,
        core_samples_s=core_samples,
        profiled_core_samples_s=profiled_samples,
        **summary,
        peak_flops_per_s=peak["peak_flops_per_s"],
        peak=peak,
        threads=threads_info,
        load_average={"before": list(load_before), "after": list(load_after)},  # 1, 5, 15 min
        versions=versions,
        environment=describe_environment(),
        provenance=provenance.record("breakdown", params, job),
    )


def check_job(args: argparse.Namespace) -> Job:
    if args.peak_size < 64:
        raise DeepPoseError(
            f"--peak-size: {args.peak_size} is too small; use at least 64 (default {PEAK_SIZE})"
        )
    return job_from_args(args)


def summary_lines(result: BreakdownResult) -> list[str]:
    rule = result.sum_rule
    top = sorted(result.layers, key=lambda row: row["time_s"], reverse=True)[:4]
    lines = [
        f"{result.job.framework}/{result.job.loss}/{result.job.device} batch {result.batch_size}: "
        f"core {result.core_time_s:.4f} s, layers {result.layers_time_s:.4f} s, "
        f"overhead {result.overhead_s:+.4f} s ({rule['relative_gap']:+.1%}, "
        f"tolerance ±{rule['tolerance']:.0%}: "
        f"{'ok' if rule['ok'] else 'NOT MET'}); largest: "
        + ", ".join(f"{row['layer']} {row['phase']} {row['time_s']:.4f} s" for row in top)
    ]
    lines += [f"grouping: {note}" for note in result.grouping_notes]
    return lines


def run(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    check_machine(params)
    job = check_job(args)
    with measurement_lock(f"breakdown {job.framework}/{job.loss}/{job.device} b{job.batch_exp}"):
        check_memory(params, [job])
        result = breakdown_job(params, job, synthetic=args.synthetic_input, peak_size=args.peak_size)
    out = paths.breakdown_result(job)
    result.write(out)
    lines = summary_lines(result)
    print(f"{lines[0]} -> {out}")
    for line in lines[1:]:
        print(line)
    if not result.sum_rule["ok"]:
        print(
            f"deeppose breakdown: warning: the layers do not add up to the core time within "
            f"±{result.sum_rule['tolerance']:.0%} (gap {result.sum_rule['relative_gap']:+.1%}); "
            "recorded as sum_rule.ok = false",
            file=sys.stderr,
        )
