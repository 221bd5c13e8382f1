"""Backends: the loss in both modes, cross-framework agreement, weights, optimisers, errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from narrow_network import narrow_fc, seeded_weights
from tiny_training import in_own_process

from deeppose import model as spec
from deeppose.backends import create_backend
from deeppose.errors import DeepPoseError
from deeppose.grid import FRAMEWORKS, LOSS_MODES
from deeppose.optimizer import OptimizerConfig

NO_DROPOUT = spec.ModelConfig(dropout=0.0)
# The network-level comparisons here run the eager frameworks; the compiled ones (jax,
# pytorch_compile: a compile per dtype and mode) are compared with PyTorch in test_new_backends.py.
EAGER = ("pytorch", "chainer")


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """Norm-wise relative error ||a - b|| / ||b||."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


def fresh_backends(names: tuple[str, ...], dtype: str = "float32") -> dict:
    """A backend holds no network until it is given weights, so a fresh set costs little; each test
    takes its own, and the networks it loads (about 0.7 GB per float32 framework once trained,
    twice that in float64) go when it ends instead of staying for the whole module."""
    return {name: create_backend(name, "cpu", threads=2, dtype=dtype) for name in names}


@pytest.fixture
def backends() -> dict:
    return fresh_backends(FRAMEWORKS)


@pytest.fixture
def backends64() -> dict:
    """Float64 backends: where framework results are compared exactly (see `relu_and_pool_margins`)."""
    return fresh_backends(FRAMEWORKS, "float64")


def run_core(backends: dict, weights, batch) -> dict:
    """Outputs, loss and parameter gradients of every framework and mode on one batch."""
    return {
        (name, mode): result
        for name, backend in backends.items()
        for mode, result in core_results(backend, weights, batch)
    }


def core_results(backend, weights, batch) -> Iterator[tuple[str, tuple]]:
    """(mode, (output, loss, gradients)) of one backend, a mode at a time, so that a caller can
    let each mode's gradients go before the next's are made."""
    backend.load_weights(weights, NO_DROPOUT)
    dev = [backend.to_device(a) for a in batch]
    output = backend.to_numpy(backend.forward(dev[0], train=False))
    for mode in LOSS_MODES:
        backend.zero_grad()
        loss = backend.scalar(backend.forward_backward(*dev, mode))
        yield mode, (output, loss, backend.gradients())


def float32_outputs(batch: tuple) -> dict:
    """Float32 outputs and losses of the eager frameworks (their gradients are not compared), one
    network at a time: both at once, with their gradients, took 2.9 GB."""
    weights = seeded_weights()
    outputs = {}
    for name in EAGER:
        results = run_core(fresh_backends((name,)), weights, batch)
        outputs.update({key: (output, loss) for key, (output, loss, _) in results.items()})
    return outputs


@pytest.fixture(scope="module")
def core_outputs(batch) -> dict:
    """In a process of its own, so that the memory the networks took does not stay with the test
    process, which runs many files (a pytest-xdist worker)."""
    return in_own_process(float32_outputs, batch)


@dataclass(frozen=True)
class Agreement64:
    """What differs by more than EXACT between the float64 results of the eager frameworks: each
    framework's two loss modes, and the two frameworks in each mode; PyTorch's gradient names and
    the network's; and how far the batch sits from a ReLU or pooling tie (`relu_and_pool_margins`)."""

    between_modes: dict[str, list[str]]
    between_frameworks: dict[str, list[str]]
    gradient_names: dict[str, set[str]]
    network_names: set[str]
    margins: tuple[float, float]


