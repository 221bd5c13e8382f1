"""The compiled backends (jax, pytorch_compile) against eager PyTorch: network, losses, optimisers,
dropout, compile time, memory probe, training curves and resume.

Compiles are the cost here (on 2 busy cores: XLA about 5 s per step in float32, 30 s in float64;
Inductor 20-60 s per graph), so each compiled backend is built once per module and shared;
tests that compile AlexNet in float64 or under Inductor are marked slow (`-m "not slow"` skips
them). The float64 optimiser test runs on conftest's narrow network, from PyTorch's gradients.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from narrow_network import narrow_fc, narrow_layers, seeded_weights
from test_backends import EXACT, NO_DROPOUT, core_results, disagreements, loss_inputs, rel_err, run_core
from tiny_training import REFERENCE, checkpoint_digests, in_own_process, losses, make_project

from deeppose import model as spec
from deeppose.backends import create_backend
from deeppose.config import load_params
from deeppose.errors import DeepPoseError
from deeppose.grid import LOSS_MODES, Job
from deeppose.measure.memory_probe import host_peak
from deeppose.optimizer import OptimizerConfig
from deeppose.records import paths
from deeppose.train import train

COMPILED = ("jax", "pytorch_compile")


# Module fixtures keep results, not backends: a float64 AlexNet with gradients and Adam state
# holds about 1.8 GB, and each test process runs many test files.
@pytest.fixture(scope="module")
def torch32(weights, batch) -> dict:
    """Outputs and losses only: float32 gradients are not compared (see test_backends.py)."""
    results = run_core({"pytorch": create_backend("pytorch", "cpu", threads=2)}, weights, batch)
    return {key: (out, loss, None) for key, (out, loss, _) in results.items()}


@pytest.fixture(scope="module")
def jax32() -> object:
    return create_backend("jax", "cpu", threads=2)


# --- agreement with eager PyTorch -----------------------------------------------------------
# The float64 comparisons' network: AlexNet with fc6 and fc7 narrow (tests/narrow_network.py),
# as in test_backends.py, but for compiled PyTorch, whose Inductor backward gives zero conv
# gradients on it (benchmarks/inductor_relu_pool_gradient.py): full width there.
NARROW_FLOAT64 = {"jax": True, "pytorch_compile": False}


def float64_disagreements(framework: str, batch: tuple) -> dict[str, list[str]]:
    """What differs by more than EXACT between `framework`'s float64 AlexNet and eager PyTorch's
    (each loss mode; then its two modes, and its gradient names), in a process of its own: at full
    width, two float64 networks and their gradients took the test process to 4.1 GB. Each eager
    result goes once compared, which took this process from 3.9 to 3.4 GB."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        weights = narrow_fc(monkeypatch) if NARROW_FLOAT64[framework] else seeded_weights()
        names = set(spec.weight_shapes())
        eager = run_core(
            {"pytorch": create_backend("pytorch", "cpu", threads=2, dtype="float64")}, weights, batch
        )
        backend = create_backend(framework, "cpu", threads=2, dtype="float64")
        found, results = {}, {}
        for mode, result in core_results(backend, weights, batch):
            found[mode] = disagreements(result, eager.pop(("pytorch", mode)), EXACT)
            results[mode] = result
    found["modes"] = disagreements(results["explicit"], results["autograd"], EXACT)
    found["names"] = [mode for mode in LOSS_MODES if set(results[mode][2]) != names]
    return found


@pytest.mark.slow
@pytest.mark.parametrize("framework", COMPILED)
def test_float64_output_loss_and_every_gradient_equal_pytorch(framework, batch):
    """The same exact tolerance as PyTorch vs Chainer in test_backends.py, in both loss modes."""
    found = in_own_process(float64_disagreements, framework, batch)
    assert found == {"autograd": [], "explicit": [], "modes": [], "names": []}


def test_jax_float32_outputs_and_losses_agree_with_pytorch(jax32, torch32, weights, batch):
    results = run_core({"jax": jax32}, weights, batch)
    jax32.zero_grad()
    for mode in LOSS_MODES:
        out_j, loss_j, _ = results["jax", mode]
        out_t, loss_t, _ = torch32["pytorch", mode]
        assert rel_err(out_j, out_t) <= 1e-4
        assert loss_j == pytest.approx(loss_t, rel=1e-4)


