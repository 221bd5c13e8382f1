"""The resume contract of a training job, the same whoever starts it (the CLI, Snakemake, DVC).

A job resumes from `checkpoints/<framework>/<loss>/<device>/last.npz` only when all of these hold;
otherwise it starts fresh and says why in one line:

- the file is readable, with the model's weight names and shapes, the optimiser's state for them
  and finite values (a kill mid-write or a damaged disk gives a file that is none of these);
- it was written for the same parameters and prepared data (its fingerprint);
- it stops short of the last epoch of the job's last run (train.seeds runs one after another; a
  checkpoint at the last epoch of an earlier run resumes with the next run): a checkpoint of a
  finished job means the job is being run again on purpose (`snakemake --forceall`, `dvc repro
  --force`, a code change, a first `dvc repro` after Snakemake ran it), and then a fresh run is what
  was asked for;
- the log inside it (deeppose.checkpoint) covers exactly its runs and epochs, iteration by
  iteration, and its header holds a summary of every run it finished.

The declared outputs (log.jsonl, curve.csv, metrics.json) play no part: engines delete them
before a rerun, and a resumed run rewrites them from the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deeppose import checkpoint as ckpt
from deeppose.model import weight_shapes
from deeppose.records.results import RecordError
from deeppose.records.training import SeedRun

# What each optimiser keeps per weight, by the backends' neutral names (deeppose.backends).
OPTIMIZER_STATE = {"momentum_sgd": ("velocity",), "adam": ("m", "v")}


@dataclass(frozen=True)
class Decision:
    checkpoint: ckpt.Checkpoint | None  # None: start fresh
    note: str  # one line for the user; "" when there was nothing to resume


def expected_arrays(
    optimizer: str, n_joints: int
) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """Names and shapes of the weights and of the optimiser state a checkpoint must hold."""
    weights = weight_shapes(n_joints)
    state = {f"{name}.{key}": shape for name, shape in weights.items() for key in OPTIMIZER_STATE[optimizer]}
    if optimizer == "adam":
        state["step"] = ()
    return weights, state


def _array_problem(
    kind: str, arrays: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]]
) -> str | None:
    missing, extra = sorted(set(expected) - set(arrays)), sorted(set(arrays) - set(expected))
    if missing or extra:
        return f"its {kind} arrays differ from the model's (missing {missing[:3]}, unexpected {extra[:3]})"
    for name, shape in expected.items():
        array = arrays[name]
        if tuple(array.shape) != shape:
            return f"{kind} {name} has shape {tuple(array.shape)}, expected {shape}"
        if array.dtype.kind != "f" or not np.isfinite(array).all():
            return f"{kind} {name} holds non-finite or non-float values"
    return None


def _run_log_problem(log: list[dict], epoch: int, batches_per_epoch: int) -> str | None:
    """What is wrong with one run's log lines, which should cover epochs 1..epoch."""
    iterations = [entry for entry in log if entry.get("kind") == "iteration"]
    numbers = [entry.get("iteration") for entry in iterations]
    if numbers != list(range(1, epoch * batches_per_epoch + 1)):
        return (
            f"its log holds {len(iterations)} iterations numbered {numbers[:1]}..{numbers[-1:]}, "
            f"not the {epoch * batches_per_epoch} of its {epoch} epoch(s)"
        )
    epochs = {entry.get("epoch") for entry in log}
    if epochs != set(range(1, epoch + 1)):
        return f"its log covers epochs {sorted(epochs, key=str)}, not 1..{epoch}"
    return None


def _log_problem(
    log: list[dict], meta: dict, run: int, epoch: int, epochs: int, batches_per_epoch: int
) -> str | None:
    """Runs 0..run-1 whole, run `run` to `epoch`, and a summary of each run finished."""
    if {entry.get("run", 0) for entry in log} - set(range(run + 1)):
        return f"its log holds runs other than 0..{run}"
    for r in range(run + 1):
        lines = [entry for entry in log if entry.get("run", 0) == r]
        problem = _run_log_problem(lines, epochs if r < run else epoch, batches_per_epoch)
        if problem:
            return f"run {r}: {problem}" if run else problem
    finished = run + (epoch == epochs)
    summaries = meta.get("runs")
    if not isinstance(summaries, list) or len(summaries) != finished:
        return f"its header summarises {summaries!r:.40} runs, not the {finished} it finished"
    try:
        for index, summary in enumerate(summaries):
            SeedRun.from_dict(summary, f"its header's run {index}")
    except RecordError as error:
        return str(error)
    return None


def decide(
    folder: Path,
    identity: str,
    epochs: int,
    batches_per_epoch: int,
    optimizer: str,
    n_joints: int,
    runs: int = 1,
) -> Decision:
    """Whether to resume from the checkpoint in `folder` (see the module docstring); `runs`: the
    job's train.seeds."""
    path = folder / ckpt.FILE_NAME
    if not path.exists():
        return Decision(None, "")
    fresh = "; starting fresh"
    try:
        found = ckpt.read(path)
    except ckpt.DamagedCheckpoint as error:
        return Decision(None, f"{path} is damaged: {error}{fresh}")
    if found.meta.get("fingerprint") != identity:
        return Decision(None, f"{path} was written for other parameters or data{fresh}")
    run = found.meta.get("run", 0)
    if isinstance(run, bool) or not isinstance(run, int) or not 0 <= run < runs or found.epoch > epochs:
        return Decision(
            None, f"{path} is damaged: run {run!r}, epoch {found.epoch} lie outside the job{fresh}"
        )
    if run == runs - 1 and found.epoch == epochs:
        return Decision(
            None,
            f"{path} holds a finished run (epoch {found.epoch} of {epochs}): running the job again{fresh}",
        )
    weights, state = expected_arrays(optimizer, n_joints)
    problem = (
        _array_problem("weight", found.weights, weights)
        or _array_problem("optimizer", found.optimizer, state)
        or _log_problem(found.log, found.meta, run, found.epoch, epochs, batches_per_epoch)
    )
    if problem:
        return Decision(None, f"{path} is damaged: {problem}{fresh}")
    where = f" of run {run + 1} of {runs}" if runs > 1 else ""
    return Decision(found, f"resuming after epoch {found.epoch} of {epochs}{where} from {path}")
