"""The grid's vocabulary: which frameworks, loss modes, devices and batch sizes a job can name.

One module owns these names so that the parameter schema, the CLI, the backends, the stages and
the report agree by construction. It imports nothing heavy: the Snakefile and every stage read it.
Registering a framework is one line in `FRAMEWORK_MODULES` plus its module under
`deeppose/backends/`.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from deeppose.errors import DeepPoseError

# framework name -> the module under deeppose/backends/ that defines its `Backend`
FRAMEWORK_MODULES: dict[str, str] = {
    "pytorch": "deeppose.backends.pytorch",
    "chainer": "deeppose.backends.chainer",
    "jax": "deeppose.backends.jax",
    "pytorch_compile": "deeppose.backends.pytorch_compile",
}
FRAMEWORKS: tuple[str, ...] = tuple(FRAMEWORK_MODULES)
REFERENCE = "pytorch"  # framework ratios are <framework> / PyTorch, as in the study
# frameworks whose kernels span layers, so that no per-layer breakdown exists -> why (the report says it)
NO_BREAKDOWN: dict[str, str] = {
    "jax": "XLA fuses operations across layers, so no time belongs to one layer",
    "pytorch_compile": "Inductor fuses operations across layers, so no time belongs to one layer",
}
LOSS_MODES: tuple[str, ...] = ("autograd", "explicit")
DEVICES: tuple[str, ...] = ("cpu", "cuda")
OPTIMIZERS: tuple[str, ...] = ("momentum_sgd", "adam")
MAX_BATCH_EXP = 12  # 4096 images: far beyond what one CPU or GPU holds for AlexNet's backward


@dataclass(frozen=True)
class Job:
    """One cell of the grid: a training job, or a timing/breakdown job when batch_exp is set."""

    framework: str
    loss: str
    device: str
    batch_exp: int | None = None

    @property
    def label(self) -> str:
        """`pytorch/autograd/cpu` or `pytorch/autograd/cpu/b3`, as result folders name it."""
        parts = [self.framework, self.loss, self.device]
        return "/".join(parts + ([f"b{self.batch_exp}"] if self.batch_exp is not None else []))


def _check(kind: str, option: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise DeepPoseError(f"{option}: unknown {kind} {value!r}; allowed: {', '.join(allowed)}")


def check_job(framework: str, loss: str, device: str, batch_exp: int | None = None) -> Job:
    """The job, or a one-line DeepPoseError naming the bad option and what is allowed."""
    _check("framework", "--framework", framework, FRAMEWORKS)
    _check("loss mode", "--loss", loss, LOSS_MODES)
    _check("device", "--device", device, DEVICES)
    if batch_exp is not None and not 0 <= batch_exp <= MAX_BATCH_EXP:
        raise DeepPoseError(f"--batch-exp: {batch_exp} is out of range; allowed: 0..{MAX_BATCH_EXP}")
    return Job(framework, loss, device, batch_exp)


def add_job_arguments(parser: argparse.ArgumentParser, batch_exp: bool) -> None:
    """The options that name a job, declared once for every stage that runs one. Values are
    checked by `job_from_args` (one line, not argparse's usage block)."""
    parser.add_argument("--framework", required=True, help=f"framework: {', '.join(FRAMEWORKS)}")
    parser.add_argument("--loss", required=True, help=f"loss mode: {', '.join(LOSS_MODES)}")
    parser.add_argument("--device", default="cpu", help=f"device: {', '.join(DEVICES)} (default: cpu)")
    if batch_exp:
        parser.add_argument(
            "--batch-exp", type=int, required=True, help=f"batch size 2^N, N in 0..{MAX_BATCH_EXP}"
        )


def job_from_args(args: argparse.Namespace) -> Job:
    return check_job(args.framework, args.loss, args.device, getattr(args, "batch_exp", None))


class GridSection(Protocol):
    """What these functions read of params.yaml's `grid` section (deeppose.config.GridParams)."""

    @property
    def frameworks(self) -> Sequence[str]: ...
    @property
    def loss_modes(self) -> Sequence[str]: ...
    @property
    def devices(self) -> Sequence[str]: ...
    @property
    def batch_exponents(self) -> Sequence[int]: ...


def train_jobs(grid: GridSection) -> list[Job]:
    """Every framework x loss mode x device of a params.yaml `grid` section."""
    cells = itertools.product(grid.frameworks, grid.loss_modes, grid.devices)
    return [Job(*cell) for cell in cells]


def batch_jobs(grid: GridSection, exponents: Iterable[int], breakdown: bool = False) -> list[Job]:
    """Every training cell at each batch exponent: the timing or (`breakdown`, leaving out the
    frameworks in NO_BREAKDOWN) the breakdown jobs."""
    return [
        Job(job.framework, job.loss, job.device, int(exp))
        for job in train_jobs(grid)
        for exp in exponents
        if not (breakdown and job.framework in NO_BREAKDOWN)
    ]


@dataclass(frozen=True)
class Group:
    """One timing or breakdown group: every framework x loss mode of the grid at one device and
    batch size, measured interleaved so that they can be compared (deeppose.timing, .breakdown)."""

    device: str
    batch_exp: int
    frameworks: tuple[str, ...]
    loss_modes: tuple[str, ...]

    @classmethod
    def of(cls, grid: GridSection, device: str, batch_exp: int, breakdown: bool = False) -> Group:
        """The grid's group at `device` and `batch_exp`; `breakdown`: without the frameworks in
        NO_BREAKDOWN (a breakdown group, deeppose.breakdown)."""
        frameworks = tuple(f for f in grid.frameworks if not (breakdown and f in NO_BREAKDOWN))
        return cls(device, batch_exp, frameworks, tuple(grid.loss_modes))

    @property
    def label(self) -> str:
        return f"{self.device}/b{self.batch_exp}"

    def jobs(self) -> list[Job]:
        return [
            Job(fw, loss, self.device, self.batch_exp) for fw in self.frameworks for loss in self.loss_modes
        ]

    def comparisons(self) -> list[tuple[str, str]]:
        """The (a, b) cell pairs whose ratio a / b the benchmark reports: each framework against
        REFERENCE at every loss mode, and each framework's explicit against its autograd loss."""
        pairs = []
        if REFERENCE in self.frameworks:
            pairs += [
                (f"{fw}/{loss}", f"{REFERENCE}/{loss}")
                for fw in self.frameworks
                if fw != REFERENCE
                for loss in self.loss_modes
            ]
        if {"autograd", "explicit"} <= set(self.loss_modes):
            pairs += [(f"{fw}/explicit", f"{fw}/autograd") for fw in self.frameworks]
        return pairs


def timing_groups(grid: GridSection) -> list[Group]:
    return [Group.of(grid, device, int(exp)) for device in grid.devices for exp in grid.batch_exponents]


def breakdown_groups(grid: GridSection, exponents: Iterable[int]) -> list[Group]:
    """One breakdown group per device and breakdown batch exponent."""
    return [Group.of(grid, device, int(exp), breakdown=True) for device in grid.devices for exp in exponents]
