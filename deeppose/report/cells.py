"""The tidy table of the timing results, reports/cells.csv: one row per timed run of every block of
every arm (the cell, its A/A twin, its planted control); `python -m deeppose table` writes it alone."""

from __future__ import annotations

import pandas as pd

from deeppose.records.timing import TimingResult
from deeppose.report.load import Results

COLUMNS = (
    "framework",
    "loss",
    "device",
    "batch_exp",
    "batch_size",
    "arm",
    "round",
    "position",
    "attempt",
    "run",
    "time_s",
    "disturbed",
    "wall_s",
    "machine_busy_s",
    "own_s",
    "other_cpu_s",
    "other_cores",
    "load_1m",
    "load_5m",
    "load_15m",
    "cores",
    "stale",
)


def rows(record: TimingResult, stale: bool) -> list[dict]:
    """The table's rows of one timing cell: every timed run of every block of its arms."""
    out = []
    for block in (*record.blocks, *record.control_blocks, *record.planted_blocks):
        load = dict(zip(("load_1m", "load_5m", "load_15m"), block.interference.load_before, strict=True))
        for run, time_s in enumerate(block.samples_s):
            out.append(
                {
                    "framework": record.job.framework,
                    "loss": record.job.loss,
                    "device": record.job.device,
                    "batch_exp": record.job.batch_exp,
                    "batch_size": record.batch_size,
                    "arm": block.arm,
                    "round": block.round,
                    "position": block.position,
                    "attempt": block.attempt,
                    "run": run,
                    "time_s": time_s,
                    "disturbed": block.disturbed,
                    "wall_s": block.interference.wall_s,
                    "machine_busy_s": block.interference.machine_busy_s,
                    "own_s": block.interference.own_s,
                    "other_cpu_s": block.interference.other_cpu_s,
                    "other_cores": block.interference.other_cores,
                    **load,
                    "cores": block.interference.cores,
                    "stale": stale,
                }
            )
    return out


def frame(results: Results) -> tuple[pd.DataFrame, list[str]]:
    """The table in grid order, and one line per timing result that adds no rows, saying why."""
    records, skipped = [], []
    for loaded in results.timing.values():
        if loaded.ok:
            records += rows(loaded.record, bool(loaded.stale))  # type: ignore[arg-type]
        else:
            skipped.append(f"{loaded.path}: {loaded.missing}")
    return pd.DataFrame.from_records(records, columns=list(COLUMNS)), skipped


def csv_text(table: pd.DataFrame) -> str:
    return table.to_csv(index=False, lineterminator="\n")
