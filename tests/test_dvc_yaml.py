"""dvc.yaml is generated from the stage table: `dvc-yaml --check` refuses a missing or edited file
in one line, and accepts what `dvc-yaml` writes (in process, for the fast tier)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from deeppose import cli

ROOT = Path(__file__).resolve().parent.parent


def test_check_refuses_a_stale_dvc_yaml_and_accepts_the_generated_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    refused = "dvc.yaml is not what `python -m deeppose dvc-yaml` generates; run it and commit"
    assert cli.main(["dvc-yaml", "--check"]) == 2  # absent
    assert refused in capsys.readouterr().err
    assert cli.main(["dvc-yaml"]) == 0
    assert (tmp_path / "dvc.yaml").read_text() == (ROOT / "dvc.yaml").read_text()
    assert cli.main(["dvc-yaml", "--check"]) == 0
    with (tmp_path / "dvc.yaml").open("a") as file:
        file.write("# an edit by hand\n")
    capsys.readouterr()
    assert cli.main(["dvc-yaml", "--check"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"deeppose dvc-yaml: error: {refused}"]
