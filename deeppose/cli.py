"""Command line: `python -m deeppose <stage> [options]`, one subcommand per pipeline stage.

Each stage lives in its own module, which provides `add_arguments(parser)` and `run(args)`; the
module is imported only when its stage runs, so `--help` and unrelated stages load no framework.
`run` may return an exit status (compare's `--fail-on-regression`); None means 0.
Errors the user can fix (`DeepPoseError`) print one line and exit with status 2; so does a file the
machine refuses to read or write (permissions, a full or read-only disk), naming the file.

    python -m deeppose synthesize --params params.yaml
    python -m deeppose prepare --params params.yaml
    python -m deeppose train --framework pytorch --loss autograd --device cpu
    python -m deeppose time --device cpu --batch-exp 3     # one timing group: every framework x loss
    python -m deeppose breakdown --device cpu --batch-exp 3  # per-layer times, interleaved processes
    python -m deeppose report
    python -m deeppose status          # stale results, without running anything (--check: exit 1)
    python -m deeppose fingerprint     # refresh the engines' fingerprints (before `dvc status`)
    python -m deeppose dvc-yaml        # regenerate dvc.yaml from the stage table
    python -m deeppose compare main HEAD   # what a change did to the results (exit 1 on request)
    python -m deeppose table           # every timed run as reports/cells.csv, for pandas
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from collections.abc import Sequence

from deeppose.errors import DeepPoseError
from deeppose.records.atomic import MACHINE_ERRNOS

# Tools beside the pipeline's stages (deeppose.stages): command -> (module, one-line help)
TOOLS: dict[str, tuple[str, str]] = {
    "status": ("deeppose.status", "list results that no longer match the code, parameters or machine"),
    "fingerprint": ("deeppose.fingerprint", "update the code and machine fingerprints both engines read"),
    "dvc-yaml": ("deeppose.dvc_yaml", "write dvc.yaml from the stage table"),
    "time-block": ("deeppose.timing_block", "one timing block (the `time` stage's child process)"),
    "breakdown-process": (
        "deeppose.breakdown_process",
        "one profiled process of one arm (the `breakdown` stage's child process)",
    ),
    "compare": ("deeppose.compare", "which changes between two revisions' results are real"),
    "table": ("deeppose.table", "every timed run as one tidy CSV table (reports/cells.csv)"),
}


def commands() -> dict[str, tuple[str, str]]:
    from deeppose.stages import STAGES

    return {name: (stage.module, stage.help) for name, stage in STAGES.items()} | TOOLS


def build_parser(stage: str | None = None) -> argparse.ArgumentParser:
    """The full parser; only `stage`'s module is imported to add its options."""
    parser = argparse.ArgumentParser(prog="python -m deeppose", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, (module, help_text) in commands().items():
        stage_parser = sub.add_parser(name, help=help_text)
        stage_parser.add_argument(
            "--params", default="params.yaml", help="parameter file (default: params.yaml)"
        )
        stage_parser.set_defaults(_module=module)
        if name == stage:
            importlib.import_module(module).add_arguments(stage_parser)
    return parser


def _cost_record(args: argparse.Namespace) -> contextlib.AbstractContextManager[None]:
    """A pipeline stage records what its job cost (deeppose.measure.cost); the tools beside it do not."""
    from deeppose.stages import STAGES, job_label

    if args.stage not in STAGES:
        return contextlib.nullcontext()
    from deeppose.measure.cost import recorded

    return recorded(args.stage, job_label(STAGES[args.stage], args))


def _pin_allocator(args: argparse.Namespace) -> None:
    """A process that measures (a measuring stage, the timing stage's block server or a breakdown
    process) pins glibc's allocator from the parameters before anything allocates
    (deeppose.measure.allocator)."""
    from deeppose.stages import STAGES

    children = ("time-block", "breakdown-process")
    if args.stage in children or (args.stage in STAGES and STAGES[args.stage].measures):
        from deeppose.config import load_params
        from deeppose.measure import allocator

        allocator.pin(load_params(args.params).allocator.mmap_threshold_mib)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    stage = next((arg for arg in argv if not arg.startswith("-")), None)
    args = build_parser(stage).parse_args(argv)
    try:
        _pin_allocator(args)
        with _cost_record(args):
            status = importlib.import_module(args._module).run(args)
    except DeepPoseError as error:
        for line in str(error).splitlines():  # one line per problem
            print(f"deeppose {args.stage}: error: {line}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno not in MACHINE_ERRNOS or not error.filename:
            raise
        print(
            f"deeppose {args.stage}: error: {error.filename}: cannot access: {error.strerror}",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"deeppose {args.stage}: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)