@pytest.fixture(scope="module")
def agreement64(batch) -> Agreement64:
    """The float64 comparisons run on AlexNet with fc6 and fc7 NARROW_FC wide (tests/narrow_network.py):
    every kind of layer, in a few hundred MB. At full width, the float64 networks and their
    gradients made this the fast tier's largest process (5.3 GB); float32 runs the full network
    (`core_outputs`)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        weights = narrow_fc(monkeypatch)
        results = run_core(fresh_backends(EAGER, "float64"), weights, batch)
        network_names = set(spec.weight_shapes())
        margins = relu_and_pool_margins(weights, batch[0])
    return Agreement64(
        between_modes={
            name: disagreements(results[name, "explicit"], results[name, "autograd"], EXACT) for name in EAGER
        },
        between_frameworks={
            mode: disagreements(results["chainer", mode], results["pytorch", mode], EXACT)
            for mode in LOSS_MODES
        },
        gradient_names={mode: set(results["pytorch", mode][2]) for mode in LOSS_MODES},
        network_names=network_names,
        margins=margins,
    )


# Float64 sums of these sizes are exact to about 1e-15 relative; frameworks differ by their
# summation order only, so 1e-10 leaves a margin of 1e5 and still sees a 1e-6 disagreement.
EXACT = 1e-10


def disagreements(a: tuple, b: tuple, rtol: float) -> list[str]:
    """What differs by more than `rtol` (norm-wise) between two (output, loss, gradients) results."""
    (out_a, loss_a, grads_a), (out_b, loss_b, grads_b) = a, b
    found = [] if rel_err(out_a, out_b) <= rtol else ["output"]
    found += [] if abs(loss_a - loss_b) <= rtol * abs(loss_b) else ["loss"]
    if set(grads_a) != set(grads_b):
        return found + ["gradient names"]
    return found + [name for name in grads_b if rel_err(grads_a[name], grads_b[name]) > rtol]


def relu_and_pool_margins(weights, images: np.ndarray) -> tuple[float, float]:
    """The smallest |pre-activation| of any ReLU and the smallest gap between a pooling window's
    largest and second-largest positive input, in float64: how far the float64 comparison sits from
    a point where rounding could route a gradient differently."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images.astype(np.float64))
    relu, pool = np.inf, np.inf
    for conv in spec.CONVS:
        w, b = (torch.from_numpy(weights[f"{conv.name}.{k}"].astype(np.float64)) for k in "Wb")
        x = F.conv2d(x, w, b, conv.stride, conv.pad)
        relu = min(relu, float(x.abs().min()))
        x = torch.relu(x)
        if conv.pool:
            n, c = x.shape[:2]
            windows = F.unfold(x, spec.POOL_KERNEL, stride=spec.POOL_STRIDE)
            top2 = windows.reshape(n, c, spec.POOL_KERNEL**2, -1).topk(2, dim=2).values
            positive = top2[:, :, 0] > 0
            pool = min(pool, float((top2[:, :, 0] - top2[:, :, 1])[positive].min()))
            x = F.max_pool2d(x, spec.POOL_KERNEL, spec.POOL_STRIDE)
    x = torch.flatten(x, 1)
    for fc in spec.linears()[:-1]:
        x = F.linear(x, *(torch.from_numpy(weights[f"{fc.name}.{k}"].astype(np.float64)) for k in "Wb"))
        relu = min(relu, float(x.abs().min()))
        x = torch.relu(x)
    return relu, pool


def loss_inputs(dtype, seed=0, n=3):
    rng = np.random.default_rng(seed)
    pred = rng.normal(size=(n, 28)).astype(dtype)
    target = rng.normal(size=(n, 28)).astype(dtype)
    visible = (rng.random((n, 14)) > 0.4).astype(dtype)
    return pred, target, visible


def reference_loss(pred, target, visible):
    diff = (pred - target).reshape(len(pred), 14, 2) * visible[:, :, None]
    return float((diff**2).sum() / max(visible.sum(), 1))


