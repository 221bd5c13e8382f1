"""The timing harness (fake clock, no framework), the `time` stage (fake backend, stand-in data),
thread limits (subprocesses), device errors and real end-to-end runs of both frameworks."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from deeppose import cli, harness, paths, timing
from deeppose.grid import Job
from deeppose.harness import measure
from deeppose.model import total_flops

REPO = Path(__file__).resolve().parents[1]
STAT_KEYS = {
    "n", "mean", "variance", "std", "median", "q1", "q3", "iqr", "min", "max",
    "ci95_low", "ci95_high", "ci_method", "iqr_over_median", "noisy",
}
RESULT_KEYS = {
    "kind", "schema_version", "job", "batch_size", "warmup", "repeats", "seed", "input",
    "measurements", "flops", "flops_per_s", "threads", "versions", "environment", "provenance",
}


def write_params(folder: Path, **timing_values: Any) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["timing"].update(timing_values)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


class FakeClock:
    """A nanosecond clock that moves only when told to, logging each read into `events`."""

    def __init__(self, events: list[str]) -> None:
        self.now = 0
        self.events = events

    def __call__(self) -> int:
        self.events.append("clock")
        return self.now


# --- harness ----------------------------------------------------------------------------
def test_harness_keeps_repeats_and_drops_warmup() -> None:
    events: list[str] = []
    clock = FakeClock(events)
    calls = {"n": 0}
    warmup, repeats = 3, 5

    def run() -> None:
        calls["n"] += 1
        # warm-up runs are slow (1000 s) and distinct; timed run i takes i ms
        clock.now += 1000 * 10**9 if calls["n"] <= warmup else (calls["n"] - warmup) * 10**6

    result = measure(run, repeats=repeats, warmup=warmup, clock=clock)
    assert calls["n"] == warmup + repeats
    assert len(result) == repeats
    assert result.samples_ns == tuple(i * 10**6 for i in range(1, repeats + 1))
    assert result.samples_s == pytest.approx([0.001, 0.002, 0.003, 0.004, 0.005])
    assert result.warmup_ns == (1000 * 10**9,) * warmup


def test_harness_syncs_before_every_clock_read_and_setup_is_untimed() -> None:
    events: list[str] = []
    clock = FakeClock(events)

    def run() -> None:
        events.append("run")
        clock.now += 5

    def setup() -> None:
        events.append("setup")
        clock.now += 10**9  # would show in the samples if it were timed

    result = measure(run, repeats=4, warmup=2, setup=setup, sync=lambda: events.append("sync"), clock=clock)
    assert events == ["setup", "sync", "clock", "run", "sync", "clock"] * 6
    assert result.samples_ns == (5, 5, 5, 5)


@pytest.mark.parametrize("kwargs", [{"repeats": 0}, {"repeats": 2, "warmup": -1}])
def test_harness_rejects_bad_counts(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        measure(lambda: None, **kwargs)


# --- the stage with a fake backend and stand-in data ------------------------------------
class FakeBackend:
    """Records every call; forward_backward and optimizer_step move the fake clock."""

    def __init__(self, device: str, threads: int, events: list[str], clock: FakeClock, warmup: int) -> None:
        self.device, self.threads = device, threads
        self.events, self.clock, self.warmup = events, clock, warmup
        self.calls = {"forward_backward": 0, "optimizer_step": 0}
        self.inputs: list[np.ndarray] = []

    def _timed(self, name: str, warmup_ns: int, base_ns: int) -> None:
        self.events.append(name)
        self.calls[name] += 1
        count = self.calls[name]
        self.clock.now += warmup_ns if count <= self.warmup else base_ns * (count - self.warmup)

    def seed(self, seed: int) -> None:
        self.events.append("seed")

    def load_weights(self, weights: dict, config: Any) -> None:
        self.events.append("load_weights")

    def to_device(self, array: np.ndarray) -> np.ndarray:
        self.inputs.append(array)
        return array

    def synchronize(self) -> None:
        self.events.append("sync")

    def zero_grad(self) -> None:
        self.events.append("zero_grad")

    def forward_backward(self, images: Any, targets: Any, visible: Any, mode: str) -> float:
        self._timed("forward_backward", 777 * 10**9, 10**6)
        return 0.0

    def set_optimizer(self, config: Any) -> None:
        self.events.append("set_optimizer")

    def optimizer_step(self) -> None:
        self._timed("optimizer_step", 555 * 10**9, 10**3)

    def thread_info(self) -> dict[str, Any]:
        return {"requested": self.threads, "native": []}

    def versions(self) -> dict[str, str]:
        return {"fake": "1.0"}


@pytest.fixture
def fake_stage(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Route `deeppose.timing` to a fake backend and a fake clock, in a temporary folder."""
    monkeypatch.chdir(tmp_path)
    events: list[str] = []
    clock = FakeClock(events)
    state: dict[str, Any] = {"events": events, "clock": clock}

    def create_backend(framework: str, device: str = "cpu", threads: int = 0) -> FakeBackend:
        state["backend"] = FakeBackend(device, threads, events, clock, state["warmup"])
        return state["backend"]

    monkeypatch.setattr("deeppose.backends.create_backend", create_backend)
    monkeypatch.setattr(timing, "measure", functools.partial(harness.measure, clock=clock))
    return state


