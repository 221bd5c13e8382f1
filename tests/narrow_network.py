"""The tests' seeded AlexNet weights, and AlexNet with narrow fully connected layers, for the
tests that need every kind of layer in float64 but not AlexNet's width (fc6 alone holds 38 M
weights)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import pytest

from deeppose import model as spec

NARROW_FC = 64  # the width of fc6 and fc7 here (AlexNet's: 4096)
WEIGHTS_SEED = 3


def seeded_weights() -> dict[str, np.ndarray]:
    """The initial weights every network test starts from (conftest's `weights`); a spawned process
    builds them again rather than receiving 233 MB."""
    return spec.init_weights(seed=WEIGHTS_SEED)


def narrow_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Patch deeppose.model's fc6 and fc7 to NARROW_FC wide for as long as `monkeypatch` lasts."""
    full = spec.linears

    def narrow(n_joints: int = spec.N_JOINTS) -> tuple[spec.Linear, ...]:
        fc6, fc7, fc8 = full(n_joints)
        return (
            replace(fc6, out_features=NARROW_FC),
            replace(fc7, in_features=NARROW_FC, out_features=NARROW_FC),
            replace(fc8, in_features=NARROW_FC),
        )

    monkeypatch.setattr(spec, "linears", narrow)


def narrow_fc(monkeypatch: pytest.MonkeyPatch) -> dict[str, np.ndarray]:
    """narrow_layers, and that network's seeded initial weights."""
    narrow_layers(monkeypatch)
    weights = seeded_weights()
    assert weights["fc7.W"].shape == (NARROW_FC, NARROW_FC)
    return weights


@contextmanager
def narrowed() -> Iterator[None]:
    """The narrow network inside the block (a module fixture, a process of its own)."""
    with pytest.MonkeyPatch.context() as patch:
        narrow_layers(patch)
        yield
