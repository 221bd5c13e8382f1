"""The stage table: every pipeline stage described once.

A stage's command, the parameter keys it reads, the jobs it expands to, its inputs and outputs and
the code it runs are all derived from here: the CLI's subcommands, the Snakemake rules
(workflow/rules/*.smk), the generated dvc.yaml (`python -m deeppose dvc-yaml`) and the provenance
recorded in every result. Editing a module a stage imports reruns exactly that stage's jobs in both
engines; editing one backend reruns only that framework's jobs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deeppose.grid import FRAMEWORK_MODULES, GridSection, Group, Job
from deeppose.records import paths


@dataclass(frozen=True)
class Stage:
    name: str  # the `python -m deeppose <name>` subcommand and the rule/stage name
    module: str  # the module whose add_arguments/run implement it
    help: str
    params: tuple[str, ...]  # dotted params.yaml keys it reads; editing one reruns it
    # None (one job), "train" (one per grid cell), "group" (one per device and batch size: every
    # framework x loss mode measured together, deeppose.timing) or "breakdown" (a group of the
    # frameworks that have a per-layer breakdown, at breakdown.batch_exponents, deeppose.breakdown)
    jobs: str | None = None
    inputs: tuple[Path, ...] = ()  # what it reads that other stages write
    reads_results: bool = False  # reads every result of the grid (the report)
    extra_modules: tuple[str, ...] = ()  # modules it runs that no import statement names
    measures: bool = False  # takes every core: never beside another job
    outputs: Callable[[Any], dict[str, Path]] = field(default=lambda job: {})
    directories: tuple[str, ...] = ()  # output names that are folders

    @property
    def batch_exponents_key(self) -> str | None:
        """The params.yaml list its jobs' batch exponents come from."""
        return {"group": "grid.batch_exponents", "breakdown": "breakdown.batch_exponents"}.get(
            self.jobs or ""
        )

    @property
    def grouped(self) -> bool:
        """Its jobs are groups (one per device and batch size), not grid cells."""
        return self.jobs in ("group", "breakdown")

    def group(self, grid: GridSection, device: str, batch_exp: int) -> Group:
        """The group one job of a grouped stage measures."""
        return Group.of(grid, device, batch_exp, breakdown=self.jobs == "breakdown")


def _group_outputs(result: Callable[[Job], Path]) -> Callable[[Group], dict[str, Path]]:
    """A grouped stage's outputs: one result per cell of the group, named framework_loss."""
    return lambda group: {f"{job.framework}_{job.loss}": result(job) for job in group.jobs()}


def _train_outputs(job: Job | None) -> dict[str, Path]:
    assert job is not None
    return {"log": paths.train_log(job), "curve": paths.train_curve(job), "metrics": paths.train_metrics(job)}


STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        Stage(
            "synthesize",
            "deeppose.data.synthetic",
            "write the embedded synthetic dataset in LSP format",
            params=("seed", "data.synthetic"),
            outputs=lambda job: {"data": paths.SYNTHETIC},
            directories=("data",),
        ),
        Stage(
            "prepare",
            "deeppose.data.prepare",
            "crop and normalise the sources into train/test arrays",
            params=("seed", "data"),
            inputs=(paths.SYNTHETIC,),
            outputs=lambda job: {
                "data": paths.PREPARED,
                "summary": paths.prepared_summary(),
                "preview": paths.preview_image(),
            },
            directories=("data",),
        ),
        Stage(
            "train",
            "deeppose.train",
            "train one framework x loss mode x device",
            params=("seed", "model", "train", "allocator"),
            jobs="train",
            inputs=(paths.PREPARED,),
            measures=True,
            outputs=_train_outputs,
        ),
        Stage(
            "time",
            "deeppose.timing",
            "time the core process of every framework x loss mode in interleaved blocks",
            params=(
                "seed",
                "model",
                "timing",
                "train.optimizer",
                "train.lr",
                "train.momentum",
                "grid.frameworks",
                "grid.loss_modes",
                "allocator",
            ),
            jobs="group",
            inputs=(paths.PREPARED,),
            extra_modules=("deeppose.timing_block",),
            measures=True,
            outputs=_group_outputs(paths.timing_result),
        ),
        Stage(
            "peak",
            "deeppose.peak",
            "measure the machine's fp32 matrix-multiply throughput",
            params=("seed", "peak", "timing.threads", "allocator"),
            measures=True,
            outputs=lambda job: {"result": paths.matmul_peak()},
        ),
        Stage(
            "breakdown",
            "deeppose.breakdown",
            "time each layer's forward and backward in interleaved fresh processes",
            params=(
                "seed",
                "model",
                "breakdown",
                "timing.threads",
                "timing.warmup",
                "grid.frameworks",
                "grid.loss_modes",
                "allocator",
            ),
            jobs="breakdown",
            inputs=(paths.PREPARED, paths.matmul_peak()),
            extra_modules=("deeppose.peak", "deeppose.breakdown_process"),
            measures=True,
            outputs=_group_outputs(paths.breakdown_result),
        ),
        Stage(
            "report",
            "deeppose.report",
            "write reports/report.md, its figures and the tidy table reports/cells.csv",
            params=("grid", "breakdown.batch_exponents"),
            reads_results=True,
            outputs=lambda job: {
                "markdown": paths.report_markdown(),
                "summary": paths.report_summary(),
                "headlines": paths.report_headlines(),
                "curves": paths.report_curves(),
                "cells": paths.report_cells(),
                "figures": paths.report_figures(),
            },
            directories=("figures",),
        ),
    )
}


def backend_module(job: Job | Group | None) -> tuple[str, ...]:
    """The backend modules a job runs: its framework's, every framework's of a timing group,
    none for stages without a framework."""
    if isinstance(job, Group):
        return tuple(FRAMEWORK_MODULES[f] for f in job.frameworks if f in FRAMEWORK_MODULES)
    return (
        (FRAMEWORK_MODULES[job.framework],) if job is not None and job.framework in FRAMEWORK_MODULES else ()
    )


def job_label(stage: Stage, args: argparse.Namespace) -> str | None:
    """The label of the job a parsed command line of `stage` runs; None for a one-job stage."""
    if stage.jobs is None:
        return None
    if stage.grouped:
        return Group(args.device, args.batch_exp, (), ()).label
    return Job(args.framework, args.loss, args.device, getattr(args, "batch_exp", None)).label


def command(stage: Stage, params_file: str, job: Job | Group | None = None) -> str:
    """The stage's command line; `job` may hold engine placeholders instead of values."""
    parts = ["python -m deeppose", stage.name, "--params", params_file]
    if isinstance(job, Group):
        parts += ["--device", job.device, "--batch-exp", str(job.batch_exp)]
    elif job is not None:
        parts += ["--framework", job.framework, "--loss", job.loss, "--device", job.device]
        if job.batch_exp is not None:
            parts += ["--batch-exp", str(job.batch_exp)]
    return " ".join(parts)
