"""Training checkpoints that hold only arrays: loading one never executes code.

A checkpoint is one `.npz` file (numpy arrays, read with allow_pickle=False) holding the neutral
weights (`weight/<name>`), the neutral optimiser state (`optimizer/<name>`) and a JSON header
(`meta`) with the epoch reached, the training clock and the fingerprint of everything the run
depends on. A run resumes only from a checkpoint with its own fingerprint, so a checkpoint left
by other parameters or other data is ignored, never half-trusted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deeppose.atomic import atomic_path

FILE_NAME = "last.npz"


@dataclass(frozen=True)
class Checkpoint:
    epoch: int
    elapsed_s: float
    weights: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray]
    meta: dict[str, Any]


def fingerprint(parts: dict[str, Any]) -> str:
    """A stable hash of the JSON-serialisable things a run depends on."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def save(folder: Path, checkpoint: Checkpoint) -> None:
    arrays = {f"weight/{k}": v for k, v in checkpoint.weights.items()}
    arrays.update({f"optimizer/{k}": v for k, v in checkpoint.optimizer.items()})
    meta = dict(checkpoint.meta, epoch=checkpoint.epoch, elapsed_s=checkpoint.elapsed_s)
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    with atomic_path(folder / FILE_NAME) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def load(folder: Path, expected_fingerprint: str) -> Checkpoint | None:
    """The checkpoint in `folder` if it exists, is readable and matches the fingerprint."""
    path = folder / FILE_NAME
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(data["meta"].tobytes().decode())
            weights = {k[len("weight/"):]: data[k] for k in data.files if k.startswith("weight/")}
            optimizer = {k[len("optimizer/"):]: data[k] for k in data.files if k.startswith("optimizer/")}
    except (OSError, ValueError, KeyError):
        return None
    if meta.get("fingerprint") != expected_fingerprint:
        return None
    return Checkpoint(int(meta["epoch"]), float(meta["elapsed_s"]), weights, optimizer, meta)
