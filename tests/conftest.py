"""Fixtures shared by the tests: the session's own measurement lock; the tiny project trained once
per test run (tests/tiny_training.py); for the backend tests, one batch and one set of weights,
whose float64 ReLU and pooling margins tests/test_backends.py checks, and a narrow network for the
float64 optimiser tests. Also the order in which pytest-xdist's workers take the test files."""

from __future__ import annotations

import gc
import os
import shutil
import sys
from collections.abc import Iterator

import numpy as np
import pytest
from narrow_network import narrow_fc, seeded_weights
from tiny_training import Trained, train_all, train_all_once

from deeppose.measure import allocator
from deeppose.measure.lock import ENV as LOCK_ENV


@pytest.fixture(scope="session", autouse=True)
def own_measurement_lock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The tests' measuring stages (and the engines and cluster jobs they start, which inherit the
    environment) take a lock of their own: a pipeline run on this machine, or a job another session
    left behind, must not make them wait (deeppose.measure.lock). A lock set by the caller is kept."""
    with pytest.MonkeyPatch.context() as patch:
        if not os.environ.get(LOCK_ENV):
            patch.setenv(LOCK_ENV, str(tmp_path_factory.mktemp("lock") / "measure.lock"))
        yield


@pytest.fixture(scope="session", autouse=True)
def keep_the_test_process_allocator() -> Iterator[None]:
    """A stage run in-process (`cli.main`) would pin glibc's allocator in the test process for the
    rest of the session (deeppose.measure.allocator): freed memory is then kept, the session's resident set
    grows by gigabytes and a later memory probe sees no new pages. So here pinning does nothing;
    every process a test starts (block servers, engines' jobs, tests/test_allocator.py's children)
    still pins for real."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(allocator, "pin", lambda threshold_mib: None)
        yield


@pytest.fixture(scope="module", autouse=True)
def release_compiled_code() -> Iterator[None]:
    """torch.compile and JAX keep every function they compiled, and with it the buffers its graph
    captured, for the life of the process: each test file starts without the last one's (a worker
    runs many files; test_new_backends.py left 1.7 GB behind)."""
    yield
    if "torch._dynamo" in sys.modules:
        sys.modules["torch._dynamo"].reset()
    if "jax" in sys.modules:
        sys.modules["jax"].clear_caches()
    gc.collect()


# The shared training's folder under the run's temporary root, when pytest-xdist runs workers.
SHARED_TRAINED = "trained-shared"
# The test files that take longest (an engine's pipeline, a live cluster, compiles), started first:
# with one file per worker at a time (`--dist loadfile`), a long file started last would run alone
# at the end while the other core idles.
LONGEST_FIRST = (
    "test_workflow.py",
    "test_slurm.py",
    "test_engine_reruns.py",
    "test_new_backends.py",
    "test_train.py",
    "test_timing.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """LONGEST_FIRST's files before the others, each file's tests in their own order."""

    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """pytest-xdist's controller removes the workers' shared training once they have all ended
    (none of them can tell whether another still reads it)."""
    if getattr(session.config.option, "numprocesses", None) and not hasattr(session.config, "workerinput"):
        root = session.config._tmp_path_factory.getbasetemp()
        shutil.rmtree(root / SHARED_TRAINED, ignore_errors=True)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[Trained]:
    """The tiny project, every framework and loss mode trained once for the whole test run (the
    tests that only read a finished run share it, in every pytest-xdist worker); its folder goes at
    the end. A test must not write into it: copy it, or work in a folder of its own."""
    if worker_id != "master":
        yield train_all_once(tmp_path_factory.getbasetemp().parent / SHARED_TRAINED)
        return  # pytest_sessionfinish removes it
    folder = tmp_path_factory.mktemp("trained")
    yield train_all(folder)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def batch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    images = rng.random((2, 3, 227, 227), dtype=np.float32)
    targets = rng.random((2, 28), dtype=np.float32)
    visible = (rng.random((2, 14)) > 0.3).astype(np.float32)
    return images, targets, visible


@pytest.fixture(scope="module")
def weights() -> dict[str, np.ndarray]:
    return seeded_weights()


@pytest.fixture
def narrow_weights(monkeypatch) -> dict[str, np.ndarray]:
    """Every backend built in the test has fc6 and fc7 NARROW_FC wide (deeppose.model's layer table,
    patched for the test), and these are its seeded initial weights. An update rule acts weight by
    weight, so the optimiser tests need every kind of layer, not AlexNet's width: in float64 with
    Adam's moments, the full network and the copies compared took 4-6 GB per test process, this one
    takes under 100 MB."""
    return narrow_fc(monkeypatch)