# --- jax's explicit backward ------------------------------------------------------------------
def _float64_jax() -> None:
    create_backend("jax", "cpu", threads=2, dtype="float64")  # turns on jax_enable_x64


def test_jax_explicit_loss_passes_check_grads():
    from jax.test_util import check_grads

    from deeppose.backends.jax import masked_mse_explicit

    _float64_jax()
    pred, target, visible = loss_inputs(np.float64)
    check_grads(lambda p, t: masked_mse_explicit(p, t, visible), (pred, target), order=1, modes=("rev",))


def test_check_grads_catches_a_wrong_jax_backward():
    import jax
    from jax.test_util import check_grads

    from deeppose.backends import jax as jax_backend

    _float64_jax()

    @jax.custom_vjp
    def wrong(pred, target, visible):
        return jax_backend.masked_mse_autograd(pred, target, visible)

    def backward(residuals, grad_output):
        grad_pred, grad_target, grad_visible = jax_backend._explicit_backward(residuals, grad_output)
        return 2 * grad_pred, grad_target, grad_visible

    wrong.defvjp(jax_backend._explicit_forward, backward)
    pred, target, visible = loss_inputs(np.float64)
    with pytest.raises(AssertionError):
        check_grads(lambda p, t: wrong(p, t, visible), (pred, target), order=1, modes=("rev",))


# --- optimisers --------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["momentum_sgd", "adam"])
def test_jax_optimizer_steps_agree_with_pytorch_and_state_round_trips(optimizer, narrow_weights, batch):
    """Two updates from the same gradients (PyTorch's, of the explicit mode, given to both), in
    float64, on conftest's narrow network: the update rules, momentum, Adam's bias
    correction and eps placement are compared, not gradients (the agreement check compares those)."""
    weights = narrow_weights
    config = OptimizerConfig(name=optimizer, lr=1e-3)
    after, states = {}, {}
    torch_backend = create_backend("pytorch", "cpu", threads=2, dtype="float64")
    torch_backend.load_weights(weights, NO_DROPOUT)
    torch_backend.set_optimizer(config)
    torch_backend.zero_grad()
    torch_backend.forward_backward(*(torch_backend.to_device(a) for a in batch), "explicit")
    gradients = {name: value.copy() for name, value in torch_backend.gradients().items()}  # not views
    for _ in range(2):
        torch_backend.optimizer_step()
    after["pytorch"], states["pytorch"] = torch_backend.export_weights(), torch_backend.optimizer_state()
    jax_backend = create_backend("jax", "cpu", threads=2, dtype="float64")
    jax_backend.load_weights(weights, NO_DROPOUT)
    jax_backend.set_optimizer(config)
    jax_backend.grads = {name: jax_backend.to_device(value) for name, value in gradients.items()}
    for _ in range(2):
        jax_backend.optimizer_step()
    jax_backend.synchronize()
    after["jax"], states["jax"] = jax_backend.export_weights(), jax_backend.optimizer_state()
    for key in weights:
        assert rel_err(after["jax"][key] - weights[key], after["pytorch"][key] - weights[key]) <= 1e-9, key
    assert set(states["jax"]) == set(states["pytorch"])
    for key in states["pytorch"]:
        assert rel_err(states["jax"][key], states["pytorch"][key]) <= 1e-9, key
    del after["pytorch"], states["pytorch"]
    jax_backend.load_weights(after["jax"], NO_DROPOUT)
    jax_backend.set_optimizer(config)
    jax_backend.load_optimizer_state(states["jax"])
    restored = jax_backend.optimizer_state()
    for key, value in states["jax"].items():
        np.testing.assert_array_equal(restored[key], value, err_msg=key)


# --- dropout, compile time, errors -------------------------------------------------------------
def test_jax_core_step_dropout_is_seeded(jax32, weights, batch):
    jax32.load_weights(weights, spec.ModelConfig(dropout=0.5))
    dev = [jax32.to_device(a) for a in batch]
    values = []
    for seed in (0, 0, 1):
        jax32.seed(seed)
        jax32.zero_grad()
        values.append(jax32.scalar(jax32.forward_backward(*dev, "autograd")))
    assert values[0] == values[1] and values[0] != values[2]


