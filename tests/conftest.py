"""Fixtures shared by the backend tests: one batch and one set of weights, whose float64 ReLU and
pooling margins tests/test_backends.py checks."""

from __future__ import annotations

import numpy as np
import pytest

from deeppose import model as spec


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
