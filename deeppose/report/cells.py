"""The tidy table of the timing results, reports/cells.csv: one row per timed run of every block of
every arm (the cell, its A/A twin, its planted control); `python -m deeppose table` writes it alone."""

from __future__ import annotations

import pandas as pd

from deeppose.records.timing import TimingResult
from deeppose.report.load import Results

JOB, BLOCK = ("framework", "loss", "device", "batch_exp"), ("arm", "round", "position", "attempt")
INTERFERENCE = ("wall_s", "machine_busy_s", "own_s", "other_cpu_s", "other_cores")  # the block's
LOAD = ("load_1m", "load_5m", "load_15m")
COLUMNS = (*JOB, "batch_size", *BLOCK, "run", "time_s", "disturbed", *INTERFERENCE, *LOAD, "cores", "stale")


def rows(record: TimingResult, stale: bool) -> list[dict]:
    """The table's rows of one timing cell: every timed run of every block of its arms."""
    out = []
    for block in (*record.blocks, *record.control_blocks, *record.planted_blocks):
        i = block.interference
        fixed = {k: getattr(record.job, k) for k in JOB} | {"batch_size": record.batch_size}
        fixed |= {k: getattr(block, k) for k in BLOCK}
        after = {"disturbed": block.disturbed} | {k: getattr(i, k) for k in INTERFERENCE}
        after |= dict(zip(LOAD, i.load_before, strict=True)) | {"cores": i.cores, "stale": stale}
        out += [fixed | {"run": run, "time_s": time_s} | after for run, time_s in enumerate(block.samples_s)]
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
