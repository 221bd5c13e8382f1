"""PyTorch backend. Sections mirror `deeppose/backends/chainer.py`: model, losses, step,
optimiser, device."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

# torch.optim's first optimiser imports torch._dynamo (1.1 s on 2 cores): imported with the backend,
# the timing's block server pays that once before it forks instead of every block paying it.
import torch._dynamo  # noqa: F401
from torch import nn

from deeppose import model as spec
from deeppose.backends import base
from deeppose.errors import DeepPoseError
from deeppose.measure.threads import limit_native_threads, native_thread_info


# --- model ------------------------------------------------------------------------------
class DeepPoseNet(nn.Module):
    """AlexNet regressor of `deeppose.model`: conv1..conv5 then fc6..fc8."""

    def __init__(self, config: spec.ModelConfig) -> None:
        super().__init__()
        self.config = config
        for conv in spec.CONVS:
            self.add_module(
                conv.name,
                nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel, conv.stride, conv.pad),
            )
        for fc in spec.linears(config.n_joints):
            self.add_module(fc.name, nn.Linear(fc.in_features, fc.out_features))
        # PyTorch divides alpha by the window size; deeppose.model uses the paper's alpha.
        self.lrn = nn.LocalResponseNorm(
            spec.LRN_SIZE, spec.LRN_ALPHA * spec.LRN_SIZE, spec.LRN_BETA, spec.LRN_K
        )
        self.pool = nn.MaxPool2d(spec.POOL_KERNEL, spec.POOL_STRIDE)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in spec.CONVS:
            x = torch.relu(getattr(self, conv.name)(x))
            if conv.lrn and self.config.lrn:
                x = self.lrn(x)
            if conv.pool:
                x = self.pool(x)
        x = torch.flatten(x, 1)
        for fc in spec.linears(self.config.n_joints):
            x = getattr(self, fc.name)(x)
            if fc.relu_dropout:
                x = torch.relu(x)
                if self.config.dropout > 0:
                    x = self.dropout(x)
        return x


def _torch_name(neutral: str) -> str:
    layer, kind = neutral.split(".")
    return f"{layer}.{'weight' if kind == 'W' else 'bias'}"


def _neutral_name(torch_name: str) -> str:
    layer, kind = torch_name.split(".")
    return f"{layer}.{'W' if kind == 'weight' else 'b'}"


# --- losses -----------------------------------------------------------------------------
def masked_mse_autograd(pred: torch.Tensor, target: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Masked MSE from elementary ops; PyTorch's autograd derives the backward."""
    diff = (pred - target).reshape(visible.shape[0], visible.shape[1], 2) * visible.unsqueeze(-1)
    return (diff * diff).sum() / visible.sum().clamp(min=1)


class MaskedMSE(torch.autograd.Function):
    """Masked MSE with a hand-written backward: d loss / d pred = 2 (pred - target) v / n."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, pred: torch.Tensor, target: torch.Tensor, visible: torch.Tensor
    ) -> torch.Tensor:
        diff = (pred - target).reshape(visible.shape[0], visible.shape[1], 2)
        diff = diff * visible.unsqueeze(-1)
        n = visible.sum().clamp(min=1)
        ctx.save_for_backward(diff, n)
        ctx.pred_shape = pred.shape
        return (diff * diff).sum() / n

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        diff, n = ctx.saved_tensors
        grad_pred = (grad_output * 2 / n * diff).reshape(ctx.pred_shape)
        grad_target = -grad_pred if ctx.needs_input_grad[1] else None
        return grad_pred, grad_target, None


LOSSES = {"autograd": masked_mse_autograd, "explicit": MaskedMSE.apply}


def _parallel_libraries(info: str) -> dict[str, str]:
    """The parallel backend, BLAS and oneDNN builds named in torch's parallel_info() report."""
    found = {}
    for line in info.splitlines():
        if line.startswith("ATen parallel backend:"):
            found["torch_parallel"] = line.split(":", 1)[1].strip()
        elif "Math Kernel Library" in line or "OpenBLAS" in line:
            found["blas"] = line.strip()
        elif "MKL-DNN" in line or "oneDNN" in line:
            found["onednn"] = line.strip()
    return found


