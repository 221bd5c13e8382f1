"""The machine's measured fp32 throughput, the ceiling of the report's rates."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from deeppose.records.results import Provenance, Record


@dataclasses.dataclass(frozen=True)
class PeakResult(Record):
    KIND: ClassVar[str] = "peak"
    device: str
    n: int
    kernels: dict[str, dict[str, Any] | None]
    rates_flops_per_s: dict[str, float | None]
    best: str | None
    peak_flops_per_s: float | None  # the best observed kernel rate
    bandwidth: dict[str, Any] | None  # the STREAM triad's samples; None without torch
    bandwidth_bytes_per_s: float | None
    theoretical: dict[str, Any]  # cores x clock x FLOPs per cycle, and what it assumed
    theoretical_flops_per_s: float | None  # None where the microarchitecture is not known
    threads: dict[str, Any]
    environment: dict[str, Any]
    provenance: Provenance