def _timed_regions(events: list[str]) -> list[list[str]]:
    """What happened between each pair of clock reads."""
    reads = [i for i, e in enumerate(events) if e == "clock"]
    assert len(reads) % 2 == 0
    return [events[a + 1 : b] for a, b in zip(reads[::2], reads[1::2])]


def test_stage_method_with_fake_backend(fake_stage: dict[str, Any], tmp_path: Path) -> None:
    warmup, repeats = 2, 4
    fake_stage["warmup"] = warmup
    params = write_params(tmp_path, warmup=warmup, repeats=repeats, threads=3, optimizer_step=True)
    argv = ["time", "--params", str(params), "--framework", "pytorch", "--loss", "explicit",
            "--device", "cpu", "--batch-exp", "2", "--synthetic-input"]
    assert cli.main(argv) == 0
    events = fake_stage["events"]

    # every clock read comes right after a synchronisation
    assert all(events[i - 1] == "sync" for i, e in enumerate(events) if e == "clock")
    # the timed regions hold exactly the timed step; zero_grad is never inside one
    regions = _timed_regions(events)
    n = warmup + repeats
    assert regions == [["forward_backward", "sync"]] * n + [["optimizer_step", "sync"]] * n
    # each core run: zero_grad, then the synchronised clock start
    first_core = events.index("clock")
    assert events[first_core - 2 : first_core] == ["zero_grad", "sync"]
    assert events.count("zero_grad") == n + 1  # + the one before the optimiser's gradients
    # weights are loaded before anything is timed
    assert events.index("load_weights") < first_core

    result = json.loads(paths.timing_result(Job("pytorch", "explicit", "cpu", 2)).read_text())
    assert set(result) == RESULT_KEYS
    assert (result["batch_size"], result["warmup"], result["repeats"], result["input"]) == (4, 2, 4, "synthetic")
    core = result["measurements"]["core"]
    assert core["what"] == "forward + loss + backward"
    # warm-up runs (777 s each) are gone; timed run i took i ms
    assert core["samples_s"] == pytest.approx([0.001, 0.002, 0.003, 0.004])
    assert set(core["stats"]) == STAT_KEYS and core["stats"]["n"] == repeats
    assert core["stats"]["median"] == pytest.approx(0.0025)
    step = result["measurements"]["optimizer_step"]
    assert step["what"] == "optimizer update"
    assert step["samples_s"] == pytest.approx([1e-6, 2e-6, 3e-6, 4e-6])
    assert result["flops"] == total_flops(4)
    assert result["flops_per_s"] == pytest.approx(total_flops(4) / 0.0025)
    assert result["threads"] == {"requested": 3, "native": []}
    assert result["versions"] == {"fake": "1.0"}
    images, targets, visible = fake_stage["backend"].inputs
    assert images.shape == (4, 3, 227, 227) and targets.shape == (4, 28) and visible.shape == (4, 14)
    assert images.dtype == targets.dtype == visible.dtype == np.float32


def test_stage_without_optimizer_step(fake_stage: dict[str, Any], tmp_path: Path) -> None:
    fake_stage["warmup"] = 0
    params = write_params(tmp_path, warmup=0, repeats=2, optimizer_step=False)
    argv = ["time", "--params", str(params), "--framework", "chainer", "--loss", "autograd",
            "--batch-exp", "0", "--synthetic-input"]
    assert cli.main(argv) == 0
    result = json.loads(paths.timing_result(Job("chainer", "autograd", "cpu", 0)).read_text())
    assert list(result["measurements"]) == ["core"]
    assert "set_optimizer" not in fake_stage["events"]


