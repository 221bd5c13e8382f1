"""`python -m deeppose report`: read every result of the grid and write the report.

    python -m deeppose report                          # reports/report.md, figures/*.png, summary.json
    python -m deeppose report --params params-study.yaml
    python -m deeppose report --baseline main          # adds "Changes since main" (deeppose.compare)

The report follows the study: set-up, effect of automatic differentiation, impact of the network
implementation, its per-layer breakdown, accuracy, comparison with the study's published figures, and a summary whose
conclusions are written by code from the numbers. Missing or partial results never stop it: a job
without a result is shown as not run, with the reason. A non-finite number in a result does stop
it, in one line naming the file and field, before any file is written; report.md, summary.json and
the figures change together. Same results, same bytes (figures too).
It imports no deep-learning framework. Beside them it writes the two small files DVC reads
(`deeppose.report.dvc_files`): headlines.json (metrics) and learning_curves.csv (plots).

Sections are listed in `deeppose.report.sections.SECTIONS`; see `deeppose.report.markdown` for how
to add one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deeppose import atomic, compare, paths, provenance
from deeppose.config import Params, load_params
from deeppose.report import dvc_files
from deeppose.report.load import Results, load_results
from deeppose.report.markdown import Context, Section, render_document
from deeppose.report.sections import SECTIONS
from deeppose.results import ReportSummary

TITLE = "DeepPose across frameworks: why does PyTorch train faster than Chainer?"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Inputs and outputs come from deeppose.paths; --baseline names what to compare them with."""
    parser.add_argument("--baseline", metavar="REV", default=None,
                        help="add a section on what changed since this git revision (or results folder)")


def _intro(ctx: Context) -> str:
    results = ctx.results
    train_ok = sum(run.ok for run in results.train.values())
    timing_ok = sum(job in ctx.analysis.timing for job in results.timing)
    breakdown_ok = sum(loaded.ok for loaded in results.breakdown.values())
    return (
        "A re-run of the 2017 comparison of PyTorch and Chainer training DeepPose (an AlexNet that "
        "regresses 14 joints), with one loss definition, identical initial weights and batch order in "
        "every framework, and synchronised timing that excludes data fetching. Written by "
        f"`python -m deeppose report` from `{results.params.path.as_posix()}` and the results under "
        f"`results/`: {train_ok} of {len(results.train)} training jobs, {timing_ok} of "
        f"{len(results.timing)} timing jobs and {breakdown_ok} of {len(results.breakdown)} per-layer "
        "breakdown jobs have results. Every conclusion is generated from the numbers "
        "by the report's code; the Summary at the end collects them."
    )


def _staleness(results: Results) -> str:
    """A warning, above everything else, for every result that the current tree would not produce."""
    stale = results.stale
    if not stale:
        return ""
    lines = [
        f"> **{len(stale)} result(s) below are stale**: they were produced by other code or parameters than "
        "this tree's, so their numbers may not describe it. Rerun the pipeline (`make run`) to refresh them; "
        "`python -m deeppose status` lists them.",
        ">",
    ]
    lines += [f"> - `{path}`: {'; '.join(reasons)}" for path, reasons in sorted(stale.items())]
    return "\n".join(lines) + "\n\n"


def changes_section(baseline: str) -> Section:
    """"Changes since REV": deeppose.compare of REV's results against the working tree's, read
    before anything is rendered so that a bad revision stops the report in one line."""
    changes = compare.compare_sides(compare.load_side(baseline, "--baseline"),
                                    compare.read_side(paths.RESULTS, "working tree"))
    return Section(f"Changes since {baseline}", lambda ctx: compare.render_markdown(changes))


def render(params: Params, draw: bool = True, baseline: str | None = None) -> tuple[Context, str]:
    """The report's Context and Markdown; draw=False computes everything but writes no figure;
    with `baseline`, a first section says what changed since it."""
    sections = ([changes_section(baseline)] if baseline else []) + SECTIONS
    ctx = Context(
        results=load_results(params),
        markdown_path=paths.report_markdown(),
        figures_dir=paths.report_figures(),
        draw=draw,
    )
    return ctx, render_document(ctx, TITLE, _staleness(ctx.results) + _intro(ctx), sections)


def build(params: Params, baseline: str | None = None) -> Context:
    """Write report.md, summary.json, the DVC files and the figures; returns the Context. Everything
    is computed and rendered first, so a result that stops the report (a NaN) leaves every file as
    it was."""
    ctx, text = render(params, baseline=baseline)
    summary = ReportSummary.create(
        headlines=ctx.summary, stale=ctx.results.stale, inputs=ctx.results.input_hashes(),
        provenance=provenance.record("report", params),
    )
    files = {
        paths.report_markdown(): text.encode(),
        paths.report_summary(): atomic.json_text(summary.to_dict()).encode(),
        paths.report_headlines(): atomic.json_text(dvc_files.headlines(ctx.summary)).encode(),
        paths.report_curves(): dvc_files.learning_curves(ctx.results).encode(),
        **ctx.pngs,
    }
    atomic.write_together(files)
    return ctx


def figure_paths(params: Params) -> list[Path]:
    """The figures the report writes for `params`' grid, whatever the results: the list of
    outputs for a workflow rule (reports/figures/ may hold other stages' figures too)."""
    return render(params, draw=False)[0].figures


def run(args: argparse.Namespace) -> None:
    ctx = build(load_params(args.params), args.baseline)
    figures = len(ctx.figures)
    print(f"deeppose report: wrote {paths.report_markdown()}, {paths.report_summary()} and {figures} figures")
