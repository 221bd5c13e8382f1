"""Stage `breakdown`: time each layer's forward and backward inside the core process, in
interleaved fresh processes, so that the layer times come with intervals.

    python -m deeppose breakdown --device cpu --batch-exp 3

The study guessed from totals that "the dominant influence on the learning time is the
implementation of each layer such as convolution"; this stage measures it. One job is one group:
every framework x loss mode of the grid with a per-layer breakdown (not those in
`grid.NO_BREAKDOWN`) at one device and batch size. It

1. runs `breakdown.processes` rounds; round r runs every arm once as a fresh process
   (`python -m deeppose breakdown-process`, deeppose.breakdown_process: warm-up, then
   `breakdown.repeats` core processes timed without and under the framework's profiler, taking
   turns), in the group's order in even rounds and reversed in odd ones, so that a drift of the
   machine hits every arm alike;
2. groups each process's events into layers (`deeppose.layer_groups`): conv1..conv5, fc6..fc8,
   relu, pool, lrn, dropout, loss, other; forward and backward each; the median over its repeats;
   and checks the sum rule (the layers must add up to the un-profiled core time within
   `layer_groups.SUM_RULE_TOLERANCE`; the remainder is the overhead, always shown);
3. pools each arm's processes (medians over every repeat of every process) and keeps every
   process apart (`BreakdownResult.processes`): the replicates the report's intervals come from
   (deeppose.report.layer_replicates); the two loss modes are replicates too, for the layers;
4. measures the machine's fp32 peak once, in a child process (so that no library it loads stays in
   this one), with the `peak` stage's kernels (`deeppose.peak.measure_rates`, n = `--peak-size`),
   recorded in every arm's result with the `peak` stage's best rate when its file exists. The
   record holds no share of a peak: the report's one ceiling takes these rates with every other
   rate of the run (`deeppose.report.ceilings`).

One result per arm goes to `results/breakdown/<framework>/<loss>/<device>/b<N>.json`, written
together once every process ran; a failed sum rule is recorded (`sum_rule.ok`) and printed, not
fatal: the report shows it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from deeppose import layer_groups, provenance
from deeppose.config import Params, load_params
from deeppose.core import check_memory, job_header
from deeppose.errors import DeepPoseError
from deeppose.grid import DEVICES, Group, Job, check_job
from deeppose.measure.lock import measurement_lock
from deeppose.memory import check_machine
from deeppose.model import N_JOINTS
from deeppose.records import paths
from deeppose.records.atomic import json_text, write_together
from deeppose.records.breakdown import BreakdownProcess, BreakdownResult
from deeppose.records.peak import PeakResult
from deeppose.records.results import RecordError

PEAK_SIZE = 2048  # ~17 GFLOP per product: ~0.1 s here, big enough for the BLAS to reach its best
PEAK_REPEATS = 5
PEAK_TIMEOUT_S = 300
PROCESS_TIMEOUT_S = 1800  # one process of AlexNet at batch 4096 on a slow CPU; beyond it, something hangs

T = TypeVar("T")
RunProcess = Callable[[Job], dict[str, Any]]  # one fresh process of an arm -> its raw measurement


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help=f"device: {', '.join(DEVICES)} (default: cpu)")
    parser.add_argument("--batch-exp", type=int, required=True, help="batch size 2^N")
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
def run_child(argv: list[str], what: str, timeout_s: int) -> str:
    """Run a child interpreter and return its stdout; a failure is one line naming `what` and the
    child's last line of stderr."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=True).stdout
    except subprocess.CalledProcessError as error:
        tail = (error.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise DeepPoseError(f"{what} failed: {tail[0]}") from None
    except subprocess.TimeoutExpired:
        raise DeepPoseError(f"{what} took over {timeout_s} s") from None


def measure_peak(device: str, size: int, threads: int, repeats: int = PEAK_REPEATS) -> dict[str, Any]:
    """`deeppose.peak.measure_rates` in a fresh interpreter; its JSON on the last line of stdout."""
    code = (
        "import json; from deeppose.peak import measure_rates; "
        f"print(json.dumps(measure_rates({device!r}, {int(size)}, {int(threads)}, 1, {int(repeats)})))"
    )
    out = run_child([sys.executable, "-c", code], f"the peak measurement on {device}", PEAK_TIMEOUT_S)
    return json.loads(out.strip().splitlines()[-1])


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


# --- the rounds ---------------------------------------------------------------------------
def rounds(arms: Sequence[T], processes: int) -> list[list[T]]:
    """Round r runs every arm once: in the arms' order in even rounds, reversed in odd ones, so
    that a drift of the machine and a place in the round hit every arm alike."""
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    return [list(arms) if r % 2 == 0 else list(reversed(arms)) for r in range(processes)]


def child_process(params: Params, synthetic: bool) -> RunProcess:
    """Each call runs one fresh `python -m deeppose breakdown-process` and returns what it measured."""

    def run_one(job: Job) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="deeppose-breakdown-") as folder:
            out = Path(folder) / "process.json"
            argv = [sys.executable, "-m", "deeppose", "breakdown-process", "--params", str(params.path)]
            argv += ["--framework", job.framework, "--loss", job.loss, "--device", job.device]
            argv += ["--batch-exp", str(job.batch_exp), "--out", str(out)]
            argv += ["--synthetic-input"] if synthetic else []
            run_child(argv, f"breakdown {job.label}: its process", PROCESS_TIMEOUT_S)
            return json.loads(out.read_text(encoding="utf-8"))

    return run_one


