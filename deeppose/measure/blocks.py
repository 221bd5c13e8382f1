"""Replicated, interleaved timing blocks: the unit of replication of every timing comparison.

A *round* runs every arm of a timing group once, each arm as a fresh live process (one *block*):
the group's cells (framework x loss mode at one device and batch size), an A/A twin of a cell
(identical arms: what noise alone does) and a planted positive control (its cell with a known
slowdown: what the design can see). One process per cell at one time measures the machine's drift
as much as the cell (two runs of one pipeline gave opposite verdicts on a loss that costs 0.3 ms),
so:

* every arm gets one block per round, and the arms of a round are alive together and take turns
  run by run (`run_round`, deeppose.measure.turns), the first order of each round drawn from a
  seeded generator (`schedule`): drift falls on all arms alike and two arms pair by round;
* each block records its samples, its warm-up durations (kept apart: they are never statistics),
  its wall-clock start and end, what its process did while it waited for its turns, and what else
  used the machine meanwhile (`BlockInterference`, from `/proc/stat`); it is marked `disturbed`
  with the reasons (`disturbance_reasons`). A round that other processes disturbed
  (`interfered`) is run again at once (up to `RETRIES` times), every attempt kept, and `final`
  picks the last attempt of each round and arm for the statistics.

`run_rounds` runs rounds through a `Pool` (arm -> live process); the real one,
deeppose.measure.block_server's, forks each block from a process per framework that has loaded
it. Tests pass a simulated pool and fake CPU readings.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from deeppose.measure.harness import process_cpu_s
from deeppose.measure.turns import Turn, alternating_order
from deeppose.records.timing import BlockInterference, BlockRecord

# Thresholds of a disturbed block. The first two follow torch.utils.benchmark's noisy-measurement
# warning (IQR / median > 10 %) and the 1.25 outlier factor the issue asks for; the CPU figure
# allows a tenth of a core of other work on average (daemons, the workflow engine's polling).
MAX_IQR_OVER_MEDIAN = 0.10
MAX_MAX_OVER_MEDIAN = 1.25
MAX_OTHER_CORES = 0.10
# A block that other processes disturbed is run again at once, up to this many times, so that one
# spike does not cost its round (a comparison pairs rounds, and a round missing either arm is lost
# to it). A block noisy on its own (spread, an outlier sample) is flagged but kept and not rerun:
# Chainer's samples at batch 4-16 here swing by 1.5x inside quiet blocks, and rerunning them only
# tripled the cost and left the cell with one block.
RETRIES = 2
OTHER_PROCESSES = "other processes"  # the reason a rerun can cure


# --- arms and the schedule ----------------------------------------------------------------
PLANTED = "planted"  # the replica name of a positive control: its cell with a planted slowdown


@dataclass(frozen=True)
class Arm:
    """One measured series: a cell, and which replica of it (1 for the A/A twin, PLANTED for the
    positive control, which runs the cell with a known slowdown added to every timed run)."""

    cell: str
    replica: int | str = 0

    @property
    def name(self) -> str:
        return self.cell if self.replica == 0 else f"{self.cell}#{self.replica}"

    @classmethod
    def parse(cls, name: str) -> Arm:
        """The arm `name` (`cell`, `cell#1`, `cell#planted`) stands for."""
        cell, _, replica = name.partition("#")
        return cls(cell, 0 if not replica else PLANTED if replica == PLANTED else int(replica))


@dataclass(frozen=True)
class Slot:
    """One block to run: round `round`, `position`-th in that round's order."""

    round: int
    position: int
    arm: Arm


def twin(cell: str) -> str:
    """The name of a cell's A/A twin arm."""
    return Arm(cell, 1).name


def planted(cell: str) -> str:
    """The name of a cell's positive-control arm."""
    return Arm(cell, PLANTED).name


def cell_of(arm: str) -> str:
    """The cell an arm measures (a twin's cell is its original's)."""
    return arm.partition("#")[0]