@pytest.fixture(scope="module")
def compiled32(weights, batch) -> dict:
    """pytorch_compile in float32 with dropout on, and its first (compiling) call."""
    backend = create_backend("pytorch_compile", "cpu", threads=2)
    backend.load_weights(weights, spec.ModelConfig(dropout=0.5))
    dev = [backend.to_device(a) for a in batch]
    backend.seed(0)
    return {"backend": backend, "dev": dev, "compile_s": backend.compile_core(*dev, "explicit")}


@pytest.mark.slow
def test_pytorch_compile_measures_compile_time_and_records_graph_breaks(compiled32):
    """compile_core times a call in which Dynamo really compiled (a warm Inductor disk cache may
    still make it short: compile_info shows the hits), and compile_info's graph breaks are
    Dynamo's own count, checked against torch._dynamo.explain of the same region."""
    import torch

    backend, dev = compiled32["backend"], compiled32["dev"]
    backend.zero_grad()
    backend.synchronize()
    steady = backend.forward_backward(*dev, "explicit")
    backend.synchronize()
    info = backend.compile_info()
    first = info["first_calls"]["explicit"]
    assert first["seconds"] == compiled32["compile_s"] > 0
    assert first["counters"]["frames"]["ok"] >= 1  # Dynamo really compiled in that call
    assert info["fx_graph_cache"] in (True, False) and info["cache_dir"]
    backend._net.train(True)
    explained = torch._dynamo.explain(super(type(backend), backend)._train_loss)(*dev, "explicit")
    assert info["graph_breaks"] == explained.graph_break_count
    assert np.isfinite(backend.scalar(steady))


@pytest.mark.slow
def test_pytorch_compile_dropout_is_seeded(compiled32):
    backend, dev = compiled32["backend"], compiled32["dev"]
    values = []
    for seed in (0, 0, 1):
        backend.seed(seed)
        backend.zero_grad()
        values.append(backend.scalar(backend.forward_backward(*dev, "explicit")))
    assert values[0] == values[1] and values[0] != values[2]


@pytest.mark.slow
def test_jax_compile_time_is_measured_and_eager_frameworks_report_none(jax32, weights, batch):
    jax32.load_weights(weights, NO_DROPOUT)
    dev = [jax32.to_device(a) for a in batch]
    first = jax32.compile_core(*dev, "autograd")
    jax32.zero_grad()
    jax32.synchronize()
    again = jax32.compile_core(*dev, "autograd")  # a fresh jit: compiles again, not a cache hit
    assert first > 0 and again > 0
    assert jax32.compile_info()["first_call_s"]["autograd"] == again
    assert jax32.compile_info()["persistent_cache_dir"] is None
    for framework in ("pytorch", "chainer"):
        eager = create_backend(framework, "cpu", threads=2)
        eager.load_weights(weights, NO_DROPOUT)
        assert eager.compile_core(*(eager.to_device(a) for a in batch), "autograd") is None
        assert eager.compile_info() == {}


def test_jax_synchronize_waits_for_the_step(jax32, weights, batch):
    jax32.load_weights(weights, NO_DROPOUT)
    dev = [jax32.to_device(a) for a in batch]
    jax32.zero_grad()
    value = jax32.forward_backward(*dev, "autograd")
    jax32.synchronize()
    assert value.is_ready() and all(g.is_ready() for g in jax32.grads.values())


@pytest.mark.parametrize("framework", COMPILED)
def test_the_layer_breakdown_is_refused_not_invented(framework, jax32, batch):
    backend = jax32 if framework == "jax" else create_backend(framework, "cpu", threads=2)
    with pytest.raises(DeepPoseError, match=f"per-layer breakdown is unavailable for {framework}") as error:
        backend.profile_core(*batch, "autograd", 1)
    assert "\n" not in str(error.value)


def test_jax_records_the_threads_and_versions_in_force(jax32):
    info = jax32.thread_info()
    assert info["requested"] == 2 and info["xla_threads"] >= 1
    assert isinstance(info["honoured"], bool) and "xla_flags" in info
    versions = jax32.versions()
    assert versions["jax"] == "0.7.1" and versions["jaxlib"] == "0.7.1" and versions["platform"] == "cpu"


def test_jax_one_thread_sets_the_xla_flag_in_a_fresh_process():
    """threads=1 must reach XLA before JAX initialises: only a fresh process shows it."""
    from test_backends import _run_python

    out = _run_python(
        "import json; from deeppose.backends import create_backend;"
        "b = create_backend('jax', 'cpu', threads=1); print(json.dumps(b.thread_info()))"
    )
    info = json.loads(out.strip().splitlines()[-1])
    assert "--xla_cpu_multi_thread_eigen=false" in info["xla_flags"]
    assert info["xla_threads"] == 1 and info["honoured"] is True