# --- loss ---------------------------------------------------------------------------------
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("mode", LOSS_MODES)
def test_loss_value_and_gradient_match_the_formula(backends64, framework, mode):
    pred, target, visible = loss_inputs(np.float64)
    value, grad = backends64[framework].loss_grad(pred, target, visible, mode)
    assert value == pytest.approx(reference_loss(pred, target, visible), rel=1e-12)
    expected = (2 * (pred - target).reshape(3, 14, 2) * visible[:, :, None] / visible.sum()).reshape(3, 28)
    np.testing.assert_allclose(grad, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("mode", LOSS_MODES)
def test_no_visible_joint_gives_zero_loss_and_gradient(backends, framework, mode):
    pred, target, _ = loss_inputs(np.float32)
    value, grad = backends[framework].loss_grad(pred, target, np.zeros((3, 14), np.float32), mode)
    assert value == 0.0
    assert np.all(grad == 0) and np.all(np.isfinite(grad))


def test_torch_explicit_loss_passes_gradcheck():
    import torch

    from deeppose.backends.pytorch import MaskedMSE

    pred, target, visible = (torch.from_numpy(a) for a in loss_inputs(np.float64))
    pred.requires_grad_(True)
    target.requires_grad_(True)
    assert torch.autograd.gradcheck(MaskedMSE.apply, (pred, target, visible), eps=1e-6, atol=1e-8)


def test_chainer_explicit_loss_passes_check_backward():
    from chainer import gradient_check

    from deeppose.backends.chainer import MaskedMSE

    pred, target, visible = loss_inputs(np.float64)
    grad_out = np.array(0.7, np.float64)

    def loss(p, t):
        return MaskedMSE().apply((p, t, visible))

    gradient_check.check_backward(loss, (pred, target), grad_out, dtype=np.float64, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chainer_loss_counts_visible_joints_on_the_device(dtype, monkeypatch):
    """No host read of the count (a cuda sync in the timed region); the same bits as dividing
    by it as a Python float, loss and gradient, in both modes."""
    from deeppose.backends import chainer as chainer_backend

    chainer = chainer_backend.chainer
    rng = np.random.default_rng(11)
    pred = rng.normal(size=(5, 28)).astype(dtype)
    target = rng.normal(size=(5, 28)).astype(dtype)
    visible = (rng.random((5, 14)) > 0.4).astype(dtype)

    def run(mode: str) -> tuple[np.ndarray, np.ndarray]:
        var = chainer.Variable(pred.copy())
        value = chainer_backend.LOSSES[mode](var, target, visible)
        value.backward()
        return value.array, var.grad

    n = chainer_backend._n_visible(visible)  # numpy gives a 0-d scalar, CuPy a 0-d device array
    assert type(n) is not float and n.dtype == visible.dtype and n.shape == () and n == visible.sum()
    device_side = {mode: run(mode) for mode in LOSS_MODES}
    monkeypatch.setattr(chainer_backend, "_n_visible", lambda v: max(float(v.sum()), 1.0))
    monkeypatch.setattr(chainer_backend, "_inverse_n_visible", lambda v: 1.0 / max(float(v.sum()), 1.0))
    for mode in LOSS_MODES:
        host_side = run(mode)
        for got, expected in zip(device_side[mode], host_side):
            assert got.dtype == expected.dtype and np.array_equal(got, expected), mode


def test_gradcheck_catches_a_wrong_backward():
    """The checks above can fail: a backward off by a factor of 2 does not pass."""
    import torch

    from deeppose.backends.pytorch import MaskedMSE

    class Wrong(MaskedMSE):
        @staticmethod
        def backward(ctx, grad_output):
            grad_pred, grad_target, _ = MaskedMSE.backward(ctx, grad_output)
            return 2 * grad_pred, grad_target, None

    pred, target, visible = (torch.from_numpy(a) for a in loss_inputs(np.float64))
    pred.requires_grad_(True)
    assert not torch.autograd.gradcheck(Wrong.apply, (pred, target, visible), raise_exception=False)


# --- the network across frameworks ----------------------------------------------------------
def test_float64_comparisons_sit_far_from_every_relu_and_pooling_tie(agreement64):
    """Float64 rounding (about 1e-15 of values near 1) cannot flip any routing decision here; in
    float32 one conv3 pre-activation of this very batch (2e-8) flips with oneDNN on some CPUs."""
    relu, pool = agreement64.margins
    assert relu > 1e-12 and pool > 1e-12, (relu, pool)


@pytest.mark.parametrize("framework", EAGER)
def test_explicit_and_autograd_agree_in_each_framework(agreement64, framework):
    assert agreement64.between_modes[framework] == []


@pytest.mark.parametrize("mode", LOSS_MODES)
def test_pytorch_and_chainer_agree(agreement64, mode):
    assert agreement64.gradient_names[mode] == agreement64.network_names
    assert agreement64.between_frameworks[mode] == []


@pytest.mark.parametrize("mode", LOSS_MODES)
def test_float32_outputs_and_losses_agree_across_frameworks(core_outputs, mode):
    """Outputs and losses do not depend on ReLU routing to first order, so they are robust in
    float32; float32 gradients are not (one flipped ReLU moved conv1's gradient by 1.1e-3)."""
    out_t, loss_t = core_outputs["pytorch", mode]
    out_c, loss_c = core_outputs["chainer", mode]
    assert rel_err(out_c, out_t) <= 1e-4
    assert loss_c == pytest.approx(loss_t, rel=1e-4)


def test_float64_agreement_catches_a_gradient_off_by_one_part_in_a_million(backends64, narrow_weights, batch):
    """The check above can fail: a PyTorch backend whose conv2 gradient is 1e-6 off is caught (on
    the network the check runs on)."""
    from deeppose.backends.pytorch import Backend as TorchBackend

    class Perturbed(TorchBackend):
        def gradients(self) -> dict[str, np.ndarray]:
            grads = super().gradients()
            grads["conv2.W"] = grads["conv2.W"] * (1 + 1e-6)
            return grads

    perturbed = run_core({"pytorch": Perturbed("cpu", threads=2, dtype="float64")}, narrow_weights, batch)
    reference = run_core({"chainer": backends64["chainer"]}, narrow_weights, batch)
    for mode in LOSS_MODES:
        assert disagreements(perturbed["pytorch", mode], reference["chainer", mode], EXACT) == ["conv2.W"]


def test_lrn_option_agrees_across_frameworks(backends, weights, batch):
    config = spec.ModelConfig(dropout=0.0, lrn=True)
    outputs = {}
    for name, backend in backends.items():
        backend.load_weights(weights, config)
        outputs[name] = backend.to_numpy(backend.forward(backend.to_device(batch[0]), train=False))
    for name in FRAMEWORKS:
        assert rel_err(outputs[name], outputs["pytorch"]) <= 1e-4, name
    backends["pytorch"].load_weights(weights, NO_DROPOUT)
    plain = backends["pytorch"].to_numpy(
        backends["pytorch"].forward(backends["pytorch"].to_device(batch[0]), False)
    )
    assert rel_err(plain, outputs["pytorch"]) > 1e-3  # LRN really is on


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_dropout_is_active_only_in_training(backends, weights, batch, framework):
    backend = backends[framework]
    backend.load_weights(weights, spec.ModelConfig(dropout=0.5))
    images = backend.to_device(batch[0])
    backend.seed(0)
    train_a = backend.to_numpy(backend.forward(images, train=True))
    backend.seed(0)
    train_b = backend.to_numpy(backend.forward(images, train=True))
    evals = [backend.to_numpy(backend.forward(images, train=False)) for _ in range(2)]
    np.testing.assert_array_equal(train_a, train_b)  # seeded
    np.testing.assert_array_equal(evals[0], evals[1])
    assert rel_err(train_a, evals[0]) > 1e-3


# --- weights ---------------------------------------------------------------------------------
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_weight_round_trip_is_exact(backends, weights, framework):
    backend = backends[framework]
    backend.load_weights(weights, NO_DROPOUT)
    exported = backend.export_weights()
    assert set(exported) == set(weights)
    for name, array in weights.items():
        assert exported[name].dtype == np.float32
        np.testing.assert_array_equal(exported[name], array)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_training_leaves_the_given_weights_untouched(backends, weights, batch, framework):
    """A backend owns copies: the neutral weights a timing server shares with its forked arms, or
    that one test gives to two backends, must not move when one of them trains."""
    backend = backends[framework]
    given = {name: array.copy() for name, array in weights.items()}
    backend.load_weights(weights, NO_DROPOUT)
    backend.set_optimizer(OptimizerConfig(name="momentum_sgd", lr=0.1))
    images, targets, visible = (backend.to_device(array) for array in batch)
    backend.forward_backward(images, targets, visible, "autograd")
    backend.optimizer_step()
    assert any(not np.array_equal(backend.export_weights()[k], given[k]) for k in given)
    for name, array in given.items():
        np.testing.assert_array_equal(weights[name], array)


def test_initial_weights_follow_the_seed():
    a, b, c = spec.init_weights(1), spec.init_weights(1), spec.init_weights(2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert all(not np.array_equal(a[k], c[k]) for k in a if k != "fc8.b")
    assert {k: v.shape for k, v in a.items()} == spec.weight_shapes()
    np.testing.assert_array_equal(c["fc8.b"], spec.OUTPUT_PRIOR)  # the regressor starts at the crop centre
    fan_in = int(np.prod(spec.weight_shapes()["conv1.W"][1:]))
    assert np.abs(a["conv1.W"]).max() <= 1 / np.sqrt(fan_in)


def test_wrong_weights_are_rejected(backends, weights):
    broken = dict(weights)
    broken["fc8.W"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match="fc8.W"):
        backends["pytorch"].load_weights(broken, NO_DROPOUT)


def test_flops_match_the_known_alexnet_count():
    assert spec.total_flops(1) == pytest.approx(6.58e9, rel=1e-3)
    assert spec.total_flops(32) == 32 * spec.total_flops(1)


# --- optimisers -----------------------------------------------------------------------------
def two_updates_and_a_round_trip(
    framework: str, weights, batch, config: OptimizerConfig
) -> tuple[dict, dict]:
    """The weights and optimiser state after two float64 updates from `weights`, and a check that
    the state survives loading into a fresh backend."""
    backend = create_backend(framework, "cpu", threads=2, dtype="float64")
    backend.load_weights(weights, NO_DROPOUT)
    backend.set_optimizer(config)
    dev = [backend.to_device(a) for a in batch]
    for _ in range(2):
        backend.zero_grad()
        backend.forward_backward(*dev, "autograd")
        backend.optimizer_step()
    after, state = backend.export_weights(), backend.optimizer_state()
    fresh = create_backend(framework, "cpu", threads=2, dtype="float64")
    fresh.load_weights(after, NO_DROPOUT)
    fresh.set_optimizer(config)
    fresh.load_optimizer_state(state)
    restored = fresh.optimizer_state()
    assert set(restored) == set(state)
    for key, value in state.items():
        np.testing.assert_array_equal(restored[key], value, err_msg=key)
    return after, state


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["momentum_sgd", "adam"])
def test_optimizer_steps_agree_and_state_round_trips(narrow_weights, batch, optimizer):
    """Two updates in float64, so that the update rules are compared, not float32 gradients."""
    config = OptimizerConfig(name=optimizer, lr=1e-3)
    after, states = {}, {}
    for name in EAGER:
        after[name], states[name] = two_updates_and_a_round_trip(name, narrow_weights, batch, config)
    for key in narrow_weights:
        moved = after["pytorch"][key] - narrow_weights[key]
        assert rel_err(after["chainer"][key] - narrow_weights[key], moved) <= 1e-9, key
    assert set(states["chainer"]) == set(states["pytorch"])
    for key in states["pytorch"]:
        assert rel_err(states["chainer"][key], states["pytorch"][key]) <= 1e-9, key


# --- errors and imports -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"framework": "tensorflow"},
            "unknown framework 'tensorflow'; allowed: pytorch, chainer, jax, pytorch_compile",
        ),
        ({"framework": "pytorch", "device": "tpu"}, "unknown device 'tpu'; allowed: cpu, cuda"),
        ({"framework": "pytorch", "threads": -1}, "threads must be >= 0"),
        ({"framework": "chainer", "dtype": "float16"}, "unknown dtype 'float16'; allowed: float32, float64"),
    ],
)
def test_bad_backend_requests_are_one_line_errors(kwargs, message):
    with pytest.raises(DeepPoseError) as error:
        create_backend(**kwargs)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_unknown_loss_mode_is_an_error(backends):
    pred, target, visible = loss_inputs(np.float32)
    with pytest.raises(DeepPoseError, match="unknown loss mode 'manual'; allowed: autograd, explicit"):
        backends["pytorch"].loss_grad(pred, target, visible, "manual")


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_cuda_without_a_gpu_is_a_clear_error(framework):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeepPoseError, match="cuda.*allowed here: cpu") as error:
        create_backend(framework, "cuda")
    assert "\n" not in str(error.value)


