"""A small hand-made project with results written through deeppose.records.results, for the report's and
compare's tests.

The project has a grid of 2 frameworks x 2 loss modes x {cpu, cuda}, timing batch sizes
1, 2, 32 and the per-layer breakdown at batch 2. Nothing ran on cuda. On cpu:
- PyTorch autograd and explicit have the *same* per-iteration compute times: no significant
  difference; Chainer explicit is 20 % slower than Chainer autograd: significant.
- Chainer is 1.6x slower than PyTorch per iteration (the study's ratio).
- The timing job chainer/explicit/cpu/b32 is missing; pytorch/autograd/cpu/b2 is noisy.
- Timing records are schema 5: two A/A twins per group (PyTorch and Chainer autograd, `CONTROLS`),
  each equivalent to its cell, and a positive control (`PLANTED_CELL` with `PLANTED` more time in
  every timed run), which the rule finds (slower).
- Chainer explicit's log ends with a truncated line (a killed job).
- Chainer's per-layer breakdown (autograd, 3 processes per arm, `BREAKDOWN_SPREAD`) spends almost
  all its extra time over PyTorch in convolutions, with an interval above 50 %: the convolutions
  explain most of the difference. The breakdown job chainer/explicit/cpu/b1 is missing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import yaml

from deeppose import provenance
from deeppose.breakdown import combine
from deeppose.config import Params, load_params
from deeppose.grid import Group, Job
from deeppose.layer_groups import CONV_LAYERS, FC_LAYERS, PHASES
from deeppose.records import paths
from deeppose.records.breakdown import BreakdownResult
from deeppose.records.data import PrepareSummary
from deeppose.records.peak import PeakResult
from deeppose.records.results import job_id
from deeppose.records.timing import TimingResult
from deeppose.records.training import TrainMetrics
from deeppose.stages import STAGES

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORKS, MODES, EXPS = ("pytorch", "chainer"), ("autograd", "explicit"), (0, 1, 5)
ITERATIONS = 40
# mean per-iteration compute time (s); pytorch's two modes share one sample (see `compute_times`)
COMPUTE_MEAN = {
    ("pytorch", "autograd"): 1.0,
    ("pytorch", "explicit"): 1.0,
    ("chainer", "autograd"): 1.6,
    ("chainer", "explicit"): 1.92,
    ("jax", "autograd"): 0.8,
    ("jax", "explicit"): 0.8,
    ("pytorch_compile", "autograd"): 1.1,
    ("pytorch_compile", "explicit"): 1.1,
}
ALL_FRAMEWORKS = ("pytorch", "chainer", "jax", "pytorch_compile")  # make_project(frameworks=ALL_FRAMEWORKS)
# compiling frameworks: first-call seconds; JAX's step beats eager PyTorch's, compiled PyTorch's does not
COMPILE_S = {"jax": 5.0, "pytorch_compile": 20.0}
PEAK = 150e9  # the best observed kernel rate: above THEORETICAL's, as on a machine whose cores boost
BANDWIDTH = 12 * 2**26 / 0.02  # bytes/s, the triad: about 40 GB/s
THEORETICAL = {
    "cpu_model": "AMD EPYC",
    "microarchitecture": "Zen 4",
    "cores": 2,
    "clock_hz": 2.0e9,
    "flops_per_cycle_per_core": 32,
    "flops_per_s": 2 * 2.0e9 * 32,
    "how": "2 cores x 2.00 GHz (the clock the kernel reports; boost may exceed it) x 32 fp32 FLOPs per cycle",
}
MISSING_TIMING = Job("chainer", "explicit", "cpu", 5)
NOISY_TIMING = Job("pytorch", "autograd", "cpu", 1)
BREAKDOWN_EXP = 1
# (total conv time, total fc time, core time) in seconds of each breakdown job on cpu
BREAKDOWN = {
    ("pytorch", "autograd"): (0.02, 0.01, 0.035),
    ("pytorch", "explicit"): (0.02, 0.01, 0.036),
    ("chainer", "autograd"): (0.15, 0.012, 0.17),
}
MISSING_BREAKDOWN = Job("chainer", "explicit", "cpu", BREAKDOWN_EXP)


def stats(samples: list[float], noisy: bool | None = None) -> dict:
    a = np.asarray(samples)
    q1, median, q3 = np.percentile(a, [25, 50, 75])
    iqr_over_median = float((q3 - q1) / median)
    return {
        "n": int(a.size),
        "mean": float(a.mean()),
        "variance": float(a.var(ddof=1)),
        "std": float(a.std(ddof=1)),
        "median": float(median),
        "q1": float(q1),
        "q3": float(q3),
        "iqr": float(q3 - q1),
        "min": float(a.min()),
        "max": float(a.max()),
        "ci95_low": 0.0,
        "ci95_high": 0.0,
        "ci_method": "t",
        "iqr_over_median": iqr_over_median,
        "noisy": iqr_over_median > 0.1 if noisy is None else noisy,
    }


def compute_times(framework: str, loss: str) -> list[float]:
    """Per-iteration compute times; PyTorch's two modes get the identical sample."""
    seed = ALL_FRAMEWORKS.index(framework) * 10 + 10 + (loss == "explicit" and framework != "pytorch")
    rng = np.random.default_rng(seed)
    return list(COMPUTE_MEAN[framework, loss] + rng.normal(0.0, 0.01, ITERATIONS))


