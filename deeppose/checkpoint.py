"""Training checkpoints that hold only arrays: loading one never executes code.

A checkpoint is one `.npz` file (numpy arrays, read with allow_pickle=False) holding the neutral
weights (`weight/<name>`), the neutral optimiser state (`optimizer/<name>`), a JSON header
(`meta`) with the epoch reached, the training clocks and the fingerprint of everything the run
depends on, and the training log up to that epoch (`log`, JSON lines). The log travels inside the
checkpoint because a resumed run needs both and they must agree: workflow engines delete or keep
the declared log (results/train/.../log.jsonl) by their own rules, never together with the
checkpoint. `read` checks the file and says in one line what is wrong with a damaged one.
"""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deeppose.records.atomic import atomic_path

FILE_NAME = "last.npz"


class DamagedCheckpoint(Exception):
    """A checkpoint file that cannot be resumed from; the message says why, in one line."""


@dataclass(frozen=True)
class Checkpoint:
    epoch: int
    elapsed_s: float  # training clock at the epoch's end (evaluations and checkpoints excluded)
    eval_time_s: float  # time spent in evaluations and checkpoint writes so far
    weights: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray]
    meta: dict[str, Any]
    log: list[dict[str, Any]]  # every log entry of epochs 1..epoch


def fingerprint(parts: dict[str, Any]) -> str:
    """A stable hash of the JSON-serialisable things a run depends on."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _bytes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode(), dtype=np.uint8)


def save(folder: Path, checkpoint: Checkpoint) -> None:
    arrays = {f"weight/{k}": v for k, v in checkpoint.weights.items()}
    arrays.update({f"optimizer/{k}": v for k, v in checkpoint.optimizer.items()})
    meta = dict(
        checkpoint.meta,
        epoch=checkpoint.epoch,
        elapsed_s=checkpoint.elapsed_s,
        eval_time_s=checkpoint.eval_time_s,
    )
    arrays["meta"] = _bytes(json.dumps(meta, sort_keys=True))
    arrays["log"] = _bytes("".join(json.dumps(e, sort_keys=True) + "\n" for e in checkpoint.log))
    with atomic_path(folder / FILE_NAME) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def _number(meta: dict[str, Any], key: str) -> float:
    value = meta.get(key)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise DamagedCheckpoint(f"its header's {key} is {value!r}, not a finite number >= 0")
    return float(value)


def read(path: Path) -> Checkpoint:
    """The checkpoint at `path`; DamagedCheckpoint when it is unreadable or incomplete. Shapes are
    checked by the caller, who knows the model (deeppose.resume)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DamagedCheckpoint(f"not a readable npz file ({type(error).__name__}: {error})") from None
    for name in ("meta", "log"):
        if name not in arrays:
            raise DamagedCheckpoint(f"it lacks the {name!r} array (written by an older deeppose?)")
    try:
        meta = json.loads(arrays["meta"].tobytes().decode())
        log = [json.loads(line) for line in arrays["log"].tobytes().decode().splitlines()]
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DamagedCheckpoint(f"its header or log is not JSON ({error})") from None
    if not isinstance(meta, dict) or not all(isinstance(entry, dict) for entry in log):
        raise DamagedCheckpoint("its header or log holds something other than JSON objects")
    epoch = meta.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise DamagedCheckpoint(f"its header's epoch is {epoch!r}, not a positive integer")
    weights = {k[len("weight/") :]: v for k, v in arrays.items() if k.startswith("weight/")}
    optimizer = {k[len("optimizer/") :]: v for k, v in arrays.items() if k.startswith("optimizer/")}
    return Checkpoint(
        epoch, _number(meta, "elapsed_s"), _number(meta, "eval_time_s"), weights, optimizer, meta, log
    )
