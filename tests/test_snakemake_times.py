"""Snakemake's view by file time: parameter files, and a fresh clone's current results adopted.
The adoption itself runs in the engines' end-to-end test (tests/test_workflow.py), on a clone."""

from __future__ import annotations

from pathlib import Path

import pytest

from deeppose import snakemake_times
from deeppose.config import load_params
from deeppose.records import paths
from deeppose.stages import STAGES

ROOT = Path(__file__).resolve().parent.parent


def test_the_stages_are_listed_after_every_stage_they_read() -> None:
    """Adoption gives each stage a later time than the ones before it in the table."""
    params = load_params(ROOT / "params.yaml")
    written: set[Path] = set()
    for stage in STAGES.values():
        assert set(stage.inputs) <= written, stage.name
        for job in snakemake_times.stage_jobs(stage, params):
            written.update(stage.outputs(job).values())


def test_a_parameter_edit_rewrites_the_files_of_the_stages_that_read_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = load_params(ROOT / "params.yaml")
    monkeypatch.chdir(tmp_path)
    assert len(snakemake_times.write_params_files(params)) == len(STAGES)
    assert snakemake_times.write_params_files(params) == []
    text = (ROOT / "params.yaml").read_text(encoding="utf-8")
    edited = tmp_path / "params.yaml"
    edited.write_text(text.replace("  repeats: 4 ", "  repeats: 3 ", 1), encoding="utf-8")
    assert edited.read_text(encoding="utf-8") != text
    assert snakemake_times.write_params_files(load_params(edited)) == [paths.snakemake_params("time")]


def test_nothing_is_adopted_where_snakemake_keeps_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".snakemake" / "metadata").mkdir(parents=True)
    assert not snakemake_times.adopt(load_params(ROOT / "params.yaml"))


def test_nothing_is_adopted_while_a_result_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert not snakemake_times.adopt(load_params(ROOT / "params.yaml"))
