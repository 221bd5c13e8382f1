"""The report's two small files for DVC: headline metrics and the overlaid learning curves.

`dvc metrics show` prints one column per number and `dvc metrics diff` one line per change, so the
metrics are a handful of flat numbers rather than summary.json; `dvc plots diff` overlays one file's
columns, so the curves are one column per training run.

    reports/headlines.json      {"cpu_chainer_x_pytorch": 4.06, "cpu_pck_pytorch": 0.151, ...}
    reports/learning_curves.csv iteration,pytorch/autograd/cpu,chainer/autograd/cpu,...
"""

from __future__ import annotations

import csv
import io

from deeppose.config import Params
from deeppose.grid import REFERENCE
from deeppose.report.analysis import Findings
from deeppose.report.load import Results

CURVE_X = "iteration"


def headlines(findings: Findings) -> dict[str, float]:
    """Per device, with autograd losses: each framework's training time per iteration over PyTorch's,
    PyTorch's explicit over autograd training time, and each framework's test PCK@0.2."""
    found = {}
    for row in findings.study:
        if row.basis == "training" and row.ours is not None:
            key = (
                f"{row.framework}_x_{REFERENCE}"
                if row.quantity == "per_iteration"
                else "explicit_x_autograd"
                if row.framework == REFERENCE
                else None
            )
            found.update({f"{row.device}_{key}": float(f"{row.ours:.6g}")} if key else {})
    for d in findings.devices:
        found.update(
            {
                f"{d.device}_pck_{r.framework}": float(f"{r.scores['pck'].estimate:.6g}")
                for r in d.training
                if r.loss == "autograd" and "pck" in r.scores
            }
        )
    return dict(sorted(found.items()))


def curve_columns(params: Params) -> list[str]:
    """The y columns of learning_curves.csv: every training run of the grid, as results/ names it."""
    return [job.label for job in params.train_jobs()]


def learning_curves(results: Results) -> str:
    """Training loss by iteration, one column per training run of the grid (empty where it has none)."""
    jobs = results.params.train_jobs()
    losses = {
        job: {line["iteration"]: line["loss"] for line in results.train[job].iterations} for job in jobs
    }
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([CURVE_X, *curve_columns(results.params)])
    for i in sorted({i for curve in losses.values() for i in curve}):
        writer.writerow([i, *(f"{losses[job][i]:.6g}" if i in losses[job] else "" for job in jobs)])
    return out.getvalue()
