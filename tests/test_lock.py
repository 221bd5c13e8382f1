"""The measurement lock: every measuring stage waits for it, says so in one line, and runs once
it is free; the lock dies with its holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_peak import write_params

from deeppose.measure import lock
from deeppose.records.results import StageCost

ROOT = Path(__file__).resolve().parent.parent
CELL = ["--framework", "pytorch", "--loss", "autograd", "--device", "cpu"]
STAGES = {
    "train": ["train", *CELL],
    "time": ["time", "--device", "cpu", "--batch-exp", "0", "--synthetic-input"],
    "breakdown": ["breakdown", "--device", "cpu", "--batch-exp", "0", "--synthetic-input"],
    "peak": ["peak"],
}


@pytest.fixture()
def lock_file(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "measure.lock"
    monkeypatch.setenv(lock.ENV, str(path))
    return path


def start(stage: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "deeppose", *STAGES[stage]],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def first_line(process: subprocess.Popen, timeout: float = 120) -> str:
    """The first stderr line (deeppose prints nothing else before waiting)."""
    deadline = time.time() + timeout
    line = ""
    while not line and time.time() < deadline and process.poll() is None:
        line = process.stderr.readline()
    return line.strip()


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(STAGES))
def test_a_measuring_stage_waits_for_the_lock_and_says_so(lock_file, stage, tmp_path):
    with lock.measurement_lock("the test's measurement"):
        process = start(stage)
        try:
            line = first_line(process)
            assert line.startswith(f"deeppose: {stage}") and line.endswith(
                f"waiting for the measurement lock {lock_file}, held by the test's measurement (pid {os.getpid()})"
            ), line
            time.sleep(0.5)
            assert process.poll() is None  # still waiting
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
            process.stderr.close()


@pytest.mark.slow
def test_the_second_run_measures_after_the_first(lock_file, tmp_path):
    """A real stage behind a held lock runs to completion once the lock is released, not before."""
    project = tmp_path / "project"
    (project / "results" / "machine").mkdir(parents=True)
    write_params(project)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with lock.measurement_lock("first"):
        process = subprocess.Popen(
            [sys.executable, "-m", "deeppose", *STAGES["peak"]],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert "waiting for the measurement lock" in first_line(process)
        time.sleep(1.0)
        assert process.poll() is None and not (project / "results/machine/matmul_peak.json").exists()
        released = time.time()
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert (project / "results/machine/matmul_peak.json").stat().st_mtime > released
    # its cost record keeps the wait (at least the second slept above) apart from its own time
    cost = StageCost.read(project / "results/cost/peak/peak.json")
    assert 1.0 <= cost.lock_wait_s < cost.wall_s


def test_a_killed_holder_releases_the_lock(lock_file):
    code = (
        "import time; from deeppose.measure.lock import measurement_lock\n"
        "with measurement_lock('doomed'):\n    print('held', flush=True); time.sleep(600)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    holder.stdout.close()
    started = time.time()
    with lock.measurement_lock("next"):
        assert time.time() - started < 1.0
