"""The prepared data's summary: what was cropped, kept and dropped, and the arrays' hashes."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from deeppose.records.results import Provenance, Record


@dataclasses.dataclass(frozen=True)
class PrepareSummary(Record):
    KIND: ClassVar[str] = "prepare"
    source: str
    seed: int
    inputs: list[dict[str, Any]]
    crop: dict[str, int]
    kept: dict[str, int]
    filtering: dict[str, Any]  # per split: the drop rules that apply, and what they dropped
    dropped: dict[str, Any]
    arrays: dict[str, dict[str, Any]]
    sha256: str
    provenance: Provenance