def environment() -> dict:
    return {
        "cpu": "Test CPU 9000",
        "cores": 2,
        "usable_cores": 2,
        "python": "3.11.9",
        "packages": {"numpy": "1.26.4", "torch": "2.13.0"},
        "commit": "abc123",
    }


def write_train(params: Params, job: Job) -> None:
    times = compute_times(job.framework, job.loss)
    elapsed, log = 0.0, []
    for i, t in enumerate(times, 1):
        elapsed += t + 0.05
        epoch = (i - 1) // 20 + 1
        log.append(
            {
                "kind": "iteration",
                "epoch": epoch,
                "iteration": i,
                "loss": 0.2 / i,
                "elapsed_s": elapsed,
                "compute_s": t,
            }
        )
        if i % 20 == 0:
            log.append(
                {
                    "kind": "eval",
                    "epoch": i // 20,
                    "iteration": i,
                    "elapsed_s": elapsed,
                    "test_loss": 0.1 / i,
                    "pcp": 0.1,
                    "pdj": 0.2,
                    "pck": 0.3,
                }
            )
    text = "".join(json.dumps(r) + "\n" for r in log)
    if job == Job("chainer", "explicit", "cpu"):
        text += '{"kind": "iteration", "epo'  # killed mid-write
    paths.train_log(job).parent.mkdir(parents=True, exist_ok=True)
    paths.train_log(job).write_text(text)
    TrainMetrics.create(
        job=job_id(job),
        seed=0,
        params={"train": {"optimizer": params.train.optimizer, "batch_size": 16}, "model": {}},
        epochs=2,
        iterations=ITERATIONS,
        batch_size=16,
        train_samples=320,
        test_samples=80,
        resumed_from_epoch=0,
        train_time_s=elapsed,
        eval_time_s=3.0,
        iteration_time_s=stats(times),
        final_train_loss=0.01,
        final_test={
            "loss": 0.0025,
            "pcp": 0.4,
            "pdj": 0.5,
            "pck": 0.6 if job.framework == "pytorch" else 0.55,
        },
        baseline_test={"loss": 0.02, "pcp": 0.05, "pdj": 0.1, "pck": 0.15},
        scored_joints="annotated",
        test_per_image=per_image(80),
        threads={"requested": 2, "native": [{"library": "openblas", "num_threads": 2}]},
        versions={job.framework: "1.0"},
        environment=environment(),
        provenance=provenance.record("train", params, job),
    ).write(paths.train_metrics(job))


def core_mean(job: Job) -> float:
    return {"pytorch": 0.05, "chainer": 0.1, "jax": 0.04, "pytorch_compile": 0.06}[
        job.framework
    ] * 2**job.batch_exp


