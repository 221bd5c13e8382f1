"""The Slurm profile on a live one-node Slurm cluster (tests/slurm/cluster.sh), for real.

`snakemake --profile workflow/profiles/slurm` runs the tiny pipeline with every job submitted by
sbatch; the command line overrides only the partition, runtime, memory and threads of the
profile. The test checks that every output is there and parses, that the Slurm jobs really ran
(on the cluster, measuring jobs alone on the node), that a local `--cores 2` run of the data stages
writes the same files with byte-identical data, and that a job failing on the cluster is reported
within a minute.

Needs root and Debian's packages (installed by tests/slurm/cluster.sh when missing); elsewhere it
is skipped with the reason. Select it with `pytest -m slurm`.
"""

from __future__ import annotations

import csv
import filecmp
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from test_workflow import BIN, ROOT, copy_project, edit_params, engine_env, expected_outputs

from deeppose.records import paths

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"
PARTITION = "debug"  # cluster.sh's partition
CORES = os.cpu_count() or 1
# test_workflow's tiny pipeline (copy_project) with PyTorch only and more images.
TINY_SLURM = {
    "data": {"synthetic": {"images": 24, "test": 8}},
    "train": {"batch_size": 4, "epochs": 1},
    "grid": {"frameworks": ["pytorch"]},
    "timing": {"warmup": 1, "repeats": 2},
}
MEASURING = ("train", "time", "peak", "breakdown")
# The profile's values a one-node test cluster cannot satisfy, replaced on the command line.
OVERRIDES = [
    "--default-resources", f"slurm_partition={PARTITION}", "runtime=15", "mem_mb_per_cpu=1000",
    "--set-threads", *(f"{rule}={CORES}" for rule in MEASURING),
]  # fmt: skip
FAILURE_DEADLINE_S = 60


def run_cluster_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER), *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def cluster():
    """A running one-node cluster: the environment that reaches it. Torn down whatever happens:
    on failure, on Ctrl-C and on SIGTERM (turned into KeyboardInterrupt while it runs); .ci/run
    also stops what is left under DEEPPOSE_SLURM_BASE if pytest itself is killed."""
    if os.geteuid() != 0:
        pytest.skip("Slurm test needs root (to install Debian's slurm packages and run slurmd)")
    installed = run_cluster_script("install")
    if installed.returncode == 3:
        pytest.skip(installed.stderr.strip().splitlines()[-1])
    assert installed.returncode == 0, installed.stderr
    # munged (user munge) must reach the cluster's folder: not under pytest's 0700 tmp_path.
    folder = Path(tempfile.mkdtemp(prefix="deeppose-slurm-", dir=os.environ.get("DEEPPOSE_SLURM_BASE")))
    sigterm = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        started = run_cluster_script("start", str(folder))
        if started.returncode == 3:
            pytest.skip(started.stderr.strip().splitlines()[-1])
        assert started.returncode == 0, started.stderr + started.stdout
        slurm_conf = started.stdout.strip().splitlines()[-1].removeprefix("SLURM_CONF=")
        yield {"SLURM_CONF": slurm_conf}
    finally:
        stopped = run_cluster_script("stop", str(folder))
        shutil.rmtree(folder, ignore_errors=True)
        signal.signal(signal.SIGTERM, sigterm)
        assert stopped.returncode == 0, stopped.stderr


