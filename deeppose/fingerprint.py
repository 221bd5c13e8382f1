"""`python -m deeppose fingerprint`: bring the engines' fingerprint files up to date.

    python -m deeppose fingerprint && dvc status   # DVC then names exactly the stale stages

Snakemake refreshes them whenever it reads the Snakefile, and `dvc repro` runs this as its first
stage whenever the package or the lock file changed; `dvc status` runs nothing, and DVC cannot see
the machine, so it sees which stages a code edit reruns, or a new machine, only after this command.
"""

from __future__ import annotations

import argparse

from deeppose import provenance
from deeppose.config import load_params


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options beyond --params."""


def run(args: argparse.Namespace) -> None:
    written = provenance.write_fingerprints(load_params(args.params))
    print("\n".join(f"updated {path}" for path in written) if written else "every fingerprint is current")
