"""Every artifact path of the pipeline, built in one place.

Paths are relative to the project root (the working directory of every stage, under both
Snakemake and DVC). Nested folders per grid cell (`results/train/<framework>/<loss>/<device>/`)
keep the workflow engines' wildcards unambiguous.
"""

from __future__ import annotations

from pathlib import Path

from deeppose.grid import Job

DATA = Path("data")
SYNTHETIC = DATA / "synthetic"  # the embedded dataset, in LSP's on-disk format
PREPARED = DATA / "prepared"  # train/test arrays + summary.json (in git, as data/synthetic)
RESULTS = Path("results")
REPORTS = Path("reports")


def prepared_summary() -> Path:
    """Counts, dropped samples and the content hash of the prepared data (committed to git)."""
    return RESULTS / "data" / "prepare.json"


def preview_image() -> Path:
    """A few prepared samples with their joints drawn (written by prepare, not by report)."""
    return REPORTS / "data" / "prepared_samples.png"


def train_dir(job: Job) -> Path:
    return RESULTS / "train" / job.framework / job.loss / job.device


def train_log(job: Job) -> Path:
    """One JSON object per line: every iteration and every evaluation."""
    return train_dir(job) / "log.jsonl"


def train_curve(job: Job) -> Path:
    """The learning curve as CSV (iteration, epoch, elapsed_s, loss), for `dvc plots`."""
    return train_dir(job) / "curve.csv"


def train_metrics(job: Job) -> Path:
    return train_dir(job) / "metrics.json"


def checkpoint_dir(job: Job) -> Path:
    """Model + optimiser state at epoch ends: resume state, not a result, so outside git and
    declared to neither engine (both delete a job's declared outputs before rerunning it), so that
    a rerun after an interruption finds it and resumes."""
    return Path("checkpoints") / job.framework / job.loss / job.device


def timing_result(job: Job) -> Path:
    return RESULTS / "time" / job.framework / job.loss / job.device / f"b{job.batch_exp}.json"


def breakdown_result(job: Job) -> Path:
    return RESULTS / "breakdown" / job.framework / job.loss / job.device / f"b{job.batch_exp}.json"


def matmul_peak() -> Path:
    """The machine's measured fp32 matrix-multiply throughput, the roofline's ceiling."""
    return RESULTS / "machine" / "matmul_peak.json"


def fingerprint(name: str) -> Path:
    """A stage's (or one framework's jobs of a stage's) code and machine fingerprint, which both
    engines depend on instead of the code files (deeppose.provenance). Not under results/, which the
    report reads whole: a measuring stage's fingerprint is not the report's input."""
    return Path("workflow") / "fingerprints" / f"{name}.json"


def snakemake_params(stage: str) -> Path:
    """The parameter values a stage reads, as a file whose time tells Snakemake of an edit where it
    has no metadata of its own (deeppose.snakemake_times); Snakemake's state, not in git."""
    return Path(".snakemake") / "deeppose-params" / f"{stage}.json"


def stage_cost(stage: str, job_label: str | None) -> Path:
    """The wall time, CPU time and memory of one job of a stage (a `StageCost`)."""
    return RESULTS / "cost" / stage / f"{job_label or stage}.json"


def report_markdown() -> Path:
    return REPORTS / "report.md"


def report_figures() -> Path:
    return REPORTS / "figures"


def report_summary() -> Path:
    return REPORTS / "summary.json"


def report_headlines() -> Path:
    """A few headline numbers in one flat file: the pipeline's DVC metrics (`dvc metrics diff`)."""
    return REPORTS / "headlines.json"


def report_curves() -> Path:
    """Every training run's loss by iteration, one column per run: the overlaid plot of `dvc plots`."""
    return REPORTS / "learning_curves.csv"


def report_cells() -> Path:
    """Every timed run of every timing cell, one row each (deeppose.report.cells): the tidy table."""
    return REPORTS / "cells.csv"
