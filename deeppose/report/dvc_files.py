"""The report's two small files for DVC: headline metrics and the overlaid learning curves.

`dvc metrics show` prints one column per number of every metrics file, and `dvc metrics diff` one
line per number that changed, so the metrics are a handful of flat headline numbers rather than
summary.json (hundreds of numbers) or each run's metrics.json (its environment record and
statistics). `dvc plots diff` draws one file's columns over each other: one column per training run.

    reports/headlines.json      {"cpu_chainer_x_pytorch": 1.64, "cpu_pck_pytorch": 0.6, ...}
    reports/learning_curves.csv iteration,pytorch/autograd/cpu,chainer/autograd/cpu,...
"""

from __future__ import annotations

import csv
import io
from typing import Any

from deeppose.config import Params
from deeppose.report.analysis import REFERENCE
from deeppose.report.load import Results

CURVE_X = "iteration"


def headlines(summary: dict[str, Any]) -> dict[str, float]:
    """Per device: each framework's training time per iteration over PyTorch's, PyTorch's explicit
    over autograd training time (the study's two ratios) and each framework's test PCK@0.2, all with
    autograd losses; numbers the report could not compute are left out."""
    found: dict[str, float] = {}
    for device, figures in sorted(summary.items()):
        if not isinstance(figures, dict):
            continue
        for key, value in sorted(figures.items()):
            if key.endswith(f"_over_{REFERENCE}_per_iteration") and "autograd" in value:
                found[f"{device}_{key.split('_over_')[0]}_x_{REFERENCE}"] = value["autograd"]
        if REFERENCE in figures.get("explicit_over_autograd_train_time", {}):
            found[f"{device}_explicit_x_autograd"] = figures["explicit_over_autograd_train_time"][REFERENCE]
        for framework, losses in sorted(figures.get("test", {}).items()):
            if "pck" in losses.get("autograd", {}):
                found[f"{device}_pck_{framework}"] = losses["autograd"]["pck"]
    return found


def curve_columns(params: Params) -> list[str]:
    """The y columns of learning_curves.csv: every training run of the grid, as results/ names it."""
    return [job.label for job in params.train_jobs()]


def learning_curves(results: Results) -> str:
    """Training loss by iteration, one column per training run of the grid (empty where a run has
    no such iteration or no result)."""
    jobs = results.params.train_jobs()
    losses = {job: {line["iteration"]: line["loss"] for line in results.train[job].iterations} for job in jobs}
    iterations = sorted({i for curve in losses.values() for i in curve})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([CURVE_X, *curve_columns(results.params)])
    for i in iterations:
        writer.writerow([i, *(f"{losses[job][i]:.6g}" if i in losses[job] else "" for job in jobs)])
    return out.getvalue()
