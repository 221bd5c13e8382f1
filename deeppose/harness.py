"""The framework-free timing harness: the one loop every timed measurement of deeppose goes through.

One run of the loop is

    setup()                       # untimed: e.g. clearing gradients
    sync(); t0 = clock()          # device idle before the clock starts
    run()                         # the timed region: e.g. forward + loss + backward
    sync(); t1 = clock()          # device finished before the clock stops

repeated `warmup + repeats` times; the first `warmup` durations are dropped, the other `repeats`
kept one by one (nanoseconds, from `time.perf_counter_ns` unless a clock is injected). Nothing
here imports a framework: `setup`, `run` and `sync` are plain callables, so tests drive the harness
with a fake clock, and `benchmarks/harness_overhead.py` checks that the loop adds no measurable
time next to a hand-written one. The garbage collector is left as it is: its pauses are part of
what a framework costs in a training loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Clock = Callable[[], int]

NS_PER_S = 1_000_000_000


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Measurement:
    """Kept durations (after warm-up) and, for inspection only, the dropped warm-up durations."""

    samples_ns: tuple[int, ...]
    warmup_ns: tuple[int, ...] = ()

    @property
    def samples_s(self) -> list[float]:
        return [ns / NS_PER_S for ns in self.samples_ns]

    def __len__(self) -> int:
        return len(self.samples_ns)


def measure(
    run: Callable[[], Any],
    *,
    repeats: int,
    warmup: int = 0,
    setup: Callable[[], Any] | None = None,
    sync: Callable[[], Any] | None = None,
    clock: Clock = time.perf_counter_ns,
) -> Measurement:
    """Time `run` `repeats` times after `warmup` untimed-for-the-record runs (see module docstring).

    `setup` runs before each run, outside the timed region; `sync` is called before each of the
    two clock reads of every run (pass the device synchronisation; None on a host-only step).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    setup = setup or _nothing
    sync = sync or _nothing
    durations: list[int] = []
    append = durations.append
    for _ in range(warmup + repeats):
        setup()
        sync()
        start = clock()
        run()
        sync()
        end = clock()
        append(end - start)
    return Measurement(samples_ns=tuple(durations[warmup:]), warmup_ns=tuple(durations[:warmup]))
