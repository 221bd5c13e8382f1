"""The machine a measurement ran on, as far as it can change a measured time: one fingerprint that
every measuring result records and every tool compares.

"AMD EPYC" alone names both a Zen 3 (AVX2) and a Zen 4 (AVX-512) here, whose framework ratios
differ (2.08 against 2.90 at batch 32), so the CPU is identified by vendor, family, model and the
vector extensions the kernels dispatch on. Kernel pins set in the environment (OpenBLAS's core
type) change which kernels run and belong to the machine too. Clock speed, load and memory size do
not: the first two move within a run and are measured, and a batch that does not fit fails loudly.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

# CPU flags that select different compute kernels in oneDNN, OpenBLAS or XLA
ISA_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "asimd", "sve")
KERNEL_PINS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "MKL_ENABLE_INSTRUCTIONS", "DNNL_MAX_CPU_ISA")


def first_cpu(cpuinfo: str | None = None) -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo's text (read when None; empty when it cannot
    be): the one parser of that file, which the fingerprint, the fairness manifest and the
    environment record read."""
    text = _read("/proc/cpuinfo") if cpuinfo is None else cpuinfo
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def fingerprint(cpuinfo: str | None = None) -> dict[str, Any]:
    """The machine's identity for provenance: equal fingerprints mean measurements may be combined."""
    cpu = first_cpu(cpuinfo)
    flags = set(cpu.get("flags", cpu.get("Features", "")).split())
    return {
        "arch": platform.machine(),
        "cpu": cpu.get("model name", platform.processor()),
        "vendor": cpu.get("vendor_id", ""),
        "family": cpu.get("cpu family", ""),
        "model": cpu.get("model", ""),
        "isa": [flag for flag in ISA_FLAGS if flag in flags],
        "usable_cores": len(os.sched_getaffinity(0)),
        "kernel_pins": {name: os.environ[name] for name in KERNEL_PINS if name in os.environ},
    }


def differences(recorded: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """The fields in which two fingerprints differ, `field: recorded -> current`; a fingerprint
    that was never recorded differs in every field (an unknown machine is not this one)."""
    if recorded is None:
        return ["no machine recorded"]
    return [
        f"{key}: {recorded.get(key)!r} -> {current.get(key)!r}"
        for key in sorted(set(recorded) | set(current))
        if recorded.get(key) != current.get(key)
    ]


def describe(print_: dict[str, Any]) -> str:
    """One line for messages: `AMD EPYC (family 25 model 1, avx2), 2 cores`."""
    isa = ", ".join(print_.get("isa", [])) or "no vector extensions"
    return (
        f"{print_.get('cpu')} (family {print_.get('family')} model {print_.get('model')}, {isa}), "
        f"{print_.get('usable_cores')} cores"
    )