def measure_group(params: Params, group: Group, run_one: RunProcess) -> dict[Job, list[dict[str, Any]]]:
    """Every arm's processes, run in `breakdown.processes` interleaved rounds; each measurement
    with its round and its position in the round."""
    measured: dict[Job, list[dict[str, Any]]] = {job: [] for job in group.jobs()}
    for round_, order in enumerate(rounds(group.jobs(), params.breakdown.processes)):
        for position, job in enumerate(order):
            measured[job].append({**run_one(job), "round": round_, "position": position})
    return measured


PROCESS_FIELDS = (  # what a BreakdownProcess keeps of its own summary
    "core_samples_s",
    "profiled_core_samples_s",
    "core_time_s",
    "profiled_core_time_s",
    "layers",
    "layers_time_s",
    "overhead_s",
    "sum_rule",
    "grouping_notes",
)


def combine(
    processes: Sequence[Mapping[str, Any]], batch_size: int, n_joints: int = N_JOINTS
) -> dict[str, Any]:
    """An arm's layer fields from its processes' raw measurements: each process summarised apart
    (`processes`, the replicates) and all pooled, every repeat of every process counted once (the
    events keep their process's index; `repeat` counts over the pooled repeats)."""
    parts, pooled_events, core, profiled = [], [], [], []
    for index, measured in enumerate(processes):
        own = {
            **measured,
            **layer_groups.summarize(
                measured["events"],
                measured["core_samples_s"],
                measured["profiled_core_samples_s"],
                batch_size,
                n_joints,
            ),
        }
        parts.append(
            BreakdownProcess.create(
                round=measured["round"],
                position=measured["position"],
                load_average=measured["load_average"],
                **{key: own[key] for key in PROCESS_FIELDS},
            )
        )
        offset = len(profiled)
        pooled_events += [
            dict(e, process=index, repeat=offset + int(e["repeat"])) for e in measured["events"]
        ]
        core += measured["core_samples_s"]
        profiled += measured["profiled_core_samples_s"]
    pooled = layer_groups.summarize(pooled_events, core, profiled, batch_size, n_joints)
    return {**pooled, "core_samples_s": core, "profiled_core_samples_s": profiled, "processes": parts}


# --- the group ----------------------------------------------------------------------------
def breakdown_group(
    params: Params,
    group: Group,
    synthetic: bool,
    peak_size: int = PEAK_SIZE,
    run_one: RunProcess | None = None,
) -> dict[Job, BreakdownResult]:
    """Measure one group (see the module docstring) and return one result per arm; `run_one`
    replaces the fresh child processes, for tests."""
    from deeppose.measure.environment import describe as describe_environment

    measured = measure_group(params, group, run_one or child_process(params, synthetic))
    peak = peak_record(group.device, peak_size, params.timing.threads)
    environment = describe_environment()
    results = {}
    for job, processes in measured.items():
        last = processes[-1]
        results[job] = BreakdownResult.create(
            **job_header(params, job, synthetic, params.timing.warmup, params.breakdown.repeats),
            model={"dropout": params.model.dropout, "lrn": params.model.lrn},
            tool=last["tool"],
            time_basis=last["time_basis"],
            **combine(processes, 2 ** int(job.batch_exp), params.model.n_joints),
            peak_flops_per_s=peak["peak_flops_per_s"],
            peak=peak,
            threads=last["threads"],
            versions=last["versions"],
            environment=environment,
            provenance=provenance.record("breakdown", params, group),
        )
    return results


def summary_lines(result: BreakdownResult) -> list[str]:
    rule = result.sum_rule
    top = sorted(result.layers, key=lambda row: row["time_s"], reverse=True)[:4]
    lines = [
        f"{result.job.framework}/{result.job.loss}/{result.job.device} batch {result.batch_size}, "
        f"{len(result.processes)} processes: "
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
    if args.peak_size < 64:
        raise DeepPoseError(
            f"--peak-size: {args.peak_size} is too small; use at least 64 (default {PEAK_SIZE})"
        )
    check_job(params.grid.frameworks[0], params.grid.loss_modes[0], args.device, args.batch_exp)
    group = Group.of(params.grid, args.device, args.batch_exp, breakdown=True)
    if not group.frameworks:
        raise DeepPoseError("grid.frameworks: none has a per-layer breakdown; nothing to run")
    with measurement_lock(f"breakdown {group.label}"):
        for job in group.jobs():  # one process alive at a time
            check_memory(params, [job])
        results = breakdown_group(params, group, synthetic=args.synthetic_input, peak_size=args.peak_size)
    write_together(
        {paths.breakdown_result(job): json_text(r.to_dict()).encode() for job, r in results.items()}
    )
    for job, result in results.items():
        lines = summary_lines(result)
        print(f"{lines[0]} -> {paths.breakdown_result(job)}")
        for line in lines[1:]:
            print(line)
        if not result.sum_rule["ok"]:
            print(
                f"deeppose breakdown: warning: {job.label}: the layers do not add up to the core time "
                f"within ±{result.sum_rule['tolerance']:.0%} (gap {result.sum_rule['relative_gap']:+.1%}); "
                "recorded as sum_rule.ok = false",
                file=sys.stderr,
            )
