# Included first by the Snakefile: the validated parameters, the grid and the artifact paths, all taken
# from the deeppose package so that this workflow and dvc.yaml cannot drift apart.
# The parameter file is params.yaml unless `--config params=FILE` names another; stages read that
# file themselves, so edit the file (not --config keys) to change a parameter.
import sys

from deeppose import paths
from deeppose.config import Job, load_params
from deeppose.errors import DeepPoseError
from snakemake.exceptions import WorkflowError

PARAMS_FILE = config.get("params", "params.yaml")
try:
    PARAMS = load_params(PARAMS_FILE)
except DeepPoseError as error:
    sys.exit(str(error))

GRID = PARAMS.raw["grid"]
# Measuring jobs take every core, so that none ever runs beside another job. A cluster run has
# no total core count (--cores): there the profile sets these rules' threads to a node's cores.
try:
    ALL_CORES = workflow.cores
except WorkflowError:
    ALL_CORES = 1

# One pattern per artifact, built by the same functions the stages use.
CELL = Job("{framework}", "{loss}", "{device}", "{batch_exp}")


def section(*names):
    """Parameter sections (or dotted keys) that a job reads; editing one reruns the job."""
    values = {}
    for name in names:
        node = PARAMS.raw
        for key in name.split("."):
            node = node[key]
        values[name] = node
    return values


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
