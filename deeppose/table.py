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
arm is kept (`arm` ends in `#1`) and so is the planted positive control (`#planted`). The report
stage writes the same table with its other outputs (deeppose.report.cells), so that `make run`,
Snakemake and `dvc repro` keep it current; this command writes it alone, anywhere.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from deeppose.config import load_params
from deeppose.records import paths
from deeppose.records.atomic import write_text
from deeppose.report import cells as cells_table
from deeppose.report.load import load_results

TABLE = paths.report_cells()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=TABLE, help=f"the CSV file (default: {TABLE})")


def table(params_file: str | Path = "params.yaml") -> pd.DataFrame:
    """The tidy table of the timing results of `params_file`'s grid, in grid order."""
    frame, skipped = cells_table.frame(load_results(load_params(params_file)))
    for line in skipped:
        print(f"deeppose table: {line}", file=sys.stderr)
    return frame


def run(args: argparse.Namespace) -> None:
    frame = table(args.params)
    write_text(args.out, cells_table.csv_text(frame))
    cells = frame.groupby(["framework", "loss", "device", "batch_size"]).ngroups
    print(f"{args.out}: {len(frame)} runs of {cells} cells")