def _stand_in_data(monkeypatch: pytest.MonkeyPatch, n: int, calls: list[dict[str, Any]]) -> None:
    """Stand-ins for deeppose.data.dataset / deeppose.data.batches that record their calls."""
    from deeppose.data.dataset import PreparedSet

    rng = np.random.default_rng(0)
    data = PreparedSet(
        split="test",
        images=rng.integers(0, 256, (n, 3, 256, 256), dtype=np.uint8),
        joints=rng.uniform(0, 256, (n, 14, 2)).astype(np.float32),
        visible=np.ones((n, 14), np.float32),
    )

    def load_prepared(folder: Any, split: str) -> Any:
        calls.append({"folder": Path(folder), "split": split})
        return data

    def make_batch(data: Any, indices: np.ndarray, crop: str = "random") -> Any:
        calls.append({"indices": np.asarray(indices).tolist(), "crop": crop})
        b = len(indices)
        return types.SimpleNamespace(
            images=np.zeros((b, 3, 227, 227), np.float32),
            targets=np.zeros((b, 28), np.float32),
            visible=np.ones((b, 14), np.float32),
        )

    monkeypatch.setitem(sys.modules, "deeppose.data.dataset", types.SimpleNamespace(load_prepared=load_prepared))
    monkeypatch.setitem(sys.modules, "deeppose.data.batches", types.SimpleNamespace(make_batch=make_batch))