def project_env(project: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The engines' environment with the project copy's code first: Snakemake, and through
    sbatch --export=ALL every Slurm job, import deeppose from the copy."""
    env = engine_env()
    env["PYTHONPATH"] = str(project)
    env.update(extra or {})
    return env


def snakemake(
    project: Path, env: dict[str, str], *args: str, timeout: float = 600
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "snakemake"), *args], cwd=project, env=env, capture_output=True, text=True, timeout=timeout
    )


def squeue_jobs(env: dict[str, str], run_id: str) -> list[dict[str, str]]:
    """Every job of one Snakemake run still known to slurmctld (finished ones for MinJobAge)."""
    out = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--name", run_id, "--format=%i|%T|%h|%S|%e|%k"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    keys = ("id", "state", "oversubscribe", "start", "end", "comment")
    return [dict(zip(keys, line.split("|"), strict=True)) for line in out.splitlines() if line.strip()]


def run_id_of(output: str) -> str:
    match = re.search(r"SLURM run ID: (\S+)", output)
    assert match, output[-3000:]
    return match.group(1)


def tiny_project(dest: Path) -> Path:
    """The tiny project with its grid cut to one cell, and dvc.yaml regenerated for that grid (the
    timing group's outputs name every cell of the grid)."""
    project = copy_project(dest)
    edit_params(project, TINY_SLURM)
    subprocess.run(
        [sys.executable, "-m", "deeppose", "dvc-yaml"], cwd=project, check=True, capture_output=True
    )
    return project


def project_files(project: Path) -> set[str]:
    """Every file the pipeline wrote (outputs, logs, checkpoints), relative to the project."""
    return {
        str(path.relative_to(project))
        for top in ("data", "results", "reports", "checkpoints", "logs")
        for path in (project / top).rglob("*")
        if path.is_file()
    }


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """The tiny pipeline run from scratch through the Slurm profile and, at the same time, its data
    stages locally with `--cores 2` (only they write files whose bytes must not depend on where
    they ran; test_workflow.py runs the whole pipeline locally). The lists of files both wrote are
    kept, their checkpoints are not (no test reads one); both projects go when the module ends."""
    local = tiny_project(tmp_path_factory.mktemp("local") / "project")
    remote = tiny_project(tmp_path_factory.mktemp("slurm") / "project")
    env = project_env(remote, cluster)
    start = time.monotonic()
    local_run = subprocess.Popen(
        [str(BIN / "snakemake"), "--cores", "2", str(paths.prepared_summary())],
        cwd=local, env=project_env(local), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        result = snakemake(remote, env, "--profile", "workflow/profiles/slurm", *OVERRIDES)
        wall = time.monotonic() - start
        local_output = local_run.communicate(timeout=600)[0]
    finally:
        local_run.kill()
        local_run.wait()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    jobs = squeue_jobs(env, run_id_of(output))
    durations = ", ".join(f"{job['comment'].removeprefix('rule_')} {seconds(job):.0f}" for job in jobs)
    print(f"\nSnakemake through Slurm: {wall:.0f} s; Slurm jobs (s): {durations}")
    files = {"project_files": project_files(remote), "local_files": project_files(local)}
    for project in (local, remote):
        shutil.rmtree(project / "checkpoints", ignore_errors=True)
    yield {
        "project": remote,
        "env": env,
        "jobs": jobs,
        "local": local,
        "local_returncode": local_run.returncode,
        "local_output": local_output,
        **files,
    }
    for project in (local, remote):
        shutil.rmtree(project.parent, ignore_errors=True)


def seconds(job: dict[str, str]) -> float:
    return (datetime.fromisoformat(job["end"]) - datetime.fromisoformat(job["start"])).total_seconds()


def check_parses(path: Path) -> None:
    text = path.read_bytes()
    if path.suffix == ".json":
        assert isinstance(json.loads(text), dict), path
    elif path.suffix == ".jsonl":
        lines = text.decode().splitlines()
        assert lines and all(isinstance(json.loads(line), dict) for line in lines), path
    elif path.suffix == ".csv":
        rows = list(csv.reader(text.decode().splitlines()))
        assert len(rows) >= 2 and all(len(row) == len(rows[0]) for row in rows), path
    elif path.suffix == ".png":
        assert text.startswith(b"\x89PNG\r\n\x1a\n"), path
    elif path.suffix == ".npy":
        assert text.startswith(b"\x93NUMPY"), path
    elif path.suffix == ".jpg":
        assert text.startswith(b"\xff\xd8\xff"), path
    else:
        assert text.strip(), path


def test_the_slurm_profile_runs_the_pipeline_on_the_cluster(runs):
    project, jobs = runs["project"], runs["jobs"]
    expected = expected_outputs(project)
    missing = sorted(out for out in expected if not (project / out).exists())
    assert not missing
    for out in sorted(expected):
        files = [project / out] if (project / out).is_file() else sorted((project / out).rglob("*.*"))
        assert files, out
        for path in (p for p in files if not p.name.startswith(".")):
            check_parses(path)
    results = sorted(path for path in (project / "results").rglob("*.json") if "cost" not in path.parts)
    assert len(results) == 1 + 1 + 1 + 1 + 1  # prepare, peak, train metrics, time, breakdown
    # and every job, run on the cluster, recorded what it cost there
    assert len(list((project / "results" / "cost").rglob("*.json"))) == len(jobs)

    # Every job of the DAG was a Slurm job that completed, measuring jobs with the node to themselves.
    rules = [re.match(r"rule_([a-z]+)", job["comment"]).group(1) for job in jobs]
    assert sorted(rules) == sorted(
        ["synthesize", "prepare", "peak", "report", "train", "time", "breakdown"]
    ), jobs
    assert {job["state"] for job in jobs} == {"COMPLETED"}, jobs
    measuring = [job for job, rule in zip(jobs, rules, strict=True) if rule in MEASURING]
    assert {job["oversubscribe"] for job in measuring} == {"NO"}, measuring  # sbatch --exclusive
    spans = sorted((job["start"], job["end"]) for job in measuring)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start, spans  # one at a time on the node


def test_a_local_run_of_the_data_stages_writes_the_same_files_with_identical_data(runs):
    remote, local = runs["project"], runs["local"]
    assert runs["local_returncode"] == 0, runs["local_output"][-4000:]
    written = {"results/data/prepare.json", "reports/data/prepared_samples.png"}
    remote_data = {name for name in runs["project_files"] if name.startswith("data/")}
    assert written | remote_data <= runs["local_files"] <= runs["project_files"]
    data = sorted(name for name in remote_data | written if "/." not in name)
    assert len(data) > 24  # 24 images, joints.mat, the prepared arrays
    _, mismatch, errors = filecmp.cmpfiles(local, remote, data, shallow=False)
    assert not mismatch and not errors, (mismatch, errors)


def test_a_job_failing_on_the_cluster_is_reported_within_a_minute(runs, tmp_path):
    # A copy of the finished project in which one job, prepare, is given an impossible parameter:
    # an LSP zip that does not exist. Only prepare reads it; it fails on the cluster.
    project = tmp_path / "project"
    shutil.copytree(runs["project"], project, symlinks=True)
    env = project_env(project, {"SLURM_CONF": runs["env"]["SLURM_CONF"]})
    edit_params(project, {"data": {"source": "lsp", "lsp": {"lsp": "downloads/missing.zip", "lspet": None}}})
    start = time.monotonic()
    process = subprocess.Popen(
        [str(BIN / "snakemake"), "--profile", "workflow/profiles/slurm", *OVERRIDES],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    watchdog = threading.Timer(300, process.kill)  # a run that waits on the failed job forever
    watchdog.start()
    lines, reported_at = [], None
    try:
        for line in process.stdout:  # timestamp the report as Snakemake prints it
            lines.append(line)
            if reported_at is None and line.startswith("Error in rule prepare"):
                reported_at = time.time()
        process.wait()
    finally:
        watchdog.cancel()
        process.kill()
    wall = time.monotonic() - start
    output = "".join(lines)
    assert process.returncode not in (0, -9), output[-4000:]
    jobs = squeue_jobs(env, run_id_of(output))
    assert [(job["comment"], job["state"]) for job in jobs] == [("rule_prepare", "FAILED")], jobs
    assert reported_at is not None and f"SLURM-job '{jobs[0]['id']}' failed" in output, output[-4000:]
    assert (
        "downloads/missing.zip: no such dataset folder or zip file"
        in (project / "logs/prepare.log").read_text()
    )
    latency = reported_at - datetime.fromisoformat(jobs[0]["end"]).timestamp()  # squeue: local time
    print(f"\nfailed job reported {latency:.0f} s after it ended; Snakemake exited after {wall:.0f} s")
    assert latency < FAILURE_DEADLINE_S, output[-4000:]
