"""Fresh processes for timing blocks without paying a framework's start-up in each one.

A block must run in a fresh process (deeppose.measure.blocks), and starting one costs more than most
blocks measure: on 2 cores, `import torch` takes 1.7 s and building AlexNet's seeded weights
0.8 s, against 0.1-3 s of measurement. So each framework gets one *server* process per group that
imports the framework, builds the group's batch and weights once, and then forks one child per
block. The child is a new process (its own address space, allocator and caches; nothing has run a
network in the server before the fork), which measures its block and exits.

Fork safety: the server only imports and allocates numpy arrays before forking; it never runs a
framework operation, so no thread pool (OpenMP, oneDNN, XLA) exists yet to be broken by the
fork. OpenBLAS, which starts its threads at import, shuts them down around a fork itself.

Protocol (lines of JSON on the server's stdout): READY_TAG once the server has loaded; per request
(one stdin line: the cell and its round, `chainer/explicit 0`) the child's block line
(deeppose.measure.blocks.emit_block) and then
EXIT_TAG with the child's exit status and the CPU seconds of the server and its child over the
request, which the caller cannot see through os.times() (it does not reap the child) and adds to
its own when it subtracts its own work from the machine's (deeppose.measure.blocks.interference).
"""

from __future__ import annotations

import contextlib
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
from typing import IO

from deeppose.measure.blocks import BlockOutput, Launch, emit_block, parse_block
from deeppose.measure.harness import process_cpu_s

READY_TAG = "deeppose_server_ready"
EXIT_TAG = "deeppose_block_exit"


# --- the server side -----------------------------------------------------------------------
def serve(run_block: Callable[[str], BlockOutput], requests: IO[str] | None = None) -> None:
    """Answer each request line (`cell round`) by forking a child that runs `run_block(line)` and
    writes its result; report the child's exit status and CPU time after it. Returns at end of input."""
    requests = requests or sys.stdin
    out = sys.stdout
    print(json.dumps({READY_TAG: os.getpid()}), file=out, flush=True)
    for line in requests:
        request = line.strip()
        if not request:
            continue
        before = process_cpu_s()
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                emit_block(run_block(request), out)
            except BaseException:  # noqa: BLE001 - the child must never return into the server's loop
                traceback.print_exc(file=sys.stderr)
                status = 1
            finally:
                sys.stderr.flush()
                os._exit(status)
        _, wait_status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(wait_status)
        print(json.dumps({EXIT_TAG: code, "cpu_s": process_cpu_s() - before}), file=out, flush=True)


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

    def _read_until(self, tag: str, what: str) -> tuple[dict[str, object], list[str]]:
        """Lines up to the first carrying `tag` (that line parsed, and the ones before it)."""
        deadline = time.monotonic() + self.timeout_s
        seen: list[str] = []
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
                return json.loads(line), seen
            seen.append(line)

    def run(self, cell: str, round_: int) -> BlockOutput:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{cell} {round_}\n")
        self.process.stdin.flush()
        status, lines = self._read_until(EXIT_TAG, f"timing {cell}")
        if status[EXIT_TAG] != 0:
            raise RuntimeError(f"block of {cell} exited with status {status[EXIT_TAG]}: {self._error_tail()}")
        output = parse_block("".join(lines))
        return BlockOutput(
            output.samples_s, output.warmup_s, output.extra, unreaped_cpu_s=float(status["cpu_s"])
        )

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


@contextlib.contextmanager
def server_launch(commands: Mapping[str, Sequence[str]], timeout_s: float) -> Iterator[Launch]:
    """A Launch over one server per key (a framework): a cell `framework/loss` is sent, whole, to
    the server of its framework. Every server has loaded before this yields, so no block's clock or
    CPU window holds a server's start-up; all are stopped on exit, whatever happened."""
    servers: dict[str, _Server] = {}
    try:
        for key, command in commands.items():
            servers[key] = _Server(key, command, timeout_s)

        def launch(cell: str, round_: int) -> BlockOutput:
            return servers[cell.split("/")[0]].run(cell, round_)

        yield launch
    finally:
        for server in servers.values():
            server.close()
