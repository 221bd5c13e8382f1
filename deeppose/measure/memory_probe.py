"""Peak memory of running a callable, above what the process held just before: backend-neutral.

    peak = peak_memory(backend, lambda: backend.forward_backward(images, target, visible, "autograd"))
    peak.above_baseline_bytes

Host (cpu): Linux keeps VmHWM, the high-water mark of the process's resident set; writing "5" to
/proc/self/clear_refs resets it to the current resident set. So the probe resets it, reads VmRSS
(the baseline), runs, and reads VmHWM: the most resident memory at any instant of the run, by
any thread (XLA's and OpenMP's pools included), minus the baseline. It counts pages touched, so
a first call also counts code and caches it loads (a compile's working memory, a library); an
allocator that keeps freed pages (glibc arenas) makes later runs' peaks smaller: probe after
warm-up for the steady state, on the first call for what a cold start costs.

Device (cuda): the backend's `device_memory_peak` (for PyTorch the caching allocator's
max_memory_allocated, reset first). Where a backend cannot say, the probe returns None: host
memory is never reported in place of device memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from deeppose.errors import DeepPoseError

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


@dataclass(frozen=True)
class MemoryPeak:
    """Bytes held before a run and the most held during it, with where the numbers came from."""

    source: str
    baseline_bytes: int
    peak_bytes: int

    @property
    def above_baseline_bytes(self) -> int:
        return max(self.peak_bytes - self.baseline_bytes, 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"above_baseline_bytes": self.above_baseline_bytes}


def _status_bytes(*keys: str) -> dict[str, int]:
    found = {}
    for line in _STATUS.read_text().splitlines():
        key, _, value = line.partition(":")
        if key in keys:
            number, unit = value.split()
            if unit != "kB":
                raise DeepPoseError(f"{_STATUS}: {key} in {unit!r}, expected kB")
            found[key] = int(number) * 1024
    return found


def host_peak(run: Callable[[], Any]) -> MemoryPeak:
    """The resident-set high-water mark of `run` above the resident set just before it."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError as error:
        raise DeepPoseError(
            f"host memory peak: cannot reset VmHWM through {_CLEAR_REFS} ({error.strerror})"
        ) from None
    baseline = _status_bytes("VmRSS")["VmRSS"]
    run()
    peak = _status_bytes("VmHWM")["VmHWM"]
    return MemoryPeak("host resident set (VmHWM after /proc/self/clear_refs 5)", baseline, peak)


def peak_memory(backend: Any, run: Callable[[], Any]) -> MemoryPeak | None:
    """Peak memory of `run` on the backend's device, synchronised: host RSS on cpu, the
    framework's allocator on cuda (None where it keeps no usable peak)."""
    if backend.device == "cpu":
        return host_peak(lambda: (run(), backend.synchronize()))
    measured = backend.device_memory_peak(run)
    if measured is None:
        return None
    return MemoryPeak(f"{backend.name} device allocator", *measured)