ROUNDS = 4
OPTIMIZERS = ("momentum_sgd", "adam")  # timing.optimizers
CONTROLS = ("pytorch/autograd", "chainer/autograd")  # the cells with an A/A twin
PLANTED_CELL = "chainer/autograd"  # the cell with a planted positive control
PLANTED = 0.10  # its planted slowdown: params.yaml's timing.planted


def loss_mean(job: Job) -> float:
    """The loss alone: Chainer's explicit backward is 50 µs slower than its autograd; PyTorch's two
    modes cost the same."""
    return 100e-6 + (50e-6 if (job.framework, job.loss) == ("chainer", "explicit") else 0.0)


def block(
    job: Job,
    round_: int,
    arm: str,
    attempt: int = 0,
    disturbed: bool = False,
    optimizers: tuple[str, ...] = OPTIMIZERS,
) -> dict:
    rng = np.random.default_rng([job.batch_exp, round_, attempt, len(arm), job.loss == "explicit"])
    drift = 1 + 0.01 * (round_ - 1.5)  # the machine slows a little every round, for every arm alike
    slowdown = 1 + PLANTED if arm.endswith("#planted") else 1.0
    return {
        "round": round_,
        "position": 0,
        "arm": arm,
        "attempt": attempt,
        "samples_s": list(core_mean(job) * drift * slowdown * (1 + rng.uniform(-0.002, 0.002, 3))),
        "warmup_s": [core_mean(job) * 3],
        "waiting_cpu_s": [0.0002] * 3,
        "settle_s": [0.01] * 3,
        "optimizer_steps_s": {name: [0.01 * core_mean(job) / 2**job.batch_exp] * 3 for name in optimizers}
        if round_ == 0
        else {},  # the timing stage times updates in the first round only
        "loss_s": list(loss_mean(job) * drift * (1 + rng.uniform(-0.002, 0.002, 5))),
        "compile_s": COMPILE_S.get(job.framework),
        "memory_bytes": int(2.5e8 * 2**job.batch_exp**0.5),
        "started_at": 1000.0 + round_,
        "ended_at": 1000.5 + round_,
        "interference": {
            "wall_s": 0.5,
            "machine_busy_s": 0.5,
            "own_s": 0.5,
            "other_cpu_s": 0.0,
            "other_cores": 0.0,
            "load_before": [0.1, 0.1, 0.1],
            "cores": 2,
        },
        "disturbed": disturbed,
        "reasons": ["outlier: max/median 1.40 > 1.25"] if disturbed else [],
    }


def per_image(n: int) -> dict[str, list[float]]:
    """Per-image test scores of a network well ahead of the mean pose (deeppose.metrics.per_image)."""
    rng = np.random.default_rng(n)
    return {
        "sq_error": list(14 * 0.0025 * rng.uniform(0.5, 1.5, n)),
        "visible": [14.0] * n,
        "baseline_sq_error": list(14 * 0.02 * rng.uniform(0.5, 1.5, n)),
        **{
            key: list(rng.binomial(size, p, n).astype(float))
            for key, size, p in (
                ("pcp_hits", 10, 0.4),
                ("baseline_pcp_hits", 10, 0.05),
                ("pdj_hits", 14, 0.5),
                ("baseline_pdj_hits", 14, 0.1),
                ("pck_hits", 14, 0.45),
                ("baseline_pck_hits", 14, 0.08),
            )
        },
        "pcp_counted": [10.0] * n,
        "pdj_counted": [14.0] * n,
        "pck_counted": [14.0] * n,
    }


def manifest(framework: str) -> dict:
    """A fairness manifest: Chainer's OpenBLAS held to AVX2 by an environment pin, PyTorch on AVX-512."""
    chainer = framework == "chainer"
    return {
        "framework": framework,
        "device": "cpu",
        "cpu": {
            "model": "Test CPU 9000",
            "vendor": "AuthenticAMD",
            "family": 25,
            "model_number": 17,
            "stepping": 1,
            "isa_flags": ["avx2", "avx512f"],
        },
        "env": {"OPENBLAS_CORETYPE": "Haswell"},
        "native": {},
        "common": {
            "dtype": "float32",
            "threads": 2,
            "kernel_library": "numpy + openblas" if chainer else "onednn",
            "kernel_isa": "Haswell" if chainer else "AVX512",
            "fp32_math": "ieee",
            "runtime_checks": chainer,
        },
    }


