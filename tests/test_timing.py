"""The timing harness (fake clock, no framework), one block (`time-block`, fake backend, stand-in
data), a group of interleaved blocks (`time`, fake launch), thread limits (subprocesses), device
errors and a real group of both frameworks."""

from __future__ import annotations

import functools
import gc
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from deeppose import cli, timing, timing_block
from deeppose.config import load_params
from deeppose.grid import Group, Job
from deeppose.measure import harness
from deeppose.measure.blocks import BlockOutput, CpuReading, parse_block
from deeppose.measure.harness import measure
from deeppose.model import total_flops
from deeppose.records import paths
from deeppose.records.results import TimingResult
from deeppose.stages import STAGES

REPO = Path(__file__).resolve().parents[1]


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


def test_harness_collects_garbage_outside_the_timed_region_only(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    clock = FakeClock(events)
    monkeypatch.setattr(harness.gc, "collect", lambda generation=2: events.append(f"collect {generation}"))

    def run() -> None:
        events.append(f"run gc={'on' if gc.isenabled() else 'off'}")

    assert gc.isenabled()
    measure(run, repeats=2, warmup=1, setup=lambda: events.append("setup"), clock=clock)
    assert events == ["collect 2"] + ["setup", "collect 0", "clock", "run gc=off", "clock"] * 3
    assert gc.isenabled()  # restored
    gc.disable()
    try:
        measure(lambda: None, repeats=1, clock=clock)
        assert not gc.isenabled()  # a disabled collector stays disabled
    finally:
        gc.enable()


def test_harness_releases_the_result_after_the_clock_stops() -> None:
    """A Chainer loss holds the iteration's graph: freeing it must not be timed."""
    events: list[str] = []
    clock = FakeClock(events)

    class Graph:
        def __del__(self) -> None:
            events.append("freed")

    def run() -> Graph:
        events.append("run")
        return Graph()

    measure(run, repeats=2, clock=clock)
    assert events == ["clock", "run", "clock", "freed"] * 2


@pytest.mark.parametrize("kwargs", [{"repeats": 0}, {"repeats": 2, "warmup": -1}])
def test_harness_rejects_bad_counts(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        measure(lambda: None, **kwargs)


# --- one block with a fake backend and stand-in data -------------------------------------
class FakeBackend:
    """Records every call; forward_backward, optimizer_step and the loss move the fake clock."""

    def __init__(self, device: str, threads: int, events: list[str], clock: FakeClock, warmup: int) -> None:
        self.device, self.threads, self.dtype = device, threads, np.dtype("float32")
        self.events, self.clock, self.warmup = events, clock, warmup
        self.calls = {"forward_backward": 0, "optimizer_step": 0, "loss": 0}
        self.inputs: list[np.ndarray] = []

    def _timed(self, name: str, warmup_ns: int, base_ns: int, warmup: int | None = None) -> None:
        self.events.append(name)
        self.calls[name] += 1
        count, warmup = self.calls[name], self.warmup if warmup is None else warmup
        self.clock.now += warmup_ns if count <= warmup else base_ns * (count - warmup)

    def seed(self, seed: int) -> None:
        self.events.append("seed")

    def load_weights(self, weights: dict, config: Any) -> None:
        self.events.append("load_weights")

    def to_device(self, array: np.ndarray) -> np.ndarray:
        self.inputs.append(array)
        return array

    def to_numpy(self, array: np.ndarray) -> np.ndarray:
        return np.asarray(array)

    def synchronize(self) -> None:
        self.events.append("sync")

    def zero_grad(self) -> None:
        self.events.append("zero_grad")

    def forward(self, images: Any, train: bool) -> np.ndarray:
        self.events.append("forward")
        return np.zeros((len(images), 28), np.float32)

    def forward_backward(self, images: Any, targets: Any, visible: Any, mode: str) -> float:
        self._timed("forward_backward", 777 * 10**9, 10**6, warmup=self.warmup + 1)  # + the memory pass
        return 0.0

    def compile_core(self, images: Any, targets: Any, visible: Any, mode: str) -> None:
        self.events.append("compile_core")  # an eager framework compiles nothing

    def compile_info(self) -> dict[str, Any]:
        return {}

    def loss_probe(self, pred: Any, target: Any, visible: Any, mode: str) -> tuple[Any, Any]:
        def run() -> float:
            self._timed("loss", 333 * 10**9, 10, warmup=timing_block.LOSS_WARMUP)
            return 0.0

        return run, lambda: self.events.append("clear_pred_grad")

    def set_optimizer(self, config: Any) -> None:
        self.events.append(f"set_optimizer {config.name}")

    def optimizer_step(self) -> None:
        self._timed("optimizer_step", 555 * 10**9, 10**3)

    def thread_info(self) -> dict[str, Any]:
        return {"requested": self.threads, "native": []}

    def versions(self) -> dict[str, str]:
        return {"fake": "1.0"}


@pytest.fixture
def fake_stage(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Route `deeppose.timing_block` to a fake backend and a fake clock, in a temporary folder."""
    monkeypatch.chdir(tmp_path)
    events: list[str] = []
    clock = FakeClock(events)
    state: dict[str, Any] = {"events": events, "clock": clock}

    def create_backend(framework: str, device: str = "cpu", threads: int = 0) -> FakeBackend:
        state["backend"] = FakeBackend(device, threads, events, clock, state["warmup"])
        return state["backend"]

    monkeypatch.setattr("deeppose.backends.create_backend", create_backend)
    monkeypatch.setattr(timing_block, "measure", functools.partial(harness.measure, clock=clock))
    monkeypatch.setattr(timing_block.fairness, "collect", lambda *a: {"framework": a[0], "fake": True})
    return state


def _timed_regions(events: list[str]) -> list[list[str]]:
    """What happened between each pair of clock reads."""
    reads = [i for i, e in enumerate(events) if e == "clock"]
    assert len(reads) % 2 == 0
    return [events[a + 1 : b] for a, b in zip(reads[::2], reads[1::2])]


def run_block(argv: list[str], capsys: pytest.CaptureFixture[str]) -> BlockOutput:
    assert cli.main(["time-block", *argv]) == 0
    return parse_block(capsys.readouterr().out)


def test_block_method_with_fake_backend(
    fake_stage: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    warmup, repeats = 2, 4
    fake_stage["warmup"] = warmup
    params = write_params(
        tmp_path, warmup=warmup, repeats=repeats, threads=1, optimizers=["momentum_sgd", "adam"]
    )
    output = run_block(
        [
            "--params",
            str(params),
            "--framework",
            "pytorch",
            "--loss",
            "explicit",
            "--device",
            "cpu",
            "--batch-exp",
            "2",
            "--synthetic-input",
        ],
        capsys,
    )
    events = fake_stage["events"]

    # every clock read comes right after a synchronisation
    assert all(events[i - 1] == "sync" for i, e in enumerate(events) if e == "clock")
    # the timed regions hold exactly the timed step; zero_grad is never inside one
    regions = _timed_regions(events)
    n, n_loss = warmup + repeats, timing_block.LOSS_WARMUP + timing_block.LOSS_REPEATS
    # compile first (nothing, for an eager framework), then the memory pass, then the timed runs
    assert events.index("compile_core") < events.index("forward_backward") < events.index("clock")
    assert regions == (
        [["forward_backward", "sync"]] * n
        + [["optimizer_step", "sync"]] * 2 * n
        + [["loss", "sync"]] * n_loss
    )
    # each optimiser is set, with the training's learning rate, before its own updates
    assert [e for e in events if e.startswith("set_optimizer")] == [
        "set_optimizer momentum_sgd",
        "set_optimizer adam",
    ]
    # each core run: zero_grad, then the synchronised clock start; each loss run clears its gradient
    first_core = events.index("clock")
    assert events[first_core - 2 : first_core] == ["zero_grad", "sync"]
    assert events.count("zero_grad") == n + 1  # + before the memory pass
    # the updates apply the last timed core run's gradients: no core run after it
    assert "forward_backward" not in events[events.index("set_optimizer momentum_sgd") :]
    assert events.count("clear_pred_grad") == n_loss
    assert events.index("load_weights") < first_core  # weights are loaded before anything is timed

    # warm-up runs (777 s each) are kept apart; timed run i took i ms
    assert output.samples_s == pytest.approx([0.001, 0.002, 0.003, 0.004])
    assert output.warmup_s == pytest.approx([777.0, 777.0])
    steps = output.extra["optimizer_steps_s"]
    assert list(steps) == ["momentum_sgd", "adam"]
    assert steps["momentum_sgd"] == pytest.approx([1e-6, 2e-6, 3e-6, 4e-6])
    assert steps["adam"] == pytest.approx([7e-6, 8e-6, 9e-6, 10e-6])  # the fake's call count runs on
    assert output.extra["loss_s"] == pytest.approx([1e-8 * (i + 1) for i in range(timing_block.LOSS_REPEATS)])
    assert output.extra["threads"] == {"requested": 1, "native": []} and output.extra["versions"] == {
        "fake": "1.0"
    }
    assert output.extra["fairness"] == {"framework": "pytorch", "fake": True}
    assert output.extra["compile_s"] is None and output.extra["compile"] == {}
    assert output.extra["memory_bytes"] >= 0 and output.extra["memory_source"].startswith("host resident set")
    images, targets, visible = fake_stage["backend"].inputs[:3]
    assert images.shape == (4, 3, 227, 227) and targets.shape == (4, 28) and visible.shape == (4, 14)
    assert images.dtype == targets.dtype == visible.dtype == np.float32


def test_block_without_optimizers(
    fake_stage: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_stage["warmup"] = 0
    params = write_params(tmp_path, warmup=0, repeats=2, optimizers=[])
    output = run_block(
        [
            "--params",
            str(params),
            "--framework",
            "chainer",
            "--loss",
            "autograd",
            "--batch-exp",
            "0",
            "--synthetic-input",
        ],
        capsys,
    )
    assert output.extra["optimizer_steps_s"] == {} and not any(
        e.startswith("set_optimizer") for e in fake_stage["events"]
    )
    assert not (tmp_path / "results").exists()  # a block writes no file


def test_an_update_is_warmed_up_even_without_core_warm_up(
    fake_stage: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The memory pass warms the core process up, but nothing warms an optimiser's first update,
    which allocates its state: one untimed update always runs first."""
    fake_stage["warmup"] = 0
    params = write_params(tmp_path, warmup=0, repeats=2, optimizers=["adam"])
    output = run_block(
        [
            "--params",
            str(params),
            "--framework",
            "pytorch",
            "--loss",
            "autograd",
            "--batch-exp",
            "0",
            "--synthetic-input",
        ],
        capsys,
    )
    assert (
        fake_stage["events"].count("optimizer_step") == 3
        and len(output.extra["optimizer_steps_s"]["adam"]) == 2
    )
    assert len(output.samples_s) == 2 and output.warmup_s == ()


def _stand_in_data(monkeypatch: pytest.MonkeyPatch, n: int, calls: list[dict[str, Any]]) -> None:
    """Stand-ins for deeppose.data.dataset / deeppose.data.batches that record their calls."""
    from deeppose.data.dataset import PreparedSet

    rng = np.random.default_rng(0)
    data = PreparedSet(
        split="test",
        images=rng.integers(0, 256, (n, 3, 256, 256), dtype=np.uint8),
        joints=rng.uniform(0, 256, (n, 14, 2)).astype(np.float32),
        visible=np.ones((n, 14), np.float32),
        annotated=np.ones((n, 14), np.float32),
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

    monkeypatch.setitem(
        sys.modules, "deeppose.data.dataset", types.SimpleNamespace(load_prepared=load_prepared)
    )
    monkeypatch.setitem(sys.modules, "deeppose.data.batches", types.SimpleNamespace(make_batch=make_batch))


def test_prepared_input_cycles_the_test_set(
    fake_stage: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_stage["warmup"] = 0
    calls: list[dict[str, Any]] = []
    _stand_in_data(monkeypatch, n=3, calls=calls)
    params = write_params(tmp_path, warmup=0, repeats=2, optimizers=[])
    run_block(
        ["--params", str(params), "--framework", "pytorch", "--loss", "autograd", "--batch-exp", "3"], capsys
    )
    assert calls == [
        {"folder": paths.PREPARED, "split": "test"},
        {"indices": [0, 1, 2, 0, 1, 2, 0, 1], "crop": "center"},
    ]


def test_missing_prepared_data_is_a_one_line_error(
    fake_stage: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_stage["warmup"] = 0

    def load_prepared(folder: Any, split: str) -> Any:
        raise FileNotFoundError(2, "No such file", str(Path(folder) / "test.npz"))

    monkeypatch.setitem(
        sys.modules, "deeppose.data.dataset", types.SimpleNamespace(load_prepared=load_prepared)
    )
    monkeypatch.setitem(sys.modules, "deeppose.data.batches", types.SimpleNamespace(make_batch=None))
    params = write_params(tmp_path, warmup=0, repeats=2)
    argv = [
        "time-block",
        "--params",
        str(params),
        "--framework",
        "pytorch",
        "--loss",
        "autograd",
        "--batch-exp",
        "0",
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "deeppose prepare" in err and "--synthetic-input" in err


# --- a group of interleaved blocks, through a fake launch -----------------------------------
QUIET = {
    "probe": lambda: CpuReading(0.0, 0.0, 0.0),
    "load": lambda: (0.0, 0.0, 0.0),
    "cores": 2,
}  # a machine at rest


def fake_launch(calls: list[str], slow: dict[str, float]) -> Any:
    """Each cell's block: three samples of its base time (slower cells as given) drifting 0.2 % a
    block, and a warm-up."""

    def launch(cell: str, round_: int) -> BlockOutput:
        calls.append(cell)
        base = 0.1 * slow.get(cell, 1.0) * (1 + 0.002 * len(calls))
        return BlockOutput(
            (base, base * 1.01, base * 0.99),
            (base * 5,),
            {
                "optimizer_steps_s": {"adam": [0.01]},
                "loss_s": [2e-4 if cell.endswith("explicit") else 1e-4] * 3,
                "compile_s": None,
                "memory_bytes": 10**8,
                "compile": {},
                "memory_source": "test",
                "threads": {"requested": 2},
                "versions": {cell: "1"},
                "fairness": {"framework": cell.split("/")[0]},
            },
        )

    return launch


def test_group_interleaves_every_cell_and_keeps_every_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    params = load_params(write_params(tmp_path, blocks=3, repeats=3))
    group = Group.of(params.grid, "cpu", 2)
    calls: list[str] = []
    results = timing.time_group(
        params, group, synthetic=True, launch=fake_launch(calls, {"chainer/autograd": 2.0}), **QUIET
    )
    cells = ["pytorch/autograd", "pytorch/explicit", "chainer/autograd", "chainer/explicit"]
    # 3 rounds, each running every cell once plus the A/A twin, in a seeded order that differs by round
    assert len(calls) == 15 and all(
        sorted(calls[5 * r : 5 * r + 5]) == sorted(cells + ["pytorch/autograd"]) for r in range(3)
    )
    assert len({tuple(calls[5 * r : 5 * r + 5]) for r in range(3)}) > 1
    again: list[str] = []
    timing.time_group(params, group, synthetic=True, launch=fake_launch(again, {}), **QUIET)
    assert again == calls  # seeded
    assert [f"{job.framework}/{job.loss}" for job in results] == cells
    control = results[Job("pytorch", "autograd", "cpu", 2)]
    assert len(control.blocks) == 3 and len(control.control_blocks) == 3
    assert {b.arm for b in control.control_blocks} == {
        "pytorch/autograd#1"
    } and control.control == "pytorch/autograd"
    slow = results[Job("chainer", "autograd", "cpu", 2)]
    assert slow.control_blocks == [] and slow.group == cells and slow.rounds == 3
    assert slow.time_s.estimate == pytest.approx(0.2, rel=0.03)
    assert slow.time_s.low < slow.time_s.estimate < slow.time_s.high and slow.time_s.n == 3
    assert slow.flops_per_s == pytest.approx(total_flops(4) / slow.time_s.estimate)
    assert all(
        b.warmup_s == pytest.approx([b.samples_s[0] * 5]) and b.loss_s == [1e-4] * 3 for b in slow.blocks
    )
    assert slow.environment["fairness"] == {"framework": "chainer"} and slow.provenance.stage == "time"
    assert set(STAGES["time"].outputs(group).values()) == {paths.timing_result(job) for job in results}


def test_a_failing_block_is_a_one_line_error_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real block server that fails (no prepared data): the group stops with its last line."""
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path, blocks=2, repeats=2)
    assert cli.main(["time", "--params", str(params), "--device", "cpu", "--batch-exp", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "deeppose time: error: time cpu/b0: pytorch block server exited with status 2"
    )
    assert "deeppose prepare" in err[0] and not (tmp_path / "results").exists()


# --- user errors: one line, exit 2, nothing written --------------------------------------
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["time-block", "--framework", "tensorflow", "--loss", "autograd"],
            "unknown framework 'tensorflow'; allowed: pytorch, chainer, jax, pytorch_compile",
        ),
        (
            ["time-block", "--framework", "pytorch", "--loss", "manual"],
            "unknown loss mode 'manual'; allowed: autograd, explicit",
        ),
        (["time", "--device", "tpu"], "unknown device 'tpu'; allowed: cpu, cuda"),
        (["time", "--batch-exp", "13"], "--batch-exp: 13 is out of range; allowed: 0..12"),
    ],
)
def test_bad_job_is_a_one_line_error(
    argv: list[str],
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    args = {"--device": "cpu", "--batch-exp": "0"} | dict(zip(argv[1::2], argv[2::2]))
    full = [
        argv[0],
        "--params",
        str(REPO / "params.yaml"),
        "--synthetic-input",
        *[x for kv in args.items() for x in kv],
    ]
    assert cli.main(full) == 2
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
        pytest.param(
            "pytorch",
            "finds no CUDA device",
            marks=pytest.mark.skipif(_has_cuda(), reason="this machine has a CUDA device"),
        ),
        pytest.param(
            "chainer", "needs CuPy", marks=pytest.mark.skipif(_has_cupy(), reason="CuPy is installed")
        ),
    ],
)
def test_cuda_without_gpu(
    framework: str,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = [
        "time-block",
        "--params",
        str(REPO / "params.yaml"),
        "--framework",
        framework,
        "--loss",
        "autograd",
        "--device",
        "cuda",
        "--batch-exp",
        "0",
        "--synthetic-input",
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0] and err[0].startswith("deeppose time-block: error:")


# --- threads reach the frameworks (subprocesses: the limits must not leak into pytest) ----
@pytest.mark.slow
def test_threads_setting_reaches_both_frameworks(tmp_path: Path) -> None:
    params = write_params(tmp_path, warmup=0, repeats=2, threads=1, optimizers=[])
    env = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2", PYTHONPATH=str(REPO))
    procs = {
        framework: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "deeppose",
                "time-block",
                "--params",
                str(params),
                "--framework",
                framework,
                "--loss",
                "autograd",
                "--device",
                "cpu",
                "--batch-exp",
                "0",
                "--synthetic-input",
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for framework in ("pytorch", "chainer")
    }
    for framework, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        threads = parse_block(out).extra["threads"]
        assert threads["requested"] == 1
        if framework == "pytorch":
            assert threads["torch_intra_op"] == 1
        blas = [pool for pool in threads["native"] if pool["library"] in ("openblas", "mkl", "blis")]
        assert blas, threads
        assert all(pool["num_threads"] == 1 for pool in threads["native"]), threads


# --- a real group: both frameworks, both loss modes, fresh processes --------------------------
@pytest.mark.slow
def test_real_group_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path, warmup=1, repeats=2, blocks=2, threads=0, optimizers=["adam"])
    assert (
        cli.main(
            ["time", "--params", str(params), "--device", "cpu", "--batch-exp", "0", "--synthetic-input"]
        )
        == 0
    )
    assert "time cpu/b0:" in capsys.readouterr().out
    for framework in ("pytorch", "chainer"):
        for loss in ("autograd", "explicit"):
            result = TimingResult.read(paths.timing_result(Job(framework, loss, "cpu", 0)))
            assert result.batch_size == 1 and result.repeats == 2 and result.input == "synthetic"
            finals = {b.round for b in result.blocks}
            assert finals == {0, 1} and all(
                len(b.samples_s) == 2 and len(b.warmup_s) == 1 for b in result.blocks
            )
            assert all(len(b.loss_s) == timing_block.LOSS_REPEATS for b in result.blocks)
            # the updates (independent of batch and loss) are timed in the group's first round only
            assert all(len(b.optimizer_steps_s["adam"]) == 2 for b in result.blocks if b.round == 0)
            assert all(b.optimizer_steps_s == {} for b in result.blocks if b.round > 0)
            assert all(s > 0 for b in result.blocks for s in b.samples_s + b.loss_s)
            assert result.time_s.estimate is None or result.time_s.estimate > 0
            assert {"pytorch": "torch", "chainer": "chainer"}[framework] in result.versions
            assert result.environment["fairness"]["framework"] == framework
            # the block server pinned glibc's allocator from params.yaml before forking (deeppose.measure.allocator)
            assert result.environment["fairness"]["common"]["allocator"]["mmap_threshold_bytes"] == 1024 << 20
            assert result.flops == total_flops(1)


@pytest.mark.slow
def test_real_block_on_prepared_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real data modules: a tiny prepared test set of 3 samples, cycled into a batch of 4."""
    from tiny_datasets import write_tiny_prepared

    monkeypatch.chdir(tmp_path)
    write_tiny_prepared(paths.PREPARED, n_train=2, n_test=3, seed=0)
    params = write_params(tmp_path, warmup=0, repeats=2, threads=0, optimizers=[])
    output = run_block(
        [
            "--params",
            str(params),
            "--framework",
            "pytorch",
            "--loss",
            "autograd",
            "--device",
            "cpu",
            "--batch-exp",
            "2",
        ],
        capsys,
    )
    assert len(output.samples_s) == 2 and output.extra["optimizer_steps_s"] == {}