def schedule(arms: Sequence[Arm], rounds: int, seed: int) -> tuple[Slot, ...]:
    """Every arm once per round, each round in its own random order from `seed`.

    Random rather than rotated orders: a fixed rotation lets a periodic disturbance or a
    first-in-round effect (cold page cache after the previous framework) line up with one arm.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if len(set(arms)) != len(arms) or not arms:
        raise ValueError(f"arms must be distinct and non-empty, got {list(arms)}")
    rng = np.random.Generator(np.random.PCG64(seed))
    slots = []
    for round_ in range(rounds):
        order = rng.permutation(len(arms))
        slots += [Slot(round_, position, arms[int(i)]) for position, i in enumerate(order)]
    return tuple(slots)


# --- interference -------------------------------------------------------------------------
@dataclass(frozen=True)
class CpuReading:
    """Machine-wide busy CPU time and this process's own (children included), at one instant."""

    monotonic_s: float
    machine_busy_s: float  # all CPUs: user + nice + system + irq + softirq + steal
    own_s: float  # this process and its waited-for children: user + system


def machine_busy_s(stat_text: str, ticks_per_s: float) -> float:
    """Busy seconds of all CPUs from the `cpu` line of /proc/stat.

    /proc/stat and os.times() count in clock ticks (10 ms at the usual USER_HZ of 100), so the
    figure is good to a few hundredths of a CPU second: ample for blocks that last seconds, too
    coarse for blocks of a few tens of milliseconds.

    Steal (time a hypervisor gave another guest) counts as busy: it is time this machine's work
    could not run. guest/guest_nice are already inside user/nice, so they are not added again.
    """
    for line in stat_text.splitlines():
        if line.startswith("cpu "):
            fields = [int(v) for v in line.split()[1:]]
            user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
            return (user + nice + system + irq + softirq + steal) / ticks_per_s
    raise ValueError("no aggregate 'cpu' line in /proc/stat")


def count_cpus(stat_text: str) -> int:
    return sum(1 for line in stat_text.splitlines() if line.startswith("cpu") and not line.startswith("cpu "))


def read_cpu(stat_path: str | os.PathLike[str] = "/proc/stat") -> CpuReading:
    """Now: machine busy time from /proc/stat and this process's own CPU time (children count
    once they have been waited for)."""
    own = process_cpu_s()
    text = Path(stat_path).read_text()
    return CpuReading(
        monotonic_s=time.monotonic(),
        machine_busy_s=machine_busy_s(text, os.sysconf("SC_CLK_TCK")),
        own_s=own,
    )


def interference(
    before: CpuReading,
    after: CpuReading,
    load_before: tuple[float, float, float],
    cores: int,
    unreaped_cpu_s: float = 0.0,
) -> BlockInterference:
    """Other processes' CPU time between two readings that bracket one block; `unreaped_cpu_s` is
    our block's CPU time that the readings' os.times() could not see."""
    wall = max(after.monotonic_s - before.monotonic_s, 1e-9)
    busy = after.machine_busy_s - before.machine_busy_s
    own = after.own_s - before.own_s + unreaped_cpu_s
    other = max(busy - own, 0.0)
    one, five, fifteen = (float(v) for v in load_before)
    return BlockInterference(
        wall_s=wall,
        machine_busy_s=busy,
        own_s=own,
        other_cpu_s=other,
        other_cores=other / wall,
        load_before=[one, five, fifteen],
        cores=cores,
    )