class Backend(base.Backend):
    name = "pytorch"

    def __init__(self, device: str = "cpu", threads: int = 0, dtype: str = "float32") -> None:
        super().__init__(device, threads, dtype)
        self._torch_device = torch.device(device)
        self._torch_dtype = getattr(torch, dtype)
        self.net: DeepPoseNet | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    # --- device and environment ---------------------------------------------------------
    def _check_cuda(self) -> None:
        if not torch.cuda.is_available():
            raise DeepPoseError(
                f"device 'cuda' requested but PyTorch {torch.__version__} finds no CUDA device "
                "on this machine; allowed here: cpu"
            )

    def _set_threads(self, threads: int) -> None:
        torch.set_num_threads(threads)
        limit_native_threads(threads)

    def thread_info(self) -> dict[str, Any]:
        return {
            "requested": self.threads,
            "torch_intra_op": torch.get_num_threads(),
            "torch_inter_op": torch.get_num_interop_threads(),
            "native": native_thread_info(),
        }

    def versions(self) -> dict[str, str]:
        info = {
            "torch": torch.__version__,
            "mkldnn": str(torch.backends.mkldnn.is_available()),
            **_parallel_libraries(torch.__config__.parallel_info()),
        }
        if self.device == "cuda":
            info["cuda"] = str(torch.version.cuda)
            info["cudnn"] = str(torch.backends.cudnn.version())
            info["gpu"] = torch.cuda.get_device_name()
        return info

    def seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def synchronize(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def to_device(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.as_compute(array)).to(self._torch_device)

    def to_numpy(self, array: torch.Tensor) -> np.ndarray:
        return array.detach().cpu().numpy().copy()

    # --- model --------------------------------------------------------------------------
    def load_weights(self, weights: Mapping[str, np.ndarray], config: spec.ModelConfig) -> None:
        spec.check_weights(dict(weights), config.n_joints)
        # Built without storage and given the weights (assign=True): drawing random initial
        # weights only to overwrite them cost every fresh timing process about 0.2 s.
        with torch.device("meta"):
            net = DeepPoseNet(config)
        state = {
            _torch_name(k): torch.from_numpy(self.as_compute(v)).to(self._torch_device, copy=True)
            for k, v in weights.items()
        }
        net.load_state_dict(state, strict=True, assign=True)
        self.net = net
        self.optimizer = None

    def export_weights(self) -> dict[str, np.ndarray]:
        params = dict(self._net.named_parameters())
        return {
            k: self.to_numpy(params[_torch_name(k)]) for k in spec.weight_shapes(self._net.config.n_joints)
        }

    @property
    def _net(self) -> DeepPoseNet:
        if self.net is None:
            raise RuntimeError("load_weights() must come first")
        return self.net

    def forward(self, images: torch.Tensor, train: bool) -> torch.Tensor:
        self._net.train(train)
        with torch.set_grad_enabled(train):
            return self._net(images)

    # --- losses -------------------------------------------------------------------------
    def loss(
        self, pred: torch.Tensor, target: torch.Tensor, visible: torch.Tensor, mode: str
    ) -> torch.Tensor:
        base.check_loss_mode(mode)
        return LOSSES[mode](pred, target, visible)

    def loss_grad(
        self, pred: np.ndarray, target: np.ndarray, visible: np.ndarray, mode: str
    ) -> tuple[float, np.ndarray]:
        pred_t = self.to_device(pred).requires_grad_(True)
        value = self.loss(pred_t, self.to_device(target), self.to_device(visible), mode)
        value.backward()
        return float(value.detach()), self.to_numpy(pred_t.grad)

    def loss_probe(
        self, pred: np.ndarray, target: np.ndarray, visible: np.ndarray, mode: str
    ) -> tuple[Callable[[], Any], Callable[[], None]]:
        base.check_loss_mode(mode)
        leaf = self.to_device(pred).requires_grad_(True)
        target_t, visible_t = self.to_device(target), self.to_device(visible)

        def run() -> torch.Tensor:
            value = LOSSES[mode](leaf, target_t, visible_t)
            value.backward()
            return value

        def setup() -> None:
            leaf.grad = None

        return run, setup

    # --- step ---------------------------------------------------------------------------
    def zero_grad(self) -> None:
        self._net.zero_grad()  # set_to_none, as Chainer's cleargrads(): no memset in either

    def forward_backward(
        self, images: torch.Tensor, target: torch.Tensor, visible: torch.Tensor, mode: str
    ) -> torch.Tensor:
        base.check_loss_mode(mode)
        self._net.train(True)
        with torch.enable_grad():
            value = self._train_loss(images, target, visible, mode)
        value.backward()
        return value

    def _train_loss(
        self, images: torch.Tensor, target: torch.Tensor, visible: torch.Tensor, mode: str
    ) -> torch.Tensor:
        """Forward (the network already in train mode) and the loss: the region that the
        pytorch_compile backend hands to torch.compile; backward stays outside it."""
        return LOSSES[mode](self._net(images), target, visible)

    def gradients(self) -> dict[str, np.ndarray]:
        params = dict(self._net.named_parameters())
        names = spec.weight_shapes(self._net.config.n_joints)
        return {k: self.to_numpy(params[_torch_name(k)].grad) for k in names}

    def scalar(self, value: torch.Tensor) -> float:
        return float(value.item())

    # --- optimiser ----------------------------------------------------------------------
    def set_optimizer(self, config: base.OptimizerConfig) -> None:
        # fused=True: PyTorch's fastest standard implementation, one kernel per step (an Adam
        # update of AlexNet takes 0.03 s on 2 cores, 0.11 s with the default for-each one); the
        # fairness manifest records it (common.optimizer_kernel).
        params = self._net.parameters()
        if config.name == "momentum_sgd":
            self.optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, fused=True)
        else:
            self.optimizer = torch.optim.Adam(
                params, lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps, fused=True
            )

    def optimizer_step(self) -> None:
        if self.optimizer is None:
            raise RuntimeError("set_optimizer() must come first")
        self.optimizer.step()

    # Neutral optimiser state: `<param>.velocity` (MomentumSGD, PyTorch's buffer convention:
    # update = lr * velocity), `<param>.m`, `<param>.v` and `step` (Adam).
    _STATE_NAMES = {"momentum_buffer": "velocity", "exp_avg": "m", "exp_avg_sq": "v"}

    def optimizer_state(self) -> dict[str, np.ndarray]:
        if self.optimizer is None:
            raise RuntimeError("set_optimizer() must come first")
        state: dict[str, np.ndarray] = {}
        for name, param in self._net.named_parameters():
            neutral = _neutral_name(name)
            for key, value in self.optimizer.state.get(param, {}).items():
                if key == "step":
                    state["step"] = np.array(float(value), np.float64)
                elif key in self._STATE_NAMES:
                    state[f"{neutral}.{self._STATE_NAMES[key]}"] = self.to_numpy(value)
        return state

    def load_optimizer_state(self, state: Mapping[str, np.ndarray]) -> None:
        if self.optimizer is None:
            raise RuntimeError("set_optimizer() must come first")
        for name, param in self._net.named_parameters():
            neutral = _neutral_name(name)
            entry = {
                key: self.to_device(state[f"{neutral}.{short}"])
                for key, short in self._STATE_NAMES.items()
                if f"{neutral}.{short}" in state
            }
            if "step" in state and "exp_avg" in entry:
                entry["step"] = torch.tensor(float(state["step"]))
            if entry:
                self.optimizer.state[param] = entry

    # --- device memory ------------------------------------------------------------------
    def device_memory_peak(self, run: Callable[[], Any]) -> tuple[int, int] | None:
        """The CUDA caching allocator's bytes before and its peak during `run` (reset first)."""
        if self.device != "cuda":
            return None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run()
        torch.cuda.synchronize()
        return before, torch.cuda.max_memory_allocated()

    # --- profiling ----------------------------------------------------------------------
    def profile_core(
        self, images: torch.Tensor, target: torch.Tensor, visible: torch.Tensor, mode: str, repeats: int
    ) -> dict[str, Any]:
        """The core process under `torch.profiler` (see base.Backend.profile_core).

        Forward hooks on the network's modules (conv1..fc8, pool, dropout, lrn) open a
        `record_function` range named after the module, and the loss runs inside a "loss" range,
        so every forward op knows its layer; a backward node takes the layer of the forward op
        that created it (same autograd sequence number). Top-level ops outside any range (the
        functional ReLU, flatten) and AccumulateGrad are left to `deeppose.layer_groups`. On cpu
        an event's time is its host wall time; on cuda, the time of the kernels it launched.
        """
        import time

        from torch.profiler import ProfilerActivity, profile, record_function

        base.check_loss_mode(mode)
        net = self._net
        ranges: list[Any] = []

        def enter(label: str) -> Any:
            def hook(module: nn.Module, inputs: Any) -> None:
                ranges.append(record_function(_RANGE_PREFIX + label).__enter__())

            return hook

        def leave(module: nn.Module, inputs: Any, output: Any) -> None:
            ranges.pop().__exit__(None, None, None)

        handles = []
        for label, module in net.named_children():
            handles.append(module.register_forward_pre_hook(enter(label)))
            handles.append(module.register_forward_hook(leave))
        cuda = self.device == "cuda"
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        events: list[dict[str, Any]] = []
        core: list[float] = []
        try:
            for repeat in range(repeats):
                self.zero_grad()
                self.synchronize()
                with profile(activities=activities) as prof:
                    start = time.perf_counter_ns()
                    pred = self.forward(images, train=True)
                    with record_function(_RANGE_PREFIX + "loss"):
                        value = self.loss(pred, target, visible, mode)
                    with record_function(_BACKWARD_RANGE):
                        value.backward()
                    self.synchronize()
                    end = time.perf_counter_ns()
                core.append((end - start) / 1e9)
                events += _profiler_events(prof.events(), repeat, cuda)
                del pred, value
        finally:
            for handle in handles:
                handle.remove()
        return {
            "tool": f"torch.profiler {torch.__version__} (record_function ranges from module hooks)",
            "time_basis": "CUDA kernel time" if cuda else "host wall time",
            "core_time_s": core,
            "events": events,
        }


