"""The machine-wide measurement lock: no two measuring jobs (train, time, peak, breakdown) ever run
side by side on one machine, whichever engine or invocation started them.

Snakemake serialises the measuring jobs of one invocation (each claims every core) and `dvc repro`
runs one stage at a time, but two invocations (two targets, or Snakemake beside `dvc repro`) would
still time on the same cores at once. So every measuring stage holds an exclusive `flock` on one
file for the whole of its run: `/tmp/deeppose-measure.lock`, or the file named by the environment
variable DEEPPOSE_MEASURE_LOCK. A second job waits for it and says so in one line. The kernel
drops the lock when its holder exits, however it exits, so a killed job never leaves it held.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from deeppose.records.atomic import cannot

DEFAULT_PATH = Path("/tmp/deeppose-measure.lock")
ENV = "DEEPPOSE_MEASURE_LOCK"
_waited_s = [0.0]  # this process's seconds spent waiting for the lock, for its cost record


def waited_s() -> float:
    """Seconds this process has waited for the measurement lock: time another job's measurement
    cost, which a stage's cost record keeps apart from its own."""
    return _waited_s[0]


def lock_path() -> Path:
    return Path(os.environ.get(ENV) or DEFAULT_PATH)


def _open(path: Path) -> tuple[int, bool]:
    """A descriptor of the lock file and whether it is writable (another user's file in /tmp may
    only be readable; flock works on it all the same)."""
    while True:
        try:
            return os.open(path, os.O_RDWR | os.O_CLOEXEC), True
        except PermissionError:
            try:
                return os.open(path, os.O_RDONLY | os.O_CLOEXEC), False
            except OSError as error:
                raise cannot(path, "open the measurement lock", error) from None
        except FileNotFoundError:
            pass
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue  # created by another job meanwhile: open that one
        except OSError as error:
            raise cannot(path, "create the measurement lock", error) from None
        os.fchmod(fd, 0o666)  # any user's measurements take the same lock
        return fd, True


@contextlib.contextmanager
def measurement_lock(what: str) -> Iterator[None]:
    """Hold the measurement lock for the block; `what` names the job to whoever waits for it."""
    path = lock_path()
    fd, writable = _open(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another job"
            print(
                f"deeppose: {what}: waiting for the measurement lock {path}, held by {holder}",
                file=sys.stderr,
                flush=True,
            )
            tic = time.perf_counter()
            fcntl.flock(fd, fcntl.LOCK_EX)
            _waited_s[0] += time.perf_counter() - tic
        if writable:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{what} (pid {os.getpid()})\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