# --- memory probe --------------------------------------------------------------------------------
def test_host_peak_sees_a_known_allocation():
    size = 256 * 2**20
    peak = host_peak(lambda: np.ones(size // 8))  # written, so resident, then freed
    assert abs(peak.above_baseline_bytes - size) <= 16 * 2**20, peak
    idle = host_peak(lambda: None)
    assert idle.above_baseline_bytes <= 8 * 2**20, idle


# --- training --------------------------------------------------------------------------------
@pytest.fixture()
def project(tmp_path, monkeypatch):
    params = make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    return params


def _train(params: Path, job: Job, narrow: bool = True, stop_after_checkpoint: bool = False) -> dict:
    """train() of `job` (on the narrow network, as `trained`'s runs, unless told), for in_own_process: a compiled
    framework's training (its compiled code and buffers, the pages the allocator keeps) took the
    test process to 7 GB when run in it. Stopped after its first checkpoint if asked, as a killed
    run would be."""
    from deeppose import checkpoint
    from deeppose import train as train_module

    with pytest.MonkeyPatch.context() as patch:
        if narrow:
            narrow_layers(patch)
        if stop_after_checkpoint:
            save = checkpoint.save

            def save_then_stop(*args, **kwargs):
                save(*args, **kwargs)
                raise Stopped

            patch.setattr(train_module.ckpt, "save", save_then_stop)
        return train(load_params(params), job, progress=False)


def _curve(project, job: Job, narrow: bool) -> np.ndarray:
    in_own_process(_train, project, job, narrow)
    shutil.rmtree(paths.checkpoint_dir(job))  # unread: one checkpoint on disk at a time
    return losses(job)


@pytest.mark.slow
@pytest.mark.parametrize(
    "framework",
    [
        "jax",
        pytest.param("pytorch_compile", marks=pytest.mark.slow),
    ],
)
def test_autograd_and_explicit_curves_are_identical_and_follow_pytorch(project, trained, framework):
    """PyTorch's curve is the session's shared run of the same tiny project (conftest's `trained`, on
    the narrow network). Compiled PyTorch trains AlexNet at full width, beside eager PyTorch's run of
    it: on the narrow network Inductor's compiled backward gives zero conv gradients
    (benchmarks/inductor_relu_pool_gradient.py)."""
    narrow = framework != "pytorch_compile"
    curves = {mode: _curve(project, Job(framework, mode, "cpu"), narrow) for mode in LOSS_MODES}
    reference = trained.curves[REFERENCE] if narrow else _curve(project, REFERENCE, narrow)
    assert len(curves["autograd"]) == 4
    np.testing.assert_allclose(curves["explicit"], curves["autograd"], rtol=1e-5)
    np.testing.assert_allclose(curves["autograd"], reference, rtol=1e-4)


class Stopped(Exception):
    """A run stopped right after writing a checkpoint, as a killed one would be."""


@pytest.mark.slow
def test_a_resumed_jax_run_continues_exactly(tmp_path, monkeypatch):
    """Stopped after the first epoch's checkpoint, rerun: the same log losses and final weights
    as one uninterrupted run (Adam, so the step count matters)."""
    from deeppose import checkpoint

    job = Job("jax", "autograd", "cpu")
    finals, curves = {}, {}
    for name in ("clean", "stopped"):
        folder = tmp_path / name
        params = make_project(folder, n_train=8, epochs=2, optimizer="adam", lr=0.0003)
        monkeypatch.chdir(folder)
        if name == "stopped":
            with pytest.raises(Stopped):
                in_own_process(_train, params, job, stop_after_checkpoint=True)
        result = in_own_process(_train, params, job)
        assert result["resumed_from_epoch"] == (1 if name == "stopped" else 0)
        finals[name] = checkpoint_digests(
            paths.checkpoint_dir(job) / checkpoint.FILE_NAME, ("weight/", "optimizer/")
        )
        shutil.rmtree(paths.checkpoint_dir(job))  # read: one run's checkpoint on disk at a time
        curves[name] = losses(job)
    assert len(curves["clean"]) == 4
    np.testing.assert_array_equal(curves["stopped"], curves["clean"])
    assert finals["stopped"] == finals["clean"]
