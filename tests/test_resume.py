"""The resume contract (deeppose.resume) on damaged, finished and foreign checkpoints and on a log
cut by a kill: each case is one line on stderr and a run that completes with the right numbers.

One real epoch-1 checkpoint (a training process killed after its first checkpoint) is made once;
each test damages a copy of it. Everything here runs on the narrow network (tests/narrow_network.py):
a copy of its checkpoint takes tens of MB, not AlexNet's 466.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from narrow_network import narrowed
from tiny_training import ROOT, make_project, train_command

from deeppose import checkpoint
from deeppose.config import Job, load_params
from deeppose.records import paths
from deeppose.train import train

# Every test here resumes a real training run.
pytestmark = pytest.mark.slow

JOB = Job("pytorch", "autograd", "cpu")
EPOCHS, N_TRAIN = 2, 8  # batch 4: 2 iterations per epoch


@pytest.fixture(scope="module", autouse=True)
def narrow_network() -> Iterator[None]:
    with narrowed():
        yield


def checkpoint_file(folder: Path) -> Path:
    return folder / paths.checkpoint_dir(JOB) / checkpoint.FILE_NAME


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> Iterator[Path]:
    """A project whose training was killed after epoch 1's checkpoint (and its log lines); removed
    with its checkpoint when the module ends."""
    folder = tmp_path_factory.mktemp("interrupted")
    make_project(folder, n_train=N_TRAIN, epochs=EPOCHS)
    env = dict(os.environ, PYTHONPATH=str(ROOT), DEEPPOSE_MEASURE_LOCK=str(folder / "measure.lock"))
    command = train_command(JOB.framework, narrow=True)
    process = subprocess.Popen(
        command, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while not checkpoint_file(folder).exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint.read(checkpoint_file(folder)).epoch == 1
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture()
def project(interrupted, tmp_path, monkeypatch) -> Path:
    """A copy of the interrupted project, as the working directory."""
    folder = tmp_path / "project"
    shutil.copytree(interrupted, folder)
    monkeypatch.chdir(folder)
    return folder


def log_entries() -> list[dict]:
    return [json.loads(line) for line in paths.train_log(JOB).read_text().splitlines()]


def run_and_note(capsys) -> tuple[dict, list[str]]:
    result = train(load_params("params.yaml"), JOB, progress=False)
    notes = [
        line for line in capsys.readouterr().err.splitlines() if line.startswith("pytorch/autograd/cpu: ")
    ]
    return result, notes


def assert_complete(result: dict) -> None:
    entries = log_entries()
    iterations = [e for e in entries if e["kind"] == "iteration"]
    assert [e["iteration"] for e in iterations] == list(range(1, EPOCHS * N_TRAIN // 4 + 1))
    assert [e["epoch"] for e in entries if e["kind"] == "eval"] == list(range(1, EPOCHS + 1))
    assert result["iterations"] == len(iterations) and result["train_time_s"] == iterations[-1]["elapsed_s"]


def resave(path: Path, **changes) -> None:
    """Rewrite a checkpoint with some fields changed (what a damaged or foreign file would hold)."""
    found = checkpoint.read(path)
    fields = {
        name: getattr(found, name)
        for name in ("epoch", "elapsed_s", "eval_time_s", "weights", "optimizer", "meta", "log")
    }
    fields.update(changes)
    checkpoint.save(path.parent, checkpoint.Checkpoint(**fields))


def truncate(path: Path) -> None:
    os.truncate(path, 100)


def wrong_shape(path: Path) -> None:
    weights = dict(checkpoint.read(path).weights)
    weights["fc8.W"] = weights["fc8.W"][:, :-1]
    resave(path, weights=weights)


def missing_array(path: Path) -> None:
    optimizer = dict(checkpoint.read(path).optimizer)
    del optimizer["conv1.W.velocity"]
    resave(path, optimizer=optimizer)


def short_log(path: Path) -> None:
    resave(path, log=checkpoint.read(path).log[:-2])


def summary_without_run(path: Path) -> None:
    resave(path, meta={**checkpoint.read(path).meta, "runs": [{}]})


def foreign(path: Path) -> None:
    resave(path, meta={"fingerprint": "0" * 64})


@pytest.mark.parametrize(
    "damage, says",
    [
        (truncate, "is damaged: not a readable npz file"),
        (wrong_shape, "is damaged: weight fc8.W has shape (28, 63), expected (28, 64)"),
        (
            missing_array,
            "is damaged: its optimizer arrays differ from the model's (missing ['conv1.W.velocity']",
        ),
        (short_log, "is damaged: its log holds 1 iterations numbered [1]..[1], not the 2 of its 1 epoch(s)"),
        (summary_without_run, "is damaged: its header summarises [{}] runs, not the 0 it finished"),
        (foreign, "was written for other parameters or data"),
    ],
)
def test_an_unusable_checkpoint_means_a_fresh_start_said_in_one_line(project, capsys, damage, says):
    damage(checkpoint_file(project))
    result, notes = run_and_note(capsys)
    assert len(notes) == 1 and says in notes[0] and notes[0].endswith("; starting fresh"), notes
    assert result["resumed_from_epoch"] == 0
    assert_complete(result)


def test_a_checkpoint_of_other_parameters_is_not_resumed(project, capsys):
    """A parameter edit (the learning rate) changes the fingerprint the checkpoint was written for."""
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["train"]["lr"] *= 2
    Path("params.yaml").write_text(yaml.safe_dump(raw))
    result, notes = run_and_note(capsys)
    assert len(notes) == 1 and "was written for other parameters or data" in notes[0], notes
    assert result["resumed_from_epoch"] == 0
    assert_complete(result)


def test_a_log_cut_by_a_kill_does_not_matter_the_checkpoint_carries_its_own(project, capsys):
    """The declared log's last line cut mid-write (a kill), or the log deleted (an engine): the run
    resumes from the checkpoint's copy and the final log is whole."""
    text = paths.train_log(JOB).read_text()
    paths.train_log(JOB).write_text(text[: len(text) - 20])
    result, notes = run_and_note(capsys)
    assert notes == [
        f"pytorch/autograd/cpu: resuming after epoch 1 of {EPOCHS} from {checkpoint_file(Path('.'))}"
    ]
    assert result["resumed_from_epoch"] == 1
    assert_complete(result)


