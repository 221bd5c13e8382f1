"""Live processes that take turns: a forked child that has set up one arm and runs one timed
iteration each time its parent asks, so that two or more arms alternate run by run.

Runs of one arm seconds apart share the machine's state; blocks a minute apart do not
(benchmarks/noise.py measures both). When several arms are live at once and take turns, each
arm's k-th run sits between the others' k-th runs, and a drift of the machine falls on all of
them alike. What this costs is the waiting side: its threads may spin after their last parallel
region (OpenMP, OpenBLAS) and take cycles from the arm being timed. Each answer therefore carries
the CPU time the child used while it waited, so that a caller can see, and record, that the
waiting side was idle.

Fork safety is the block server's (deeppose.measure.block_server): the parent only imports and
allocates numpy arrays before forking; each child builds its own framework state.
"""

from __future__ import annotations

import os
import struct
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from deeppose.measure.harness import measure

RUN, QUIT = b"r", b"q"
ANSWER = struct.Struct("<ddd")  # seconds of the run, CPU seconds while waiting, wall seconds waited


@dataclass(frozen=True)
class Turn:
    """One timed run of a live arm, and what its process did while the others ran."""

    seconds: float
    waiting_cpu_s: float  # CPU time of the arm's whole process (every thread) while it waited
    waiting_s: float  # wall time it waited


def _read_exactly(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise EOFError("the other side closed the pipe")
        data += chunk
    return data


def _cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def _child(
    prepare: Callable[[], tuple[Callable[[], object], Callable[[], object], Callable[[], object]]],
    commands: int,
    answers: int,
) -> int:
    """The child's loop: prepare once, answer one RUN with one timed run, until QUIT."""
    run, setup, sync = prepare()
    os.write(answers, ANSWER.pack(0.0, 0.0, 0.0))  # ready
    idle_cpu, idle_wall = _cpu_s(), time.perf_counter()
    while True:
        command = _read_exactly(commands, 1)
        if command == QUIT:
            return 0
        waited_cpu, waited = _cpu_s() - idle_cpu, time.perf_counter() - idle_wall
        sample = measure(run, repeats=1, setup=setup, sync=sync).samples_s[0]
        idle_cpu, idle_wall = _cpu_s(), time.perf_counter()
        os.write(answers, ANSWER.pack(sample, waited_cpu, waited))


class LiveArm:
    """A forked child that set up one arm with `prepare` (returning the run, its untimed set-up
    and the device synchronisation) and runs it once per `turn()`."""

    def __init__(
        self, prepare: Callable[[], tuple[Callable[[], object], Callable[[], object], Callable[[], object]]]
    ) -> None:
        command_r, self._commands = os.pipe()
        self._answers, answer_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self._commands)
            os.close(self._answers)
            status = 1
            try:
                status = _child(prepare, command_r, answer_w)
            except BaseException:  # noqa: BLE001 - the child must never return into the parent's code
                traceback.print_exc(file=sys.stderr)
            finally:
                sys.stderr.flush()
                os._exit(status)
        os.close(command_r)
        os.close(answer_w)
        self._answer()  # ready

    def _answer(self) -> Turn:
        try:
            return Turn(*ANSWER.unpack(_read_exactly(self._answers, ANSWER.size)))
        except EOFError:
            _, status = os.waitpid(self.pid, 0)
            raise RuntimeError(
                f"live arm (pid {self.pid}) exited with status {os.waitstatus_to_exitcode(status)}"
            ) from None

    def turn(self) -> Turn:
        os.write(self._commands, RUN)
        return self._answer()

    def close(self) -> int:
        """Stop the child; its exit status."""
        try:
            os.write(self._commands, QUIT)
        except BrokenPipeError:
            pass
        os.close(self._commands)
        os.close(self._answers)
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)


def alternating_order(arms: int, runs: int, first: list[int]) -> list[int]:
    """The order of `runs` turns of each arm: `first` (a permutation of the arms), then reversed,
    and so on (ABBA for two arms), so that no arm always runs right after the same neighbour and
    a linear drift within the sequence falls on every arm alike."""
    if sorted(first) != list(range(arms)):
        raise ValueError(f"first must be a permutation of range({arms}), got {first}")
    order: list[int] = []
    for k in range(runs):
        order += first if k % 2 == 0 else first[::-1]
    return order