def write_peak(params: Params) -> None:
    """The peak stage's record: PEAK from a standard kernel, BANDWIDTH, a theoretical peak at the
    kernel's nominal clock."""
    PeakResult.create(
        device="cpu",
        n=4096,
        peak_flops_per_s=PEAK,
        best="torch_conv3x3",
        kernels={},
        rates_flops_per_s={"numpy_matmul": 1.2e11, "torch_conv3x3": PEAK},
        threads={"requested": 2},
        bandwidth={
            "n": 2**26,
            "last_level_cache_bytes": 2**25,
            "bytes": 12 * 2**26,
            "samples_s": [0.02] * 3,
            "bytes_per_s": BANDWIDTH,
        },
        bandwidth_bytes_per_s=BANDWIDTH,
        theoretical=THEORETICAL,
        theoretical_flops_per_s=THEORETICAL["flops_per_s"],
        environment=environment(),
        provenance=provenance.record("peak", params),
    ).write(paths.matmul_peak())


def write_timing(params: Params, job: Job) -> None:
    cell, optimizers = f"{job.framework}/{job.loss}", params.timing.optimizers
    blocks = [block(job, r, cell, optimizers=optimizers) for r in range(ROUNDS)]
    if job == NOISY_TIMING:  # a disturbed first attempt, rerun
        first = block(job, 0, cell, optimizers=optimizers)
        blocks.insert(0, {**first, "disturbed": True, "reasons": ["outlier: max/median 1.40 > 1.25"]})
        blocks[1]["attempt"] = 1
    flops = 6.58e9 * 2**job.batch_exp
    medians = [float(np.median(b["samples_s"])) for b in blocks if not b["disturbed"]]
    TimingResult.create(
        job=job_id(job),
        batch_size=2**job.batch_exp,
        warmup=1,
        repeats=3,
        rounds=ROUNDS,
        loss_repeats=200,
        seed=0,
        schedule_seed=7,
        input="random",
        group=[f"{fw}/{loss}" for fw in params.grid.frameworks for loss in MODES],
        design={
            "preset": None,
            "pairing": "turns",
            "first_rounds": ROUNDS,
            "max_rounds": ROUNDS,
            "looks": 1,
            "stopped": "max_rounds",
            "margin": params.timing.margin,
            "decision_level": 0.90,
            "planted": PLANTED,
        },
        controls=[c for c in CONTROLS if c.split("/")[0] in params.grid.frameworks],
        planted_cell=PLANTED_CELL if "chainer" in params.grid.frameworks else None,
        blocks=blocks,
        control_blocks=[block(job, r, cell + "#1", optimizers=optimizers) for r in range(ROUNDS)]
        if cell in CONTROLS
        else [],
        planted_blocks=[block(job, r, cell + "#planted", optimizers=optimizers) for r in range(ROUNDS)]
        if cell == PLANTED_CELL
        else [],
        time_s={
            "estimate": float(np.median(medians)),
            "low": min(medians),
            "high": max(medians),
            "n": ROUNDS,
            "level": 0.95,
            "method": "test",
        },
        flops=int(flops),
        flops_per_s=flops / float(np.median(medians)),
        threads={"requested": 2},
        versions={job.framework: "1.0"},
        memory_source="host resident set",
        compile={"compiler": "test", "cache": "no persistent cache"} if job.framework in COMPILE_S else {},
        environment={**environment(), "fairness": manifest(job.framework)},
        provenance=provenance.record("time", params, Group.of(params.grid, job.device, job.batch_exp)),
    ).write(paths.timing_result(job))


# each framework's processes run this much slower than its first, round by round: the replicates
BREAKDOWN_SPREAD = {"pytorch": (1.0, 1.03, 0.99), "chainer": (1.0, 0.98, 1.04)}


