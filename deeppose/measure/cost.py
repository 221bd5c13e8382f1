"""What each stage's job cost: wall time, CPU time, peak memory and start-up, recorded by the CLI.

Snakemake's `benchmark:` files measure the same under Snakemake only; this record is written under
either engine (and by hand), so the report's "What this run cost" table reads one format. A job
that fails writes none; a job rerun replaces its record.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections.abc import Iterator
from pathlib import Path

from deeppose.measure import lock
from deeppose.measure.harness import process_cpu_s
from deeppose.records import paths
from deeppose.records.results import StageCost


def startup_s() -> float:
    """Seconds since this process was created (/proc/self/stat's start time against /proc/uptime):
    what the interpreter and imports cost before the stage's code ran. 0 where /proc is absent."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 0.0)


@contextlib.contextmanager
def recorded(stage: str, job_label: str | None) -> Iterator[None]:
    """Run the stage's body; when it succeeds, write its `StageCost` (deeppose.records.paths.stage_cost)."""
    started_at, startup = time.time(), startup_s()
    tic, cpu, waited = time.perf_counter(), process_cpu_s(), lock.waited_s()
    yield
    wall = time.perf_counter() - tic
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    StageCost.create(
        stage=stage,
        job=job_label,
        started_at=started_at,
        startup_s=startup,
        wall_s=wall,
        cpu_s=process_cpu_s() - cpu,
        max_rss_mb=max(own, children) / 1024,
        lock_wait_s=lock.waited_s() - waited,
    ).write(paths.stage_cost(stage, job_label))
