"""CPU thread control shared by every backend.

Workflow engines disagree on threads: Snakemake exports OMP_NUM_THREADS (and friends) equal to a
rule's `threads`, `dvc repro` passes the user's environment through. So deeppose never relies on
the environment: each job sets its thread count from the parameters at run time, in the framework
(by the backend) and in every BLAS/OpenMP library loaded in the process (here, via threadpoolctl),
and records what is actually in force.
"""

from __future__ import annotations

import os
from typing import Any

import threadpoolctl

from deeppose.errors import DeepPoseError

# Kept alive so that the limits stay in force for the life of the process.
_LIMITS: list[threadpoolctl.threadpool_limits] = []


def limit_native_threads(threads: int) -> None:
    """Limit every BLAS and OpenMP pool loaded so far to `threads` threads."""
    _LIMITS.append(threadpoolctl.threadpool_limits(limits=threads))


def native_thread_info() -> list[dict[str, Any]]:
    """What threadpoolctl sees: one entry per loaded BLAS/OpenMP library."""
    return [
        {
            "library": info.get("internal_api"),
            "version": info.get("version"),
            "num_threads": info.get("num_threads"),
            "architecture": info.get("architecture"),
            "file": info.get("filepath", "").rsplit("/", 1)[-1],
        }
        for info in threadpoolctl.threadpool_info()
    ]


def resolve_threads(threads: int) -> int:
    """0 means every core this process may use."""
    if threads < 0:
        raise DeepPoseError(f"threads must be >= 0 (0 = all cores), got {threads}")
    return threads or len(os.sched_getaffinity(0))
