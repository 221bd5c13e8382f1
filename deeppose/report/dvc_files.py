"""The report's two small files for DVC: flat headline metrics, each with `_low`, `_high` and, for a
comparison, `_verdict` (`dvc metrics diff` prints one line per number), and the learning curves, one
column per training run (`dvc plots diff` overlays one file's columns)."""

from __future__ import annotations

import csv
import io

from deeppose.compare_stats import round_to_interval
from deeppose.config import Params
from deeppose.grid import REFERENCE
from deeppose.report.analysis import Findings
from deeppose.report.load import Results
from deeppose.stats import Interval

CURVE_X = "iteration"


def _interval(key: str, interval: Interval | None, scale: float = 1.0) -> dict[str, float]:
    """`key`, `key_low` and `key_high` to the precision the interval supports; nothing without one."""
    if interval is None or interval.estimate is None or interval.half_width is None:
        return {}
    half = interval.half_width * scale
    return {
        f"{key}{suffix}": round_to_interval(value * scale, half).value
        for suffix, value in (("", interval.estimate), ("_low", interval.low), ("_high", interval.high))
    }


def headlines(findings: Findings) -> dict[str, float | str]:
    """Per device: the paired core ratios to PyTorch at the training batch and the largest, the loss
    alone's difference and its share of the core process, and PCK@0.2, each with its interval. No
    single-run training-time ratio: one run per arm measures the machine's drift as much as the code."""
    train_batch = int(findings.setup.params["train"]["batch_size"])
    found: dict[str, float | str] = {}
    for d in findings.devices:
        measured = {r.batch_size for r in d.ratios}
        batches = {train_batch} & measured | {max(measured, key=lambda b: b or 0, default=None)}
        for r in d.ratios:
            framework, _, loss = r.a.partition("/")
            if r.batch_size in batches and loss == "autograd" and r.b == f"{REFERENCE}/autograd":
                key = f"{d.device}_b{r.batch_size}_{framework}_x_{REFERENCE}"
                found |= _interval(key, r.ratio) | {f"{key}_verdict": r.verdict.value}
        for effect in d.loss_effects:
            if effect.c is not None:
                key = f"{d.device}_loss_alone_{effect.framework}_explicit_minus_autograd_us"
                found |= _interval(key, effect.c.difference, 1e6) | {f"{key}_verdict": effect.c.verdict.value}
            if effect.share is not None:
                key = f"{d.device}_loss_alone_{effect.framework}_share_of_core_pct"
                found |= _interval(key, effect.share, 100) | {f"{key}_verdict": effect.share_verdict.value}
        for run in d.training:
            if run.loss == "autograd" and "pck" in run.scores:
                found |= _interval(f"{d.device}_pck_{run.framework}", run.scores["pck"])
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
