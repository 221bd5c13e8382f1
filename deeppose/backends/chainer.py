"""Chainer backend. Sections mirror `deeppose/backends/pytorch.py`: model, losses, step,
optimiser, device. Chainer is imported through `chainer_import`, the one compatibility shim."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from deeppose import model as spec
from deeppose.backends import base
from deeppose.backends.chainer_import import import_chainer
from deeppose.errors import DeepPoseError
from deeppose.measure.threads import limit_native_threads, native_thread_info

chainer = import_chainer()
F = chainer.functions
L = chainer.links


# --- model ------------------------------------------------------------------------------
class DeepPoseNet(chainer.Chain):
    """AlexNet regressor of `deeppose.model`: conv1..conv5 then fc6..fc8."""

    def __init__(self, config: spec.ModelConfig, weights: Mapping[str, np.ndarray], dtype: np.dtype) -> None:
        super().__init__()
        self.config = config
        # Chainer gives a parameter its initialiser's dtype for W but the configured one for b.
        with self.init_scope(), chainer.using_config("dtype", dtype):
            for conv in spec.CONVS:
                link = L.Convolution2D(
                    conv.in_channels,
                    conv.out_channels,
                    conv.kernel,
                    conv.stride,
                    conv.pad,
                    initialW=np.array(weights[f"{conv.name}.W"], dtype),
                    initial_bias=np.array(weights[f"{conv.name}.b"], dtype),
                )
                setattr(self, conv.name, link)
            for fc in spec.linears(config.n_joints):
                link = L.Linear(
                    fc.in_features,
                    fc.out_features,
                    initialW=np.array(weights[f"{fc.name}.W"], dtype),
                    initial_bias=np.array(weights[f"{fc.name}.b"], dtype),
                )
                setattr(self, fc.name, link)

    def forward(self, x: Any) -> Any:
        for conv in spec.CONVS:
            x = F.relu(getattr(self, conv.name)(x))
            if conv.lrn and self.config.lrn:
                x = F.local_response_normalization(
                    x, n=spec.LRN_SIZE, k=spec.LRN_K, alpha=spec.LRN_ALPHA, beta=spec.LRN_BETA
                )
            if conv.pool:
                # cover_all=False: PyTorch's (and the paper's) output size, 13 -> 6 after conv5.
                x = F.max_pooling_2d(x, spec.POOL_KERNEL, spec.POOL_STRIDE, cover_all=False)
        x = F.reshape(x, (x.shape[0], -1))
        for fc in spec.linears(self.config.n_joints):
            x = getattr(self, fc.name)(x)
            if fc.relu_dropout:
                x = F.relu(x)
                if self.config.dropout > 0:
                    x = F.dropout(x, self.config.dropout)
        return x


def _neutral_name(chainer_path: str) -> str:
    return chainer_path.strip("/").replace("/", ".")


# --- losses -----------------------------------------------------------------------------
def _n_visible(visible: Any) -> Any:
    """max(sum(visible), 1) as a 0-d array on visible's device: reading it as a Python float
    would force a host synchronisation inside the timed region on cuda."""
    xp = chainer.backend.get_array_module(visible)
    return xp.maximum(visible.sum(), visible.dtype.type(1))


def _inverse_n_visible(visible: Any) -> Any:
    """1 / n_visible, on the device, rounded to visible's dtype from float64 as Chainer rounds
    `x / float(n)` (a multiplication by the constant 1 / n): the loss keeps its exact bits."""
    xp = chainer.backend.get_array_module(visible)
    return (1.0 / _n_visible(visible).astype(xp.float64)).astype(visible.dtype)


def masked_mse_autograd(pred: Any, target: Any, visible: Any) -> Any:
    """Masked MSE from elementary ops; Chainer's autograd derives the backward."""
    xp = chainer.backend.get_array_module(visible)
    n_samples, n_joints = visible.shape
    mask = xp.broadcast_to(visible[:, :, None], (n_samples, n_joints, 2))
    diff = F.reshape(pred - target, (n_samples, n_joints, 2)) * mask
    return F.sum(diff * diff) * _inverse_n_visible(visible)


