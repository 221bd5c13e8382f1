"""The two workflow engines: the same jobs, a clean lint, a cluster profile, and real runs.

The end-to-end tests run the real pipeline in a temporary copy of the project on tiny parameters
(a few images, one epoch, exponents 0..1, 3 repeats), with each engine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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
    """(command, outputs) of every stage in the expanded dvc.yaml, checkpoints excepted: they are
    deliberately undeclared to Snakemake, which would delete them before a resumed run."""
    code = (
        "import json; from dvc.repo import Repo; r = Repo('.');"
        "print(json.dumps([[s.cmd, [str(o.def_path) for o in s.outs]] for s in r.index.stages]))"
    )
    import json

    stages = json.loads(run([sys.executable, "-c", code], cwd).stdout)
    return {
        (" ".join(cmd.split()), frozenset(o for o in outs if not o.startswith("checkpoints/")))
        for cmd, outs in stages
    }


def test_both_engines_define_the_same_jobs():
    snake, dvc_ = snakemake_jobs(ROOT), dvc_jobs(ROOT)
    assert snake == dvc_, (sorted(snake - dvc_)[:3], sorted(dvc_ - snake)[:3])
    assert len(snake) == 1 + 1 + 1 + 4 + 24 + 4 + 1  # with params.yaml's grid


def test_committed_dvc_yaml_is_generated_from_the_stage_table():
    result = run([sys.executable, "-m", "deeppose", "dvc-yaml", "--check"], ROOT, check=False)
    assert result.returncode == 0, result.stderr


def test_chainer_imports_from_a_bare_environment():
    """`make setup`'s startup hook: no variable, no deeppose import, no warning."""
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import chainer, sys; print('deeppose' in sys.modules)"],
        env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
    )
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr


