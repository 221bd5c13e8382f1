"""`python -m deeppose table` on the committed results: one row per timed run, read through the records."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from deeppose import cli
from deeppose.config import load_params
from deeppose.records import paths
from deeppose.records.timing import TimingResult
from deeppose.report.cells import COLUMNS

ROOT = Path(__file__).resolve().parent.parent


def test_table_has_one_row_per_timed_run_of_the_committed_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    out = tmp_path / "cells.csv"
    assert cli.main(["table", "--out", str(out)]) == 0
    cells = pd.read_csv(out)
    assert tuple(cells.columns) == COLUMNS
    jobs = load_params("params.yaml").timing_jobs()
    records = {job: TimingResult.read(paths.timing_result(job)) for job in jobs}
    blocks = [
        (job, b) for job, r in records.items() for b in (*r.blocks, *r.control_blocks, *r.planted_blocks)
    ]
    assert len(cells) == sum(len(b.samples_s) for _, b in blocks)
    assert f"{out}: {len(cells)} runs of {len(jobs)} cells" in capsys.readouterr().out
    # Every sample of one block, in order, with its block's interference.
    job, block = blocks[-1]
    rows = cells[
        (cells.framework == job.framework)
        & (cells.loss == job.loss)
        & (cells.batch_exp == job.batch_exp)
        & (cells.arm == block.arm)
        & (cells["round"] == block.round)
        & (cells.attempt == block.attempt)
    ].sort_values("run")
    assert rows.time_s.tolist() == block.samples_s
    # read_csv's default float parser may differ from the written value in the last digit.
    assert rows.other_cores.tolist() == pytest.approx([block.interference.other_cores] * len(rows), rel=1e-14)
    assert rows.load_1m.tolist() == pytest.approx([block.interference.load_before[0]] * len(rows), rel=1e-14)
    assert not cells.duplicated(
        ["framework", "loss", "device", "batch_size", "arm", "round", "attempt", "run"]
    ).any()


def test_the_report_stage_writes_the_table_with_planted_blocks_too(tmp_path: Path, monkeypatch) -> None:
    """Issue 29: `make run`, Snakemake and `dvc repro` keep reports/cells.csv current, so the report
    stage declares and writes it, in its set (deeppose.records.output_set). Before: only `python -m
    deeppose table` wrote it, and without the planted positive control's blocks (schema 5)."""
    import json

    from report_project import make_project

    from deeppose.grid import Job
    from deeppose.stages import STAGES

    assert STAGES["report"].outputs(None)["cells"] == paths.report_cells() == Path("reports/cells.csv")
    root = make_project(tmp_path, devices=("cpu",))
    monkeypatch.chdir(root)
    job = Job("pytorch", "explicit", "cpu", 0)
    record = json.loads(paths.timing_result(job).read_text())
    planted = [{**block, "arm": "pytorch/explicit#planted"} for block in record["blocks"]]
    record.update(planted_cell="pytorch/explicit", planted_blocks=planted)
    paths.timing_result(job).write_text(json.dumps(record))
    assert cli.main(["report"]) == 0
    cells = pd.read_csv(root / "reports" / "cells.csv")
    assert tuple(cells.columns) == COLUMNS
    mine = cells[(cells.framework == "pytorch") & (cells.loss == "explicit") & (cells.batch_exp == 0)]
    assert (mine.arm == "pytorch/explicit#planted").sum() == sum(len(b["samples_s"]) for b in planted) > 0
    assert cli.main(["table", "--out", str(tmp_path / "alone.csv")]) == 0
    assert (tmp_path / "alone.csv").read_bytes() == (root / "reports" / "cells.csv").read_bytes()
