"""A simulated machine for timing tests: live arms taking turns on a machine whose speed drifts,
with per-process effects, noisy runs and rounds another process disturbs, run through
deeppose.measure.blocks' schedule and runner and deeppose.timing's stopping rule
(tests/test_blocks.py, tests/test_timing.py, tests/test_compare.py).

The noise levels come from benchmarks/archive/2026-12-07-noise (2-core AMD EPYC Zen 3, PyTorch and
Chainer at batch 2 and 16), as log standard deviations: runs within one process 3-10 % (RUN_SD
0.05), process medians seconds apart 1.4-5 % (PROCESS_SD 0.015, the share that live turns do not
cancel: two live processes' medians of 6 turns differed by 1-5 %, root mean square 3.5 %), rounds
minutes apart 1-5 % (ROUND_SD 0.035, common to every arm of a round, as it is for live turns).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deeppose.measure import blocks as B
from deeppose.measure.turns import Turn
from deeppose.records.timing import BlockInterference, BlockRecord

RUN_SD = 0.05
PROCESS_SD = 0.015
ROUND_SD = 0.035
DRIFT_PER_TURN = 0.002  # a random walk of log speed over successive turns


def extras(arm: str) -> dict[str, Any]:
    """What a live arm reports at its finish, as the real session does."""
    own = "#" not in arm
    return {
        "warmup_s": [0.5],
        "optimizer_steps_s": {"adam": [0.01]} if own else {},
        "loss_s": ([2e-4 if arm.endswith("explicit") else 1e-4] * 3) if own else [],
        "compile_s": None,
        "memory_bytes": 10**8 if own else None,
        "memory_source": "test" if own else None,
        "compile": {},
        "threads": {"requested": 2},
        "versions": {arm.split("/")[0]: "1"},
        "fairness": {"framework": arm.split("/")[0]},
    }


@dataclass
class FakePool:
    """deeppose.measure.blocks.Pool on a simulated machine: cells whose true times are `base_s`
    (a planted arm `cell#planted` takes `planted` longer), the noise levels above, and with
    probability `outlier_p` a round that another process shares (every run x 1.1-1.6, shown in
    /proc/stat two times in three). The fake clock advances by every run's duration."""

    base_s: dict[str, float]
    rng: np.random.Generator
    planted: float = 0.10
    outlier_p: float = 0.05
    run_sd: float = RUN_SD
    process_sd: float = PROCESS_SD
    round_sd: float = ROUND_SD
    drift: float = DRIFT_PER_TURN
    now: float = 0.0
    busy: float = 0.0
    own: float = 0.0
    walk: float = 0.0
    opened: list[tuple[str, int]] = field(default_factory=list)
    turns: list[str] = field(default_factory=list)
    _process: dict[str, float] = field(default_factory=dict)
    _round: tuple[int, float, float] = (-1, 1.0, 0.0)

    def open(self, arm: str, round_: int) -> None:
        if round_ != self._round[0]:
            disturbed = self.rng.random() < self.outlier_p
            factor = float(self.rng.uniform(1.1, 1.6)) if disturbed else 1.0
            shown = 0.8 if disturbed and self.rng.random() < 2 / 3 else 0.0
            self._round = (round_, math.exp(self.rng.normal(0, self.round_sd)) * factor, shown)
        self.opened.append((arm, round_))
        self._process[arm] = math.exp(self.rng.normal(0, self.process_sd))

    def run(self, arm: str) -> Turn:
        self.turns.append(arm)
        self.walk += self.rng.normal(0, self.drift)
        cell = B.cell_of(arm)
        base = self.base_s[cell] * (1 + self.planted if arm.endswith(f"#{B.PLANTED}") else 1)
        seconds = (
            base * self._round[1] * self._process[arm] * math.exp(self.walk + self.rng.normal(0, self.run_sd))
        )
        self.now += seconds
        self.own += seconds
        self.busy += seconds * (1 + self._round[2])
        return Turn(seconds=seconds, waiting_cpu_s=0.0, waiting_s=seconds, settle_s=0.01)

    def finish(self, arm: str) -> tuple[dict[str, Any], float]:
        del self._process[arm]
        return extras(arm), 0.0

    def cpu_s(self) -> float:
        return 0.0

    def probe(self) -> B.CpuReading:
        return B.CpuReading(monotonic_s=self.now, machine_busy_s=self.busy, own_s=self.own)

    def watch(self) -> dict[str, Any]:
        """run_round's machine readings on this simulated machine."""
        return {
            "probe": self.probe,
            "load": lambda: (0.0, 0.0, 0.0),
            "cores": 2,
            "wall_clock": lambda: self.now,
        }


def run_group(base_s: dict[str, float], rounds: int, seed: int, repeats: int = 4) -> list[BlockRecord]:
    """One group on the simulated machine: its cells plus the A/A twin of the first, in rounds of
    live arms taking turns (deeppose.measure.blocks.run_rounds)."""
    cells = list(base_s)
    arms = [B.Arm(cell) for cell in cells] + [B.Arm(cells[0], 1)]
    pool = FakePool(base_s, np.random.default_rng(seed))
    blocks, _ = B.run_rounds(pool, B.schedule(arms, rounds, seed), repeats, **pool.watch())
    return blocks


def quiet_figures(other_cores: float = 0.0, load: float = 0.0) -> BlockInterference:
    """A block's interference figures: `other_cores` of other processes' work over 10 s."""
    return BlockInterference(
        10.0, 10.0 * (1 + other_cores), 10.0, 10.0 * other_cores, other_cores, [load, 0.0, 0.0], 2
    )


def block(arm: str, round_: int, samples: Sequence[float], reasons: Sequence[str] = ()) -> BlockRecord:
    """A stored block of `arm` with these samples, for the statistics' tests."""
    return BlockRecord.create(
        round=round_,
        position=0,
        arm=arm,
        attempt=0,
        samples_s=list(samples),
        warmup_s=[],
        waiting_cpu_s=[0.0] * len(samples),
        settle_s=[0.0] * len(samples),
        optimizer_steps_s={},
        loss_s=[],
        compile_s=None,
        memory_bytes=None,
        started_at=0.0,
        ended_at=1.0,
        interference=quiet_figures(),
        disturbed=bool(reasons),
        reasons=list(reasons),
    )
