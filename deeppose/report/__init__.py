"""`python -m deeppose report`: read every result of the grid, compute the findings, write the report.

    python -m deeppose report                  # reports/report.md, figures/*.png, summary.json, cells.csv
    python -m deeppose report --params params-study.yaml
    python -m deeppose report --baseline main  # adds "Changes since main" (deeppose.compare)

Compute first, render second: `analysis.analyse` turns the records into one frozen `Findings`
(summary.json is that value serialised); `sections` and `figures` are functions of it. All outputs
are one set, swapped in together (deeppose.records.output_set): the same results give the same bytes.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from deeppose import compare, provenance
from deeppose.config import Params, load_params
from deeppose.errors import DeepPoseError
from deeppose.measure import machine
from deeppose.records import atomic, output_set, paths
from deeppose.records.summary import ReportSummary
from deeppose.report import cells, dvc_files, figures, plot_style, sections
from deeppose.report.analysis import Findings, analyse, to_json
from deeppose.report.load import Results, load_results
from deeppose.report.training import curves

TITLE = "DeepPose across frameworks: training time and accuracy, measured again"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Inputs and outputs come from deeppose.records.paths; --baseline names what to compare them with."""
    parser.add_argument(
        "--baseline",
        metavar="REV",
        default=None,
        help="add a section on what changed since this git revision (or results folder)",
    )


def render(results: Results, baseline: str | None = None) -> tuple[Findings, dict[str, bytes], str]:
    """The findings, the figures (file name -> PNG) and report.md."""
    changes = None
    if baseline:
        found = compare.compare_sides(
            compare.load_side(baseline, "--baseline"), compare.read_side(paths.RESULTS, "working tree")
        )
        changes = f"{baseline}\n{compare.render_markdown(found)}"
    findings = analyse(results)
    pngs = {file: plot_style.png(draw) for file, draw in figures.plan(findings, curves(results)).items()}
    return findings, pngs, sections.document(findings, set(pngs), TITLE, changes)


def _one_machine(results: Results) -> None:
    """Refuse to combine unlike machines: a ratio of a Zen 3's time over a Zen 4's measures the machines."""
    machines = results.machines()
    if len(machines) > 1:
        lines = [f"the results were measured on {len(machines)} machines; a report combines one machine's:"]
        for fingerprint, files in sorted(machines.items(), key=lambda item: -len(item[1])):
            more = f" and {len(files) - 2} more" if len(files) > 2 else ""
            shown = ", ".join(str(path) for path in files[:2]) + more
            lines.append(f"{machine.describe(json.loads(fingerprint))}: {shown}")
        lines.append(
            "rerun the measurements of the other machines here (`python -m deeppose status` lists them)"
        )
        raise DeepPoseError("\n".join(lines))


def build(params: Params, baseline: str | None = None) -> Findings:
    """Write every output as one set; one report run per output folder at a time."""
    output_set.require_root(paths.RESULTS, params.path)
    with output_set.folder_lock(paths.REPORTS, "`python -m deeppose report`"):
        results = load_results(params)
        _one_machine(results)
        findings, pngs, text = render(results, baseline)
        summary = ReportSummary.create(
            headlines=to_json(findings),
            stale=results.stale,
            inputs=results.input_hashes(),
            provenance=provenance.record("report", params),
        )
        outputs = {
            **{paths.report_figures() / file: data for file, data in pngs.items()},
            paths.report_curves(): dvc_files.learning_curves(results).encode(),
            paths.report_cells(): cells.csv_text(cells.frame(results)[0]).encode(),
            paths.report_headlines(): atomic.json_text(dvc_files.headlines(findings)).encode(),
            paths.report_markdown(): text.encode(),
            paths.report_summary(): (compact_json(summary.to_dict()) + "\n").encode(),  # last: see status
        }
        output_set.replace_set(
            paths.REPORTS,
            {path.relative_to(paths.REPORTS).as_posix(): data for path, data in outputs.items()},
            folders=(paths.report_figures().name,),  # replaced whole: no figure of older findings lingers
        )
    return findings


def compact_json(value: Any, indent: str = "") -> str:
    """JSON with sorted keys, one line per value where it fits in 120 characters: a change is one line."""
    flat = json.dumps(value, sort_keys=True, allow_nan=False, ensure_ascii=False)
    if not isinstance(value, (dict, list)) or not value or len(indent) + len(flat) <= 120:
        return flat
    inner = indent + " "
    if isinstance(value, dict):
        items = [
            f"{inner}{json.dumps(k, ensure_ascii=False)}: {compact_json(v, inner)}"
            for k, v in sorted(value.items())
        ]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    return "[\n" + ",\n".join(f"{inner}{compact_json(v, inner)}" for v in value) + f"\n{indent}]"


def run(args: argparse.Namespace) -> None:
    build(load_params(args.params), args.baseline)
    print(f"deeppose report: wrote {paths.report_markdown()}, {paths.report_summary()} and the figures")
