"""`python -m deeppose compare`: false alarms and power on a simulated machine, unlike machines,
bad input, and a temporary git repository with two commits of results (compare, report --baseline,
dvc metrics diff, dvc plots diff)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import yaml
from report_project import ROOT, make_project
from simulated_machine import FakePool

from deeppose import compare as C
from deeppose import compare_stats as S
from deeppose import timing
from deeppose.config import Params, load_params
from deeppose.errors import DeepPoseError
from deeppose.grid import Group, Job
from deeppose.records import paths
from deeppose.records.timing import TimingResult
from deeppose.records.training import TrainMetrics

CELLS = {"pytorch/autograd": 0.05, "pytorch/explicit": 0.05, "chainer/autograd": 0.1, "chainer/explicit": 0.1}
SLOWED = "chainer/explicit"
EXP = 3
# 300 draws (binomial): at the measured power (98.6 % in 1,000 draws) the bound of 95 % fails by
# chance with probability 7e-6, while a power fallen to 90 % still passes it 0.13 % of the time; of
# 1,200 unchanged cells, a false-call rate of 2 % (twice the bound) passes it (12 calls or fewer)
# 0.5 % of the time.
DRAWS = 300


def manifest(cpu: str) -> dict:
    return {
        "framework": "pytorch",
        "device": "cpu",
        "cpu": {"model": cpu, "isa_flags": ["avx2"]},
        "env": {},
        "native": {},
        "common": {
            "dtype": "float32",
            "threads": 2,
            "kernel_library": "onednn",
            "kernel_isa": "AVX2",
            "fp32_math": "ieee",
            "runtime_checks": False,
        },
    }


def environment(cpu: str) -> dict:
    return {
        "cpu": cpu,
        "cores": 2,
        "usable_cores": 2,
        "os": "Linux",
        "python": "3.11.9",
        "packages": {"numpy": "1.26.4"},
        "commit": "abc",
    }


@pytest.fixture(scope="module")
def params():
    """params.yaml's grid (2 frameworks x 2 loss modes) with compare_stats.SIMULATED_ROUNDS blocks per cell."""
    loaded = load_params(ROOT / "params.yaml")
    raw = loaded.value()
    raw["timing"].update(blocks=S.SIMULATED_ROUNDS, max_blocks=S.SIMULATED_ROUNDS)
    return Params.from_raw(loaded.path, raw)


@dataclasses.dataclass
class ManifestPool(FakePool):
    """The simulated machine, its arms reporting a given fairness manifest."""

    manifest: dict = dataclasses.field(default_factory=dict)

    def finish(self, arm: str):
        extra, cpu_s = super().finish(arm)
        return {**extra, "fairness": self.manifest, "versions": {"numpy": "1.26.4"}}, cpu_s


def simulated_side(params, label: str, base_s: dict[str, float], seed: int, cpu: str = "Sim CPU") -> C.Side:
    """One timing group run by the real timing stage (deeppose.timing.time_group) on the simulated
    machine: drift, a random walk of speed, per-process effects, outlier blocks, disturbed blocks rerun."""
    group = Group.of(params.grid, "cpu", EXP)
    pool = ManifestPool(base_s, np.random.default_rng(seed), manifest=manifest(cpu))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(timing, "describe_environment", lambda: environment(cpu))
        results = timing.time_group(params, group, True, pool, **pool.watch())
    return C.Side(label, results, {}, {}, {}, None)


def called(changes: C.Changes) -> dict[str, str]:
    return {row.cell.rsplit("/", 2)[0]: row.verdict for row in changes.timing if row.changed}


@pytest.mark.slow
def test_false_alarms_and_power_on_the_simulated_machine(params):
    """DRAWS draws of three runs of one timing group: BASE, and against it a HEAD with A/A noise
    only and a HEAD where one cell is 20 % slower (each a fresh run of the simulated machine)."""
    false_calls = found_alone = other_calls = 0
    for draw in range(DRAWS):
        base = simulated_side(params, "base", CELLS, 3 * draw)
        same = simulated_side(params, "head", CELLS, 3 * draw + 1)
        slowed = simulated_side(params, "head", {**CELLS, SLOWED: CELLS[SLOWED] * 1.2}, 3 * draw + 2)
        false_calls += len(called(C.compare_sides(base, same)))
        calls = called(C.compare_sides(base, slowed))
        found_alone += calls == {SLOWED: "slower"}
        other_calls += len(set(calls) - {SLOWED})
    false_rate, power = false_calls / (DRAWS * len(CELLS)), found_alone / DRAWS
    print(
        f"A/A: a change called in {false_rate:.2%} of {DRAWS * len(CELLS)} cells; one cell 20 % slower: found "
        f"alone in {power:.1%} of {DRAWS} draws, another cell called in {other_calls / (DRAWS * 3):.2%}"
    )
    assert false_rate <= 0.01
    assert power >= 0.95


