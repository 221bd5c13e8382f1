"""Every pipeline stage records what its job cost; a failed job records nothing; the report sums them."""

from __future__ import annotations

import argparse

import pytest
from tiny_datasets import write_params

from deeppose import cli
from deeppose.config import load_params
from deeppose.measure import cost
from deeppose.records import paths
from deeppose.records.results import StageCost
from deeppose.report.load import load_costs
from deeppose.stages import STAGES, job_label


def test_a_stage_records_its_cost_and_a_failed_one_does_not(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path / "p.yaml", {"source": "synthetic", "synthetic": {"images": 8, "test": 3}})
    assert cli.main(["prepare", "--params", str(params)]) == 2  # nothing to prepare yet
    assert not paths.stage_cost("prepare", None).exists()
    assert cli.main(["synthesize", "--params", str(params)]) == 0
    assert cli.main(["prepare", "--params", str(params)]) == 0
    record = StageCost.read(paths.stage_cost("prepare", None))
    assert record.stage == "prepare" and record.job is None
    # In process, the stage's startup is this process's age when it began: under pytest-xdist a
    # worker may be half an hour old by then, so the bound is that age, not a fixed time.
    assert (
        0 < record.wall_s < 600
        and 0 <= record.startup_s <= cost.startup_s()
        and record.cpu_s > 0
        and record.max_rss_mb > 10
    )
    costs = load_costs(load_params(params))
    assert [c is not None for c in costs["synthesize"] + costs["prepare"]] == [True, True]
    assert all(c is None for c in costs["train"]) and len(costs["time"]) == 6
    assert cli.main(["status", "--params", str(params)]) in (0, 1)  # a tool beside the stages: no record
    assert not (paths.RESULTS / "cost" / "status").exists()


@pytest.mark.parametrize(
    ("stage", "values", "label"),
    [
        ("train", {"framework": "chainer", "loss": "explicit", "device": "cpu"}, "chainer/explicit/cpu"),
        ("time", {"device": "cpu", "batch_exp": 3}, "cpu/b3"),
        ("breakdown", {"device": "cpu", "batch_exp": 2}, "cpu/b2"),
        ("report", {}, None),
    ],
)
def test_each_job_has_its_own_cost_file(stage, values, label):
    assert job_label(STAGES[stage], argparse.Namespace(**values)) == label
    assert paths.stage_cost(stage, label).as_posix() == f"results/cost/{stage}/{label or stage}.json"


def test_startup_is_the_time_since_the_process_began():
    assert 0 < cost.startup_s() < 24 * 3600
