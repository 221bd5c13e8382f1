"""The tiny training project the tests train in: a prepared set of 8 + 4 random images, momentum
SGD, batch 4, 2 epochs, one thread, and AlexNet with narrow fc6 and fc7 (tests/narrow_network.py)
wherever the test chooses the network (in its own process, or `train_command(..., narrow=True)`).

    make_project(folder, n_train=8, **train_changes)  # writes prepared/ and params.yaml
    train_all(folder)                                  # every JOB trained once: a Trained
    train_all_once(root)                               # in root/project, shared by a run's processes

conftest.py's session fixture `trained` trains once per test run (once for all of pytest-xdist's
workers); every test that only reads a finished run of this project (its curves, metrics or log)
takes it instead of training again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import multiprocessing
import pickle
import shutil
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import yaml
from narrow_network import narrow_layers
from tiny_datasets import write_tiny_prepared

from deeppose.config import load_params
from deeppose.grid import Job
from deeppose.records import paths
from deeppose.train import train

ROOT = Path(__file__).resolve().parent.parent
# MomentumSGD: its update is linear in the gradient, so float32 differences between frameworks
# stay as small as they are (Adam divides them by the gradients' own scale).
TINY_TRAIN = {
    "optimizer": "momentum_sgd",
    "batch_size": 4,
    "epochs": 2,
    "eval_every": 1,
    "threads": 1,
    "lr": 0.001,
}
JOBS = [
    Job(framework, mode, "cpu") for framework in ("pytorch", "chainer") for mode in ("autograd", "explicit")
]
REFERENCE = Job("pytorch", "autograd", "cpu")  # the run the other frameworks' curves are compared with
# `python tests/narrow_cli.py`: the command line on the narrow network.
NARROW_CLI = Path(__file__).with_name("narrow_cli.py")
T = TypeVar("T")


def make_project(folder: Path, n_train: int = 8, **train_changes) -> Path:
    """A project folder with a tiny prepared set and params.yaml; returns the params path."""
    folder.mkdir(parents=True, exist_ok=True)
    write_tiny_prepared(folder / paths.PREPARED, n_train=n_train, n_test=4, seed=0)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"].update(TINY_TRAIN, **train_changes)
    raw["model"]["dropout"] = 0.0
    (folder / "params.yaml").write_text(yaml.safe_dump(raw))
    return folder / "params.yaml"


def losses(job: Job) -> np.ndarray:
    """The iteration losses of `job`'s training log, in the working directory."""
    lines = [json.loads(line) for line in paths.train_log(job).read_text().splitlines()]
    return np.array([e["loss"] for e in lines if e["kind"] == "iteration"])


def checkpoint_digests(file: Path, prefixes: tuple[str, ...] = ("weight/",)) -> dict[str, tuple]:
    """(dtype, shape, SHA-256) of every array of a checkpoint whose name starts with one of
    `prefixes`: two runs' checkpoints compared without holding both (AlexNet's weights and Adam's
    moments are 0.7 GB a checkpoint)."""
    with np.load(file, allow_pickle=False) as data:
        arrays = ((name, data[name]) for name in data.files if name.startswith(prefixes))
        return {name: (str(a.dtype), a.shape, hashlib.sha256(a.tobytes()).hexdigest()) for name, a in arrays}


@dataclass(frozen=True)
class Trained:
    params: Path
    results: dict[Job, dict]
    curves: dict[Job, np.ndarray]


def train_all(folder: Path) -> Trained:
    """The default tiny project in `folder`, every JOB trained once on the narrow network, in a
    process of its own: the memory both frameworks' training takes (and their allocators keep) goes
    with it instead of staying in the test process for the rest of the session. No checkpoint is
    kept: each is removed once its job ends."""
    return in_own_process(_train_all_here, folder)


def in_own_process(function: Callable[..., T], *args, **kwargs) -> T:
    """function(*args, **kwargs) in a fresh process (spawned: a fork of the test process would inherit its
    memory), in this working directory; what it raises is raised here."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        return pool.submit(function, *args, **kwargs).result()


def train_all_once(root: Path) -> Trained:
    """train_all(root / "project") in the first process that asks; every later one, in this or
    another process of the same test run (pytest-xdist's workers), waits for it and reads its
    Trained (pickled beside the project)."""
    root.mkdir(parents=True, exist_ok=True)
    record = root / "trained.pickle"
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or its process dies
        if not record.exists():
            record.write_bytes(pickle.dumps(train_all(root / "project")))
        return pickle.loads(record.read_bytes())


def _train_all_here(folder: Path) -> Trained:
    params = make_project(folder)
    results, curves = {}, {}
    with pytest.MonkeyPatch.context() as patch:
        narrow_layers(patch)
        patch.chdir(folder)
        for job in JOBS:
            results[job] = train(load_params(params), job, progress=False)
            curves[job] = losses(job)
            shutil.rmtree(paths.checkpoint_dir(job))
    return Trained(params, results, curves)


def train_command(framework: str, python: str = sys.executable, narrow: bool = False) -> list[str]:
    """The command line of one framework's autograd training job on cpu (on the narrow network if
    asked: tests/narrow_cli.py)."""
    return [
        python,
        *([str(NARROW_CLI)] if narrow else ["-m", "deeppose"]),
        "train",
        "--framework",
        framework,
        "--loss",
        "autograd",
        "--device",
        "cpu",
    ]
