"""`python -m deeppose table`: every timed run of every timing cell as one tidy CSV table.

    python -m deeppose table                      # writes reports/cells.csv
    python -m deeppose table --out /tmp/cells.csv

One row per framework, loss mode, device, batch size, arm, round, attempt and run (the `run`-th
timed sample of its block), with the run's time and its block's interference fields (what other
processes did to the machine meanwhile), so the raw measurements can be analysed with pandas
without reading JSON:

    import pandas as pd
    cells = pd.read_csv("reports/cells.csv")
    cells.groupby(["framework", "loss", "batch_size"])["time_s"].median()

The records are read as the report reads them (deeppose.report.load): a timing result that is
missing or unusable contributes no rows (one line on stderr says why), a stale one contributes its
rows with `stale` true. Warm-up runs are left out, as in every statistic; the A/A control's twin
arm is kept (`arm` ends in `#1`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from deeppose.config import load_params
from deeppose.records import paths
from deeppose.records.atomic import write_text
from deeppose.records.results import TimingResult
from deeppose.report.load import load_results

TABLE = paths.REPORTS / "cells.csv"
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=TABLE, help=f"the CSV file (default: {TABLE})")


def rows(record: TimingResult, stale: bool) -> list[dict]:
    """The table's rows of one timing cell: every timed run of every block of its arms."""
    out = []
    for block in (*record.blocks, *record.control_blocks):
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


def table(params_file: str | Path = "params.yaml") -> pd.DataFrame:
    """The tidy table of the timing results of `params_file`'s grid, in grid order."""
    results = load_results(load_params(params_file))
    records = []
    for loaded in results.timing.values():
        if loaded.ok:
            records += rows(loaded.record, bool(loaded.stale))  # type: ignore[arg-type]
        else:
            print(f"deeppose table: {loaded.path}: {loaded.missing}", file=sys.stderr)
    return pd.DataFrame.from_records(records, columns=list(COLUMNS))


def run(args: argparse.Namespace) -> None:
    frame = table(args.params)
    write_text(args.out, frame.to_csv(index=False, lineterminator="\n"))
    cells = frame.groupby(["framework", "loss", "device", "batch_size"]).ngroups
    print(f"{args.out}: {len(frame)} runs of {cells} cells")