class MaskedMSE(chainer.function_node.FunctionNode):
    """Masked MSE with a hand-written backward: d loss / d pred = 2 (pred - target) v / n."""

    def forward(self, inputs: tuple[Any, ...]) -> tuple[Any]:
        pred, target, visible = inputs
        xp = chainer.backend.get_array_module(pred)
        n_samples, n_joints = visible.shape
        diff = (pred - target).reshape(n_samples, n_joints, 2) * visible[:, :, None]
        self.diff = diff.reshape(pred.shape)
        self.n = _n_visible(visible)
        return (xp.asarray((diff * diff).sum() / self.n, dtype=pred.dtype),)

    def backward(self, indexes: tuple[int, ...], grad_outputs: tuple[Any]) -> tuple[Any, ...]:
        (grad,) = grad_outputs
        grad_pred = F.broadcast_to(grad, self.diff.shape) * (2.0 / self.n * self.diff)
        grads = {0: grad_pred, 1: -grad_pred, 2: None}
        return tuple(grads[i] for i in indexes)


def masked_mse_explicit(pred: Any, target: Any, visible: Any) -> Any:
    (value,) = MaskedMSE().apply((pred, target, visible))
    return value


LOSSES = {"autograd": masked_mse_autograd, "explicit": masked_mse_explicit}


