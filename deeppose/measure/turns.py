"""Live processes that take turns: a forked child that has set up one arm and runs one timed
iteration each time its parent asks, so that the arms of a round alternate run by run.

Runs of one arm seconds apart share the machine's state; blocks a minute apart do not
(benchmarks/noise.py measures both). When the arms of a round are live at once and take turns,
each arm's k-th run sits between the others' k-th runs, and a drift of the machine falls on all
of them alike.

What this costs is the waiting side: its threads may spin after their last parallel region
(OpenMP; OpenBLAS's workers spin for about 2^28 cycles, a tenth of a second) and take cycles from
the arm being timed. So a child does not answer a run until its own process is quiet (`settle`:
its CPU time advances by less than a fifth of the wall time over QUIET_WINDOW_S), and every
answer carries the CPU time the child used while it waited for its next turn: the record shows
that the waiting side was idle, for every framework alike, without changing any framework's
wait policy (which would change what is timed).

Fork safety is the block server's (deeppose.measure.block_server): the parent only imports and
allocates numpy arrays before forking; each child builds its own framework state.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

QUIET_WINDOW_S = 0.005  # a settled process used < 1/5 of one core over this window
QUIET_SHARE = 0.2
SETTLE_LIMIT_S = 2.0  # a process still busy after this is reported as such, not waited for


class Session(Protocol):
    """One arm set up in a live child: `run` times one iteration, `finish` gives what else the arm
    measured (untimed extras, as plain JSON values) before the child exits."""

    def run(self) -> float: ...

    def finish(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Turn:
    """One timed run of a live arm, and what its process did around it."""

    seconds: float
    waiting_cpu_s: float  # CPU time of the arm's whole process (every thread) while it waited
    waiting_s: float  # wall time it waited for this turn
    settle_s: float  # wall time after the run until its process was quiet


def _cpu_s() -> float:
    """CPU seconds of this whole process, every thread, at nanosecond resolution (os.times()
    counts 10 ms ticks: too coarse for the gap between two turns)."""
    return time.process_time()


def settle(
    clock: Callable[[], float] = time.perf_counter,
    cpu: Callable[[], float] = _cpu_s,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Wait until this process is quiet (see the module docstring); the seconds it took."""
    start = clock()
    while clock() - start < SETTLE_LIMIT_S:
        wall0, cpu0 = clock(), cpu()
        sleep(QUIET_WINDOW_S)
        if cpu() - cpu0 < QUIET_SHARE * (clock() - wall0):
            break
    return clock() - start


def _send(stream: Any, message: dict[str, Any]) -> None:
    stream.write(json.dumps(message) + "\n")
    stream.flush()


def _child(prepare: Callable[[], Session], commands: Any, answers: Any) -> int:
    """The child's loop: prepare once, answer each "run" with one timed run, "finish" with the
    extras, then exit."""
    session = prepare()
    settle()
    _send(answers, {"ready": True})
    idle_cpu, idle_wall = _cpu_s(), time.perf_counter()
    for line in commands:
        command = line.strip()
        if command == "run":
            waited_cpu, waited = _cpu_s() - idle_cpu, time.perf_counter() - idle_wall
            seconds = session.run()
            settled = settle()
            idle_cpu, idle_wall = _cpu_s(), time.perf_counter()
            turn = Turn(seconds=seconds, waiting_cpu_s=waited_cpu, waiting_s=waited, settle_s=settled)
            _send(answers, dataclasses.asdict(turn))
        elif command == "finish":
            extra = session.finish()
            _send(answers, {"extra": extra, "cpu_s": _cpu_s()})
            return 0
    return 1  # the parent went away


class LiveArm:
    """A forked child running `prepare()`'s session, one timed run per `turn()`."""

    def __init__(self, prepare: Callable[[], Session]) -> None:
        command_r, command_w = os.pipe()
        answer_r, answer_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(command_w)
            os.close(answer_r)
            status = 1
            answers = os.fdopen(answer_w, "w")
            try:
                with os.fdopen(command_r) as commands:
                    status = _child(prepare, commands, answers)
            except BaseException as error:  # noqa: BLE001 - the child must never return into the parent's code
                traceback.print_exc(file=sys.stderr)
                try:
                    _send(answers, {"error": f"{type(error).__name__}: {error}"})
                except OSError:
                    pass
            finally:
                sys.stderr.flush()
                os._exit(status)
        os.close(command_r)
        os.close(answer_w)
        self._commands = os.fdopen(command_w, "w")
        self._answers = os.fdopen(answer_r)
        self._answer()  # ready

    def _answer(self) -> dict[str, Any]:
        line = self._answers.readline()
        if not line:
            raise RuntimeError(f"live arm (pid {self.pid}) exited with status {self._reap()}")
        answer = dict(json.loads(line))
        if "error" in answer:
            raise RuntimeError(f"live arm (pid {self.pid}) failed: {answer['error']} (status {self._reap()})")
        return answer

    def _reap(self) -> int:
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)

    def _ask(self, command: str) -> dict[str, Any]:
        try:
            self._commands.write(command + "\n")
            self._commands.flush()
        except BrokenPipeError:
            raise RuntimeError(f"live arm (pid {self.pid}) exited with status {self._reap()}") from None
        return self._answer()

    def turn(self) -> Turn:
        return Turn(**self._ask("run"))

    def finish(self) -> tuple[dict[str, Any], float]:
        """The session's extras and the child's total CPU seconds; the child has exited."""
        answer = self._ask("finish")
        self._commands.close()
        self._answers.close()
        status = self._reap()
        if status != 0:
            raise RuntimeError(f"live arm (pid {self.pid}) exited with status {status}")
        return dict(answer["extra"]), float(answer["cpu_s"])

    def kill(self) -> None:
        """Stop the child whatever state it is in (on an error elsewhere)."""
        try:
            os.kill(self.pid, 9)
            self._reap()
        except (ProcessLookupError, ChildProcessError):
            pass
        for stream in (self._commands, self._answers):
            try:
                stream.close()
            except OSError:
                pass


def alternating_order(first: list[int], runs: int) -> list[int]:
    """The order of `runs` turns of each arm: `first` (a permutation of the arms), then reversed,
    and so on (ABBA for two arms), so that no arm always runs right after the same neighbour and
    a linear drift within the sequence falls on every arm alike."""
    if sorted(first) != list(range(len(first))):
        raise ValueError(f"first must be a permutation of range({len(first)}), got {first}")
    order: list[int] = []
    for k in range(runs):
        order += first if k % 2 == 0 else first[::-1]
    return order
