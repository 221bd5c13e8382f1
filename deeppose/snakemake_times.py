"""What Snakemake compares, file times, made to say what the provenance says.

Snakemake sees a parameter edit through its metadata and anything else through file times. A
fresh clone has no metadata and arbitrary file times from git, so Snakemake would plan the whole
pipeline although every result matches this tree, its parameters and this machine (what
`python -m deeppose status` and DVC's hashes say), and it could not see a parameter edit at all.
Two remedies, both called by the Snakefile when it is read:
- each stage's parameter values live in a file rewritten only when they change, which its jobs
  depend on, so an edit reruns them by time alone;
- with no metadata yet and nothing stale, the outputs' times are set in the stages' order, each
  stage later than the ones it reads, with the fingerprint and parameter files earliest. Anything
  stale leaves every time as it is: Snakemake then reruns what is stale and what follows it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from deeppose import provenance
from deeppose.config import Params
from deeppose.grid import Group, Job
from deeppose.records import paths
from deeppose.records.atomic import holds, json_text, write_text
from deeppose.stages import STAGES, Stage
from deeppose.status import problems

SNAKEMAKE_METADATA = Path(".snakemake") / "metadata"
ADOPTED_AT = 1_000_000_000.0  # 2001: older than any file a later edit writes


def write_params_files(params: Params) -> list[Path]:
    """Bring each stage's parameter file up to date, rewriting only those whose values changed;
    returns the files rewritten."""
    written = []
    for stage in STAGES.values():
        path = paths.snakemake_params(stage.name)
        text = json_text(provenance.params_read(stage, params))
        if not holds(path, text):
            write_text(path, text)
            written.append(path)
    return written


def stage_jobs(stage: Stage, params: Params) -> list[Job | Group | None]:
    """Every job of `stage` under `params`."""
    if stage.jobs == "train":
        return list(params.train_jobs())
    if stage.grouped:
        grid = params.grid
        return [
            stage.group(grid, device, int(exp))
            for device in grid.devices
            for exp in params.value(stage.batch_exponents_key)
        ]
    return [None]


def _tree(path: Path) -> Iterator[Path]:
    """`path` and, for a folder, everything under it."""
    yield path
    if path.is_dir():
        yield from path.rglob("*")


def _set_time(path: Path, seconds: float) -> None:
    for item in _tree(path):
        os.utime(item, (seconds, seconds), follow_symlinks=False)


def adopt(params: Params) -> bool:
    """Order the outputs' times by stage when Snakemake has no metadata and nothing is stale;
    returns whether it did."""
    if SNAKEMAKE_METADATA.exists() or problems(params):
        return False
    for name in provenance.fingerprint_jobs(params):
        _set_time(paths.fingerprint(name), ADOPTED_AT)
    for rank, stage in enumerate(STAGES.values(), start=1):
        _set_time(paths.snakemake_params(stage.name), ADOPTED_AT)
        for job in stage_jobs(stage, params):
            for output in stage.outputs(job).values():
                if output.exists():
                    _set_time(output, ADOPTED_AT + rank)
    return True
