"""Stage `time`: time the study's core process, forward (train mode) + loss + backward.

    python -m deeppose time --framework pytorch --loss autograd --device cpu --batch-exp 3

For one job (framework x loss mode x device x batch size 2^N) this builds the network from the
seeded neutral weights, puts a batch of 2^N prepared test samples (centre crops; indices cycle
when the batch is larger than the test set) or, with `--synthetic-input`, seeded random tensors on
the device, and times the core process with `deeppose.harness.measure`: gradients cleared outside
the timed region, the device synchronised before every clock read, `timing.warmup` runs dropped,
`timing.repeats` runs kept one by one. With `timing.optimizer_step` the optimiser update is timed
the same way, as a separate measurement with its own warm-up. The result, with statistics of the
kept samples, FLOP rate, threads, versions and machine, goes to
`results/time/<framework>/<loss>/<device>/b<N>.json`; nothing is written when the job fails.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from deeppose import memory, paths
from deeppose.atomic import write_json
from deeppose.backends import DEVICES, FRAMEWORKS, LOSS_MODES
from deeppose.config import Job, Params, load_params
from deeppose.errors import DeepPoseError
from deeppose.harness import Measurement, measure
from deeppose.lock import measurement_lock
from deeppose.stats import describe

MAX_BATCH_EXP = 12  # the schema's bound on grid.batch_exponents
CORE_WHAT = "forward + loss + backward"
OPTIMIZER_WHAT = "optimizer update"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--framework", required=True, help="framework backend, e.g. pytorch or chainer")
    parser.add_argument("--loss", required=True, help="loss mode: autograd or explicit")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument(
        "--batch-exp", type=int, required=True, help=f"batch size 2^N, N in 0..{MAX_BATCH_EXP}"
    )
    parser.add_argument(
        "--synthetic-input",
        action="store_true",
        help="time on seeded random tensors instead of the prepared test set (needs no data)",
    )


def check_job(framework: str, loss: str, device: str, batch_exp: int) -> Job:
    """The job, or a one-line DeepPoseError naming the bad value and what is allowed."""
    if framework not in FRAMEWORKS:
        raise DeepPoseError(f"--framework: unknown framework {framework!r}; allowed: {', '.join(FRAMEWORKS)}")
    if loss not in LOSS_MODES:
        raise DeepPoseError(f"--loss: unknown loss mode {loss!r}; allowed: {', '.join(LOSS_MODES)}")
    if device not in DEVICES:
        raise DeepPoseError(f"--device: unknown device {device!r}; allowed: {', '.join(DEVICES)}")
    if not 0 <= batch_exp <= MAX_BATCH_EXP:
        raise DeepPoseError(f"--batch-exp: {batch_exp} is out of range; allowed: 0..{MAX_BATCH_EXP}")
    return Job(framework, loss, device, batch_exp)


# --- input ------------------------------------------------------------------------------
def synthetic_batch(batch_size: int, seed: int, n_joints: int = 14) -> tuple[np.ndarray, ...]:
    """Seeded random images in [0, 1), targets in [0, 1) and ~80% visible joints."""
    from deeppose.model import INPUT_SIZE

    rng = np.random.Generator(np.random.PCG64(seed))
    images = rng.random((batch_size, 3, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
    targets = rng.random((batch_size, 2 * n_joints), dtype=np.float32)
    visible = (rng.random((batch_size, n_joints)) < 0.8).astype(np.float32)
    return images, targets, visible


def prepared_batch(batch_size: int) -> tuple[np.ndarray, ...]:
    """The first `batch_size` prepared test samples (cycled), centre-cropped, as float32 arrays."""
    from deeppose.data.batches import make_batch
    from deeppose.data.dataset import load_prepared

    try:
        data = load_prepared(folder=paths.PREPARED, split="test")
    except FileNotFoundError as error:
        raise DeepPoseError(
            f"prepared test set not found under {paths.PREPARED}/ ({error.filename or error}); run "
            "`python -m deeppose prepare` first, or pass --synthetic-input"
        ) from None
    if len(data) == 0:
        raise DeepPoseError(f"the prepared test set under {paths.PREPARED}/ is empty; rerun `python -m deeppose prepare`")
    batch = make_batch(data, np.arange(batch_size) % len(data), crop="center")
    return tuple(
        np.ascontiguousarray(array, dtype=np.float32) for array in (batch.images, batch.targets, batch.visible)
    )


# --- the measurement --------------------------------------------------------------------
def measurement_record(what: str, measurement: Measurement) -> dict[str, Any]:
    samples = measurement.samples_s
    return {"what": what, "samples_s": samples, "stats": describe(samples)}


def core_inputs(params: Params, job: Job, synthetic: bool) -> tuple[Any, tuple[Any, Any, Any]]:
    """The backend with the seeded neutral weights and one batch of 2^N samples on the device:
    what the core process runs on, the same in the `time` and `breakdown` stages. The backend
    comes first, so that an unusable device fails before any data is read or written."""
    from deeppose.backends import create_backend
    from deeppose.model import init_weights

    config = params.model
    batch_size = 2 ** int(job.batch_exp)
    backend = create_backend(job.framework, job.device, int(params.section("timing")["threads"]))
    if synthetic:
        arrays = synthetic_batch(batch_size, params.seed, config.n_joints)
    else:
        arrays = prepared_batch(batch_size)
    backend.seed(params.seed)
    backend.load_weights(init_weights(params.seed, config.n_joints), config)
    on_device = tuple(backend.to_device(array) for array in arrays)
    backend.synchronize()
    return backend, on_device


def job_header(params: Params, job: Job, synthetic: bool, warmup: int, repeats: int) -> dict[str, Any]:
    """The fields that say what was measured, shared by the `time` and `breakdown` results."""
    return {
        "framework": job.framework,
        "loss": job.loss,
        "device": job.device,
        "batch_exp": int(job.batch_exp),
        "batch_size": 2 ** int(job.batch_exp),
        "warmup": warmup,
        "repeats": repeats,
        "seed": params.seed,
        "input": "synthetic" if synthetic else "prepared-test",
    }


def time_job(params: Params, job: Job, synthetic: bool) -> dict[str, Any]:
    """Run the measurements of one job and return the result (see the module docstring)."""
    from deeppose.environment import describe as describe_environment
    from deeppose.model import total_flops

    timing = params.section("timing")
    warmup, repeats = int(timing["warmup"]), int(timing["repeats"])
    batch_size = 2 ** int(job.batch_exp)
    config = params.model
    backend, (images, targets, visible) = core_inputs(params, job, synthetic)

    def core() -> Any:
        return backend.forward_backward(images, targets, visible, job.loss)

    measurements = {
        "core": measurement_record(
            CORE_WHAT,
            measure(core, repeats=repeats, warmup=warmup, setup=backend.zero_grad, sync=backend.synchronize),
        )
    }
    if timing["optimizer_step"]:
        # Gradients from one untimed core run; each timed update then applies them again (the cost
        # of an update does not depend on the gradients' values).
        backend.set_optimizer(params.optimizer)
        backend.zero_grad()
        core()
        backend.synchronize()
        measurements["optimizer_step"] = measurement_record(
            OPTIMIZER_WHAT,
            measure(backend.optimizer_step, repeats=repeats, warmup=warmup, sync=backend.synchronize),
        )

    flops = int(total_flops(batch_size, config.n_joints))
    median = measurements["core"]["stats"]["median"]
    return {
        **job_header(params, job, synthetic, warmup, repeats),
        "measurements": measurements,
        "flops": flops,
        "flops_per_s": flops / median if median > 0 else None,
        # Read after the runs: a library loaded lazily by the first run shows here too.
        "threads": backend.thread_info(),
        "versions": backend.versions(),
        "environment": describe_environment(),
    }


def summary_line(result: dict[str, Any]) -> str:
    core = result["measurements"]["core"]["stats"]
    std = core["std"] if core["std"] is not None else float("nan")
    rate = result["flops_per_s"]
    line = (
        f"{result['framework']}/{result['loss']}/{result['device']} batch 2^{result['batch_exp']}="
        f"{result['batch_size']} ({result['input']}): core median {core['median']:.4f} s, "
        f"mean {core['mean']:.4f} ± {std:.4f} s (n={core['n']}), "
        f"{rate / 1e9 if rate else float('nan'):.1f} GFLOP/s"
    )
    if core["noisy"]:
        line += f" [noisy: IQR/median {core['iqr_over_median']:.2f}]"
    step = result["measurements"].get("optimizer_step")
    if step:
        line += f"; optimizer step median {step['stats']['median']:.4f} s"
    return line


def check_memory(params: Params, job: Job) -> None:
    """Refuse a batch that this machine's free memory cannot hold (deeppose.memory), before any
    allocation: an out-of-memory kill would take the whole machine's jobs with it."""
    if job.device == "cpu":
        memory.check_fits(
            2 ** int(job.batch_exp), job.framework, params.optimizer.name, params.model.lrn,
            f"--batch-exp {job.batch_exp}", key="MemAvailable",
        )


def run(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    job = check_job(args.framework, args.loss, args.device, args.batch_exp)
    with measurement_lock(f"time {job.framework}/{job.loss}/{job.device} b{job.batch_exp}"):
        check_memory(params, job)
        result = time_job(params, job, synthetic=args.synthetic_input)
    out = paths.timing_result(job)
    write_json(out, result)
    print(f"{summary_line(result)} -> {out}")
