"""The framework-free timing harness: the one loop every timed measurement of deeppose goes through.

One run of the loop is

    setup(); gc.collect(0)        # untimed: e.g. clearing gradients; then the young generation
    sync(); t0 = clock()          # device idle before the clock starts
    result = run()                # the timed region: e.g. forward + loss + backward
    sync(); t1 = clock()          # device finished before the clock stops
    del result                    # untimed: freeing what run() returned (e.g. Chainer's graph)

repeated `warmup + repeats` times; the first `warmup` durations are dropped, the other `repeats`
kept one by one (nanoseconds, from `time.perf_counter_ns` unless a clock is injected). Nothing
here imports a framework: `setup`, `run` and `sync` are plain callables, so tests drive the harness
with a fake clock, and `benchmarks/harness_overhead.py` checks that the loop adds no measurable
time next to a hand-written one.

Two costs are kept out of the timed region on purpose, because where they land is an accident of
the process rather than a property of the framework: Python's cyclic garbage collector (disabled
for the whole loop, a full collection before it and a collection of the young generation, where
everything the previous run left lies, before each run, then restored to its previous state; a
full collection with torch loaded takes 0.16 s, which made 220 loss runs cost 36 s), and
the freeing of what `run` returns: a Chainer loss variable holds the whole graph of the iteration,
activations included, and dropping it inside the clock reads would charge one run for the
deallocation of the previous one's memory.
"""

from __future__ import annotations

import gc
import os
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
    The garbage collector is off during the loop and collects before each run, outside the timed
    region; `run`'s return value is released after the clock stops.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    setup = setup or _nothing
    sync = sync or _nothing
    durations: list[int] = []
    append = durations.append
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        gc.collect()
        for _ in range(warmup + repeats):
            setup()
            gc.collect(0)
            sync()
            start = clock()
            result = run()
            sync()
            end = clock()
            del result
            append(end - start)
    finally:
        if was_enabled:
            gc.enable()
    return Measurement(samples_ns=tuple(durations[warmup:]), warmup_ns=tuple(durations[:warmup]))


def process_cpu_s() -> float:
    """User + system CPU seconds of this process and of the children it has waited for."""
    own = os.times()
    return own.user + own.system + own.children_user + own.children_system
