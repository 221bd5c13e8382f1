"""`python -m deeppose report` on small hand-made results: tables against inputs, conclusions on
known cases, missing jobs, byte-identical regeneration, summary.json.

The fixture project and what its results hold by design are described in tests/report_project.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deeppose import paths, provenance
from deeppose.config import load_params
from deeppose.grid import Job
from report_project import (
    BREAKDOWN, BREAKDOWN_EXP, CONTROL, ITERATIONS, MISSING_BREAKDOWN, MISSING_TIMING, NOISY_TIMING, PEAK, ROOT, ROUNDS,
    compute_times, core_mean, make_project,
)

# --- parsing the Markdown ---------------------------------------------------------------------
UNITS = {"h": 3600.0, "min": 60.0, "s": 1.0, "ms": 1e-3, "µs": 1e-6, "%": 0.01}


def number(cell: str) -> float:
    """'1.23 ms' -> 0.00123, '12.3 %' -> 0.123, '1.64' -> 1.64, '150 GFLOP/s' -> 1.5e11."""
    value, _, unit = cell.strip().partition(" ")
    scale = {"GFLOP/s": 1e9, "TFLOP/s": 1e12, "MFLOP/s": 1e6}.get(unit, UNITS.get(unit.rstrip("²"), 1.0))
    return float(value) * (scale**2 if unit.endswith("²") else scale)


def tables_under(markdown: str, heading: str) -> list[list[dict[str, str]]]:
    """The tables between `heading` and the next heading of the same or a higher level."""
    level = heading.split(" ")[0]
    start = markdown.index(heading + "\n")
    rest = markdown[start + len(heading):]
    stop = re.search(rf"^#{{1,{len(level)}}} ", rest, flags=re.M)
    block = rest[: stop.start()] if stop else rest
    tables, current = [], []
    for line in block.splitlines() + [""]:
        if line.startswith("|"):
            current.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
        elif current:
            header, rows = current[0], current[2:]
            tables.append([dict(zip(header, row)) for row in rows])
            current = []
    return tables


def close(cell: str, expected: float, rel: float = 0.006) -> bool:
    return number(cell) == pytest.approx(expected, rel=rel)


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One project built once with the library call; tests read its outputs."""
    root = make_project(tmp_path_factory.mktemp("project"))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        from deeppose.report import build

        ctx = build(load_params("params.yaml"))
    markdown = (root / "reports" / "report.md").read_text()
    summary = json.loads((root / "reports" / "summary.json").read_text())["headlines"]
    return root, ctx, markdown, summary