def disturbance_reasons(
    samples_s: Sequence[float],
    figures: BlockInterference | None,
    max_iqr_over_median: float = MAX_IQR_OVER_MEDIAN,
    max_max_over_median: float = MAX_MAX_OVER_MEDIAN,
    max_other_cores: float = MAX_OTHER_CORES,
) -> tuple[str, ...]:
    """Why a block's samples should not be trusted; empty when they can be.

    The load average before a block is recorded but decides nothing: our own previous block keeps
    every core busy and stays in the 1-minute average for a minute after, so on a 2-core machine it
    flagged every block of a quiet run. Other processes' CPU time, measured over the block itself,
    is the direct figure.
    """
    # statistics, not numpy: a block has a handful of samples, and the simulation in the tests
    # runs this tens of thousands of times. 'inclusive' is numpy's default (linear) quartile.
    q1, median, q3 = (
        statistics.quantiles(samples_s, n=4, method="inclusive")
        if len(samples_s) > 1
        else (samples_s[0],) * 3
    )
    reasons = []
    if median > 0 and (q3 - q1) / median > max_iqr_over_median:
        reasons.append(f"spread: IQR/median {(q3 - q1) / median:.2f} > {max_iqr_over_median}")
    if median > 0 and max(samples_s) / median > max_max_over_median:
        reasons.append(f"outlier: max/median {max(samples_s) / median:.2f} > {max_max_over_median}")
    if figures is not None:
        if figures.other_cores > max_other_cores:
            reasons.append(
                f"{OTHER_PROCESSES}: {figures.other_cpu_s:.2f} CPU s in {figures.wall_s:.2f} s "
                f"({figures.other_cores:.2f} cores > {max_other_cores})"
            )
    return tuple(reasons)


def interfered(reasons: Sequence[str]) -> bool:
    """Whether other processes disturbed a block: such a block is rerun, and left out of the
    statistics while a cleaner attempt or round exists."""
    return any(reason.startswith(OTHER_PROCESSES) for reason in reasons)


# --- running rounds -------------------------------------------------------------------------
class Pool(Protocol):
    """Live arms in fresh processes (deeppose.measure.block_server.server_pool): open one, give it
    a turn, finish it (its extras and its process's CPU seconds); `cpu_s` is every server's CPU
    time so far, reaped children included."""

    def open(self, arm: str, round_: int) -> None: ...

    def run(self, arm: str) -> Turn: ...

    def finish(self, arm: str) -> tuple[dict[str, Any], float]: ...

    def cpu_s(self) -> float: ...


def run_round(
    pool: Pool,
    slots: Sequence[Slot],
    repeats: int,
    attempt: int = 0,
    *,
    probe: Callable[[], CpuReading] = read_cpu,
    load: Callable[[], tuple[float, float, float]] = os.getloadavg,
    cores: int,
    wall_clock: Callable[[], float] = time.time,
) -> tuple[tuple[BlockRecord, ...], dict[str, dict[str, Any]]]:
    """One round: every slot's arm opened live (in the slots' order), `repeats` turns each in
    alternating order (`alternating_order`), then each finished. One reading of the machine
    brackets the whole round, so other processes' CPU time is the round's, on every block.
    Returns the round's blocks and, per arm, the rest of what its process reported (threads,
    versions, the fairness manifest)."""
    load_before = load()
    before, servers_before = probe(), pool.cpu_s()
    opened: dict[str, float] = {}
    for slot in slots:
        opened[slot.arm.name] = wall_clock()
        pool.open(slot.arm.name, slot.round)
    turns: dict[str, list[Turn]] = {slot.arm.name: [] for slot in slots}
    for index in alternating_order(list(range(len(slots))), repeats):
        name = slots[index].arm.name
        turns[name].append(pool.run(name))
    extras: dict[str, dict[str, Any]] = {}
    ended: dict[str, float] = {}
    for slot in slots:
        extras[slot.arm.name], _ = pool.finish(slot.arm.name)
        ended[slot.arm.name] = wall_clock()
    after = probe()
    figures = interference(before, after, load_before, cores, pool.cpu_s() - servers_before)
    blocks = []
    for slot in slots:
        name = slot.arm.name
        samples = [t.seconds for t in turns[name]]
        reasons = disturbance_reasons(samples, figures)
        extra = extras[name]
        blocks.append(
            BlockRecord.create(
                round=slot.round,
                position=slot.position,
                arm=name,
                attempt=attempt,
                samples_s=samples,
                warmup_s=extra.pop("warmup_s"),
                waiting_cpu_s=[t.waiting_cpu_s for t in turns[name]],
                settle_s=[t.settle_s for t in turns[name]],
                optimizer_steps_s=extra.pop("optimizer_steps_s"),
                loss_s=extra.pop("loss_s"),
                compile_s=extra.pop("compile_s"),
                memory_bytes=extra.pop("memory_bytes"),
                started_at=opened[name],
                ended_at=ended[name],
                interference=figures,
                disturbed=bool(reasons),
                reasons=list(reasons),
            )
        )
        extras[name] = extra
    return tuple(blocks), extras


