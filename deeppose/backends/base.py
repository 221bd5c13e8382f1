"""The interface every framework backend implements.

Training, timing and the layer breakdown are written once against this class. A backend owns
everything framework-specific: the network built from neutral weights (`deeppose.model`), the two
loss modes, forward+loss+backward, the optimisers, device placement and synchronisation, threads
and seeding. Arrays cross the interface as numpy; `to_device` gives an opaque framework array so
that timed code can keep data on the device.

The loss (both modes, every framework) is the masked mean squared error of Toshev & Szegedy:

    loss = sum over samples b and visible joints j of |pred[b, j] - target[b, j]|^2 / n_visible

with pred and target of shape (N, K, 2) (given flat as (N, 2K)), visibility (N, K) in {0, 1} and
n_visible = sum(visibility). With no visible joint the loss is 0 and its gradient 0.
Mode `autograd` composes the framework's elementary ops; mode `explicit` is one custom function
with a hand-written backward: the study's experiment.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from deeppose.errors import DeepPoseError
from deeppose.grid import DEVICES, LOSS_MODES
from deeppose.measure.threads import resolve_threads
from deeppose.model import ModelConfig
from deeppose.optimizer import OptimizerConfig

__all__ = ["Backend", "OptimizerConfig", "check_loss_mode", "DTYPES"]

# float32 is what is trained and timed; float64 is for numerical tests, where rounding cannot flip a
# ReLU or a max-pool choice, so frameworks can be compared exactly whatever kernels a CPU runs.
DTYPES: tuple[str, ...] = ("float32", "float64")


def check_loss_mode(mode: str) -> None:
    if mode not in LOSS_MODES:
        raise DeepPoseError(f"unknown loss mode {mode!r}; allowed: {', '.join(LOSS_MODES)}")


class Backend(abc.ABC):
    """One framework on one device. Subclasses set `name` and implement the abstract methods."""

    name: ClassVar[str]

    def __init__(self, device: str = "cpu", threads: int = 0, dtype: str = "float32") -> None:
        if device not in DEVICES:
            raise DeepPoseError(f"unknown device {device!r}; allowed: {', '.join(DEVICES)}")
        if dtype not in DTYPES:
            raise DeepPoseError(f"unknown dtype {dtype!r}; allowed: {', '.join(DTYPES)}")
        self.device = device
        self.dtype = np.dtype(dtype)
        self.threads = resolve_threads(threads)
        self._set_threads(self.threads)
        if device == "cuda":
            self._check_cuda()

    # --- device and environment ---------------------------------------------------------
    @abc.abstractmethod
    def _check_cuda(self) -> None:
        """Raise DeepPoseError naming what is missing when CUDA cannot be used."""

    @abc.abstractmethod
    def _set_threads(self, threads: int) -> None:
        """Make the framework and the BLAS/OpenMP libraries under it use `threads` threads."""

    @abc.abstractmethod
    def thread_info(self) -> dict[str, Any]:
        """The thread counts actually in force, as the framework and libraries report them."""

    @abc.abstractmethod
    def versions(self) -> dict[str, str]:
        """Framework and library versions, and the GPU model on cuda."""

    @abc.abstractmethod
    def seed(self, seed: int) -> None:
        """Seed every random stream the framework uses (dropout)."""

    @abc.abstractmethod
    def synchronize(self) -> None:
        """Wait until queued device work has finished (no-op on CPU)."""

    def as_compute(self, array: np.ndarray) -> np.ndarray:
        """`array` as a contiguous array of the backend's dtype (weights, images, targets, state)."""
        return np.ascontiguousarray(array, dtype=self.dtype)

    @abc.abstractmethod
    def to_device(self, array: np.ndarray) -> Any:
        """A framework array of the backend's dtype on its device."""

    @abc.abstractmethod
    def to_numpy(self, array: Any) -> np.ndarray:
        """A numpy copy of a framework array (synchronises)."""

    # --- model --------------------------------------------------------------------------
    @abc.abstractmethod
    def load_weights(self, weights: Mapping[str, np.ndarray], config: ModelConfig) -> None:
        """Build the network from neutral weights (see deeppose.model), replacing any model."""

    @abc.abstractmethod
    def export_weights(self) -> dict[str, np.ndarray]:
        """The current weights as neutral names and layouts, in the backend's dtype."""

    @abc.abstractmethod
    def forward(self, images: Any, train: bool) -> Any:
        """Predictions (N, 2K) for device images (N, 3, 227, 227); dropout active if `train`."""

    # --- loss ---------------------------------------------------------------------------
    @abc.abstractmethod
    def loss(self, pred: Any, target: Any, visible: Any, mode: str) -> Any:
        """The masked MSE (module docstring) as a framework scalar, differentiable in `pred`."""

    @abc.abstractmethod
    def loss_grad(
        self, pred: np.ndarray, target: np.ndarray, visible: np.ndarray, mode: str
    ) -> tuple[float, np.ndarray]:
        """The loss and its gradient with respect to `pred`, for checks against other modes."""

    @abc.abstractmethod
    def loss_probe(
        self, pred: np.ndarray, target: np.ndarray, visible: np.ndarray, mode: str
    ) -> tuple[Callable[[], Any], Callable[[], None]]:
        """(run, setup) for timing the loss alone: `run` computes the loss of device predictions
        and its backward into them and returns the loss unsynchronised; `setup` clears that
        gradient. The loss is about 0.1 % of the core process, so only a direct measurement can
        show what an explicit backward changes (the study's question)."""

    # --- training step --------------------------------------------------------------------
    @abc.abstractmethod
    def zero_grad(self) -> None:
        """Clear parameter gradients (kept outside the timed region)."""

    @abc.abstractmethod
    def forward_backward(self, images: Any, target: Any, visible: Any, mode: str) -> Any:
        """Forward (train mode), loss and backward: the study's core process. Returns the loss
        as a framework scalar without synchronising, so a timer decides when to wait."""

    @abc.abstractmethod
    def gradients(self) -> dict[str, np.ndarray]:
        """Parameter gradients under neutral names."""

    @abc.abstractmethod
    def scalar(self, value: Any) -> float:
        """A framework scalar as a Python float (synchronises)."""

    @abc.abstractmethod
    def set_optimizer(self, config: OptimizerConfig) -> None:
        """Create the optimiser over the current model's parameters."""

    @abc.abstractmethod
    def optimizer_step(self) -> None:
        """Apply one update from the current gradients."""

    @abc.abstractmethod
    def optimizer_state(self) -> dict[str, np.ndarray]:
        """Optimiser state as named numpy arrays (for checkpoints that hold no code)."""

    @abc.abstractmethod
    def load_optimizer_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore what `optimizer_state` returned."""

    # --- compile time and device memory ----------------------------------------------------
    def compile_core(self, images: Any, target: Any, visible: Any, mode: str) -> float | None:
        """For a backend that compiles on first call: make the core step cold, run it once
        (clearing gradients first, outside the clock) and return that first call's wall time in
        seconds, device synchronised (trace + compile + one run). Steady-state timing comes
        after it, so warm-up no longer hides the compile. Eager frameworks compile nothing: they
        run nothing here and return None."""
        check_loss_mode(mode)
        return None

    def compile_info(self) -> dict[str, Any]:
        """What the compiler did and which caches were in play (graph breaks, recompiles, cache
        hits and misses, cache settings); empty for eager frameworks."""
        return {}

    def device_memory_peak(self, run: Callable[[], Any]) -> tuple[int, int] | None:
        """(bytes in use before, peak bytes in use during) `run` on the accelerator, from the
        framework's allocator, synchronised; None on cpu (see deeppose.measure.memory_probe for host
        memory) or where the allocator keeps no resettable peak."""
        return None

    # --- profiling ----------------------------------------------------------------------
    @abc.abstractmethod
    def profile_core(self, images: Any, target: Any, visible: Any, mode: str, repeats: int) -> dict[str, Any]:
        """Run the core process (as `forward_backward`) `repeats` times under the framework's own
        profiler, clearing gradients before each run outside the timed region.

        Returns {"tool": <profiler used>, "time_basis": <what an event's time measures>,
        "core_time_s": [wall time of each profiled run, device synchronised, perf_counter],
        "events": [{"repeat", "phase" ("forward"|"backward"), "name" (the framework's op or
        function name), "layer" (a `deeppose.layer_groups.GROUPS` name when the framework says
        where the call belongs, else None), "time_s"}, ...]}: one event per top-level call, so
        that events never overlap and their sum cannot exceed the run. `deeppose.layer_groups`
        groups them, the same way for every framework."""
