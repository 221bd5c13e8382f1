"""The optimiser settings, framework-neutral: each backend builds its own optimiser from them."""

from __future__ import annotations

from dataclasses import dataclass

from deeppose.errors import DeepPoseError
from deeppose.grid import OPTIMIZERS


@dataclass(frozen=True)
class OptimizerConfig:
    """MomentumSGD (the study's) or Adam, with the same meaning in every framework."""

    name: str = "momentum_sgd"
    lr: float = 0.01
    momentum: float = 0.9  # MomentumSGD only
    beta1: float = 0.9  # Adam only
    beta2: float = 0.999  # Adam only
    eps: float = 1e-8  # Adam only

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise DeepPoseError(f"unknown optimizer {self.name!r}; allowed: {', '.join(OPTIMIZERS)}")