class Backend(base.Backend):
    name = "chainer"

    def __init__(self, device: str = "cpu", threads: int = 0, dtype: str = "float32") -> None:
        super().__init__(device, threads, dtype)
        self._device = chainer.get_device("@cupy:0" if device == "cuda" else "@numpy")
        self.net: DeepPoseNet | None = None
        self.optimizer: Any = None
        self._optimizer_config: base.OptimizerConfig | None = None

    # --- device and environment ---------------------------------------------------------
    def _check_cuda(self) -> None:
        if not chainer.backends.cuda.available:
            raise DeepPoseError(
                f"device 'cuda' for chainer needs CuPy, which is not importable here; Chainer "
                f"{chainer.__version__} supports only CuPy 7.x (CUDA <= 10.2); allowed here: cpu"
            )

    def _set_threads(self, threads: int) -> None:
        # Chainer's CPU path is numpy, so the BLAS pool under numpy is the whole story.
        limit_native_threads(threads)

    def thread_info(self) -> dict[str, Any]:
        return {"requested": self.threads, "native": native_thread_info()}

    def versions(self) -> dict[str, str]:
        info = {"chainer": chainer.__version__, "numpy": np.__version__}
        if self.device == "cuda":
            import cupy

            info["cupy"] = cupy.__version__
            info["gpu"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
        return info

    def seed(self, seed: int) -> None:
        # Chainer's dropout draws from numpy's global stream on CPU, CuPy's on GPU.
        np.random.seed(seed)
        if self.device == "cuda":
            chainer.backends.cuda.cupy.random.seed(seed)

    def synchronize(self) -> None:
        if self.device == "cuda":
            chainer.backends.cuda.Stream.null.synchronize()

    def to_device(self, array: np.ndarray) -> Any:
        return self._device.send(self.as_compute(array))

    def to_numpy(self, array: Any) -> np.ndarray:
        if isinstance(array, chainer.Variable):
            array = array.array
        return np.array(chainer.backends.cuda.to_cpu(array), copy=True)

    # --- model --------------------------------------------------------------------------
    def load_weights(self, weights: Mapping[str, np.ndarray], config: spec.ModelConfig) -> None:
        spec.check_weights(dict(weights), config.n_joints)
        net = DeepPoseNet(config, weights, self.dtype)
        net.to_device(self._device)
        self.net = net
        self.optimizer = None

    @property
    def _net(self) -> DeepPoseNet:
        if self.net is None:
            raise RuntimeError("load_weights() must come first")
        return self.net

    def _params(self) -> dict[str, Any]:
        return {_neutral_name(path): param for path, param in self._net.namedparams()}

    def export_weights(self) -> dict[str, np.ndarray]:
        return {name: self.to_numpy(param.array) for name, param in self._params().items()}

    def forward(self, images: Any, train: bool) -> Any:
        with chainer.using_config("train", train), chainer.using_config("enable_backprop", train):
            return self._net(images)

    # --- losses -------------------------------------------------------------------------
    def loss(self, pred: Any, target: Any, visible: Any, mode: str) -> Any:
        base.check_loss_mode(mode)
        return LOSSES[mode](pred, target, visible)

    def loss_grad(
        self, pred: np.ndarray, target: np.ndarray, visible: np.ndarray, mode: str
    ) -> tuple[float, np.ndarray]:
        pred_var = chainer.Variable(self.to_device(pred))
        value = self.loss(pred_var, self.to_device(target), self.to_device(visible), mode)
        value.backward()
        return float(value.array), self.to_numpy(pred_var.grad)

    def loss_probe(
        self, pred: np.ndarray, target: np.ndarray, visible: np.ndarray, mode: str
    ) -> tuple[Callable[[], Any], Callable[[], None]]:
        base.check_loss_mode(mode)
        leaf = chainer.Variable(self.to_device(pred))
        target_d, visible_d = self.to_device(target), self.to_device(visible)

        def run() -> Any:
            value = LOSSES[mode](leaf, target_d, visible_d)
            value.backward()
            return value

        return run, leaf.cleargrad

    # --- step ---------------------------------------------------------------------------
    def zero_grad(self) -> None:
        self._net.cleargrads()

    def forward_backward(self, images: Any, target: Any, visible: Any, mode: str) -> Any:
        value = self.loss(self.forward(images, train=True), target, visible, mode)
        value.backward()
        return value

    def gradients(self) -> dict[str, np.ndarray]:
        return {name: self.to_numpy(param.grad) for name, param in self._params().items()}

    def scalar(self, value: Any) -> float:
        return float(self.to_numpy(value))

    # --- optimiser ----------------------------------------------------------------------
    def set_optimizer(self, config: base.OptimizerConfig) -> None:
        if config.name == "momentum_sgd":
            optimizer = chainer.optimizers.MomentumSGD(lr=config.lr, momentum=config.momentum)
        else:
            optimizer = chainer.optimizers.Adam(
                alpha=config.lr, beta1=config.beta1, beta2=config.beta2, eps=config.eps
            )
        optimizer.setup(self._net)
        self.optimizer = optimizer
        self._optimizer_config = config

    def optimizer_step(self) -> None:
        if self.optimizer is None or self._optimizer_config is None:
            raise RuntimeError("set_optimizer() must come first")
        config = self._optimizer_config
        if config.name == "adam":
            # Chainer adds eps to sqrt(v), PyTorch to the bias-corrected sqrt(v_hat); scaling eps by
            # sqrt(1 - beta2^t) makes Chainer's update PyTorch's (and the paper's) exactly.
            step = self.optimizer.t + 1
            self.optimizer.eps = config.eps * (1.0 - config.beta2**step) ** 0.5
        self.optimizer.update()

    # Neutral state (see the PyTorch backend): Chainer's MomentumSGD keeps v = -lr * velocity.
    # The velocity is kept in float64 so that v -> velocity -> v is exact and a resumed run
    # continues bit for bit.
    def optimizer_state(self) -> dict[str, np.ndarray]:
        if self.optimizer is None or self._optimizer_config is None:
            raise RuntimeError("set_optimizer() must come first")
        lr = self._optimizer_config.lr
        state: dict[str, np.ndarray] = {}
        for name, param in self._params().items():
            rule = param.update_rule
            if rule.state is None:
                continue
            if self._optimizer_config.name == "momentum_sgd":
                state[f"{name}.velocity"] = self.to_numpy(rule.state["v"]).astype(np.float64) / -lr
            else:
                state[f"{name}.m"] = self.to_numpy(rule.state["m"])
                state[f"{name}.v"] = self.to_numpy(rule.state["v"])
                state["step"] = np.array(float(rule.t), np.float64)
        return state

    def load_optimizer_state(self, state: Mapping[str, np.ndarray]) -> None:
        if self.optimizer is None or self._optimizer_config is None:
            raise RuntimeError("set_optimizer() must come first")
        lr = self._optimizer_config.lr
        for name, param in self._params().items():
            rule = param.update_rule
            if self._optimizer_config.name == "momentum_sgd":
                if f"{name}.velocity" not in state:
                    continue
                values = {"v": np.asarray(state[f"{name}.velocity"], np.float64) * -lr}
            else:
                if f"{name}.m" not in state:
                    continue
                values = {"m": state[f"{name}.m"], "v": state[f"{name}.v"]}
                rule.t = int(state["step"])
                self.optimizer.t = rule.t
            rule._init_states(param)
            for key, value in values.items():
                rule.state[key][...] = self.to_device(value)

    # --- profiling ----------------------------------------------------------------------
    def profile_core(self, images: Any, target: Any, visible: Any, mode: str, repeats: int) -> dict[str, Any]:
        """The core process under Chainer's function hooks (see base.Backend.profile_core).

        A `chainer.FunctionHook` (the mechanism of Chainer's own `TimerHook`) times every
        top-level function call in forward and every backward step of a function node; calls
        nested inside another (e.g. the deconvolution that computes a convolution's input
        gradient) are part of their parent's time. A `chainer.LinkHook` names the layer of each
        function a link creates (conv1..fc8); the loss runs under the name "loss"; a function's
        backward takes the layer of its forward. ReLU, pooling, reshape and dropout are functions
        outside links, left to `deeppose.layer_groups`. On cuda the hook synchronises before
        every clock read.
        """
        import time

        base.check_loss_mode(mode)
        sync = self.synchronize if self.device == "cuda" else None
        timer = _FunctionTimer(time.perf_counter_ns, sync)
        tracker = _LayerTracker(timer, {link.name for link in self._net.children()})
        events: list[dict[str, Any]] = []
        core: list[float] = []
        for repeat in range(repeats):
            self.zero_grad()
            self.synchronize()
            timer.reset()
            with timer, tracker:
                start = time.perf_counter_ns()
                pred = self.forward(images, train=True)
                timer.layers.append("loss")
                value = self.loss(pred, target, visible, mode)
                timer.layers.pop()
                value.backward()
                self.synchronize()
                end = time.perf_counter_ns()
            core.append((end - start) / 1e9)
            events += [
                {"repeat": repeat, "phase": phase, "name": name, "layer": layer, "time_s": ns / 1e9}
                for phase, name, layer, ns in timer.records
            ]
            del pred, value
        timer.reset()
        return {
            "tool": f"chainer {chainer.__version__} FunctionHook + LinkHook",
            "time_basis": "host wall time" + (" (device synchronised per call)" if sync else ""),
            "core_time_s": core,
            "events": events,
        }


# --- profiling helpers --------------------------------------------------------------------
class _FunctionTimer(chainer.FunctionHook):
    """Times top-level function calls, forward and backward, with the layer each belongs to."""

    name = "deeppose_profile"

    def __init__(self, clock: Any, sync: Any = None) -> None:
        self.clock = clock
        self.sync = sync
        self.reset()

    def reset(self) -> None:
        self.records: list[tuple[str, str, str | None, int]] = []  # phase, name, layer, ns
        self.layers: list[str | None] = []  # innermost last; set by _LayerTracker and the loss
        self._layer_of: dict[Any, str | None] = {}  # function node -> layer (kept for backward)
        self._starts: list[int] = []

    def _start(self) -> None:
        if self.sync is not None:
            self.sync()
        self._starts.append(self.clock())

    def _stop(self, phase: str, function: Any) -> None:
        if self.sync is not None:
            self.sync()
        elapsed = self.clock() - self._starts.pop()
        if self._starts:  # nested in another call, whose time includes it
            return
        if phase == "forward":
            layer = self.layers[-1] if self.layers else None
            self._layer_of[function] = layer
        else:
            layer = self._layer_of.get(function)
        self.records.append((phase, function._impl_name, layer, elapsed))

    def forward_preprocess(self, function: Any, in_data: Any) -> None:
        self._start()

    def forward_postprocess(self, function: Any, in_data: Any) -> None:
        self._stop("forward", function)

    def backward_preprocess(self, function: Any, in_data: Any, out_grad: Any) -> None:
        self._start()

    def backward_postprocess(self, function: Any, in_data: Any, out_grad: Any) -> None:
        self._stop("backward", function)


class _LayerTracker(chainer.LinkHook):
    """Tells the timer which named link (conv1..fc8) is running its forward."""

    name = "deeppose_layers"

    def __init__(self, timer: _FunctionTimer, names: set[str]) -> None:
        self.timer = timer
        self.names = names

    def forward_preprocess(self, args: Any) -> None:
        name = args.link.name
        self.timer.layers.append(
            name if name in self.names else (self.timer.layers[-1] if self.timer.layers else None)
        )

    def forward_postprocess(self, args: Any) -> None:
        self.timer.layers.pop()
