# Included first by the Snakefile: the validated parameters and the stage table, both taken from the
# deeppose package (deeppose.stages), which also generates dvc.yaml, so the engines cannot drift apart.
# The parameter file is params.yaml unless `--config params=FILE` names another; stages read that
# file themselves, so edit the file (not --config keys) to change a parameter.
import sys

from deeppose import provenance, snakemake_times
from deeppose.config import load_params
from deeppose.errors import DeepPoseError
from deeppose.memory import check_machine
from deeppose.grid import Group, Job
from deeppose.records import paths
from deeppose.stages import STAGES, command
from snakemake.exceptions import WorkflowError

PARAMS_FILE = config.get("params", "params.yaml")
try:
    PARAMS = load_params(PARAMS_FILE)
    check_machine(PARAMS)
except DeepPoseError as error:
    sys.exit(str(error))

# What each job runs and where, as files rewritten only when that changes (deeppose.provenance): a
# docstring edit reruns nothing, a new machine reruns every measurement.
provenance.write_fingerprints(PARAMS)
# Snakemake sees parameters and results by file time, a fresh clone too (deeppose.snakemake_times).
snakemake_times.write_params_files(PARAMS)
snakemake_times.adopt(PARAMS)

GRID = PARAMS.grid
# Measuring jobs take every core, so that none ever runs beside another job. A cluster run has
# no total core count (--cores): there the profile sets these rules' threads to a node's cores.
try:
    ALL_CORES = workflow.cores
except WorkflowError:
    ALL_CORES = 1


def _cell(stage, framework, loss, device, batch_exp):
    """The job pattern of a stage (None for a stage that runs once)."""
    kind = STAGES[stage].jobs
    if kind is None:
        return None
    if STAGES[stage].grouped:
        return STAGES[stage].group(GRID, device, batch_exp)
    return Job(framework, loss, device, batch_exp if STAGES[stage].batch_exponents_key else None)


def stage_outputs(stage):
    """Named outputs, folders marked as such; wildcards where the stage has one job per cell."""
    cell = _cell(stage, "{framework}", "{loss}", "{device}", "{batch_exp}")
    outputs = STAGES[stage].outputs(cell)
    return {
        name: directory(str(path)) if name in STAGES[stage].directories else str(path)
        for name, path in outputs.items()
    }


def stage_inputs(stage):
    """An input function: what the stage reads, and the fingerprint of the code its job runs (one
    backend only) and of the machine."""

    def inputs(wildcards):
        job = _cell(
            stage, wildcards.get("framework"), wildcards.get("loss"), wildcards.get("device"), wildcards.get("batch_exp")
        )
        named = {
            "fingerprint": str(paths.fingerprint(provenance.fingerprint_name(STAGES[stage], job))),
            "parameters": str(paths.snakemake_params(stage)),
        }
        if STAGES[stage].inputs:
            named["data"] = [str(path) for path in STAGES[stage].inputs]
        if STAGES[stage].reads_results:
            named.update(report_inputs())
        return named

    return inputs


def stage_params(stage):
    """The parameter values a stage reads; editing one reruns its jobs."""
    return provenance.params_read(STAGES[stage], PARAMS)


def stage_shell(stage):
    cell = _cell(
        stage, "{wildcards.framework}", "{wildcards.loss}", "{wildcards.device}", "{wildcards.batch_exp}"
    )
    return command(STAGES[stage], "{params.file}", cell) + " > {log} 2>&1"


def gpus(wildcards):
    return 1 if wildcards.device == "cuda" else 0


def report_inputs():
    return {
        "prepared": str(paths.prepared_summary()),
        "peak": str(paths.matmul_peak()),
        "metrics": [str(paths.train_metrics(job)) for job in PARAMS.train_jobs()],
        "logs": [str(paths.train_log(job)) for job in PARAMS.train_jobs()],
        "timing": [str(paths.timing_result(job)) for job in PARAMS.timing_jobs()],
        "breakdown": [str(paths.breakdown_result(job)) for job in PARAMS.breakdown_jobs()],
    }
