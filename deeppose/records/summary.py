"""The report's summary: which results it was built from."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from deeppose.records.results import Provenance, Record


@dataclasses.dataclass(frozen=True)
class ReportSummary(Record):
    """summary.json: the report's headline numbers, and which results were stale when it ran."""

    KIND: ClassVar[str] = "report"
    headlines: dict[str, Any]
    stale: dict[str, list[str]]  # result file -> why it no longer matches the code or parameters
    inputs: dict[str, str]  # every result file read -> sha256 of its content
    provenance: Provenance