# --- tests ------------------------------------------------------------------------------------
def test_report_imports_no_framework():
    code = ("import sys, deeppose.report, deeppose.report.sections; "
            "print('torch' in sys.modules or 'chainer' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_sections_in_study_order(built):
    _, _, markdown, _ = built
    headings = re.findall(r"^## (.+)$", markdown, flags=re.M)
    assert headings == [
        "1. Set-up", "2. Effect of automatic differentiation", "3. Impact of the network implementation",
        "4. Per-layer breakdown of the core process", "5. Accuracy", "6. Against the original study", "7. Summary",
    ]
    assert "could not be built" not in markdown


def test_setup_shows_parameters_data_and_environment(built):
    _, _, markdown, _ = built
    section = markdown.split("## 1.")[1].split("## 2.")[0]
    assert "Training: 3 epochs at batch 16, momentum_sgd (lr 0.01, momentum 0.9)" in section
    assert "best of standard kernels: 150 GFLOP/s (numpy matmul 120 GFLOP/s, torch conv3x3 150 GFLOP/s)" in section
    assert "Prepared data: source synthetic; kept train 290, test 95; dropped 15 (span >= 227: 15)" in section
    params = {r["parameter"]: r["value"] for r in tables_under(section, "### Parameters")[0]}
    assert params["`grid.devices`"] == '["cpu", "cuda"]' and params["`train.lr`"] == "0.01"
    fairness = tables_under(section, "#### What the timing processes ran with on cpu")[0]
    assert [r["framework"] for r in fairness] == ["PyTorch", "Chainer"]
    assert fairness[1]["kernel_isa"] == "Haswell" and fairness[1]["steering variables"] == "OPENBLAS_CORETYPE Haswell"
    assert "3 asymmetries between the frameworks' processes:" in section
    assert "- `common.kernel_isa`: PyTorch AVX512; Chainer Haswell (may bias:" in section
    env = tables_under(section, "### Environment")[0]
    assert env[0]["CPU"] == "Test CPU 9000" and env[0]["cores (usable of all)"] == "2 of 2"
    assert "`abc123`" in section and "150 GFLOP/s" in section


def test_training_table_matches_inputs(built):
    _, _, markdown, _ = built
    rows = tables_under(markdown, "### cpu")[0]
    assert len(rows) == 4
    for row in rows:
        fw, loss = row["framework"].lower(), row["loss"]
        times = compute_times(fw, loss)
        total = sum(times) + 0.05 * ITERATIONS
        assert close(row["training time"], total)
        assert close(row["wall per iteration"], total / ITERATIONS)
        mean, std = row["compute per iteration (mean ± std)"].split(" ± ")
        assert close(mean, np.mean(times)) and close(std, np.std(times, ddof=1), rel=0.01)
        assert row["samples (source)"].startswith(f"{ITERATIONS} (log.jsonl")


def test_autodiff_conclusions(built):
    """The loss alone decides: PyTorch's modes cost the same, Chainer's explicit backward 50 µs more;
    the whole training runs get a ratio and the A/A noise floor, never a verdict."""
    _, _, markdown, summary = built
    section = markdown.split("## 2.")[1].split("## 3.")[0]
    pytorch = next(line for line in section.splitlines() if line.startswith("- PyTorch on cpu"))
    chainer = next(line for line in section.splitlines() if line.startswith("- Chainer on cpu"))
    assert "(no difference, 4 rounds)" in pytorch and "at batch 2" in pytorch  # the largest complete group
    assert "(slower, 4 rounds)" in chainer and "whole training runs: explicit / autograd" in chainer
    assert "no verdict; identical arms in the timing's A/A control came up to" in chainer
    diff = summary["cpu"]["explicit_minus_autograd_loss_s"]
    assert diff["pytorch"]["verdict"] == "no_difference" and diff["chainer"]["verdict"] == "slower"
    assert diff["chainer"]["low"] < 50e-6 < diff["chainer"]["high"] and diff["chainer"]["batch"] == 2
    assert "![Training loss against elapsed time on cpu](figures/learning_curves_cpu.png)" in section


def test_core_time_tables(built):
    _, _, markdown, summary = built
    assert [(p["batch_size"], p["framework"], p["loss"], p["significant"]) for p in summary["aa_control"]] == [
        (1, "pytorch", "autograd", False), (2, "pytorch", "autograd", False)]
    assert summary["aa_false_positive_rate"] == 0.0
    section = markdown.split("## 3.")[1].split("## 4.")[0]
    cpu = section.split("### cpu")[1].split("### cuda")[0]
    core, ratios, control, flops = tables_under("### cpu" + cpu, "### cpu")
    for row in core:
        job = Job(row["framework"].lower(), row["loss"], "cpu", int(row["batch"]).bit_length() - 1)
        if job == MISSING_TIMING:
            assert row["blocks"] == "not run"
            continue
        data = json.loads((built[0] / paths.timing_result(job)).read_text())["time_s"]
        assert row["time (95 % CI)"].endswith(" ms")
        assert float(row["time (95 % CI)"].split(" [")[0]) * 1e-3 == pytest.approx(data["estimate"], rel=0.01)
        assert row["blocks"] == str(ROUNDS) and row["disturbed attempts"] == str(int(job == NOISY_TIMING))
    by_batch = {row["batch"]: row for row in ratios}
    assert number(by_batch["2"]["Chainer / PyTorch, autograd"].split(" [")[0]) == pytest.approx(2.0, rel=0.01)
    assert by_batch["2"]["Chainer / PyTorch, autograd"].endswith("slower")
    assert by_batch["2"]["PyTorch explicit / autograd"].endswith("no difference")
    assert by_batch["32"]["Chainer / PyTorch, explicit"] == "—"  # its group lacks a cell
    assert [row["batch"] for row in control] == ["1", "2"] and all(r["A/A cell"] == CONTROL for r in control)
    assert all(r["twin / cell (90 % CI)"].endswith("no difference") for r in control)
    for row in flops:
        job = Job(row["framework"].lower(), row["loss"], "cpu", int(row["batch"]).bit_length() - 1)
        achieved = 6.58e9 * 2**job.batch_exp / core_mean(job)
        assert close(row["achieved"], achieved) and close(row["fraction of peak"], achieved / PEAK)
    assert "![Core-process time against batch size on cpu](figures/core_time_cpu.png)" in cpu


def test_breakdown_section(built):
    root, _, markdown, summary = built
    section = markdown.split("## 4.")[1].split("## 5.")[0]
    sum_rule, differ, flops = tables_under(section, "### cpu, batch 2")
    assert len(sum_rule) == 4
    for row in sum_rule:
        job = Job(row["Framework"].lower(), row["Loss"], "cpu", BREAKDOWN_EXP)
        if job == MISSING_BREAKDOWN:
            assert row["Core time"] == "not run"
            continue
        conv_s, fc_s, core_s = BREAKDOWN[job.framework, job.loss]
        layers = conv_s + fc_s + 2 * 0.0005  # and one relu call per phase
        assert close(row["Core time"], core_s) and close(row["Σ layers"], layers)
        assert close(row["Overhead"], core_s - layers) and row["Sum rule met"].startswith("yes")
    assert "1 of 4 per-layer breakdown jobs on cpu have no usable result" in section
    assert [r["Layer"] for r in differ[:8]] == sorted(r["Layer"] for r in differ[:8])  # ties in a fixed order
    assert all(r["Layer"].startswith("conv") for r in differ[:8])  # Chainer's convolutions differ most
    assert close(next(r for r in differ if r["Layer"] == "core process")["Chainer/PyTorch"], 0.17 / 0.035)
    assert len(flops) == 16 and all(r["PyTorch"] != "—" and r["Chainer"] != "—" for r in flops)
    verdict = next(line for line in section.splitlines() if line.startswith("On cpu at batch 2 (autograd loss)"))
    assert "Convolutions account for 96.3 %" in verdict and "This confirms the study's conclusion" in verdict
    assert "Chainer is not compared with PyTorch (explicit loss), Chainer explicit not run." in section
    assert "No per-layer breakdown result on cuda (4 jobs): see *Jobs without results*" in section
    for name in ("breakdown_cpu_b2.png", "breakdown_peak_cpu_b2.png"):
        assert f"](figures/{name})" in section
        assert (root / "reports" / "figures" / name).read_bytes().startswith(b"\x89PNG")
    headlines = summary["cpu"]["breakdown"]
    assert headlines["chainer_over_pytorch_core"] == {"autograd": {"b2": pytest.approx(0.17 / 0.035, rel=1e-5)}}
    assert headlines["conv_share_of_extra"] == {"chainer": {"autograd": {"b2": pytest.approx(0.13 / 0.135, rel=1e-5)}}}
    assert "breakdown" not in summary.get("cuda", {})


def test_breakdown_verdicts_reach_the_summary(built):
    _, _, markdown, _ = built
    section = markdown.split("## 4.")[1].split("## 5.")[0]
    conclusions = markdown.split("## 7. Summary")[1].split("### Jobs without results")[0]
    cpu, cuda = conclusions.split("**cpu**")[1].split("**cuda**")
    verdict = next(line for line in section.splitlines() if line.startswith("On cpu at batch 2"))
    assert f"- {verdict}\n" in cpu
    assert "- Per-layer breakdown on cpu at batch 2: Chainer is not compared with PyTorch (explicit loss)" in cpu
    assert "- No per-layer breakdown on cuda" in cuda


def test_report_without_breakdown_results(tmp_path, monkeypatch):
    root = make_project(tmp_path, devices=("cpu",))
    monkeypatch.chdir(root)
    shutil.rmtree(root / "results" / "breakdown")
    from deeppose.report import build, figure_paths

    params = load_params("params.yaml")
    ctx = build(params)
    markdown = (root / "reports" / "report.md").read_text()
    assert "could not be built" not in markdown
    section = markdown.split("## 4.")[1].split("## 5.")[0]
    assert "No per-layer breakdown result on cpu (4 jobs): see *Jobs without results* in the Summary." in section
    assert "![" not in section and "Convolutions account for" not in section
    reasons = {r["job"]: r["reason"] for r in tables_under(markdown, "### Jobs without results")[0]}
    assert reasons["per-layer breakdown PyTorch autograd cpu"].endswith("(has the stage been run?)")
    assert "- No per-layer breakdown on cpu" in markdown.split("## 7. Summary")[1]
    placeholders = [p for p in ctx.figures if p.name.startswith("breakdown")]
    assert [p.name for p in placeholders] == ["breakdown_cpu_b2.png", "breakdown_peak_cpu_b2.png"]
    assert all(p.exists() for p in placeholders) and figure_paths(params) == ctx.figures
    assert "breakdown" not in ctx.summary["cpu"] and ctx.summary["jobs"]["breakdown"]["present"] == 0


def test_accuracy_table(built):
    _, _, markdown, summary = built
    rows = tables_under(markdown, "## 5. Accuracy")[0]
    cpu = [r for r in rows if r["device"] == "cpu"]
    assert [r["framework"] for r in cpu] == ["PyTorch", "PyTorch", "Chainer", "Chainer", "mean pose (baseline)"]
    assert close(cpu[0]["PCK@0.2"], 0.6) and close(cpu[2]["PCK@0.2"], 0.55)
    assert close(cpu[-1]["test loss (95 % CI)"], 0.02)
    assert all(r["test loss − mean pose (95 % CI)"].endswith(": beats it") for r in cpu[:4])
    assert all(r["PCP@0.5 − mean pose (95 % CI)"].endswith(": beats it") for r in cpu[:4])
    assert all(r["final training loss"] == "not run" for r in rows if r["device"] == "cuda")
    assert summary["cpu"]["test"]["baseline"]["pck"] == 0.15
    assert "all 4 runs beat it on test loss and PCP@0.5, with 95 % intervals that exclude it" in markdown


def test_accuracy_gaps_resample_images_and_need_an_interval_clear_of_zero():
    from deeppose.report.analysis import accuracy_gaps

    rng = np.random.default_rng(1)
    n = 99
    sq, base_sq, visible = rng.uniform(0, 1, n), rng.uniform(0.2, 1.2, n), rng.integers(5, 15, n).astype(float)
    hits, counted = rng.binomial(9, 0.5, n).astype(float), np.full(n, 9.0)
    gaps = accuracy_gaps({"sq_error": sq, "visible": visible, "pcp_hits": hits, "pcp_counted": counted,
                          "baseline_sq_error": base_sq, "baseline_pcp_hits": hits})
    loss, pcp = gaps["loss"], gaps["pcp"]
    assert loss.trained.estimate == pytest.approx(sq.sum() / visible.sum())
    assert loss.difference.estimate == pytest.approx((sq.sum() - base_sq.sum()) / visible.sum())
    assert loss.difference.low < loss.difference.estimate < loss.difference.high < 0 and loss.beats_baseline
    # the same hits as the baseline: a difference of exactly zero, which beats nothing
    assert pcp.difference.estimate == 0 and not pcp.beats_baseline
    # a worse network: its loss interval lies above zero
    worse = accuracy_gaps({"sq_error": base_sq * 1.5, "visible": visible, "baseline_sq_error": base_sq,
                           "pcp_hits": hits, "pcp_counted": counted, "baseline_pcp_hits": hits})
    assert worse["loss"].difference.low > 0 and not worse["loss"].beats_baseline


def test_study_comparison(built):
    _, _, markdown, summary = built
    rows = tables_under(markdown, "## 6. Against the original study")[0]
    chainer_cpu = next(r for r in rows if r["device"] == "cpu" and r["ratio"].startswith("Chainer / PyTorch"))
    expected = (1.6 * ITERATIONS + 0.05 * ITERATIONS) / (1.0 * ITERATIONS + 0.05 * ITERATIONS)
    assert close(chainer_cpu["this run"], expected, rel=0.01) and chainer_cpu["study"] == "1.64"
    assert abs(expected / 1.64 - 1) <= 0.1 and chainer_cpu["verdict"] == "agrees"
    pytorch = next(r for r in rows if r["device"] == "cpu" and r["ratio"].endswith("(PyTorch)"))
    assert pytorch["verdict"] == "agrees"
    assert all(r["this run"] == "not run" for r in rows if r["device"] == "cuda")
    assert summary["cpu"]["chainer_over_pytorch_per_iteration"]["autograd"] == pytest.approx(expected, rel=1e-3)
    assert set(summary["cpu"]["explicit_over_autograd_train_time"]) == {"pytorch", "chainer"}
    assert "as in the study, the network's implementation matters more" in markdown


def test_missing_jobs_shown_as_not_run(built):
    _, _, markdown, summary = built
    rows = tables_under(markdown, "### Jobs without results")[0]
    reasons = {r["job"]: r for r in rows}
    assert "no cuda job of this kind has a result" in reasons["training PyTorch autograd cuda"]["reason"]
    chainer = reasons["timing Chainer explicit cpu"]
    assert chainer["batch sizes"] == "32" and "other cpu jobs have results" in chainer["reason"]
    assert summary["jobs"] == {
        "train": {"expected": 8, "present": 4}, "timing": {"expected": 24, "present": 11},
        "breakdown": {"expected": 8, "present": 3},
    }
    breakdown = reasons["per-layer breakdown Chainer explicit cpu"]
    assert breakdown["batch sizes"] == "2" and "other cpu jobs have results" in breakdown["reason"]
    assert "no cuda job of this kind has a result" in reasons["per-layer breakdown PyTorch autograd cuda"]["reason"]
    assert "1 unreadable line(s) skipped" in markdown


def test_device_not_in_grid(tmp_path, monkeypatch):
    root = make_project(tmp_path, devices=("cpu",))
    monkeypatch.chdir(root)
    from deeppose.report import build

    ctx = build(load_params("params.yaml"))
    markdown = (root / "reports" / "report.md").read_text()
    assert "**cuda**: not in this run's grid" in markdown
    assert [p.name for p in ctx.figures] == [
        "learning_curves_cpu.png", "core_time_cpu.png", "memory_cpu.png", "flops_cpu.png",
        "breakdown_cpu_b2.png", "breakdown_peak_cpu_b2.png",
    ]


def test_empty_results_still_build(tmp_path, monkeypatch):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    from deeppose.report import build, figure_paths

    params = load_params("params.yaml")
    ctx = build(params)
    markdown = (tmp_path / "reports" / "report.md").read_text()
    assert "could not be built" not in markdown
    assert "0 of 4 training jobs" in markdown
    assert all(p.exists() for p in ctx.figures) and figure_paths(params) == ctx.figures
    for exp in params.raw["breakdown"]["batch_exponents"]:
        assert {f"breakdown_cpu_b{2**exp}.png", f"breakdown_peak_cpu_b{2**exp}.png"} <= {p.name for p in ctx.figures}


def test_cli_regenerates_identical_bytes(built, monkeypatch):
    root, ctx, _, summary = built
    before = {p: p.read_bytes() for p in sorted((root / "reports").rglob("*")) if p.is_file()}
    assert len([p for p in before if p.suffix == ".png"]) == len(ctx.figures) == 11
    monkeypatch.chdir(root)
    from deeppose.cli import main

    assert main(["report", "--params", "params.yaml"]) == 0
    after = {p: p.read_bytes() for p in sorted((root / "reports").rglob("*")) if p.is_file()}
    assert after.keys() == before.keys()
    assert all(after[p] == before[p] for p in before), [p.name for p in before if after[p] != before[p]]
    assert not re.search(r"20\d\d-\d\d-\d\d", (root / "reports" / "report.md").read_text())


def test_partial_and_broken_results(tmp_path, monkeypatch):
    """Unreadable metrics, a log missing beside its metrics, a timing file without its core
    measurement's statistics, a result of another job, no peak and no data summary: the report still
    builds and says, with the reader's one line, what is missing."""
    root = make_project(tmp_path, devices=("cpu",))
    monkeypatch.chdir(root)
    paths.train_metrics(Job("chainer", "autograd", "cpu")).write_text("{not json")
    paths.train_log(Job("pytorch", "explicit", "cpu")).unlink()
    paths.timing_result(Job("pytorch", "explicit", "cpu", 0)).write_text(json.dumps({"measurements": {}}))
    paths.matmul_peak().unlink()
    paths.prepared_summary().unlink()
    no_layers = Job("pytorch", "explicit", "cpu", BREAKDOWN_EXP)
    result = json.loads(paths.breakdown_result(no_layers).read_text())
    del result["layers"]
    paths.breakdown_result(no_layers).write_text(json.dumps(result))
    no_stats = Job("pytorch", "autograd", "cpu", 5)
    result = json.loads(paths.timing_result(no_stats).read_text())
    del result["blocks"][0]["loss_s"]
    paths.timing_result(no_stats).write_text(json.dumps(result))
    shutil.copy(paths.timing_result(Job("chainer", "autograd", "cpu", 1)), paths.timing_result(Job("chainer", "autograd", "cpu", 0)))
    from deeppose.report import render

    ctx, markdown = render(load_params("params.yaml"), draw=False)
    assert "could not be built" not in markdown
    rows = {(r["framework"], r["loss"]): r for r in tables_under(markdown, "### cpu")[0]}
    assert rows["Chainer", "autograd"]["iterations"] == "not run"
    assert rows["PyTorch", "explicit"]["samples (source)"] == f"{ITERATIONS} (metrics.json iteration_time_s)"
    reasons = {r["job"]: r["reason"] for r in tables_under(markdown, "### Jobs without results")[0]}
    assert reasons["training Chainer autograd cpu"].startswith("unusable: not valid JSON")
    assert reasons["timing PyTorch explicit cpu"] == "unusable: kind is None, expected 'time'"
    assert reasons["per-layer breakdown PyTorch explicit cpu"] == "unusable: missing field 'layers'"
    assert reasons["timing PyTorch autograd cpu"] == "unusable: blocks[0]: missing field 'loss_s'"
    assert reasons["timing Chainer autograd cpu"] == (
        "unusable: it holds the result of chainer/autograd/cpu b1, not of this job")
    assert "PyTorch explicit and Chainer explicit not run" in markdown
    assert "On cpu at batch 2 (autograd loss)" in markdown
    assert "no training comparison, autograd not run." in markdown
    assert "No measured peak" in markdown and "No data summary" in markdown
    flops = tables_under(markdown, "## 3. Impact of the network implementation")[-1]
    assert flops and all(row["fraction of peak"] == "—" for row in flops)
    assert "explicit_over_autograd_train_time" in ctx.summary["cpu"]
    assert "chainer" not in ctx.summary["cpu"]["explicit_over_autograd_train_time"]
    assert not (root / "reports").exists()  # draw=False writes nothing


@pytest.mark.parametrize(
    ("function", "value", "text"),
    [
        ("seconds", 0.9996, "1.00 s"), ("seconds", 0.0123456, "12.3 ms"), ("seconds", 4.2e-5, "42.0 µs"),
        ("seconds", 1234.0, "20.6 min"), ("seconds", 171360.0, "47.6 h"), ("seconds", None, "—"),
        ("variance", 1.13e-7, "0.113 ms²"), ("variance", 3.65e-4, "365 ms²"), ("variance", 0.002, "0.00200 s²"),
        ("ratio", 1.6449, "1.64"), ("percent", 0.8773, "87.7 %"), ("flops", 1.5e11, "150 GFLOP/s"),
        ("sig", 1234.5, "1230"),
    ],
)
def test_formatting(function, value, text):
    from deeppose.report import fmt

    assert getattr(fmt, function)(value) == text


def report_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "reports").rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "result, field, where",
    [(lambda: paths.train_metrics(Job("pytorch", "autograd", "cpu")), "train_time_s", "training PyTorch autograd cpu"),
     (lambda: paths.timing_result(Job("pytorch", "explicit", "cpu", 0)), "flops_per_s", "timing PyTorch explicit cpu")],
)
def test_a_nan_in_a_result_is_named_and_that_result_set_aside(tmp_path, monkeypatch, result, field, where):
    """Before: a traceback after report.md was rewritten, with summary.json left stale. Now the reader
    refuses the file with one line naming it and the field, the report shows the job without a
    usable result with that reason, and report.md, summary.json and the figures change together."""
    from deeppose import cli

    root = make_project(tmp_path, devices=("cpu",))
    monkeypatch.chdir(root)
    path = result()
    data = json.loads(path.read_text())
    data[field] = float("nan")
    path.write_text(json.dumps(data))
    assert cli.main(["report"]) == 0
    markdown = (root / "reports" / "report.md").read_text()
    reasons = {r["job"]: r["reason"] for r in tables_under(markdown, "### Jobs without results")[0]}
    assert reasons[where] == f"unusable: {field}: nan is not a finite number"
    summary = json.loads((root / "reports" / "summary.json").read_text())
    assert summary["inputs"][path.as_posix()] == provenance.file_hash(path, root)  # built from this very file


def test_a_nan_timing_sample_sets_its_result_aside_with_the_sample_named(tmp_path, monkeypatch):
    """Before: a NaN sample was dropped without a word. A stage never writes one, so the file is damaged."""
    root = make_project(tmp_path)
    monkeypatch.chdir(root)
    job = Job("pytorch", "explicit", "cpu", 0)
    data = json.loads(paths.timing_result(job).read_text())
    data["blocks"][2]["samples_s"][1] = float("nan")
    paths.timing_result(job).write_text(json.dumps(data))
    from deeppose.report import build

    ctx = build(load_params("params.yaml"))
    assert ctx.results.timing[job].missing == "unusable: blocks[2].samples_s[1]: nan is not a finite number"
    assert job not in ctx.analysis.timing