def test_snakemake_lint_is_clean():
    result = snakemake(ROOT, "--lint", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def test_slurm_profile_dry_run_succeeds():
    result = snakemake(ROOT, "--profile", "workflow/profiles/slurm", "--dry-run", "--forceall")
    assert "train" in result.stdout


def test_a_bad_parameter_file_stops_snakemake_with_one_line(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["grid"]["frameworks"] = ["mxnet"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    result = snakemake(ROOT, "--dry-run", "--config", f"params={bad}", check=False)
    assert result.returncode != 0
    assert "grid.frameworks[0]: unknown framework 'mxnet'; allowed: pytorch, chainer, jax, pytorch_compile" in result.stderr
    assert "Traceback" not in result.stderr


# --- end-to-end ------------------------------------------------------------------------------
TINY = {
    "data": {"synthetic": {"images": 40, "test": 12}},
    "train": {"batch_size": 4, "epochs": 1, "threads": 1},
    "grid": {"batch_exponents": [0, 1], "devices": ["cpu"]},
    "timing": {"warmup": 1, "repeats": 3, "threads": 1},
    "breakdown": {"batch_exponents": [0], "repeats": 1},
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
        if name.startswith(("results/", "reports/")) or not (ROOT / name).is_file():
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    (dest / "params.yaml").write_text(yaml.safe_dump(deep_update(raw, TINY), sort_keys=False))
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        subprocess.run(command, cwd=dest, check=True, capture_output=True)
    return dest


def expected_outputs(project: Path) -> set[str]:
    return {out for _, outs in dvc_jobs(project) for out in outs}


def edit_params(project: Path, changes: dict) -> None:
    raw = yaml.safe_load((project / "params.yaml").read_text())
    (project / "params.yaml").write_text(yaml.safe_dump(deep_update(raw, changes), sort_keys=False))


def snakemake_planned(project: Path) -> list[str]:
    """Rules Snakemake would run now, one entry per job."""
    out = snakemake(project, "--dry-run").stdout
    return sorted(re.findall(r"^rule (\w+):", out, flags=re.M))


def touch_code(project: Path, relative: str) -> None:
    """An edit that changes the file's content (and so its hash) but not what it does."""
    with open(project / relative, "a", encoding="utf-8") as handle:
        handle.write("\n# edited\n")


def status(project: Path) -> str:
    return run([sys.executable, "-m", "deeppose", "status"], project).stdout


CHAINER_JOBS = {"train": 2, "time": 4, "breakdown": 2}  # 2 loss modes; exponents 0, 1; breakdown at 0


@pytest.mark.slow
def test_snakemake_runs_everything_then_nothing_then_only_what_changed(tmp_path):
    project = copy_project(tmp_path / "project")
    snakemake(project, "--cores", "all", "--profile", "workflow/profiles/default")
    missing = [out for out in expected_outputs(project) if not (project / out).exists()]
    assert not missing
    assert "Nothing to be done" in snakemake(project, "--cores", "all").stdout + snakemake(project, "--cores", "all").stderr
    assert status(project).strip() == "every result of params.yaml is current"

    # Code is a dependency: one backend reruns its framework's jobs and the report, nothing else.
    touch_code(project, "deeppose/backends/chainer.py")
    planned = snakemake_planned(project)
    assert {rule: planned.count(rule) for rule in set(planned)} == {**CHAINER_JOBS, "report": 1, "all": 1}
    stale = [line for line in status(project).splitlines() if line.startswith("stale ")]
    assert len(stale) == sum(CHAINER_JOBS.values()) and all("/chainer/" in line for line in stale)
    assert all("code changed: deeppose/backends/chainer.py" in line for line in stale)
    # The report, rebuilt from these results, says which are stale, above everything else.
    run([sys.executable, "-m", "deeppose", "report"], project)
    head = (project / "reports" / "report.md").read_text().split("## 1.")[0]
    assert f"**{sum(CHAINER_JOBS.values())} result(s) below are stale**" in head
    assert "`results/time/chainer/explicit/cpu/b1.json`: code changed: deeppose/backends/chainer.py" in head
    snakemake(project, "--cores", "all")
    touch_code(project, "deeppose/report/fmt.py")
    assert snakemake_planned(project) == ["all", "report"]
    snakemake(project, "--cores", "all")

    edit_params(project, {"timing": {"repeats": 4}})
    planned = snakemake_planned(project)
    assert set(planned) == {"time", "report", "all"} and planned.count("time") == 8

    # Back to the repeats that ran (nothing to redo for them), plus one new batch exponent.
    edit_params(project, {"timing": {"repeats": 3}, "grid": {"batch_exponents": [0, 1, 2]}})
    planned = snakemake_planned(project)
    assert set(planned) == {"time", "report", "all"} and planned.count("time") == 4


@pytest.mark.slow
def test_dvc_repro_produces_the_same_outputs_and_reruns_only_what_changed(tmp_path):
    project = copy_project(tmp_path / "project")
    dvc(project, "repro")
    missing = [out for out in expected_outputs(project) if not (project / out).exists()]
    assert not missing
    assert "Data and pipelines are up to date" in dvc(project, "status").stdout
    assert status(project).strip() == "every result of params.yaml is current"

    touch_code(project, "deeppose/backends/chainer.py")
    changed = set(re.findall(r"^(\S+):", dvc(project, "status").stdout, flags=re.M))
    assert {stage.split("@")[0] for stage in changed} == {f"{stage}-chainer" for stage in CHAINER_JOBS}
    assert len(changed) == sum(CHAINER_JOBS.values())
    out = dvc(project, "repro").stdout
    ran = set(re.findall(r"^Running stage '(\S+)'", out, flags=re.M))
    assert ran == changed | {"report"}, out

    edit_params(project, {"timing": {"repeats": 4}})
    changed = dvc(project, "status").stdout
    stale = set(re.findall(r"^(\S+):", changed, flags=re.M))
    assert stale and all(s.startswith("time-") for s in stale), changed
    assert len(stale) == 8

    out = dvc(project, "repro").stdout
    assert "train-" not in re.sub(r"Stage 'train-\S+' didn't change, skipping", "", out)
    assert dvc(project, "metrics", "show").returncode == 0

    edit_params(project, {"grid": {"batch_exponents": [0, 1, 2]}})
    out = dvc(project, "repro").stdout
    ran = set(re.findall(r"^Running stage '(\S+)'", out, flags=re.M))
    new_jobs = {f"time-{fw}@{loss}-cpu-2" for fw in ("pytorch", "chainer") for loss in ("autograd", "explicit")}
    assert ran - {"report"} == new_jobs, out
