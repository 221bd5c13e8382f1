"""Fixtures shared by the tests: the session's own measurement lock; the tiny project trained once
per test run (tests/tiny_training.py); for the backend tests, one batch and one set of weights,
whose float64 ReLU and pooling margins tests/test_backends.py checks."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import numpy as np
import pytest
from tiny_training import Trained, train_all

from deeppose import model as spec
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


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """The tiny project, every framework and loss mode trained once for the whole test run (the
    tests that only read a finished run share it); its folder, with KEPT's checkpoint, goes at the
    end. A test must not write into it: copy it, or work in a folder of its own."""
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
    return spec.init_weights(seed=3)