# --- profiling helpers --------------------------------------------------------------------
_RANGE_PREFIX = "deeppose::"
_BACKWARD_RANGE = "deeppose:backward"
_EVALUATE_PREFIX = "autograd::engine::evaluate_function: "


def _profiler_events(function_events: Any, repeat: int, cuda: bool) -> list[dict[str, Any]]:
    """One raw event per top-level forward call and per autograd node evaluated in backward."""

    def seconds(event: Any) -> float:
        if cuda:
            return float(getattr(event, "device_time_total", 0.0)) / 1e6
        return event.time_range.elapsed_us() / 1e6

    def label_of(event: Any) -> str | None:
        while event is not None:
            if event.name.startswith(_RANGE_PREFIX):
                return event.name[len(_RANGE_PREFIX) :]
            event = event.cpu_parent
        return None

    ordered = sorted(function_events, key=lambda e: e.time_range.start)
    marks = [e for e in ordered if e.name == _BACKWARD_RANGE]
    if len(marks) != 1:
        raise RuntimeError(f"profiler trace has {len(marks)} backward ranges, expected 1")
    backward_start = marks[0].time_range.start
    # An op records the autograd sequence number its node would get; only the op that creates the
    # node is the last to record that number, so the latest forward event with it names the layer.
    layer_of_sequence: dict[int, str | None] = {}
    for event in ordered:
        if event.time_range.start < backward_start and event.sequence_nr >= 0:
            layer_of_sequence[event.sequence_nr] = label_of(event)

    def is_node(event: Any) -> bool:
        return event.name.startswith(_EVALUATE_PREFIX)

    raw = []
    for event in ordered:
        parent = event.cpu_parent
        if event.time_range.start < backward_start:
            if parent is not None or event is marks[0]:
                continue
            label = label_of(event)
            name = ("+".join(c.name for c in event.cpu_children) or event.name) if label else event.name
            raw.append(
                {"repeat": repeat, "phase": "forward", "name": name, "layer": label, "time_s": seconds(event)}
            )
        elif is_node(event):
            # the outermost node evaluation (nodes do not nest on one thread, but be safe)
            while parent is not None and not is_node(parent):
                parent = parent.cpu_parent
            if parent is not None:
                continue
            layer = layer_of_sequence.get(event.sequence_nr) if event.sequence_nr >= 0 else None
            raw.append(
                {
                    "repeat": repeat,
                    "phase": "backward",
                    "name": event.name[len(_EVALUATE_PREFIX) :],
                    "layer": layer,
                    "time_s": seconds(event),
                }
            )
        elif parent is marks[0]:  # e.g. the seed gradient (ones_like) made before the engine starts
            raw.append(
                {
                    "repeat": repeat,
                    "phase": "backward",
                    "name": event.name,
                    "layer": None,
                    "time_s": seconds(event),
                }
            )
    return raw