def test_unlike_machines_are_named_and_get_no_time_verdict(params):
    base = simulated_side(params, "base", CELLS, 1, cpu="Intel Xeon 8480")
    head = simulated_side(params, "head", {**CELLS, SLOWED: 0.2}, 2, cpu="AMD EPYC 9654")
    changes = C.compare_sides(base, head)
    fields = {m.field: (m.base, m.head) for m in changes.machines}
    assert fields["environment.cpu"] == ("Intel Xeon 8480", "AMD EPYC 9654")
    assert fields["fairness.cpu.model"] == ("Intel Xeon 8480", "AMD EPYC 9654")
    assert {row.verdict for row in changes.timing} == {"not comparable"} and not changes.regressions
    text = C.render_markdown(changes)
    assert "no time verdict" in text and "`environment.cpu`" in text and "Intel Xeon 8480" in text
    assert "slower" not in text and "--across-machines" in text
    across = C.compare_sides(base, head, across_machines=True)
    ratios = [row for row in across.across if row.what.startswith("Chainer / PyTorch")]
    assert len(ratios) == 2 and "compared below instead" in C.render_markdown(across)


def test_the_same_machine_is_like_itself_whatever_its_load_and_library_order():
    """Two runs on one machine: the load average before each job and the order in which a process
    loaded its libraries differ, and neither makes the machines unlike (seen on two real runs)."""
    libraries = [
        {"library": "openblas", "architecture": "SkylakeX"},
        {"library": "openblas", "architecture": "Haswell"},
    ]

    def described(load: float, native: list) -> dict:
        record = types.SimpleNamespace(
            environment={"cpu": "Sim CPU", "load_average_1m": load, "commit": "x"},
            threads={"native": native},
            versions={},
            provenance=types.SimpleNamespace(machine={"cpu": "Sim CPU", "usable_cores": 2}),
        )
        return C._description(record)

    assert described(0.3, libraries) == described(1.7, libraries[::-1])
    assert described(0.3, libraries) != described(0.3, libraries[:1])


