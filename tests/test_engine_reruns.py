"""Reruns and resumes under the two workflow engines: a forced rerun trains afresh, and a training
job killed mid-run resumes, under Snakemake and DVC alike, to the result of an uninterrupted run.
Each test runs its own one-job tiny project (`train_project`), a copy of the project made as in
tests/test_workflow.py. A file of its own so that pytest-xdist runs it beside the end-to-end
pipeline of test_workflow.py instead of after it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_workflow import BIN, copy_project, edit_params, engine_env, run
from tiny_training import train_command

from deeppose.grid import Job


def train_project(tmp_path: Path, framework: str, epochs: int) -> tuple[Path, Job]:
    """A tiny project whose grid is one training job (24 images, batch 4, one thread; momentum SGD,
    whose checkpoint is two thirds of Adam's)."""

    project = copy_project(tmp_path / "project")
    edit_params(
        project,
        {
            "data": {"synthetic": {"images": 24, "test": 8}},
            "train": {"optimizer": "momentum_sgd", "epochs": epochs, "batch_size": 4, "threads": 1},
            "grid": {"frameworks": [framework], "loss_modes": ["autograd"], "batch_exponents": [0]},
            "breakdown": {"batch_exponents": [0]},
        },
    )
    run([sys.executable, "-m", "deeppose", "dvc-yaml"], project)  # dvc.yaml for this grid's frameworks
    return project, Job(framework, "autograd", "cpu")


def engine_command(engine: str, job) -> list[str]:
    """The command that brings one training job up to date, as a user would type it."""
    from deeppose.records import paths

    if engine == "snakemake":
        return [
            str(BIN / "snakemake"),
            str(paths.train_metrics(job)),
            "--cores",
            "2",
        ]
    return [str(BIN / "dvc"), "repro", f"train-{job.framework}@{job.loss}-{job.device}"]


def train_outputs(project: Path, job) -> tuple[dict, list[list[str]], dict]:
    """metrics.json, curve.csv's rows and the checkpoint's weights."""
    import json

    from deeppose import checkpoint
    from deeppose.records import paths

    metrics = json.loads((project / paths.train_metrics(job)).read_text())
    curve = [row.split(",") for row in (project / paths.train_curve(job)).read_text().splitlines()[1:]]
    with np.load(project / paths.checkpoint_dir(job) / checkpoint.FILE_NAME, allow_pickle=False) as data:
        weights = {name: data[name] for name in data.files if name.startswith("weight/")}
    return metrics, curve, weights


def assert_whole(metrics: dict, curve: list[list[str]], epochs: int) -> None:
    """A run's outputs cover every epoch with iterations numbered 1..n, and its clock is the curve's."""
    assert [int(row[0]) for row in curve] == list(range(1, len(curve) + 1))
    assert sorted({int(row[1]) for row in curve}) == list(range(1, epochs + 1))
    assert metrics["iterations"] == len(curve) and metrics["epochs"] == epochs
    assert metrics["train_time_s"] == float(curve[-1][2])


@pytest.mark.slow
def test_forced_reruns_under_either_engine_train_afresh(tmp_path):
    """`snakemake --forceall` and `dvc repro --force`, and a first `dvc repro` after Snakemake ran the
    job, delete the declared outputs but find the finished run's checkpoint: each trains afresh
    (before: an IndexError, and metrics.json gone). One epoch: its checkpoint is a finished run's."""
    project, job = train_project(tmp_path, "pytorch", epochs=1)
    snakemake_run, dvc_run = engine_command("snakemake", job), engine_command("dvc", job)
    run(snakemake_run, project)
    first, first_curve, _ = train_outputs(project, job)
    assert_whole(first, first_curve, 1)
    for command in (snakemake_run + ["--forceall"], dvc_run, dvc_run + ["--force"]):
        run(command, project)
        metrics, curve, _ = train_outputs(project, job)
        assert metrics["resumed_from_epoch"] == 0, command
        assert_whole(metrics, curve, 1)
        assert [row[3] for row in curve] == [row[3] for row in first_curve], command  # same losses


def _train_pid(project: Path) -> int | None:
    """The `python -m deeppose train` process working in `project`, if one runs."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if b"-m" in args and b"deeppose" in args and b"train" in args and cwd == str(project):
            return int(entry.name)
    return None


def kill_after_first_epoch_2_line(command: list[str], project: Path, job) -> None:
    """Start an engine on the training job and SIGKILL its python child once the log has a line of
    epoch 2 (the checkpoint of epoch 1 is written just before)."""
    import signal
    import time

    from deeppose.records import paths

    log = project / paths.train_log(job)
    engine = subprocess.Popen(
        command, cwd=project, env=engine_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.time() + 600
    while time.time() < deadline and engine.poll() is None:
        if log.exists() and '"epoch": 2' in log.read_text():
            pid = _train_pid(project)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                break
        time.sleep(0.02)
    output = engine.communicate()[0]
    assert engine.returncode != 0, f"the engine finished before the kill:\n{output[-3000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("framework, engine", [("pytorch", "snakemake"), ("chainer", "dvc")])
def test_an_engine_resumes_a_killed_job_to_the_uninterrupted_result(tmp_path, engine, framework):
    """Kill the training job mid-epoch 2, rerun the same engine command: the job resumes from epoch
    1 and ends with the metrics, curve and weights of an uninterrupted run (the CLI's, run after it
    in the same project, which trains afresh since the checkpoint is then of a finished run).
    Before: metrics counted only the resumed epochs and the curve lacked epoch 1. Two epochs are
    enough: the kill lands in epoch 2 (the engine must not finish first, which the kill checks).
    Each engine and each framework once: a framework's resume does not depend on the engine that
    reruns it (test_train.py resumes each framework's checkpoints without an engine)."""
    epochs = 2
    project, job = train_project(tmp_path, framework, epochs)
    command = engine_command(engine, job)
    kill_after_first_epoch_2_line(command, project, job)
    run(command, project)
    resumed, resumed_curve, resumed_weights = train_outputs(project, job)
    assert resumed["resumed_from_epoch"] == 1
    assert_whole(resumed, resumed_curve, epochs)

    run(train_command(framework, str(BIN / "python")), project)
    clean, clean_curve, clean_weights = train_outputs(project, job)
    assert clean["resumed_from_epoch"] == 0
    assert [(r[0], r[1], r[3]) for r in resumed_curve] == [(r[0], r[1], r[3]) for r in clean_curve]
    for key in ("iterations", "epochs", "final_train_loss", "final_test", "baseline_test"):
        assert resumed[key] == clean[key], key
    for name, value in clean_weights.items():
        np.testing.assert_array_equal(resumed_weights[name], value, err_msg=name)