def measured_processes(events: list[dict], core_s: float, factors: tuple[float, ...]) -> list[dict]:
    """What deeppose.breakdown_process measures in each of a hand-made arm's fresh processes (one
    repeat each): process r, in round r, takes factors[r] times the given times."""
    return [
        {
            "events": [dict(e, time_s=e["time_s"] * f) for e in events],
            "core_samples_s": [core_s * f],
            "profiled_core_samples_s": [core_s * 1.02 * f],
            "round": r,
            "position": 0,
            "load_average": {"before": [0.0] * 3, "after": [0.0] * 3},
        }
        for r, f in enumerate(factors)
    ]


def write_breakdown(params: Params, job: Job) -> None:
    """A breakdown result as the stage writes it, from events the backend already placed in layers."""
    conv_s, fc_s, core_s = BREAKDOWN[job.framework, job.loss]
    events = []
    for phase in PHASES:
        events += [
            {"repeat": 0, "phase": phase, "name": "conv", "layer": layer, "time_s": conv_s / 10}
            for layer in CONV_LAYERS
        ]
        events += [
            {"repeat": 0, "phase": phase, "name": "linear", "layer": layer, "time_s": fc_s / 6}
            for layer in FC_LAYERS
        ]
        events.append({"repeat": 0, "phase": phase, "name": "relu", "layer": "relu", "time_s": 0.0005})
    processes = measured_processes(events, core_s, BREAKDOWN_SPREAD[job.framework])
    BreakdownResult.create(
        job=job_id(job),
        batch_size=2**job.batch_exp,
        warmup=1,
        repeats=1,
        seed=0,
        input="random",
        model={"dropout": 0.0, "lrn": False},
        tool="test",
        time_basis="host wall time",
        peak_flops_per_s=PEAK,
        peak={"best": "torch_matmul", "rates_flops_per_s": {"torch_matmul": PEAK}},
        **combine(processes, 2**job.batch_exp),
        threads={"requested": 2},
        versions={job.framework: "1.0"},
        environment=environment(),
        provenance=provenance.record(
            "breakdown", params, STAGES["breakdown"].group(params.grid, job.device, job.batch_exp)
        ),
    ).write(paths.breakdown_result(job))


def make_project(
    root: Path,
    devices: tuple[str, ...] = ("cpu", "cuda"),
    optimizer: str = "momentum_sgd",
    optimizers: tuple[str, ...] = OPTIMIZERS,
    frameworks: tuple[str, ...] = FRAMEWORKS,
) -> Path:
    """params.yaml with a small grid plus results for every cpu job but one timing job; `optimizer`
    trains, `optimizers` are timed (timing.optimizers)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"].update(optimizer=optimizer, lr=0.01, momentum=0.9, batch_size=16, epochs=3)
    raw["timing"]["optimizers"] = list(optimizers)
    raw["grid"].update(
        frameworks=list(frameworks), loss_modes=list(MODES), devices=list(devices), batch_exponents=list(EXPS)
    )
    raw["breakdown"]["batch_exponents"] = [BREAKDOWN_EXP]
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    cwd = Path.cwd()
    os.chdir(root)
    try:
        params = load_params("params.yaml")
        for job in params.train_jobs():
            if job.device == "cpu":
                write_train(params, job)
        for job in params.timing_jobs():
            if job.device == "cpu" and job != MISSING_TIMING:
                write_timing(params, job)
        for job in params.breakdown_jobs():
            if job.device == "cpu" and job != MISSING_BREAKDOWN:
                write_breakdown(params, job)
        write_peak(params)
        PrepareSummary.create(
            source="synthetic",
            seed=0,
            inputs=[],
            crop={"size": 256},
            kept={"train": 290, "test": 95},
            filtering={
                "train": {
                    "drop_rules": ["no visible joint", "joints do not fit in 256 crop", "span >= 227"],
                    "dropped": 15,
                },
                "test": {
                    "drop_rules": ["no visible joint"],
                    "dropped": 0,
                    "kept_breaking_train_rules": {"joints do not fit in 256 crop": 0, "span >= 227": 3},
                    "kept_with_joint_outside_centre_crop": 4,
                },
            },
            dropped={"total": 15, "by_reason": {"span >= 227": 15}, "samples": []},
            arrays={},
            sha256="feed",
            provenance=provenance.record("prepare", params),
        ).write(paths.prepared_summary())
    finally:
        os.chdir(cwd)
    return root
