"""How much host memory a training or timing batch needs, estimated from the network's layer shapes,
so that a batch the machine cannot hold is refused with the figure instead of ending in the
kernel's out-of-memory killer (batch 2^12 needs tens of GiB).

The estimate, in float32 bytes, for one forward + loss + backward + optimiser update on the CPU:
- weights, their gradients, the optimiser's state (MomentumSGD one array per weight, Adam two)
  and the update's temporaries (one weight-sized array);
- per image, the input and every layer output that backward keeps (convolution, ReLU, LRN, pooling,
  fully connected, dropout mask), twice: backward holds the gradient of each beside it;
- for Chainer, per image, the im2col buffer of its largest convolution and its gradient (Chainer's
  CPU convolutions are matrix products over those columns; oneDNN under PyTorch convolves directly);
- RUNTIME_BYTES for the interpreter and the framework's libraries (about 0.5 GiB measured).
Measured against the peak resident size of one step (tests/test_memory.py): per image PyTorch
8.4 MB against 12 MB estimated, Chainer 22 MB against 25 MB (AMD EPYC, batches 4 and 16).
"""

from __future__ import annotations

import os
from pathlib import Path

from deeppose.config import Params
from deeppose.errors import DeepPoseError
from deeppose.grid import FRAMEWORKS
from deeppose.model import CONVS, INPUT_SIZE, POOL_KERNEL, POOL_STRIDE, feature_sizes, linears, weight_shapes

FLOAT = 4  # bytes
RUNTIME_BYTES = 512 * 2**20
OPTIMIZER_ARRAYS = {"momentum_sgd": 1, "adam": 2}  # state arrays per weight
MEMINFO = Path("/proc/meminfo")


def weight_count(n_joints: int = 14) -> int:
    total = 0
    for shape in weight_shapes(n_joints).values():
        size = 1
        for dim in shape:
            size *= dim
        total += size
    return total


def activation_floats(lrn: bool, n_joints: int = 14) -> int:
    """Floats per image of the input and the layer outputs that backward keeps."""
    total = 3 * INPUT_SIZE * INPUT_SIZE
    for conv, size in zip(CONVS, feature_sizes()):
        out = conv.out_channels * size * size
        total += 2 * out  # convolution and ReLU outputs
        if lrn and conv.lrn:
            total += out
        if conv.pool:
            pooled = (size - POOL_KERNEL) // POOL_STRIDE + 1
            total += conv.out_channels * pooled * pooled
    for fc in linears(n_joints):
        total += fc.out_features * (3 if fc.relu_dropout else 1)  # output, ReLU, dropout mask
    return total


def im2col_floats() -> int:
    """Floats per image of the largest convolution's im2col columns (Chainer on CPU)."""
    return max(conv.in_channels * conv.kernel**2 * size * size for conv, size in zip(CONVS, feature_sizes()))


def per_image_bytes(framework: str, lrn: bool = False) -> int:
    workspace = 2 * im2col_floats() if framework == "chainer" else 0
    return FLOAT * (2 * activation_floats(lrn) + workspace)


def estimate_bytes(batch_size: int, framework: str, optimizer: str, lrn: bool = False) -> int:
    """Host memory one training step at `batch_size` needs (see the module docstring)."""
    arrays = 2 + OPTIMIZER_ARRAYS[optimizer] + 1  # weights, gradients, state, update temporaries
    return RUNTIME_BYTES + FLOAT * arrays * weight_count() + batch_size * per_image_bytes(framework, lrn)


def meminfo(key: str) -> int | None:
    """A /proc/meminfo figure in bytes (MemTotal, MemAvailable), None where there is none."""
    try:
        for line in MEMINFO.read_text().splitlines():
            name, _, value = line.partition(":")
            if name == key:
                return int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_fits(
    batch_size: int, framework: str, optimizer: str, lrn: bool, where: str, key: str = "MemTotal"
) -> None:
    """A one-line DeepPoseError when the batch needs more than this machine's `key` memory."""
    have = meminfo(key)
    need = estimate_bytes(batch_size, framework, optimizer, lrn)
    if have is not None and need > have:
        raise DeepPoseError(
            f"{where}: batch {batch_size} needs about {gib(need)} of memory with {framework} "
            f"(estimated from the layer shapes), more than this machine's {gib(have)} ({key}); "
            "use a smaller batch"
        )


def machine_problems(params: Params) -> list[str]:
    """Thread counts beyond the usable cores (one segfaults in the BLAS) and batches beyond the
    machine's memory (MemTotal: a batch that can never fit here; the stages check MemAvailable)."""
    cores = len(os.sched_getaffinity(0))
    problems = [
        f"{section}.threads: {threads} is more than the {cores} cores this process may use; "
        f"allowed: 0 (all) to {cores}"
        for section, threads in (("train", params.train.threads), ("timing", params.timing.threads))
        if threads > cores
    ]
    known = [name for name in params.grid.frameworks if name in FRAMEWORKS]
    if "cpu" not in params.grid.devices or not known:
        return problems
    optimizer, lrn = params.train.optimizer, params.model.lrn
    hungriest = max(known, key=lambda name: per_image_bytes(name, lrn))
    batches = {
        "train.batch_size": params.train.batch_size,
        "grid.batch_exponents": 2 ** max(params.grid.batch_exponents),
    }
    for where, batch in batches.items():
        try:
            check_fits(batch, hungriest, optimizer, lrn, where)
        except DeepPoseError as error:
            problems.append(str(error))
    return problems


def check_machine(params: Params) -> None:
    """Refuse parameters this machine cannot run, every problem on one line naming the file."""
    problems = machine_problems(params)
    if problems:
        raise DeepPoseError("\n".join(f"{params.path}: {problem}" for problem in problems))
