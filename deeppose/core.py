"""The core process's inputs: the network from the seeded neutral weights and one batch on the
device, the same for every stage that times it (`time`'s blocks and `breakdown`).

The batch is 2^N prepared test samples (centre crops; indices cycle when the batch is larger than
the test set) or, with `--synthetic-input`, seeded random tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from deeppose import memory
from deeppose.config import Params
from deeppose.errors import DeepPoseError
from deeppose.grid import Job
from deeppose.records import paths
from deeppose.records.results import job_id


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
        raise DeepPoseError(
            f"the prepared test set under {paths.PREPARED}/ is empty; rerun `python -m deeppose prepare`"
        )
    batch = make_batch(data, np.arange(batch_size) % len(data), crop="center")
    return tuple(
        np.ascontiguousarray(array, dtype=np.float32)
        for array in (batch.images, batch.targets, batch.visible)
    )


@dataclass(frozen=True)
class CoreData:
    """The framework-free inputs of the core process: one batch and the neutral weights, as numpy
    arrays. A timing block's parent process builds them once and its forked blocks share them."""

    arrays: tuple[np.ndarray, ...]  # images, targets, visible
    weights: dict[str, np.ndarray]


def core_data(params: Params, batch_exp: int, synthetic: bool) -> CoreData:
    """The batch of 2^N samples and the seeded neutral weights."""
    from deeppose.model import init_weights

    batch_size = 2 ** int(batch_exp)
    config = params.model
    arrays = (
        synthetic_batch(batch_size, params.seed, config.n_joints) if synthetic else prepared_batch(batch_size)
    )
    return CoreData(arrays, init_weights(params.seed, config.n_joints))


def core_inputs(
    params: Params, job: Job, synthetic: bool, data: CoreData | None = None
) -> tuple[Any, tuple[Any, Any, Any]]:
    """The backend with the seeded neutral weights and one batch of 2^N samples on the device:
    what the core process runs on, the same in the `time` and `breakdown` stages. The backend
    comes first, so that an unusable device fails before any data is read or written; `data`,
    when given, is `core_data`'s for this job."""
    from deeppose.backends import create_backend

    backend = create_backend(job.framework, job.device, params.timing.threads)
    data = data or core_data(params, int(job.batch_exp), synthetic)
    backend.seed(params.seed)
    backend.load_weights(data.weights, params.model)
    on_device = tuple(backend.to_device(array) for array in data.arrays)
    backend.synchronize()
    return backend, on_device


def job_header(params: Params, job: Job, synthetic: bool, warmup: int, repeats: int) -> dict[str, Any]:
    """The fields that say what was measured, shared by the `time` and `breakdown` results."""
    return {
        "job": job_id(job),
        "batch_size": 2 ** int(job.batch_exp),
        "warmup": warmup,
        "repeats": repeats,
        "seed": params.seed,
        "input": "synthetic" if synthetic else "prepared-test",
    }


def check_memory(params: Params, jobs: list[Job]) -> None:
    """Refuse batches that this machine's free memory cannot hold all at once (deeppose.memory:
    one job per process alive together, e.g. a timing round's live arms), before any allocation:
    an out-of-memory kill would take the whole machine's jobs with it."""
    on_cpu = [job for job in jobs if job.device == "cpu"]
    if len(on_cpu) == 1:
        job = on_cpu[0]
        where = f"--batch-exp {job.batch_exp}"
        memory.check_fits(
            2 ** int(job.batch_exp),
            job.framework,
            params.optimizer.name,
            params.model.lrn,
            where,
            key="MemAvailable",
        )
    elif on_cpu:
        batch = 2 ** int(on_cpu[0].batch_exp)
        need = sum(
            memory.estimate_bytes(batch, job.framework, params.optimizer.name, params.model.lrn)
            for job in on_cpu
        )
        have = memory.meminfo("MemAvailable")
        if have is not None and need > have:
            raise DeepPoseError(
                f"--batch-exp {on_cpu[0].batch_exp}: batch {batch} needs about {memory.gib(need)} of memory "
                f"in {len(on_cpu)} processes alive together (estimated from the layer shapes), more than "
                f"this machine's {memory.gib(have)} (MemAvailable); use a smaller batch"
            )