def test_prepared_input_cycles_the_test_set(
    fake_stage: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_stage["warmup"] = 0
    calls: list[dict[str, Any]] = []
    _stand_in_data(monkeypatch, n=3, calls=calls)
    params = write_params(tmp_path, warmup=0, repeats=2, optimizer_step=False)
    argv = ["time", "--params", str(params), "--framework", "pytorch", "--loss", "autograd", "--batch-exp", "3"]
    assert cli.main(argv) == 0
    assert calls == [
        {"folder": paths.PREPARED, "split": "test"},
        {"indices": [0, 1, 2, 0, 1, 2, 0, 1], "crop": "center"},
    ]
    result = json.loads(paths.timing_result(Job("pytorch", "autograd", "cpu", 3)).read_text())
    assert result["input"] == "prepared-test" and result["batch_size"] == 8


def test_missing_prepared_data_is_a_one_line_error(
    fake_stage: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_stage["warmup"] = 0

    def load_prepared(folder: Any, split: str) -> Any:
        raise FileNotFoundError(2, "No such file", str(Path(folder) / "test.npz"))

    monkeypatch.setitem(sys.modules, "deeppose.data.dataset", types.SimpleNamespace(load_prepared=load_prepared))
    monkeypatch.setitem(sys.modules, "deeppose.data.batches", types.SimpleNamespace(make_batch=None))
    params = write_params(tmp_path, warmup=0, repeats=2)
    argv = ["time", "--params", str(params), "--framework", "pytorch", "--loss", "autograd", "--batch-exp", "0"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "deeppose prepare" in err and "--synthetic-input" in err
    assert not (tmp_path / "results").exists()


# --- user errors: one line, exit 2, nothing written --------------------------------------
@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--framework", "tensorflow", "unknown framework 'tensorflow'; allowed: pytorch, chainer, jax, pytorch_compile"),
        ("--loss", "manual", "unknown loss mode 'manual'; allowed: autograd, explicit"),
        ("--device", "tpu", "unknown device 'tpu'; allowed: cpu, cuda"),
        ("--batch-exp", "13", "--batch-exp: 13 is out of range; allowed: 0..12"),
    ],
)
def test_bad_job_is_a_one_line_error(
    option: str, value: str, expected: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    args = {"--framework": "pytorch", "--loss": "autograd", "--device": "cpu", "--batch-exp": "0", option: value}
    argv = ["time", "--params", str(REPO / "params.yaml"), "--synthetic-input"]
    argv += [item for pair in args.items() for item in pair]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]
    assert not (tmp_path / "results").exists()


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _has_cupy() -> bool:
    try:
        import cupy  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize(
    ("framework", "expected"),
    [
        pytest.param("pytorch", "finds no CUDA device",
                     marks=pytest.mark.skipif(_has_cuda(), reason="this machine has a CUDA device")),
        pytest.param("chainer", "needs CuPy", marks=pytest.mark.skipif(_has_cupy(), reason="CuPy is installed")),
    ],
)
def test_cuda_without_gpu(
    framework: str, expected: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["time", "--params", str(REPO / "params.yaml"), "--framework", framework, "--loss", "autograd",
            "--device", "cuda", "--batch-exp", "0", "--synthetic-input"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0] and err[0].startswith("deeppose time: error:")
    assert not (tmp_path / "results").exists()


# --- threads reach the frameworks (subprocesses: the limits must not leak into pytest) ----
def test_threads_setting_reaches_both_frameworks(tmp_path: Path) -> None:
    params = write_params(tmp_path, warmup=0, repeats=2, threads=1, optimizer_step=False)
    env = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2", PYTHONPATH=str(REPO))
    procs = {
        framework: subprocess.Popen(
            [sys.executable, "-m", "deeppose", "time", "--params", str(params), "--framework", framework,
             "--loss", "autograd", "--device", "cpu", "--batch-exp", "0", "--synthetic-input"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for framework in ("pytorch", "chainer")
    }
    for framework, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        threads = json.loads((tmp_path / paths.timing_result(Job(framework, "autograd", "cpu", 0))).read_text())["threads"]
        assert threads["requested"] == 1
        if framework == "pytorch":
            assert threads["torch_intra_op"] == 1
        blas = [pool for pool in threads["native"] if pool["library"] in ("openblas", "mkl", "blis")]
        assert blas, threads
        assert all(pool["num_threads"] == 1 for pool in threads["native"]), threads


# --- real end-to-end runs -----------------------------------------------------------------
@pytest.mark.parametrize("framework", ["pytorch", "chainer"])
def test_end_to_end(
    framework: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    # b0 with a warm-up and the optimiser step; b1 (the other loss mode) without either, to stay fast
    jobs = [(0, "autograd", {"warmup": 1, "optimizer_step": True}), (1, "explicit", {"warmup": 0, "optimizer_step": False})]
    for batch_exp, loss, timing_values in jobs:
        folder = tmp_path / f"b{batch_exp}"
        folder.mkdir()
        params = write_params(folder, repeats=3, threads=0, **timing_values)
        argv = ["time", "--params", str(params), "--framework", framework, "--loss", loss,
                "--device", "cpu", "--batch-exp", str(batch_exp), "--synthetic-input"]
        assert cli.main(argv) == 0
        out = capsys.readouterr().out
        assert "GFLOP/s" in out and "core median" in out
        result = json.loads(paths.timing_result(Job(framework, loss, "cpu", batch_exp)).read_text())
        assert set(result) == RESULT_KEYS
        assert result["job"] == {"framework": framework, "loss": loss, "device": "cpu", "batch_exp": batch_exp}
        assert result["batch_size"] == 2**batch_exp and result["repeats"] == 3
        assert result["warmup"] == timing_values["warmup"] and result["input"] == "synthetic"
        expected = {"core", "optimizer_step"} if timing_values["optimizer_step"] else {"core"}
        assert set(result["measurements"]) == expected
        for measurement in result["measurements"].values():
            assert len(measurement["samples_s"]) == 3 and all(s > 0 for s in measurement["samples_s"])
            assert set(measurement["stats"]) == STAT_KEYS and measurement["stats"]["n"] == 3
            assert measurement["stats"]["mean"] == pytest.approx(np.mean(measurement["samples_s"]))
        median = result["measurements"]["core"]["stats"]["median"]
        assert result["flops"] == total_flops(2**batch_exp)
        assert result["flops_per_s"] == pytest.approx(result["flops"] / median)
        assert {"pytorch": "torch", "chainer": "chainer"}[framework] in result["versions"]
        assert result["environment"]["cores"] >= 1


def test_end_to_end_on_prepared_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real data modules: a tiny prepared test set of 3 samples, cycled into a batch of 4."""
    from deeppose.data.testing import write_tiny_prepared

    monkeypatch.chdir(tmp_path)
    write_tiny_prepared(paths.PREPARED, n_train=2, n_test=3, seed=0)
    params = write_params(tmp_path, warmup=0, repeats=2, threads=0, optimizer_step=False)
    argv = ["time", "--params", str(params), "--framework", "pytorch", "--loss", "autograd",
            "--device", "cpu", "--batch-exp", "2"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    result = json.loads(paths.timing_result(Job("pytorch", "autograd", "cpu", 2)).read_text())
    assert result["input"] == "prepared-test" and result["batch_size"] == 4
    assert len(result["measurements"]["core"]["samples_s"]) == 2


def test_missing_real_prepared_data_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["time", "--params", str(REPO / "params.yaml"), "--framework", "pytorch", "--loss", "autograd",
            "--device", "cpu", "--batch-exp", "0"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "deeppose prepare" in err[0]
    assert not (tmp_path / "results").exists()
