"""Describe the machine and software a result was measured on, recorded with every result."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from typing import Any

from deeppose.measure.machine import first_cpu

PACKAGES = ("numpy", "torch", "chainer", "cupy", "scipy")


def cpu_model() -> str:
    """The first processor's model name (deeppose.measure.machine.first_cpu), else what Python knows."""
    return first_cpu().get("model name") or platform.processor() or platform.machine()


def git_commit(root: str | os.PathLike[str] = ".") -> str:
    """The project's commit, with `+dirty` when tracked files differ from it; 'unknown' outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def describe() -> dict[str, Any]:
    """Machine, OS, Python, package versions and project commit (framework-specific details,
    threads and GPU come from the backend)."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "commit": git_commit(),
        "load_average_1m": os.getloadavg()[0],  # > 0.5 before a measurement: something else ran
        "env": {
            k: os.environ[k]
            for k in sorted(os.environ)
            if k.endswith("_NUM_THREADS") or k.startswith("OPENBLAS_")
        },
    }
