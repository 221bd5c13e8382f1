"""A simulated machine for timing tests: drift, a random walk of speed, per-process effects and
outlier blocks, run through deeppose.measure.blocks' schedule and runner (tests/test_blocks.py,
tests/test_compare.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from deeppose import compare_stats as S
from deeppose.measure import blocks as B


@dataclass
class FakeMachine:
    """Runs blocks of cells whose true times are `base_s`, on a machine whose speed drifts.

    Per block: a slow linear trend (the machine +15 % slower by the last block), a random walk
    of log speed (1.5 % per block), a per-process effect (lognormal, 3 %: memory layout, library
    choices), and with probability `outlier_p` another process running beside it (samples x 1.1
    to 1.6) that /proc/stat shows two times in three. Per sample: 2 % lognormal noise and a rare
    spike. Warm-up runs are 3x slower. The fake clock advances by every run's duration.
    """

    base_s: dict[str, float]
    total_blocks: int
    rng: np.random.Generator
    warmup: int = 2
    repeats: int = S.SIMULATED_REPEATS
    outlier_p: float = 0.05
    now: float = 0.0
    busy: float = 0.0
    own: float = 0.0
    walk: float = 0.0
    blocks_run: int = 0

    def launch(self, cell: str, round_: int = 0) -> B.BlockOutput:
        rng = self.rng
        trend = 1 + 0.15 * self.blocks_run / max(self.total_blocks - 1, 1)
        self.walk += rng.normal(0, 0.015)
        speed = trend * math.exp(self.walk) * rng.lognormal(0, 0.03)
        other_cores = 0.0
        if rng.random() < self.outlier_p:
            speed *= rng.uniform(1.1, 1.6)
            other_cores = 0.8 if rng.random() < 2 / 3 else 0.0
        samples = self.base_s[cell] * speed * rng.lognormal(0, 0.02, self.repeats)
        samples *= np.where(rng.random(self.repeats) < 0.02, 1.5, 1.0)
        warmup = self.base_s[cell] * speed * 3 * np.ones(self.warmup)
        wall = float(samples.sum() + warmup.sum())
        self.now += wall
        self.own += wall
        self.busy += wall * (1 + other_cores)
        self.blocks_run += 1
        return B.BlockOutput(tuple(samples.tolist()), tuple(warmup.tolist()))

    def probe(self) -> B.CpuReading:
        return B.CpuReading(monotonic_s=self.now, machine_busy_s=self.busy, own_s=self.own)


def run_group(
    base_s: dict[str, float], rounds: int, seed: int, repeats: int = S.SIMULATED_REPEATS
) -> tuple[B.Block, ...]:
    """One group on the fake machine: its cells plus the A/A twin of the first, interleaved."""
    cells = list(base_s)
    arms = B.arms_with_control(cells, control=cells[0])
    machine = FakeMachine(base_s, len(arms) * rounds, np.random.default_rng(seed), repeats=repeats)
    return B.run_blocks(
        B.schedule(arms, rounds, seed),
        machine.launch,
        probe=machine.probe,
        load=lambda: (0.0, 0.0, 0.0),
        cores=2,
        wall_clock=lambda: machine.now,
    )
