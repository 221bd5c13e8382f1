"""The report's outputs change together (issue 30, item 4): one set, staged beside reports/ and
swapped in whole; one writer per output folder; run from the project root only. On the hand-made
project of tests/report_project.py. Each test failed on 922d161 (write_together, no lock, no
root check) and passes now; the mechanism itself is tested in tests/test_output_set.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from report_project import make_project

from deeppose import cli
from deeppose.config import load_params
from deeppose.grid import Job
from deeppose.records import output_set, paths


def report_files(root: Path) -> dict[str, bytes]:
    """Every file of reports/ but the lock, by relative path."""
    reports = root / "reports"
    return {
        p.relative_to(reports).as_posix(): p.read_bytes()
        for p in sorted(reports.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A project with a complete report, and a result changed since so that the next report differs."""
    root = make_project(tmp_path, devices=("cpu",))
    monkeypatch.chdir(root)
    assert cli.main(["report"]) == 0
    paths.timing_result(Job("pytorch", "explicit", "cpu", 0)).unlink()
    return root


def test_a_rename_that_fails_leaves_the_previous_report_whole(project, monkeypatch, capsys):
    """Before: a folder where summary.json goes stopped the renames after report.md, the figures and
    the DVC files were replaced: a new report.md beside the old summary.json."""
    before = report_files(project)
    (project / "reports" / "summary.json").unlink()
    (project / "reports" / "summary.json").mkdir()
    before_folder = report_files(project)
    assert cli.main(["report"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "deeppose report: error: reports/summary.json: a folder where the set writes a file; "
        "move it away and run again"
    )
    assert report_files(project) == before_folder
    (project / "reports" / "summary.json").rmdir()
    (project / "reports" / "summary.json").write_bytes(before["summary.json"])

    real = os.replace

    refused = []

    def refusing(src, dst):  # the last rename of the set (summary.json) fails, once
        if Path(dst) == paths.report_summary() and not refused:
            refused.append(dst)
            raise OSError(28, "No space left on device", str(dst))
        return real(src, dst)

    monkeypatch.setattr(output_set.os, "replace", refusing)
    assert cli.main(["report"]) == 2
    assert "reports/summary.json: cannot replace: No space left on device" in capsys.readouterr().err
    monkeypatch.setattr(output_set.os, "replace", real)
    assert report_files(project) == before
    assert [p.name for p in (project / "reports").iterdir() if p.name.endswith(".tmp")] == []
    assert cli.main(["report"]) == 0  # and once the machine allows it, the new set replaces it whole
    after = report_files(project)
    assert after["report.md"] != before["report.md"] and after["summary.json"] != before["summary.json"]


def test_a_second_report_run_on_the_same_folder_is_refused_in_one_line(project, capsys):
    """Before: two runs, slowed down, interleaved their files and both said "wrote"."""
    before = report_files(project)
    with output_set.folder_lock(paths.REPORTS, "test"):  # another run holds the folder
        assert cli.main(["report"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"deeppose report: error: reports: another `python -m deeppose report` (process {os.getpid()}) "
        "is writing here; wait for it to finish"
    )
    assert report_files(project) == before


def test_a_report_run_from_a_subfolder_refuses_in_one_line(project, monkeypatch, capsys):
    """Before: it wrote an empty report into the subfolder and exited 0."""
    (project / "docs").mkdir()
    monkeypatch.chdir(project / "docs")
    assert cli.main(["report", "--params", "../params.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"deeppose report: error: run it from the project root: {project / 'docs'} has no results/ folder; "
        f"the project root looks like {project}"
    )
    assert list((project / "docs").iterdir()) == []


def test_status_names_a_report_left_half_replaced(project, monkeypatch, capsys):
    """A swap killed between two renames leaves its journal: status says so (it trusts summary.json,
    which is replaced last, only when no swap is pending), and the next report puts the old set back."""
    from deeppose import status

    before = report_files(project)
    tx = project / "reports" / ".set.k1ll3d.tmp"
    (tx / "old").mkdir(parents=True)
    os.replace(project / "reports" / "report.md", tx / "old" / "report.md")
    (project / "reports" / "report.md").write_text("half of a new report")
    (tx / output_set.JOURNAL).write_text(json.dumps({"report.md": True, "summary.json": True}))
    capsys.readouterr()
    status.run(type("Args", (), {"params": "params.yaml", "check": False})())
    out = capsys.readouterr().out
    assert "interrupted reports/: a report run stopped while replacing its files" in out
    params = load_params("params.yaml")
    with output_set.folder_lock(paths.REPORTS, "test"):
        output_set.recover(paths.REPORTS)
    assert report_files(project) == before
    status.run(type("Args", (), {"params": str(params.path), "check": False})())
    assert "interrupted" not in capsys.readouterr().out
