"""glibc malloc's policy for big arrays, pinned from params.yaml in every measuring process.

By default glibc serves an allocation above its mmap threshold with a fresh mapping and hands it
back with munmap when freed, so every iteration faults in and zeroes its big arrays again (AlexNet's
fc6 gradient alone is 151 MB). The threshold also moves with each process's history (it rises to the
largest mapped chunk freed, up to 32 MiB), so two processes timing one cell can pay different
costs: at batch 8 on a 2-core EPYC, the unexplained "overhead" of Chainer's core process (core time
minus its layers) was 0.17-0.45 s with the default and 0.002-0.017 s pinned (README, "The C
allocator"). Pinning both thresholds makes every process keep and reuse what it freed, as PyTorch's
and CuPy's GPU memory pools do, for both frameworks alike; the fairness manifest records it.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

from deeppose.errors import DeepPoseError

PARAM = "allocator.mmap_threshold_mib"
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>
MAX_MIB = (2**31 - 1) >> 20  # mallopt takes a C int of bytes

_pinned: dict[str, Any] = {}  # what pin() set in this process (inherited by forked children)


def libc_version() -> str | None:
    """ "glibc 2.36", or None where the C library is not glibc (musl, macOS)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        return None


def pin(threshold_mib: int | None) -> None:
    """Serve allocations below `threshold_mib` MiB from the heap and keep freed heap memory up to
    that size (glibc's mmap and trim thresholds); None leaves glibc's defaults (and any MALLOC_*
    variables, which the manifest's `env` records)."""
    _pinned.clear()
    if threshold_mib is None:
        return
    if libc_version() is None:
        raise DeepPoseError(
            f"{PARAM}: pinning needs glibc's mallopt, which this C library lacks; set it to null"
        )
    mallopt = ctypes.CDLL(None).mallopt
    size = threshold_mib << 20
    for option, name in (
        (M_MMAP_THRESHOLD, "mmap_threshold_bytes"),
        (M_TRIM_THRESHOLD, "trim_threshold_bytes"),
    ):
        if mallopt(option, size) != 1:
            raise DeepPoseError(
                f"{PARAM}: glibc refused {name} = {size}; allowed: 0 to {MAX_MIB} MiB, or null"
            )
        _pinned[name] = size


def describe() -> dict[str, Any]:
    """The policy in force here, for the fairness manifest."""
    return {
        "library": libc_version() or "not glibc",
        **(_pinned or {"mmap_threshold_bytes": "library default (glibc: dynamic)"}),
    }
