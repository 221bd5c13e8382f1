"""Fresh processes for timing blocks without paying a framework's start-up in each one.

A block must run in a fresh process (deeppose.measure.blocks), and starting one costs more than most
blocks measure: on 2 cores, `import torch` takes 1.7 s and building AlexNet's seeded weights
0.8 s, against 0.1-3 s of measurement. So each framework gets one *server* process per group that
imports the framework, builds the group's batch and weights once, and then forks one live child
per block (deeppose.measure.turns.LiveArm). The child is a new process (its own address space,
allocator and caches; nothing has run a network in the server before the fork); it sets up its
arm, takes its turns, reports its extras and exits.

Fork safety: the server only imports and allocates numpy arrays before forking; it never runs a
framework operation, so no thread pool (OpenMP, oneDNN, XLA) exists yet to be broken by the
fork. OpenBLAS, which starts its threads at import, shuts them down around a fork itself.

Protocol: one JSON object per line each way. The server writes READY_TAG once it has loaded, then
answers each request on stdin, in order, with one line carrying ANSWER_TAG:
`{"open": arm, "round": r}` forks the arm's child, `{"run": arm}` gives it a turn
(the `Turn`), `{"finish": arm}` collects its extras and CPU seconds and reaps it, `{"cpu": true}`
gives the server's own CPU seconds with its reaped children's, which the caller cannot see through
os.times() (it does not reap the server) and adds to its own when it subtracts its own work from
the machine's (deeppose.measure.blocks.interference). A failure answers `{"error": ...}`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, Any

from deeppose.measure.harness import process_cpu_s
from deeppose.measure.turns import LiveArm, Session, Turn

READY_TAG = "deeppose_server_ready"
ANSWER_TAG = "deeppose_answer"


# --- the server side -----------------------------------------------------------------------
def _answer(
    request: dict[str, Any], arms: dict[str, LiveArm], open_arm: Callable[[str, int], Callable[[], Session]]
) -> dict[str, Any]:
    if "open" in request:
        arms[request["open"]] = LiveArm(open_arm(str(request["open"]), int(request["round"])))
        return {"opened": request["open"]}
    if "run" in request:
        return {"turn": dataclasses.asdict(arms[request["run"]].turn())}
    if "finish" in request:
        extra, cpu_s = arms.pop(request["finish"]).finish()
        return {"extra": extra, "cpu_s": cpu_s}
    if "cpu" in request:
        return {"cpu_s": process_cpu_s()}
    raise ValueError(f"unknown request {request!r}")


def serve(open_arm: Callable[[str, int], Callable[[], Session]], requests: IO[str] | None = None) -> None:
    """Answer each request line (see the module docstring); `open_arm(arm, round)` gives the
    child's set-up (`arm`: its name, `cell#1` for an A/A twin). Returns at end of input, after
    killing any arm still live."""
    requests = requests or sys.stdin
    out = sys.stdout
    print(json.dumps({READY_TAG: os.getpid()}), file=out, flush=True)
    arms: dict[str, LiveArm] = {}
    try:
        for line in requests:
            if not line.strip():
                continue
            try:
                answer = _answer(json.loads(line), arms, open_arm)
            except Exception as error:  # noqa: BLE001 - answered, so that the caller can say what failed
                traceback.print_exc(file=sys.stderr)
                answer = {"error": f"{type(error).__name__}: {error}"}
            print(json.dumps({ANSWER_TAG: answer}), file=out, flush=True)
    finally:
        for arm in arms.values():
            arm.kill()


# --- the caller side -----------------------------------------------------------------------
class _Server:
    """One running server: its process, and its stderr in a file for the error message."""

    def __init__(self, name: str, command: Sequence[str], timeout_s: float) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            bufsize=1,
        )
        # A thread reads stdout line by line into a queue: waiting on the pipe with select() would
        # miss lines that an earlier readline() already pulled into the file's buffer.
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._pump, daemon=True)
        self.reader.start()
        self._read_until(READY_TAG, "starting")

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put("")  # end of output: the server exited

    def _error_tail(self) -> str:
        self.stderr.seek(0)
        lines = [line for line in self.stderr.read().strip().splitlines() if line.strip()]
        return lines[-1] if lines else "(no stderr)"

    def _read_until(self, tag: str, what: str) -> Any:
        """The value under `tag` of the first line carrying it (other output is skipped)."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                self.process.kill()
                raise RuntimeError(
                    f"{self.name} block server, {what}: no answer in {self.timeout_s:.0f} s"
                ) from None
            if not line:
                code = self.process.wait()
                raise RuntimeError(
                    f"{self.name} block server exited with status {code}, {what}: {self._error_tail()}"
                )
            if tag in line:
                return json.loads(line)[tag]

    def ask(self, request: dict[str, Any], what: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = dict(self._read_until(ANSWER_TAG, what))
        if "error" in answer:
            raise RuntimeError(f"{self.name} block server, {what}: {answer['error']}")
        return answer

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.reader.join(timeout=5)  # it ends at the pipe's end of file
        self.stderr.close()


class ServerPool:
    """deeppose.measure.blocks.Pool over one server per framework: an arm `framework/loss[#...]`
    goes to the server of its framework."""

    def __init__(self, servers: Mapping[str, _Server]) -> None:
        self.servers = servers

    def _server(self, arm: str) -> _Server:
        return self.servers[arm.split("/")[0]]

    def open(self, arm: str, round_: int) -> None:
        self._server(arm).ask({"open": arm, "round": round_}, f"opening {arm}")

    def run(self, arm: str) -> Turn:
        return Turn(**self._server(arm).ask({"run": arm}, f"timing {arm}")["turn"])

    def finish(self, arm: str) -> tuple[dict[str, Any], float]:
        answer = self._server(arm).ask({"finish": arm}, f"finishing {arm}")
        return dict(answer["extra"]), float(answer["cpu_s"])

    def cpu_s(self) -> float:
        return sum(
            float(s.ask({"cpu": True}, "reading its CPU time")["cpu_s"]) for s in self.servers.values()
        )


@contextlib.contextmanager
def server_pool(commands: Mapping[str, Sequence[str]], timeout_s: float) -> Iterator[ServerPool]:
    """One server per key (a framework), every one loaded before this yields, so that no block's
    clock or CPU window holds a server's start-up; all are stopped on exit, whatever happened."""
    servers: dict[str, _Server] = {}
    try:
        for key, command in commands.items():
            servers[key] = _Server(key, command, timeout_s)
        yield ServerPool(servers)
    finally:
        for server in servers.values():
            server.close()