def test_a_finished_checkpoint_runs_the_job_again_from_the_start(project, capsys):
    """What an engine's forced rerun does: the declared outputs deleted, the checkpoint of the
    finished run still there. The job runs again, whole (it crashed with an IndexError before)."""
    first, _ = run_and_note(capsys)
    weights = checkpoint.read(checkpoint_file(project)).weights
    for output in (paths.train_log(JOB), paths.train_curve(JOB), paths.train_metrics(JOB)):
        output.unlink()
    second, notes = run_and_note(capsys)
    assert len(notes) == 1 and f"holds a finished run (epoch {EPOCHS} of {EPOCHS})" in notes[0]
    assert second["resumed_from_epoch"] == 0
    assert_complete(second)
    assert second["final_test"] == first["final_test"]
    for name, value in checkpoint.read(checkpoint_file(project)).weights.items():
        np.testing.assert_array_equal(value, weights[name], err_msg=name)


def test_a_temporary_left_by_a_killed_checkpoint_write_is_removed(project, capsys):
    leftover = checkpoint_file(project).with_name(".last.npz.k1ll3d.tmp")
    leftover.write_bytes(b"\0" * 4096)
    run_and_note(capsys)
    assert not leftover.exists()
    assert sorted(p.name for p in checkpoint_file(project).parent.iterdir()) == [checkpoint.FILE_NAME]


# --- a job of several seeds (train.seeds) -----------------------------------------------------
class Killed(Exception):
    """Stands for a SIGKILL right after a checkpoint was written."""


def train_seeds(folder: Path, kill_at: tuple[int, int] | None = None) -> dict:
    """Train JOB in `folder` (two seeds), raising Killed right after the checkpoint of (run, epoch)."""
    save = checkpoint.save

    def save_then_die(where: Path, found: checkpoint.Checkpoint) -> None:
        save(where, found)
        if (found.meta["run"], found.epoch) == kill_at:
            raise Killed

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setattr(checkpoint, "save", save_then_die)
        return train(load_params("params.yaml"), JOB, progress=False)


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory) -> tuple[dict, list[dict]]:
    """A clean run of JOB with two seeds: its metrics and its log."""
    folder = tmp_path_factory.mktemp("two_seeds")
    make_project(folder, n_train=N_TRAIN, epochs=EPOCHS, seeds=2)
    result = train_seeds(folder)
    log = [json.loads(line) for line in (folder / paths.train_log(JOB)).read_text().splitlines()]
    shutil.rmtree(folder / "checkpoints")
    return result, log


def test_each_seed_is_a_run_of_its_own(two_seeds):
    result, log = two_seeds
    runs = result["runs"]
    assert [r["seed"] for r in runs] == [0, runs[1]["seed"]] and runs[1]["seed"] != 0
    assert runs[0]["curve_sha256"] != runs[1]["curve_sha256"]
    for key in ("iterations", "train_time_s", "final_train_loss", "final_test"):
        assert result[key] == runs[0][key]  # the top-level fields are the first run's, as with one seed
    for r in (0, 1):
        iterations = [e for e in log if e["kind"] == "iteration" and e["run"] == r]
        assert [e["iteration"] for e in iterations] == list(range(1, EPOCHS * N_TRAIN // 4 + 1))
        assert runs[r]["final_train_loss"] == np.mean([e["loss"] for e in iterations if e["epoch"] == EPOCHS])


@pytest.mark.parametrize("kill_at", [(0, EPOCHS), (1, 1)], ids=["after-the-first-run", "inside-the-second"])
def test_a_job_of_two_seeds_resumes_in_the_run_it_stopped_in(two_seeds, tmp_path, capsys, kill_at):
    """Killed after the first run's last checkpoint (the second starts from its own seed) or inside
    the second run: the resumed job's runs and log are the clean job's, bit for bit."""
    clean, clean_log = two_seeds
    make_project(tmp_path, n_train=N_TRAIN, epochs=EPOCHS, seeds=2)
    with pytest.raises(Killed):
        train_seeds(tmp_path, kill_at)
    capsys.readouterr()
    result = train_seeds(tmp_path)
    run, epoch = kill_at
    assert capsys.readouterr().err.splitlines() == [
        f"pytorch/autograd/cpu: resuming after epoch {epoch} of {EPOCHS} of run {run + 1} of 2 from "
        f"{checkpoint_file(Path('.'))}"
    ]
    assert result["resumed_from_epoch"] == epoch
    timeless = ("train_time_s", "eval_time_s")
    assert [{k: v for k, v in r.items() if k not in timeless} for r in result["runs"]] == [
        {k: v for k, v in r.items() if k not in timeless} for r in clean["runs"]
    ]
    log = [json.loads(line) for line in (tmp_path / paths.train_log(JOB)).read_text().splitlines()]
    assert [(e["run"], e["kind"], e.get("loss")) for e in log] == [
        (e["run"], e["kind"], e.get("loss")) for e in clean_log
    ]