def test_bad_input_is_one_line_naming_it(tmp_path, params, capsys):
    from deeppose.cli import main

    (tmp_path / "empty").mkdir()
    for argv, named in (
        (["compare", str(tmp_path / "empty"), "HEAD"], "a folder without results"),
        (["compare", "no-such-revision-xyz", "HEAD"], "neither a folder nor a git revision"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and named in err
    other = C.Side("other", {}, {}, {}, {}, None)
    with pytest.raises(DeepPoseError, match="share no timing cell or training run"):
        C.compare_sides(simulated_side(params, "base", CELLS, 0), other)
    with pytest.raises(DeepPoseError, match="--margin 5"):
        side = simulated_side(params, "base", CELLS, 0)
        C.compare_sides(side, side, margin=5)


def test_four_verdicts_against_heads_margin_and_only_slower_is_a_regression(params):
    """No "no change": a cell whose interval sits inside the margin is equivalent, one too wide to tell
    is inconclusive; neither counts as changed, and only slower makes a regression. The margin is
    HEAD's timing.margin, as its records' design holds it."""
    side = simulated_side(params, "head", CELLS, 5)
    assert C.head_margin(side) == (params.timing.margin, "HEAD's timing.margin, 5 %")
    wider = {
        job: dataclasses.replace(r, design=dataclasses.replace(r.design, margin=0.08))
        for job, r in side.timing.items()
    }
    assert C.head_margin(dataclasses.replace(side, timing=wider))[0] == 0.08
    assert C.head_margin(C.Side("empty", {}, {}, {}, {}, None))[0] == C.DEFAULT_MARGIN

    def row(low: float, high: float) -> tuple:
        return ("core time", f"x/{low}", 1.0, 1.0, S.Interval((low + high) / 2, low, high, 8, 0.95, "t"))

    rows = [row(0.98, 1.03), row(0.9, 1.2), row(1.08, 1.3), row(0.7, 0.9)]
    judged = C._verdicts(rows, 1.0, 0.05, True)
    assert [r.verdict for r in judged] == ["equivalent", "inconclusive", "slower", "faster"]
    assert [r.changed for r in judged] == [False, False, True, True]
    changes = C.compare_sides(side, side)
    assert {r.verdict for r in changes.timing} <= {"equivalent", "inconclusive"} and not changes.regressions
    text = C.render_markdown(changes)
    assert "no change" not in text and "0 faster, " in text and " inconclusive (margin " in text


# --- two commits of results in a temporary git repository -----------------------------------
def _run(cwd: Path, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    done = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert not check or done.returncode == 0, done.stderr
    return done


def _deeppose(cwd: Path, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run(cwd, sys.executable, "-m", "deeppose", *argv, check=check)


def _plant_changes(root: Path) -> None:
    """HEAD: chainer/autograd/cpu/b0 30 % slower; PyTorch autograd's test PCK -> 0.80 and its
    training loss curve halved (one seed: one trajectory, which compare must not call a change)."""
    cwd = Path.cwd()
    os.chdir(root)
    try:
        job = Job("chainer", "autograd", "cpu", 0)
        result = TimingResult.read(paths.timing_result(job))
        blocks = [{**b.to_dict(), "samples_s": [s * 1.3 for s in b.samples_s]} for b in result.blocks]
        fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
        TimingResult.create(**{**fields, "blocks": blocks}).write(paths.timing_result(job))
        run = Job("pytorch", "autograd", "cpu")
        metrics = TrainMetrics.read(paths.train_metrics(run))
        fields = {f.name: getattr(metrics, f.name) for f in dataclasses.fields(metrics)}
        per_image = {**metrics.test_per_image, "pck_hits": [11.0] * 64 + [12.0] * 16}  # 896 of 80 x 14: 0.8
        TrainMetrics.create(
            **{
                **fields,
                "final_test": {**metrics.final_test.to_dict(), "pck": 0.8},
                "test_per_image": per_image,
            }
        ).write(paths.train_metrics(run))
        lines = [json.loads(line) for line in paths.train_log(run).read_text().splitlines()]
        paths.train_log(run).write_text(
            "".join(
                json.dumps({**line, "loss": line["loss"] / 2} if line["kind"] == "iteration" else line) + "\n"
                for line in lines
            )
        )
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    """A project with results and its report in two commits, the second with planted changes."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = make_project(tmp_path_factory.mktemp("repo"), devices=("cpu",))
    _run(root, "git", "init", "-q", "-b", "main")
    _run(root, sys.executable, "-m", "dvc", "init", "-q")
    _deeppose(root, "dvc-yaml")
    _deeppose(root, "report")
    _run(root, "git", "add", "-A")
    _run(root, "git", "commit", "-qm", "base")
    _plant_changes(root)
    _deeppose(root, "report")
    _run(root, "git", "add", "-A")
    _run(root, "git", "commit", "-qm", "head")
    return root


@pytest.mark.slow
def test_compare_two_revisions_finds_the_planted_change(repository):
    done = _deeppose(repository, "compare", "HEAD~1", "HEAD")
    text = done.stdout
    assert text.startswith("**deeppose compare** `HEAD~1` → `HEAD`: 1 of 11 timing cells slower, 0 faster")
    slower = [line for line in text.splitlines() if "**slower**" in line]
    assert len(slower) == 1 and "chainer/autograd/cpu/b0" in slower[0] and "1.3" in slower[0]
    # one seed a side: the planted PCK and the halved training loss are one trajectory's, never a change
    assert "**better**" not in text and "**lower**" not in text
    assert "Accuracy from one training run (seed) per job on a side measures one trajectory" in text
    failing = _deeppose(repository, "compare", "HEAD~1", "HEAD", "--fail-on-regression", check=False)
    assert failing.returncode == 1 and failing.stdout == text
    assert _deeppose(repository, "compare", "HEAD~1", "HEAD~1", "--fail-on-regression").returncode == 0
    found = json.loads(_deeppose(repository, "compare", "HEAD~1", "HEAD", "--json").stdout)
    rows = {row["cell"]: row for row in found["timing"]}
    assert rows["chainer/autograd/cpu/b0"]["verdict"] == "slower"
    assert rows["chainer/autograd/cpu/b0"]["change"]["estimate"] == pytest.approx(1.3, rel=0.01)
    assert sum(row["verdict"] in ("equivalent", "inconclusive") for row in found["timing"]) == 10
    accuracy = {(row["cell"], row["what"]): row for row in found["accuracy"]}
    planted = accuracy[("pytorch/autograd/cpu", "test PCK@0.2")]
    assert planted["verdict"] == "not replicated" and planted["change"]["low"] is None
    assert planted["change"]["estimate"] == pytest.approx(0.8 - 0.6)
    assert accuracy[("pytorch/autograd/cpu", "final training loss")]["verdict"] == "not replicated"
    assert accuracy[("chainer/autograd/cpu", "final training loss")]["verdict"] == "identical"
    folders = _deeppose(
        repository.parent, "compare", str(repository / "results"), str(repository / "results")
    )
    assert "0 of 11 timing cells slower" in folders.stdout


@pytest.mark.slow
def test_report_baseline_adds_the_changes_section(repository):
    _deeppose(repository, "report", "--baseline", "HEAD~1")
    report = (repository / "reports" / "report.md").read_text()
    section = report.split("## 2. Changes since HEAD~1\n", 1)[1].split("\n## ", 1)[0]
    assert "chainer/autograd/cpu/b0" in section and "**slower**" in section
    _run(repository, "git", "checkout", "-q", "--", "reports")


@pytest.mark.slow
def test_dvc_metrics_and_plots_diff_show_the_planted_change(repository):
    show = _run(repository, sys.executable, "-m", "dvc", "metrics", "show").stdout
    assert "reports/headlines.json" in show
    diff = _run(repository, sys.executable, "-m", "dvc", "metrics", "diff", "HEAD~1").stdout
    assert max(len(line) for line in diff.splitlines()) <= 120  # one line a changed number
    pck = [line.split() for line in diff.splitlines() if "cpu_pck_pytorch " in f"{line} "]
    assert len(pck) == 1, diff
    before, after = (float(x) for x in pck[0][2:4])  # Path, Metric, HEAD~1, workspace, change
    assert before == pytest.approx(535 / 1120, abs=0.001) and after == pytest.approx(0.8, abs=0.001), diff
    out = repository / "plots"
    plots = _run(repository, sys.executable, "-m", "dvc", "plots", "diff", "HEAD~1", "--json", "-o", str(out))
    data = json.loads(plots.stdout)
    curves = [name for name in data.get("data", data) if "learning_curves" in name]
    assert curves, plots.stdout[:500]
    html = _run(repository, sys.executable, "-m", "dvc", "plots", "diff", "HEAD~1", "-o", str(out))
    assert (out / "index.html").exists(), html.stdout


# --- the workflows (they cannot run here: their schema and their commands are checked) ---
WORKFLOWS = ROOT / ".github" / "workflows"
WORKFLOW = WORKFLOWS / "benchmark.yml"
CHECK = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows"]


@pytest.mark.parametrize("name", ["benchmark.yml", "tests.yml"])
def test_the_workflows_are_valid_github_workflows(tmp_path, name):
    workflow = WORKFLOWS / name
    done = subprocess.run(CHECK + [str(workflow)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text(workflow.read_text().replace("runs-on:", "runs_on:"))
    assert subprocess.run(CHECK + [str(broken)], capture_output=True, check=False).returncode == 1


def test_the_workflow_runs_each_side_on_its_own_small_parameters_and_posts_compare():
    text = WORKFLOW.read_text()
    assert text.count('--config params="$PARAMS"') == 2 and "PARAMS: params-pr.yaml" in text
    assert "cp " not in text  # the base runs its own params-pr.yaml, never the head's
    assert '-m deeppose compare "$RUNNER_TEMP/base/results" results --fail-on-regression' in text
    assert "gh pr comment" in text and "--body-file compare.md" in text
    small = load_params(ROOT / "params-pr.yaml")
    assert small.timing.blocks >= 4  # a rank interval needs 4 blocks a side at 95 %
    assert S.hodges_lehmann_ratio([1.0, 1.1, 1.2, 1.3], [1.0, 1.1, 1.2, 1.3]).low is not None


def test_the_comment_is_skipped_on_forks_and_never_colours_the_job():
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["compare"]["steps"]
    comment = next(step for step in steps if "gh pr comment" in step.get("run", ""))
    assert comment["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    assert comment["continue-on-error"] is True
    verdict = steps[-1]
    assert verdict["if"] == "steps.compare.outputs.status != '0'" and "exit" in verdict["run"]


def test_tests_run_the_fast_tier_on_pull_requests_and_the_whole_suite_on_main():
    workflow = yaml.safe_load((WORKFLOWS / "tests.yml").read_text())
    triggers = workflow[True]  # PyYAML reads the key `on` as True
    assert "pull_request" in triggers and triggers["push"]["branches"] == ["main"]
    runs = {name: [step.get("run", "") for step in job["steps"]] for name, job in workflow["jobs"].items()}
    assert workflow["jobs"]["fast"]["if"] == "github.event_name == 'pull_request'"
    assert "make test-fast PYTHON=python" in runs["fast"]
    assert workflow["jobs"]["full"]["if"] == "github.event_name == 'push'"
    assert ".ci/run" in runs["full"] and (ROOT / ".ci" / "run").read_text().rstrip().endswith("\nmake test")
    for job in workflow["jobs"].values():
        cache = next(step for step in job["steps"] if step.get("uses", "").startswith("actions/cache@"))
        assert cache["with"]["path"] == ".venv"
        assert "hashFiles('requirements/lock.txt', 'requirements/dev.txt'" in cache["with"]["key"]
    makefile = (ROOT / "Makefile").read_text()
    assert '-m pytest -m "not slow"' in makefile  # the fast tier is what the README says it is
