"""The two workflow engines: the same jobs, a clean lint (no conda environments aside), a cluster
profile, and real runs.

The end-to-end tests run the real pipeline in a temporary copy of the project on the smallest
parameters that still run every stage and tell the frameworks' jobs apart (`TINY`: both frameworks,
one loss mode, one batch exponent, 8 + 4 images for one epoch of 2 iterations, the fewest rounds
and repeats the schema allows) once per test run, under DVC (the module fixture `pipeline_run`);
the Snakemake test starts from a copy of that run's outputs, which Snakemake must find current, and
reruns what each edit makes stale under Snakemake itself. Both engines run the same commands
(test_both_engines_define_the_same_jobs, on params.yaml's whole grid).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from test_peak import TINY as TINY_PEAK

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def engine_env() -> dict[str, str]:
    """The engines run `python -m deeppose`: make `python` this environment's interpreter."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)
    return env


def run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=engine_env(), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def snakemake(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([str(BIN / "snakemake"), *args], cwd, check)


def dvc(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([str(BIN / "dvc"), *args], cwd, check)


def snakemake_jobs(cwd: Path) -> set[tuple[str, frozenset[str]]]:
    """(command, outputs) of every job Snakemake would run from scratch."""
    out = snakemake(cwd, "--dry-run", "--forceall", "--printshellcmds").stdout
    jobs = set()
    for block in out.split("\nrule ")[1:]:
        outputs = re.search(r"\n\s+output: (.*)", block)
        command = re.search(r"\nShell command: (.*)", block)
        if command and command.group(1).strip() != "None":
            cmd = re.sub(r"\s*> \S+ 2>&1$", "", command.group(1).strip())
            jobs.add((cmd, frozenset(outputs.group(1).split(", "))))
    return jobs


def dvc_jobs(cwd: Path) -> set[tuple[str, frozenset[str]]]:
    """(command, outputs) of every stage in the expanded dvc.yaml."""
    code = (
        "import json; from dvc.repo import Repo; r = Repo('.');"
        "print(json.dumps([[s.cmd, [str(o.def_path) for o in s.outs]] for s in r.index.stages]))"
    )
    import json

    stages = json.loads(run([sys.executable, "-c", code], cwd).stdout)
    return {
        (" ".join(cmd.split()), frozenset(outs))
        for cmd, outs in stages
        if " deeppose fingerprint " not in f" {cmd} "  # Snakemake refreshes them when it reads the Snakefile
    }


@pytest.mark.slow
def test_both_engines_define_the_same_jobs():
    snake, dvc_ = snakemake_jobs(ROOT), dvc_jobs(ROOT)
    assert snake == dvc_, (sorted(snake - dvc_)[:3], sorted(dvc_ - snake)[:3])
    assert len(snake) == 1 + 1 + 1 + 4 + 6 + 1 + 1  # params.yaml's grid: 6 timing groups, 1 breakdown


def test_committed_dvc_yaml_is_generated_from_the_stage_table():
    result = run([sys.executable, "-m", "deeppose", "dvc-yaml", "--check"], ROOT, check=False)
    assert result.returncode == 0, result.stderr


def test_chainer_imports_from_a_bare_environment():
    """`make setup`'s startup hook: no variable, no deeppose import, no warning."""
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import chainer, sys; print('deeppose' in sys.modules)"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr


# Rules carry no `conda:` environment on purpose: the software is the .venv `make setup` builds
# from requirements/lock.txt, and a conda file nothing builds would be an untested way to deploy.
NO_CONDA_LINT = "Specify a conda environment or container for each rule."
SHELL_RULES = {"synthesize", "prepare", "train", "time", "peak", "breakdown", "report"}


@pytest.mark.slow
def test_snakemake_lint_is_clean_but_for_the_missing_conda_environments():
    result = snakemake(ROOT, "--lint", check=False)
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "Error" not in output, output
    linted = set(re.findall(r"^Lints for rule (\w+) ", output, flags=re.M))
    lints = set(re.findall(r"^\s+\* (.+):$", output, flags=re.M))
    assert linted == SHELL_RULES and lints == {NO_CONDA_LINT}, output


@pytest.mark.slow
def test_plain_snakemake_loads_the_workflow_profile():
    """`snakemake --cores all` (what `make run` types) runs with profiles/default's settings."""
    result = snakemake(ROOT, "-n", "--cores", "all", "--forceall")
    assert "Using workflow specific profile profiles/default" in result.stderr, result.stderr[-2000:]
    assert "\nShell command: python -m deeppose synthesize" in result.stdout  # printshellcmds: true


@pytest.mark.slow
def test_slurm_profile_dry_run_succeeds():
    result = snakemake(ROOT, "--profile", "workflow/profiles/slurm", "--dry-run", "--forceall")
    assert "train" in result.stdout
    assert "workflow/profiles/slurm and workflow specific profile profiles/default" in result.stderr


@pytest.mark.slow
def test_a_bad_parameter_file_stops_snakemake_with_one_line(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["grid"]["frameworks"] = ["mxnet"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    result = snakemake(ROOT, "--dry-run", "--config", f"params={bad}", check=False)
    assert result.returncode != 0
    assert (
        "grid.frameworks[0]: unknown framework 'mxnet'; allowed: pytorch, chainer, jax, pytorch_compile"
        in result.stderr
    )
    assert "Traceback" not in result.stderr


# --- end-to-end ------------------------------------------------------------------------------
# Two frameworks, so that an edit of one backend shows which jobs it reruns; one loss mode and one
# batch exponent (one timing group of 2 cells, its 2 A/A twins and the planted control); momentum
# SGD, whose checkpoint (weights and one velocity) is two thirds of Adam's; test_peak.py's small
# kernels for the peak stage (its defaults took about 100 s).
TINY = {
    "data": {"synthetic": {"images": 12, "test": 4}},
    "train": {"optimizer": "momentum_sgd", "batch_size": 4, "epochs": 1, "eval_every": 1, "threads": 1},
    "grid": {"loss_modes": ["autograd"], "batch_exponents": [0], "devices": ["cpu"]},
    "timing": {
        "warmup": 0,
        "repeats": 2,
        "blocks": 2,
        "max_blocks": 2,
        "margin": 0.05,
        "planted": 0.1,
        "threads": 1,
        "optimizers": [],
    },
    "breakdown": {"batch_exponents": [0], "repeats": 1, "processes": 2},
    "peak": TINY_PEAK,
}


def deep_update(base: dict, changes: dict) -> dict:
    for key, value in changes.items():
        if isinstance(value, dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base


def copy_project(dest: Path) -> Path:
    """A clean copy of the tracked project (what a fresh clone has), with tiny parameters."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        if name.startswith(("results/", "reports/", "data/")) or not (ROOT / name).is_file():
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    (dest / "params.yaml").write_text(yaml.safe_dump(deep_update(raw, TINY), sort_keys=False))
    run([sys.executable, "-m", "deeppose", "dvc-yaml"], dest)  # the timing stages' outputs: TINY's loss mode
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True, capture_output=True)
    commit_all(dest, "copy")
    return dest


def commit_all(project: Path, message: str) -> None:
    for command in (
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message],
    ):
        subprocess.run(command, cwd=project, check=True, capture_output=True)


def expected_outputs(project: Path) -> set[str]:
    return {out for _, outs in dvc_jobs(project) for out in outs}


def edit_params(project: Path, changes: dict) -> None:
    raw = yaml.safe_load((project / "params.yaml").read_text())
    (project / "params.yaml").write_text(yaml.safe_dump(deep_update(raw, changes), sort_keys=False))


def snakemake_planned(project: Path) -> list[str]:
    """Rules Snakemake would run now, one entry per job."""
    out = snakemake(project, "--dry-run").stdout
    return sorted(re.findall(r"^rule (\w+):", out, flags=re.M))


def reword(project: Path, relative: str) -> None:
    """An edit of the file's docstring and comments only: new bytes, the same behaviour."""
    path = project / relative
    text = path.read_text(encoding="utf-8").replace('"""', '"""Reworded. ', 1)
    path.write_text(text + "\n# edited\n", encoding="utf-8")


def edit_code(project: Path, relative: str) -> None:
    """A one-statement edit: the file now does something else (defines one more name)."""
    with open(project / relative, "a", encoding="utf-8") as handle:
        handle.write("\n_EDITED = 1\n")


def dvc_stale(project: Path, refresh: bool = True) -> set[str]:
    """The stages `dvc status` names, after `python -m deeppose fingerprint` unless told not to."""
    if refresh:
        run([sys.executable, "-m", "deeppose", "fingerprint"], project)
    return set(re.findall(r"^(\S+):", dvc(project, "status").stdout, flags=re.M))


def status(project: Path) -> str:
    return run([sys.executable, "-m", "deeppose", "status"], project).stdout


# What an edit of chainer.py reruns: Chainer's training job, the timing group and the breakdown
# group (every framework is measured together in a group), so PyTorch's cells of both too.
CHAINER_JOBS = {"train": 1, "time": 1, "breakdown": 1}
STALE_AFTER_CHAINER_EDIT = {
    "results/train/chainer/autograd/cpu/metrics.json",
    *(f"results/breakdown/{fw}/autograd/cpu/b0.json" for fw in ("pytorch", "chainer")),
    *(f"results/time/{fw}/autograd/cpu/b0.json" for fw in ("pytorch", "chainer")),
}


@dataclass(frozen=True)
class PipelineRun:
    """The tiny project after one `dvc repro`: `dvc` is that project (the DVC test's, with DVC's
    cache); `snakemake` a copy of it without the cache (modification times kept)."""

    dvc: Path
    snakemake: Path


def without_dvc_cache(folder: str, names: list[str]) -> set[str]:
    """copytree's ignore: DVC's cache (Snakemake has none)."""
    return {"cache"} & set(names) if Path(folder).name == ".dvc" else set()


def drop_checkpoints(project: Path) -> None:
    """After a real run: no test here resumes from its checkpoints (a rerun of a finished job
    trains afresh either way), and they are most of its disk."""
    shutil.rmtree(project / "checkpoints", ignore_errors=True)


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory) -> Iterator[PipelineRun]:
    """The tiny pipeline run once for both engines' tests (its checkpoints go at once): PyTorch's
    training first, so that one training's checkpoint (466 MB) is on disk at a time, then the rest."""
    project = copy_project(tmp_path_factory.mktemp("dvc") / "project")
    dvc(project, "repro", "train-pytorch@autograd-cpu")
    drop_checkpoints(project)
    dvc(project, "repro")
    drop_checkpoints(project)
    copy = tmp_path_factory.mktemp("snakemake") / "project"
    shutil.copytree(project, copy, ignore=without_dvc_cache)
    yield PipelineRun(project, copy)
    shutil.rmtree(project.parent, ignore_errors=True)
    shutil.rmtree(copy.parent, ignore_errors=True)


@pytest.mark.slow
def test_snakemake_finds_dvcs_run_current_then_reruns_only_what_changed(pipeline_run):
    """Snakemake, on outputs DVC made: nothing to do; then each edit reruns what it makes stale."""
    project = pipeline_run.snakemake
    assert snakemake_planned(project) == []
    assert (
        "Nothing to be done"
        in snakemake(project, "--cores", "all").stdout + snakemake(project, "--cores", "all").stderr
    )
    assert status(project).strip() == "every result of params.yaml is current"

    # A docstring and comment edit to a measuring stage's module reruns nothing.
    reword(project, "deeppose/timing.py")
    assert snakemake_planned(project) == []
    assert status(project).strip() == "every result of params.yaml is current"

    # Code is a dependency: one backend reruns its framework's jobs and the report, nothing else.
    edit_code(project, "deeppose/backends/chainer.py")
    planned = snakemake_planned(project)
    assert {rule: planned.count(rule) for rule in set(planned)} == {**CHAINER_JOBS, "report": 1, "all": 1}
    stale = [line for line in status(project).splitlines() if line.startswith("stale ")]
    assert "stale reports/summary.json: results it was built from are stale" in stale
    stale.remove("stale reports/summary.json: results it was built from are stale")
    assert {line.split()[1].rstrip(":") for line in stale} == STALE_AFTER_CHAINER_EDIT
    assert all(line.endswith(": code changed: deeppose/backends/chainer.py") for line in stale)
    # The report, rebuilt from these results, says which are stale, above everything else.
    run([sys.executable, "-m", "deeppose", "report"], project)
    head = (project / "reports" / "report.md").read_text().split("## 1.")[0]
    assert f"**{len(STALE_AFTER_CHAINER_EDIT)} result(s) below are stale**" in head
    assert "`results/time/chainer/autograd/cpu/b0.json`: code changed: deeppose/backends/chainer.py" in head
    snakemake(project, "--cores", "all")
    drop_checkpoints(project)
    edit_code(project, "deeppose/report/figures.py")
    assert snakemake_planned(project) == ["all", "report"]
    snakemake(project, "--cores", "all")

    edit_params(project, {"timing": {"repeats": 3}})
    planned = snakemake_planned(project)
    assert set(planned) == {"time", "report", "all"} and planned.count("time") == 1  # one per group

    # Back to the repeats that ran (nothing to redo for them), plus one new batch exponent.
    edit_params(project, {"timing": {"repeats": 2}, "grid": {"batch_exponents": [0, 1]}})
    planned = snakemake_planned(project)
    assert set(planned) == {"time", "report", "all"} and planned.count("time") == 1

    # Results that came from another machine, as in a copy of someone else's project (Snakemake's
    # own records, .snakemake/, stay behind): every measurement is stale and rerun, the peak stage
    # (which reads no data) too. The control: the same copy of this machine's results reruns nothing.
    edit_params(project, {"timing": {"repeats": 2}, "grid": {"batch_exponents": [0]}})
    shutil.rmtree(project / ".snakemake")
    assert snakemake_planned(project) == []
    plant_foreign_machine(project)
    planned = snakemake_planned(project)
    assert {rule: planned.count(rule) for rule in set(planned)} == {
        "train": 2,
        "time": 1,
        "breakdown": 1,
        "peak": 1,
        "report": 1,
        "all": 1,
    }
    measured = [line for line in status(project).splitlines() if "measured on another machine" in line]
    assert len(measured) == 2 + 2 + 2 + 1  # training runs, timing cells, breakdowns, the peak


def ran_stages(dvc_repro_output: str) -> set[str]:
    """The stages a `dvc repro` (or its `--dry` run) ran."""
    return set(re.findall(r"^Running stage '(\S+)'", dvc_repro_output, flags=re.M))


def assert_a_fresh_clone_is_current(project: Path, clone: Path) -> None:
    """Commit what `dvc repro` left, clone it: neither engine finds anything to do there without
    running anything (no DVC cache, no dataset download), and a parameter edit names exactly its
    stages in both."""
    commit_all(project, "results")
    assert not subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "data", "workflow"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout  # every output but the checkpoints is in git
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True, capture_output=True)
    assert dvc(clone, "status").stdout.strip() == "Data and pipelines are up to date."
    out = dvc(clone, "repro", "--dry").stdout
    assert ran_stages(out) == set(), out
    # Snakemake, which judges by file times that git set arbitrarily and has no metadata here,
    # adopts the current results (deeppose.snakemake_times) instead of planning the whole pipeline.
    assert snakemake_planned(clone) == []
    edit_params(clone, {"timing": {"repeats": 3}})
    assert dvc_stale(clone, refresh=False) == {"time@cpu-0"}
    assert ran_stages(dvc(clone, "repro", "--dry").stdout) == {"time@cpu-0"}
    assert sorted(snakemake_planned(clone)) == ["all", "report", "time"]  # by the parameter file's time


def plant_foreign_machine(project: Path) -> None:
    """Record another CPU model in every measurement and in the fingerprint files beside them."""
    import json

    for path in [
        *(project / "results").rglob("*.json"),
        *(project / "workflow" / "fingerprints").glob("*.json"),
    ]:
        data = json.loads(path.read_text())
        holder = data if "fingerprints" in path.parts else data.get("provenance", {})
        if holder.get("machine"):
            holder["machine"]["model"] = "elsewhere"
            path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


@pytest.mark.slow
def test_dvc_repro_produces_the_same_outputs_and_reruns_only_what_changed(pipeline_run, tmp_path):
    project = pipeline_run.dvc
    missing = [out for out in expected_outputs(project) if not (project / out).exists()]
    assert not missing
    assert dvc_stale(project) == set()
    assert status(project).strip() == "every result of params.yaml is current"
    assert_a_fresh_clone_is_current(project, tmp_path / "clone")

    # Any code edit reruns the fingerprint stage; a docstring edit rewrites no fingerprint.
    reword(project, "deeppose/timing.py")
    assert dvc_stale(project) == {"fingerprint"}
    assert ran_stages(dvc(project, "repro").stdout) == {"fingerprint"}
    # A backend's edit: what DVC would run is enough here, since the Snakemake test reruns the same
    # jobs for real (a dry run cannot know that their new results will rerun the report). Undoing
    # the edit makes every stage current again (the fingerprints come back byte for byte).
    chainer = project / "deeppose" / "backends" / "chainer.py"
    original = chainer.read_bytes()
    edit_code(project, "deeppose/backends/chainer.py")
    assert dvc_stale(project, refresh=False) == {"fingerprint"}  # `dvc status` alone runs nothing
    changed = dvc_stale(project) - {"fingerprint"}
    assert changed == {"train-chainer@autograd-cpu", "time@cpu-0", "breakdown@cpu-0"}
    out = dvc(project, "repro", "--dry").stdout
    assert ran_stages(out) == changed | {"fingerprint"}, out
    chainer.write_bytes(original)
    assert dvc_stale(project) == set()
    assert dvc(project, "metrics", "show").returncode == 0

    # A timing parameter makes the timing group stale, nothing else; a new batch exponent adds its
    # group and the report (its grid changed).
    edit_params(project, {"timing": {"repeats": 3}})
    assert dvc_stale(project) == {"time@cpu-0"}
    edit_params(project, {"grid": {"batch_exponents": [0, 1]}})
    out = dvc(project, "repro", "--dry").stdout
    assert ran_stages(out) == {"time@cpu-0", "time@cpu-1", "report"}, out
    edit_params(project, {"timing": {"repeats": 2}, "grid": {"batch_exponents": [0]}})
    assert dvc_stale(project) == set()

    # The results and dvc.lock of another machine (as committed there): every measuring stage.
    plant_foreign_machine(project)
    dvc(project, "commit", "--force")
    assert dvc_stale(project) == {
        "fingerprint",
        "peak",
        *(f"train-{fw}@autograd-cpu" for fw in ("pytorch", "chainer")),
        "time@cpu-0",
        "breakdown@cpu-0",
    }


@pytest.mark.slow
def test_dvc_ignores_the_temporaries_of_interrupted_writes():
    """A write killed midway leaves `.<name>.<random>.tmp` beside its target, in a folder output
    too: it must never count in that output's hash (the next write also removes it), nor does the
    marker Snakemake leaves in a folder output (DVC and Snakemake write the same hash)."""
    ignored = [
        "reports/figures/.roofline.png.x7f3k2.tmp",
        "results/time/pytorch/autograd/cpu/.b3.json.q1w2e3.tmp",
        "data/prepared/.snakemake_timestamp",
    ]
    assert dvc(ROOT, "check-ignore", *ignored).stdout.split() == ignored