def _run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return result.stdout + result.stderr


def test_importing_deeppose_loads_no_framework():
    out = _run_python(
        "import sys, deeppose, deeppose.cli, deeppose.config, deeppose.backends;"
        "print(sorted(m for m in ('torch', 'chainer', 'jax') if m in sys.modules))"
    )
    assert out.strip() == "[]"


def test_importing_chainer_inside_a_function_keeps_none_of_its_locals_alive():
    """Chainer keeps its optional dependencies' ImportErrors, whose tracebacks held every frame up
    the stack of the first import: a training function's network and optimiser (0.9 GB) outlived
    it. The error's message stays for Chainer to raise."""
    out = _run_python(
        "import gc, weakref; from deeppose.backends.chainer_import import import_chainer\n"
        "class Network: pass\n"
        "def train():\n"
        "    network = Network(); import_chainer(); return weakref.ref(network)\n"
        "alive = train(); gc.collect()\n"
        "from chainer.backends import intel64\n"
        "print(alive() is None, 'ideep4py' in str(intel64._error))"
    )
    assert out.split() == ["True", "True"]


def test_chainer_backend_imports_cleanly_from_a_plain_process():
    """No exported variable, no warning, and the environment check's imports stay unloaded."""
    out = _run_python(
        "import sys, warnings; warnings.simplefilter('error');"
        "from deeppose.backends import create_backend; create_backend('chainer');"
        "print(sorted(m for m in ('pkg_resources', 'numpy.distutils') if m in sys.modules))"
    )
    assert out.strip() == "[]"
