"""JAX backend. Sections mirror `deeppose/backends/pytorch.py`: model, losses, step, optimiser,
device; then what is new here: threads under XLA, compile time.

The interface is stateful (forward_backward, then gradients() and optimizer_step()); JAX is
functional. So the network, the core step and the update are pure functions compiled with
`jax.jit`, and the backend object holds their inputs and outputs: parameters, the last gradients,
the optax state and the dropout key. Each call dispatches one compiled executable and returns
without waiting; `synchronize()` blocks on every array the last calls produced.

The network is written with `jax.lax` only (no model library), in the neutral layouts: NCHW
images, OIHW kernels, (out, in) linear weights, so neutral weights load without transposes.

Threads: XLA's CPU client sizes its thread pool once, when JAX initialises its backend, from the
CPUs this process may use; nothing changes it afterwards. `--xla_cpu_multi_thread_eigen=false`
in XLA_FLAGS (set here before JAX initialises, when threads=1) makes XLA's compiled code run on
one thread (checked on jax 0.7.1: one runnable thread during a convolution instead of two). A
count between 1 and all CPUs has no XLA flag (`intra_op_parallelism_threads` is TensorFlow's, not
XLA's); `thread_info()` then says plainly that the request was not honoured, as it does when an
earlier backend in the process already initialised JAX with other settings.

Float64: XLA on CPU computes in float64 only with `jax_enable_x64`, a process-wide switch; a
float64 backend turns it on. Every array of a float32 backend has an explicit float32 dtype, so a
float32 backend computes the same with the switch on or off (dropout masks are drawn in float32
in both).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from deeppose import model as spec
from deeppose.backends import base
from deeppose.errors import DeepPoseError
from deeppose.measure.threads import limit_native_threads, native_thread_info

Params = dict[str, jax.Array]


# --- model ------------------------------------------------------------------------------
def _conv(x: jax.Array, w: jax.Array, b: jax.Array, conv: spec.Conv) -> jax.Array:
    padding = [(conv.pad, conv.pad), (conv.pad, conv.pad)]
    y = lax.conv_general_dilated(
        x, w, (conv.stride, conv.stride), padding, dimension_numbers=("NCHW", "OIHW", "NCHW")
    )
    return y + b[None, :, None, None]


def _max_pool(x: jax.Array) -> jax.Array:
    """3x3 stride-2 max-pool without padding (PyTorch's and Chainer's cover_all=False sizes)."""
    window = (1, 1, spec.POOL_KERNEL, spec.POOL_KERNEL)
    strides = (1, 1, spec.POOL_STRIDE, spec.POOL_STRIDE)
    return lax.reduce_window(x, -jnp.inf, lax.max, window, strides, "VALID")


def _lrn(x: jax.Array) -> jax.Array:
    """x / (k + alpha * sum of x^2 over `size` neighbouring channels)^beta: Chainer's formula,
    and PyTorch's with its alpha = deeppose's alpha x size (see pytorch.py). The window is centred:
    size // 2 channels before, (size - 1) // 2 after, as PyTorch pads."""
    size = spec.LRN_SIZE
    pads = [(0, 0), (size // 2, (size - 1) // 2), (0, 0), (0, 0)]
    sums = lax.reduce_window(x * x, 0.0, lax.add, (1, size, 1, 1), (1, 1, 1, 1), pads)
    return x / (spec.LRN_K + spec.LRN_ALPHA * sums) ** spec.LRN_BETA


def _dropout(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
    """Inverted dropout as in PyTorch and Chainer; the mask is drawn in float32 whatever the
    compute dtype, so a seed gives the same mask to float32 and float64 backends."""
    keep = jax.random.uniform(key, x.shape, dtype=jnp.float32) >= rate
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype))


def net_apply(
    params: Params, images: jax.Array, config: spec.ModelConfig, key: jax.Array | None
) -> jax.Array:
    """The AlexNet regressor of `deeppose.model`: (N, 3, 227, 227) -> (N, 2K). Dropout when a
    key is given (training) and config.dropout > 0."""
    x = images
    for conv in spec.CONVS:
        x = jax.nn.relu(_conv(x, params[f"{conv.name}.W"], params[f"{conv.name}.b"], conv))
        if conv.lrn and config.lrn:
            x = _lrn(x)
        if conv.pool:
            x = _max_pool(x)
    x = x.reshape(x.shape[0], -1)
    for index, fc in enumerate(spec.linears(config.n_joints)):
        x = x @ params[f"{fc.name}.W"].T + params[f"{fc.name}.b"]
        if fc.relu_dropout:
            x = jax.nn.relu(x)
            if key is not None and config.dropout > 0:
                x = _dropout(x, config.dropout, jax.random.fold_in(key, index))
    return x


# --- losses -----------------------------------------------------------------------------
def _masked_diff(pred: jax.Array, target: jax.Array, visible: jax.Array) -> jax.Array:
    n_samples, n_joints = visible.shape
    return (pred - target).reshape(n_samples, n_joints, 2) * visible[:, :, None]


def _n_visible(visible: jax.Array) -> jax.Array:
    return jnp.maximum(visible.sum(), 1)


def masked_mse_autograd(pred: jax.Array, target: jax.Array, visible: jax.Array) -> jax.Array:
    """Masked MSE from elementary ops; jax.grad derives the backward."""
    diff = _masked_diff(pred, target, visible)
    return (diff * diff).sum() / _n_visible(visible)


@jax.custom_vjp
def masked_mse_explicit(pred: jax.Array, target: jax.Array, visible: jax.Array) -> jax.Array:
    """Masked MSE with a hand-written backward (jax.custom_vjp): d loss / d pred = 2 (pred -
    target) v / n. The visibility mask is data, not a variable: its cotangent is zero."""
    return _explicit_forward(pred, target, visible)[0]


def _explicit_forward(
    pred: jax.Array, target: jax.Array, visible: jax.Array
) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
    diff = _masked_diff(pred, target, visible)
    n = _n_visible(visible)
    return (diff * diff).sum() / n, (diff.reshape(pred.shape), n, visible)


def _explicit_backward(
    residuals: tuple[jax.Array, jax.Array, jax.Array], grad_output: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    diff, n, visible = residuals
    grad_pred = grad_output * 2 / n * diff
    return grad_pred, -grad_pred, jnp.zeros_like(visible)


masked_mse_explicit.defvjp(_explicit_forward, _explicit_backward)

LOSSES: dict[str, Callable[[jax.Array, jax.Array, jax.Array], jax.Array]] = {
    "autograd": masked_mse_autograd,
    "explicit": masked_mse_explicit,
}


# --- the compiled functions ---------------------------------------------------------------
def _core_step(
    params: Params,
    key: jax.Array,
    images: jax.Array,
    target: jax.Array,
    visible: jax.Array,
    *,
    config: spec.ModelConfig,
    mode: str,
) -> tuple[jax.Array, Params, jax.Array]:
    """Forward (train mode), loss and backward: (loss, gradients, next dropout key)."""
    key, sub = jax.random.split(key)

    def objective(p: Params) -> jax.Array:
        return LOSSES[mode](net_apply(p, images, config, sub), target, visible)

    value, grads = jax.value_and_grad(objective)(params)
    return value, grads, key


def _forward_train(
    params: Params, key: jax.Array, images: jax.Array, *, config: spec.ModelConfig
) -> tuple[jax.Array, jax.Array]:
    key, sub = jax.random.split(key)
    return net_apply(params, images, config, sub), key


def _update(
    params: Params, grads: Params, state: Any, *, tx: optax.GradientTransformation
) -> tuple[Params, Any]:
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state


# --- threads under XLA ----------------------------------------------------------------------
SINGLE_THREAD_FLAG = "--xla_cpu_multi_thread_eigen=false"


def _backends_initialised() -> bool:
    from jax._src import xla_bridge

    return bool(xla_bridge.backends_are_initialized())


def _configure_xla(threads: int) -> dict[str, Any]:
    """Set XLA_FLAGS for `threads` if JAX has not initialised yet (the variable stays set, so
    child processes inherit it); say what is in force."""
    already = _backends_initialised()
    if not already:
        if threads == 1 and SINGLE_THREAD_FLAG not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SINGLE_THREAD_FLAG}".strip()
        _STATE.update(flags=os.environ.get("XLA_FLAGS", ""), cpus=len(os.sched_getaffinity(0)))
        jax.devices()  # initialise now, under these flags
    if not _STATE:  # JAX started before any deeppose backend: what it read then is unknown
        return {
            "xla_flags": None,
            "xla_threads": None,
            "honoured": False,
            "jax_initialised_before": True,
            "xla_threads_basis": "unknown: JAX was initialised before the first deeppose backend",
        }
    single = SINGLE_THREAD_FLAG in _STATE["flags"]
    xla_threads = 1 if single else _STATE["cpus"]
    return {
        "xla_flags": _STATE["flags"],
        "xla_threads": xla_threads,
        "xla_threads_basis": f"{SINGLE_THREAD_FLAG} in XLA_FLAGS"
        if single
        else "XLA's CPU pool: the CPUs this process could use when JAX initialised",
        "honoured": xla_threads == threads,
        "jax_initialised_before": already,  # by an earlier backend: its flags hold for this one
    }


_STATE: dict[str, Any] = {}  # XLA_FLAGS and CPU count when a backend initialised JAX


class Backend(base.Backend):
    name = "jax"

    def __init__(self, device: str = "cpu", threads: int = 0, dtype: str = "float32") -> None:
        super().__init__(device, threads, dtype)
        if self.dtype == np.float64:
            jax.config.update("jax_enable_x64", True)
        self._device = jax.devices("gpu" if device == "cuda" else "cpu")[0]
        self.config: spec.ModelConfig | None = None
        self.params: Params | None = None
        self.grads: Params | None = None
        self._tx: optax.GradientTransformation | None = None
        self._opt_state: Any = None
        self._steps: dict[str, Callable[..., Any]] = {}
        self._first_call_s: dict[str, float] = {}
        self._outstanding: list[Any] = []
        self.seed(0)

    # --- device and environment ---------------------------------------------------------
    def _check_cuda(self) -> None:
        try:
            jax.devices("gpu")
        except RuntimeError:
            raise DeepPoseError(
                f"device 'cuda' requested but JAX {jax.__version__} finds no CUDA device (a CPU-only "
                "jaxlib or no GPU); allowed here: cpu"
            ) from None

    def _set_threads(self, threads: int) -> None:
        limit_native_threads(threads)
        self._xla = _configure_xla(threads)

    def thread_info(self) -> dict[str, Any]:
        return {"requested": self.threads, **self._xla, "native": native_thread_info()}

    def versions(self) -> dict[str, str]:
        import jaxlib

        info = {
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "optax": optax.__version__,
            "numpy": np.__version__,
            "platform": self._device.platform,
            "platform_version": str(self._device.client.platform_version),
            "device_kind": str(self._device.device_kind),
            "x64": str(bool(jax.config.jax_enable_x64)),
            "xla_flags": str(self._xla["xla_flags"]),
        }
        if self.device == "cuda":
            info["gpu"] = str(self._device.device_kind)
        return info

    def seed(self, seed: int) -> None:
        self._key = jax.device_put(jax.random.key(seed), self._device)

    def synchronize(self) -> None:
        """Block on every array the calls since the last synchronize produced (loss, gradients,
        parameters, optimiser state), on CPU too: XLA's CPU client runs asynchronously."""
        jax.block_until_ready(self._outstanding)
        self._outstanding = []

    def to_device(self, array: np.ndarray) -> jax.Array:
        return jax.device_put(self.as_compute(array), self._device)

    def to_numpy(self, array: jax.Array) -> np.ndarray:
        return np.array(array, copy=True)

    # --- model --------------------------------------------------------------------------
    def load_weights(self, weights: Mapping[str, np.ndarray], config: spec.ModelConfig) -> None:
        spec.check_weights(dict(weights), config.n_joints)
        self.params = {name: self.to_device(array) for name, array in weights.items()}
        self.config = config
        self.grads = None
        self._tx = self._opt_state = None
        self._steps = {}
        self._forward_eval = jax.jit(partial(net_apply, config=config, key=None))
        self._forward_train = jax.jit(partial(_forward_train, config=config))

    @property
    def _params(self) -> Params:
        if self.params is None:
            raise RuntimeError("load_weights() must come first")
        return self.params

    def export_weights(self) -> dict[str, np.ndarray]:
        return {name: self.to_numpy(value) for name, value in self._params.items()}

    def forward(self, images: jax.Array, train: bool) -> jax.Array:
        self._forget_finished()
        if train:
            out, self._key = self._forward_train(self._params, self._key, images)
        else:
            out = self._forward_eval(self._params, images)
        self._outstanding.append(out)
        return out

    # --- losses -------------------------------------------------------------------------
    def loss(self, pred: jax.Array, target: jax.Array, visible: jax.Array, mode: str) -> jax.Array:
        base.check_loss_mode(mode)
        return LOSSES[mode](pred, target, visible)

    def loss_grad(
        self, pred: np.ndarray, target: np.ndarray, visible: np.ndarray, mode: str
    ) -> tuple[float, np.ndarray]:
        base.check_loss_mode(mode)
        value, grad = jax.value_and_grad(LOSSES[mode])(*(self.to_device(a) for a in (pred, target, visible)))
        return float(value), self.to_numpy(grad)

    def loss_probe(
        self, pred: np.ndarray, target: np.ndarray, visible: np.ndarray, mode: str
    ) -> tuple[Callable[[], Any], Callable[[], None]]:
        """The jitted value and gradient of the loss in `pred`; compiled here, outside any clock.
        Gradients are values in JAX, so there is nothing to clear between runs."""
        base.check_loss_mode(mode)
        step = jax.jit(jax.value_and_grad(LOSSES[mode]))
        args = tuple(self.to_device(a) for a in (pred, target, visible))
        jax.block_until_ready(step(*args))

        def run() -> Any:
            value, grad = step(*args)
            self._outstanding.append((value, grad))
            return value

        return run, self._forget_finished

    # --- step ---------------------------------------------------------------------------
    def _step(self, mode: str) -> Callable[..., Any]:
        """The compiled core step of `mode`, built on first use (jit compiles on its first call)."""
        if mode not in self._steps:
            if self.config is None:
                raise RuntimeError("load_weights() must come first")
            self._steps[mode] = jax.jit(partial(_core_step, config=self.config, mode=mode))
        return self._steps[mode]

    def zero_grad(self) -> None:
        self.grads = None
        self._forget_finished()

    def _forget_finished(self) -> None:
        """Drop finished arrays from the outstanding list (outside the timed region), so that
        calls without a synchronize between them do not keep old gradients alive."""
        self._outstanding = [
            tree
            for tree in self._outstanding
            if not all(leaf.is_ready() for leaf in jax.tree.leaves(tree) if isinstance(leaf, jax.Array))
        ]

    def forward_backward(
        self, images: jax.Array, target: jax.Array, visible: jax.Array, mode: str
    ) -> jax.Array:
        base.check_loss_mode(mode)
        value, grads, self._key = self._step(mode)(self._params, self._key, images, target, visible)
        if self.grads is not None:  # accumulate, as PyTorch and Chainer do without zero_grad()
            grads = jax.tree.map(jnp.add, self.grads, grads)
        self.grads = grads
        self._outstanding += [value, grads]
        return value

    def gradients(self) -> dict[str, np.ndarray]:
        if self.grads is None:
            raise RuntimeError("forward_backward() must come first")
        return {name: self.to_numpy(value) for name, value in self.grads.items()}

    def scalar(self, value: jax.Array) -> float:
        return float(value)

    # --- optimiser ----------------------------------------------------------------------
    def set_optimizer(self, config: base.OptimizerConfig) -> None:
        """optax with PyTorch's formulas: MomentumSGD v = momentum v + g, p -= lr v (optax.sgd's
        trace); Adam with eps added to the bias-corrected sqrt(v_hat) (optax.adam)."""
        if config.name == "momentum_sgd":
            tx = optax.sgd(config.lr, momentum=config.momentum)
        else:
            tx = optax.adam(config.lr, b1=config.beta1, b2=config.beta2, eps=config.eps)
        self._tx = tx
        self._opt_state = tx.init(self._params)
        # donated: the old parameters and state are dead after an update (saves a copy of 57 M)
        self._update = jax.jit(partial(_update, tx=tx), donate_argnums=(0, 2))

    def optimizer_step(self) -> None:
        if self._tx is None:
            raise RuntimeError("set_optimizer() must come first")
        if self.grads is None:
            raise RuntimeError("forward_backward() must come first")
        self.params, self._opt_state = self._update(self._params, self.grads, self._opt_state)
        # the donated old parameters and state are deleted: their producers have finished
        live = [
            tree
            for tree in self._outstanding
            if not any(isinstance(leaf, jax.Array) and leaf.is_deleted() for leaf in jax.tree.leaves(tree))
        ]
        self._outstanding = live + [self.params, self._opt_state]

    # Neutral optimiser state (see the PyTorch backend): optax's trace is PyTorch's momentum
    # buffer (`velocity`); Adam's mu, nu and count are `m`, `v` and `step`.
    def optimizer_state(self) -> dict[str, np.ndarray]:
        if self._tx is None:
            raise RuntimeError("set_optimizer() must come first")
        state: dict[str, np.ndarray] = {}
        for part in self._opt_state:
            if isinstance(part, optax.TraceState):
                state.update({f"{k}.velocity": self.to_numpy(v) for k, v in part.trace.items()})
            elif isinstance(part, optax.ScaleByAdamState):
                state.update({f"{k}.m": self.to_numpy(v) for k, v in part.mu.items()})
                state.update({f"{k}.v": self.to_numpy(v) for k, v in part.nu.items()})
                state["step"] = np.array(float(part.count), np.float64)
        return state

    def load_optimizer_state(self, state: Mapping[str, np.ndarray]) -> None:
        if self._tx is None:
            raise RuntimeError("set_optimizer() must come first")

        def restored(current: Params, suffix: str) -> Params:
            return {
                k: self.to_device(state[f"{k}.{suffix}"]) if f"{k}.{suffix}" in state else v
                for k, v in current.items()
            }

        parts = []
        for part in self._opt_state:
            if isinstance(part, optax.TraceState):
                part = part._replace(trace=restored(part.trace, "velocity"))
            elif isinstance(part, optax.ScaleByAdamState):
                count = (
                    jax.device_put(np.int32(state["step"]), self._device) if "step" in state else part.count
                )
                part = part._replace(count=count, mu=restored(part.mu, "m"), nu=restored(part.nu, "v"))
            parts.append(part)
        self._opt_state = tuple(parts)

    # --- compile time -------------------------------------------------------------------
    def compile_core(self, images: jax.Array, target: jax.Array, visible: jax.Array, mode: str) -> float:
        """A fresh jit of the core step and its first call (trace, lower, XLA compile, run),
        synchronised. XLA's persistent cache is off unless jax_compilation_cache_dir is set
        (compile_info says which), so this is a cold compile."""
        base.check_loss_mode(mode)
        self._steps.pop(mode, None)
        self.zero_grad()
        self.synchronize()
        start = time.perf_counter_ns()
        self.forward_backward(images, target, visible, mode)
        self.synchronize()
        self._first_call_s[mode] = (time.perf_counter_ns() - start) / 1e9
        return self._first_call_s[mode]

    def compile_info(self) -> dict[str, Any]:
        cache_dir = jax.config.jax_compilation_cache_dir
        return {
            "compiler": f"jax.jit -> XLA ({self._device.platform})",
            "persistent_cache_dir": cache_dir,
            "cache": "XLA persistent cache on: a later process may load instead of compiling"
            if cache_dir
            else "no persistent cache: every process compiles cold",
            "first_call_s": dict(self._first_call_s),
        }

    def device_memory_peak(self, run: Callable[[], Any]) -> tuple[int, int] | None:
        """XLA's GPU allocator keeps a lifetime peak with no reset: it is the run's peak only
        when the run raised it; otherwise None (the run's own peak is unknown)."""
        if self.device != "cuda":
            return None
        self.synchronize()
        stats = self._device.memory_stats() or {}
        before, prior_peak = stats.get("bytes_in_use"), stats.get("peak_bytes_in_use")
        run()
        self.synchronize()
        peak = (self._device.memory_stats() or {}).get("peak_bytes_in_use")
        if before is None or prior_peak is None or peak is None or peak <= prior_peak:
            return None
        return int(before), int(peak)

    # --- profiling ----------------------------------------------------------------------
    def profile_core(self, images: Any, target: Any, visible: Any, mode: str, repeats: int) -> dict[str, Any]:
        raise DeepPoseError(
            "the per-layer breakdown is unavailable for jax: XLA compiles forward, loss and backward "
            "into one executable whose fused kernels span layers, so per-layer times would be invented"
        )
