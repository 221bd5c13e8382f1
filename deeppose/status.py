"""`python -m deeppose status`: which results no longer match the code and parameters.

    python -m deeppose status

Runs nothing. Every result records the content hash of the code it ran and the parameter values it
read (deeppose.provenance); a result is stale when the tree would now record something else. Missing
and unreadable results are listed too, each with its reason.
"""

from __future__ import annotations

import argparse

from deeppose import paths, provenance
from deeppose.config import load_params
from deeppose.report.load import load_results
from deeppose.results import RecordError, ReportSummary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options beyond --params."""


def run(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    results = load_results(params)
    lines = [f"stale {path}: {'; '.join(reasons)}" for path, reasons in sorted(results.stale.items())]
    lines += [f"missing {loaded.path}: {loaded.missing}" for loaded in results.everything() if not loaded.ok]
    try:
        summary = ReportSummary.read(paths.report_summary())
        reasons = provenance.stale_reasons(summary.provenance, params)
        if summary.inputs != results.input_hashes():
            reasons.append("the results it was built from changed")
        elif results.stale:
            reasons.append("results it was built from are stale")
        lines += [f"stale {paths.report_summary()}: {'; '.join(reasons)}"] if reasons else []
    except RecordError as error:
        lines.append(f"missing {paths.report_summary()}: {error}")
    print("\n".join(lines) if lines else f"every result of {params.path} is current")
