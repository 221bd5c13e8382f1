"""`python -m deeppose status`: which results no longer match the code and parameters.

    python -m deeppose status            # list them
    python -m deeppose status --check    # and exit 1 when anything is stale or missing (for CI)

Runs nothing. Every result records what its code does, the parameter values it read and, for a
measurement, the machine (deeppose.provenance); a result is stale when this tree on this machine
would now record something else. Missing and unreadable results are listed too, each with its
reason, and so are a report whose files a killed run left half-replaced (summary.json, which it
reads, is replaced last) and fingerprint files that `dvc status` would read out of date.
"""

from __future__ import annotations

import argparse

from deeppose import provenance
from deeppose.config import Params, load_params
from deeppose.records import output_set, paths
from deeppose.records.results import RecordError
from deeppose.records.summary import ReportSummary
from deeppose.report.load import load_results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 when any result is stale or missing"
    )


def problems(params: Params) -> list[str]:
    """One line per result that is stale, missing or half-written, and per outdated fingerprint."""
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
    lines += [
        f"interrupted {paths.REPORTS}/: a report run stopped while replacing its files; "
        "run `python -m deeppose report`, which puts the previous set back first"
        for _ in output_set.interrupted(paths.REPORTS)[:1]
    ]
    lines += [
        f"outdated {path}: run `python -m deeppose fingerprint` before `dvc status`"
        for path in provenance.outdated_fingerprints(params)
    ]
    return lines


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    lines = problems(params)
    print("\n".join(lines) if lines else f"every result of {params.path} is current")
    return 1 if lines and args.check else 0