def run_rounds(
    pool: Pool, slots: Sequence[Slot], repeats: int, *, retries: int = RETRIES, **watch: Any
) -> tuple[list[BlockRecord], dict[str, dict[str, Any]]]:
    """`run_round` for each round of `slots` in turn; a round that other processes disturbed is
    run again at once, up to `retries` times, every attempt kept. `watch`: run_round's machine
    readings (probe, load, cores, wall_clock)."""
    blocks: list[BlockRecord] = []
    extras: dict[str, dict[str, Any]] = {}
    for round_ in sorted({slot.round for slot in slots}):
        in_round = [slot for slot in slots if slot.round == round_]
        for attempt in range(retries + 1):
            found, reported = run_round(pool, in_round, repeats, attempt, **watch)
            blocks += found
            extras.update(reported)
            if not any(interfered(block.reasons) for block in found):
                break
    return blocks, extras


class Attempt(Protocol):
    """A block as recorded (`deeppose.records.results.BlockRecord`), or a test's stand-in."""

    @property
    def round(self) -> int: ...
    @property
    def arm(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def reasons(self) -> Sequence[str]: ...


class Timed(Attempt, Protocol):
    """A block as the statistics read it: a stored one (deeppose.records.results.BlockRecord),
    whose `samples_s` may be any of its series (deeppose.compare_stats.series)."""

    @property
    def samples_s(self) -> Sequence[float]: ...


AttemptT = TypeVar("AttemptT", bound=Attempt)


def final(blocks: Sequence[AttemptT]) -> tuple[AttemptT, ...]:
    """The last attempt of each (round, arm), by round: the blocks statistics use (it may still be
    disturbed, when every retry was)."""
    last: dict[tuple[int, str], AttemptT] = {}
    for block in blocks:
        key = (block.round, block.arm)
        if key not in last or block.attempt > last[key].attempt:
            last[key] = block
    return tuple(last[key] for key in sorted(last))


def usable(blocks: Sequence[AttemptT]) -> tuple[AttemptT, ...]:
    """The final attempts no other process disturbed, or all of them when every one was (a cell
    then still has a time, and its method says so)."""
    kept = final(blocks)
    return tuple(b for b in kept if not interfered(b.reasons)) or kept


def round_medians(blocks: Sequence[Timed], arm: str) -> dict[int, float]:
    """An arm's block medians keyed by round (the final attempt of each)."""
    return {
        block.round: float(statistics.median(block.samples_s)) for block in final(blocks) if block.arm == arm
    }


@dataclass(frozen=True)
class Paired:
    """Two arms' block medians over the rounds both have and no other process disturbed."""

    a: dict[int, float]
    b: dict[int, float]
    used: tuple[int, ...]
    dropped: tuple[int, ...]  # a block of either arm in that round stayed disturbed through its retries


def paired(blocks: Sequence[Timed], a: str, b: str) -> Paired:
    """Arms a and b paired by round: a round where either block is still disturbed by other
    processes after its retries is left out of both (pairing needs both); a block only noisy on
    its own counts."""
    kept = final(blocks)
    ma, mb = round_medians(kept, a), round_medians(kept, b)
    disturbed = {block.round for block in kept if block.arm in (a, b) and interfered(block.reasons)}
    shared = sorted(set(ma) & set(mb))
    used = tuple(r for r in shared if r not in disturbed)
    dropped = tuple(r for r in shared if r in disturbed)
    return Paired({r: ma[r] for r in used}, {r: mb[r] for r in used}, used, dropped)
