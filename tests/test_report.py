"""`python -m deeppose report` on small hand-made results: tables against inputs, conclusions on
known cases, missing jobs, byte-identical regeneration, summary.json.

The fixture project and what its results hold by design are described in tests/report_project.py.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import report_project
from report_project import (
    CONTROL,
    ITERATIONS,
    MISSING_TIMING,
    NOISY_TIMING,
    PEAK,
    ROOT,
    ROUNDS,
    compute_times,
    core_mean,
    make_project,
)

from deeppose import fmt, provenance
from deeppose.config import load_params
from deeppose.errors import DeepPoseError
from deeppose.grid import Job
from deeppose.records import paths
from deeppose.report import sections

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
    rest = markdown[start + len(heading) :]
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

        findings = build(load_params("params.yaml"))
    markdown = (root / "reports" / "report.md").read_text()
    summary = json.loads((root / "reports" / "summary.json").read_text())["headlines"]
    return root, findings, markdown, summary


# --- tests ------------------------------------------------------------------------------------
def test_report_imports_no_framework():
    code = (
        "import sys, deeppose.report, deeppose.report.sections; "
        "print('torch' in sys.modules or 'chainer' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_sections_in_study_order(built):
    _, _, markdown, _ = built
    headings = re.findall(r"^## (.+)$", markdown, flags=re.M)
    assert headings == [
        "1. Set-up",
        "2. Effect of automatic differentiation",
        "3. Impact of the network implementation",
        "4. Per-layer breakdown of the core process",
        "5. Accuracy",
        "6. Against the original study",
        "7. Summary",
    ]


def test_summary_json_is_the_serialised_findings(built):
    from deeppose.report.analysis import to_json

    _, findings, _, summary = built
    assert summary == json.loads(json.dumps(to_json(findings)))
    assert summary["setup"]["peak"]["best_observed"] == PEAK
    assert summary["aa_false_positive_rate"] == 0.0
    aa = summary["aa_control"]  # a table: one row per A/A pair
    assert aa["columns"] == [
        "framework",
        "loss",
        "device",
        "batch_size",
        "ratio",
        "difference",
        "significant",
    ]
    assert len(aa["rows"]) == len(findings.aa_control) and aa["rows"][0][6] is False


def test_setup_shows_parameters_data_environment_and_ceilings(built):
    _, findings, markdown, _ = built
    section = markdown.split("## 1.")[1].split("## 2.")[0]
    assert "Training: 3 epochs at batch 16, momentum_sgd (lr 0.01, momentum 0.9)" in section
    assert "Prepared data: source synthetic; kept train 290, test 95; dropped 15 (span >= 227: 15)" in section
    params = {r["parameter"]: r["value"] for r in tables_under(section, "### Parameters")[0]}
    assert params["`grid.devices`"] == '["cpu", "cuda"]' and params["`train.lr`"] == "0.01"
    env = tables_under(section, "### Environment")[0]
    assert [r["framework"] for r in env] == [
        "PyTorch",
        "Chainer",
        "PyTorch",
        "Chainer",
    ]  # one row per framework
    assert env[0]["CPU"] == "Test CPU 9000" and env[0]["usable cores"] == "2"
    assert (
        env[0]["CPU vendor, family, model, stepping"] == "vendor AuthenticAMD family 25 model 17 stepping 1"
    )
    assert not any(" / " in cell for row in env for cell in row.values())
    ceilings = {r["ceiling"]: r for r in tables_under(section, "### Machine ceilings")[0]}
    p = findings.setup.peak  # breakdown layers outran the peak stage's PEAK: the ceiling is theirs
    assert p.ceiling > PEAK and ceilings["compute ceiling (fp32)"]["value"] == fmt.flops(p.ceiling)
    assert ceilings["compute ceiling (fp32)"]["how"].startswith("lower bound (achieved by ")
    assert ceilings["memory bandwidth ceiling"]["value"] == fmt.flops(p.bandwidth, "B/s")
    assert ceilings["ridge point (compute / bandwidth)"]["value"] == f"{fmt.sig(p.ridge)} FLOP/byte"
    # the record's clock is the one the kernel reports: no theoretical peak, the clock the ceiling needs
    assert ceilings["theoretical fp32 peak"]["value"] == "not given"
    assert "the kernel reports 2.00 GHz, a nominal clock" in ceilings["theoretical fp32 peak"]["how"]
    assert p.implied_clock_hz == pytest.approx(p.ceiling / (2 * 32))
    fairness = tables_under(section, "#### What the timing processes ran with on cpu")[0]
    assert (
        fairness[1]["kernel_isa"] == "Haswell"
        and fairness[1]["steering variables"] == "OPENBLAS_CORETYPE Haswell"
    )
    assert "- `common.kernel_isa`: PyTorch AVX512; Chainer Haswell (may bias:" in section
    # the allocator policy the parameters set is stated, pinned or glibc's default
    assert "glibc's allocator was pinned in every measuring process" in section
    raw = {**findings.setup.params, "allocator": {"mmap_threshold_mib": None}}
    unpinned = sections.document(
        dataclasses.replace(findings, setup=dataclasses.replace(findings.setup, params=raw)), set(), ""
    )
    assert "glibc's allocator ran with its default policy" in unpinned and "was pinned" not in unpinned


def test_training_runs_match_inputs(built):
    _, findings, markdown, _ = built
    cpu = findings.devices[0]
    assert cpu.device == "cpu" and len(cpu.training) == 4
    for run in cpu.training:
        times = compute_times(run.framework, run.loss)
        total = sum(times) + 0.05 * ITERATIONS
        assert run.train_time_s == pytest.approx(total) and run.per_iteration_s == pytest.approx(
            total / ITERATIONS
        )
        assert run.compute.mean == pytest.approx(np.mean(times)) and run.compute.n == ITERATIONS
        assert run.setup == "momentum_sgd, batch 16, 2 epochs"
    rows = tables_under(markdown, "### cpu")[0]
    assert close(rows[0]["training time (s)"], sum(compute_times("pytorch", "autograd")) + 0.05 * ITERATIONS)


def test_autodiff_verdicts(built):
    """The loss alone decides: PyTorch's modes cost the same, Chainer's explicit backward 50 µs more;
    whole training runs get a ratio and the A/A noise floor, never a verdict."""
    from deeppose.compare_stats import Verdict

    _, findings, markdown, _ = built
    effects = {e.framework: e for e in findings.devices[0].loss_effects}
    assert effects["pytorch"].c.verdict is Verdict.NO_DIFFERENCE and effects["pytorch"].batch_size == 2
    assert effects["chainer"].c.verdict is Verdict.SLOWER
    assert effects["chainer"].c.difference.low < 50e-6 < effects["chainer"].c.difference.high
    section = markdown.split("## 2.")[1].split("## 3.")[0]
    assert "no verdict; identical arms in the timing's A/A control came up to" in section
    assert "![Training loss against elapsed time on cpu](figures/learning_curves_cpu.png)" in section


def test_core_time_cells_ratios_and_controls(built):
    from deeppose.compare_stats import Verdict

    _, findings, markdown, _ = built
    cpu = findings.devices[0]
    for cell in cpu.cells:
        job = Job(cell.framework, cell.loss, "cpu", cell.batch_size.bit_length() - 1)
        assert cell.time.estimate == pytest.approx(core_mean(job), rel=0.02)
        assert cell.disturbed == int(job == NOISY_TIMING) and cell.blocks == ROUNDS
        ceiling = findings.setup.peak.ceiling  # the one denominator
        assert cell.fraction_of_peak == pytest.approx(6.58e9 * cell.batch_size / cell.time.estimate / ceiling)
    assert MISSING_TIMING.framework not in {
        c.framework for c in cpu.cells if c.batch_size == 32 and c.loss == "explicit"
    }
    ratio = next(
        r for r in cpu.ratios if (r.batch_size, r.a, r.b) == (2, "chainer/autograd", "pytorch/autograd")
    )
    assert ratio.ratio.estimate == pytest.approx(2.0, rel=0.01) and ratio.verdict is Verdict.SLOWER
    assert [(c.batch_size, c.b) for c in cpu.controls] == [(1, CONTROL), (2, CONTROL)]
    assert findings.aa_false_positive_rate == 0.0
    # the records' block count, not params.yaml's timing.blocks (3 there, ROUNDS in the records)
    assert findings.aa_blocks == (ROUNDS,) != (findings.setup.params["timing"]["blocks"],)
    assert f"the rule's simulated rate at {ROUNDS} blocks is in deeppose/compare_stats.py" in markdown
    # summary.json names each A/A pair (the trustworthy-timing issue's `aa_control`)
    pair = findings.aa_control[0]
    assert (pair.framework, pair.loss, pair.device, pair.batch_size) == (*CONTROL.split("/"), "cpu", 1)
    assert (
        pair.difference.low <= pair.difference.estimate <= pair.difference.high and pair.significant is False
    )
    cpu_md = markdown.split("## 3.")[1].split("## 4.")[0]
    assert "![Core-process time against batch size on cpu](figures/core_time_cpu.png)" in cpu_md


def test_breakdown_attribution(built):
    from deeppose.report.analysis import LayerVerdict

    root, findings, markdown, _ = built
    (batch,) = findings.devices[0].breakdown
    assert batch.batch_size == 2 and batch.absent == (("chainer", "explicit"),)
    (a,) = batch.attributions
    assert a.verdict is LayerVerdict.CONFIRMS and a.extra_s == pytest.approx(0.135)
    assert sum(a.parts_s.values()) == pytest.approx(a.extra_s)
    assert a.parts_s["conv"] / a.extra_s == pytest.approx(0.13 / 0.135)
    assert batch.not_compared == (("chainer", "explicit"),)
    section = markdown.split("## 4.")[1].split("## 5.")[0]
    assert "Convolutions account for 96.3 %" in section and "This confirms the study's conclusion" in section
    for name in ("breakdown_cpu_b2.png", "breakdown_peak_cpu_b2.png", "roofline_cpu_b2.png"):
        assert f"](figures/{name})" in section
        assert (root / "reports" / "figures" / name).read_bytes().startswith(b"\x89PNG")
    assert batch.memory_bound == ("fc6", "fc7", "fc8")  # below the ridge point (3.7 FLOP/byte) at batch 2
    assert "fc6, fc7 and fc8 lie below the ridge point in both phases: they are memory-bound" in section


def test_summary_does_not_repeat_the_sections(built):
    _, _, markdown, _ = built
    summary = markdown.split("## 7. Summary")[1]
    body = markdown.split("## 7. Summary")[0]
    lines = [line[2:] for line in summary.splitlines() if line.startswith("- ")]
    assert lines and not [line for line in lines if line in body]


def test_accuracy(built):
    _, findings, markdown, summary = built
    cpu = findings.devices[0]
    assert all(r.gaps["loss"].beats and r.gaps["pcp"].beats for r in cpu.training)
    assert all(r.gaps["pdj"].beats and r.gaps["pck"].beats for r in cpu.training)
    assert all(r.scores[m].low is not None for r in cpu.training for m in ("loss", "pcp", "pdj", "pck"))
    assert cpu.baseline["pck"] == 0.15
    section = markdown.split("## 5.")[1].split("## 6.")[0]
    assert "every annotated joint, occluded ones too" in section and "10 standard sticks" in section
    assert "dropped only those with no visible joint (0 dropped); it kept 3" in " ".join(section.split())
    rows = tables_under(markdown, "## 5. Accuracy")[0]
    per_image = report_project.per_image(80)
    pck = sum(per_image["pck_hits"]) / sum(per_image["pck_counted"])
    assert float(rows[0]["PCK@0.2 (95 % CI)"].split()[0]) == pytest.approx(100 * pck, abs=0.05)
    diffs = cpu.accuracy_differences
    assert {(x.metric, x.loss) for x in diffs} == {
        (m, loss) for m in ("loss", "pcp", "pdj", "pck") for loss in ("autograd", "explicit")
    }
    assert not any(x.differ for x in diffs)  # the same per-image scores


def test_accuracy_gaps_resample_images_and_need_an_interval_clear_of_zero():
    from deeppose.report.analysis import accuracy_gaps

    rng = np.random.default_rng(1)
    n = 99
    sq, base_sq, visible = (
        rng.uniform(0, 1, n),
        rng.uniform(0.2, 1.2, n),
        rng.integers(5, 15, n).astype(float),
    )
    hits, counted = rng.binomial(9, 0.5, n).astype(float), np.full(n, 9.0)
    scores, gaps = accuracy_gaps(
        {
            "sq_error": sq,
            "visible": visible,
            "pcp_hits": hits,
            "pcp_counted": counted,
            "baseline_sq_error": base_sq,
            "baseline_pcp_hits": hits,
            "pck_hits": hits,
            "pck_counted": counted,
        }
    )
    assert scores["loss"].estimate == pytest.approx(sq.sum() / visible.sum())
    assert scores["pck"].low < scores["pck"].estimate < scores["pck"].high and "pck" not in gaps
    loss, pcp = gaps["loss"], gaps["pcp"]
    assert loss.difference.estimate == pytest.approx((sq.sum() - base_sq.sum()) / visible.sum())
    assert loss.difference.high < 0 and loss.beats
    assert pcp.difference.estimate == 0 and not pcp.beats  # the same hits as the baseline


def test_study_comparison_like_for_like(built):
    from deeppose.report.analysis import StudyVerdict

    _, findings, markdown, summary = built
    rows = {(r.device, r.quantity, r.basis, r.framework): r for r in findings.study}
    timing = rows["cpu", "per_iteration", "timing", "chainer"]
    expected = (0.1 * 32 + 0.001) / (0.05 * 32 + 0.0005)  # core + MomentumSGD step at batch 32
    assert timing.ours == pytest.approx(expected, rel=0.02) and timing.verdict is StudyVerdict.SAME_SIDE
    training = rows["cpu", "per_iteration", "training", "chainer"]
    assert training.verdict is StudyVerdict.NOT_COMPARABLE and "batch 16" in training.why_not
    # one training run per arm: the ratio is shown, without a verdict either way
    single = rows["cpu", "explicit_over_autograd", "training", "pytorch"]
    assert (
        single.ours is not None
        and single.verdict is StudyVerdict.NOT_COMPARABLE
        and "one training run" in single.why_not
    )
    assert rows["cuda", "per_iteration", "timing", "chainer"].why_not == "no timing result at batch 32"
    assert "as in the study, the network's implementation matters more" in markdown
    headlines = json.loads((built[0] / "reports" / "headlines.json").read_text())
    assert headlines["cpu_pck_pytorch"] == pytest.approx(0.45, abs=0.05)
    values = [key for key in headlines if not key.endswith(("_low", "_high"))]
    assert any(key.startswith("cpu_b") and key.endswith("_chainer_x_pytorch") for key in values), headlines
    assert any("_loss_alone_" in key for key in values), headlines
    for key in values:  # every headline comes with its interval, and only with one
        assert headlines[f"{key}_low"] <= headlines[key] <= headlines[f"{key}_high"], key
    assert not any("explicit_x_autograd" in key for key in headlines)  # no single-run training ratio


def test_adam_training_still_compares_with_the_study_through_the_timed_momentum_update(tmp_path, monkeypatch):
    """Trained with Adam, but timing.optimizers includes MomentumSGD: section 6 uses its update."""
    from deeppose.report.analysis import StudyVerdict

    root = make_project(tmp_path, devices=("cpu",), optimizer="adam")
    monkeypatch.chdir(root)
    from deeppose.report import build

    findings = build(load_params("params.yaml"))
    row = next(r for r in findings.study if (r.quantity, r.basis) == ("per_iteration", "timing"))
    assert row.verdict is StudyVerdict.SAME_SIDE and row.setup == "core + momentum_sgd update, batch 32"
    markdown = (root / "reports" / "report.md").read_text()
    assert "adam (lr 0.01)," in markdown and "momentum 0.9" not in markdown.split("<details>")[0]
    core = tables_under(markdown.split("## 3.")[1], "### cpu")[0]
    assert {
        "momentum_sgd update, median of round 0, not in core (ms)",
        "adam update, median of round 0, not in core (ms)",
    } <= core[0].keys()


def test_without_the_momentum_update_timed_the_study_row_is_not_comparable(tmp_path, monkeypatch):
    from deeppose.report.analysis import StudyVerdict

    root = make_project(tmp_path, devices=("cpu",), optimizer="adam", optimizers=("adam",))
    monkeypatch.chdir(root)
    from deeppose.report import build

    findings = build(load_params("params.yaml"))
    row = next(r for r in findings.study if (r.quantity, r.basis) == ("per_iteration", "timing"))
    assert row.verdict is StudyVerdict.NOT_COMPARABLE and row.ours is None
    assert row.why_not == "the timing did not time the MomentumSGD update (timing.optimizers: adam)"
    assert next(a for a in findings.absolute if a.framework == "chainer").iteration_s is None


def test_missing_jobs(built):
    _, findings, markdown, _ = built
    missing = {(m.kind, m.job): m for m in findings.missing}
    assert "no cuda job of this kind has a result" in missing["training", "pytorch/autograd/cuda"].reason
    chainer = missing["timing", "chainer/explicit/cpu"]
    assert chainer.batch_sizes == (32,) and "other cpu jobs have results" in chainer.reason
    assert findings.jobs == {
        "train": {"expected": 8, "present": 4},
        "timing": {"expected": 24, "present": 11},
        "breakdown": {"expected": 8, "present": 3},
    }
    assert "1 unreadable line(s) skipped" in markdown


def test_device_not_in_grid(tmp_path, monkeypatch):
    root = make_project(tmp_path, devices=("cpu",))
    monkeypatch.chdir(root)
    from deeppose.report import build

    build(load_params("params.yaml"))
    markdown = (root / "reports" / "report.md").read_text()
    assert "**cuda**: not in this run's grid" in markdown
    assert sorted(p.name for p in (root / "reports" / "figures").iterdir()) == [
        "breakdown_cpu_b2.png",
        "breakdown_peak_cpu_b2.png",
        "core_time_cpu.png",
        "flops_cpu.png",
        "learning_curves_cpu.png",
        "memory_cpu.png",
        "roofline_cpu_b2.png",
    ]


def test_empty_results_still_build(tmp_path, monkeypatch):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    from deeppose.report import build

    build(load_params("params.yaml"))
    markdown = (tmp_path / "reports" / "report.md").read_text()
    assert "0 of 4 training jobs" in markdown and "No measured peak" in markdown


def test_rendering_twice_gives_identical_bytes(built, monkeypatch):
    root, _, _, _ = built
    before = {p: p.read_bytes() for p in sorted((root / "reports").rglob("*")) if p.is_file()}
    monkeypatch.chdir(root)
    from deeppose.cli import main

    assert main(["report", "--params", "params.yaml"]) == 0
    after = {p: p.read_bytes() for p in sorted((root / "reports").rglob("*")) if p.is_file()}
    assert after.keys() == before.keys()
    assert all(after[p] == before[p] for p in before), [p.name for p in before if after[p] != before[p]]
    assert not re.search(r"20\d\d-\d\d-\d\d", (root / "reports" / "report.md").read_text())


def test_partial_and_broken_results(tmp_path, monkeypatch):
    """Unreadable metrics, a log missing beside its metrics, a result of another job, no peak and no
    data summary: the report still builds and says, with the reader's one line, what is missing."""
    root = make_project(tmp_path, devices=("cpu",))
    monkeypatch.chdir(root)
    paths.train_metrics(Job("chainer", "autograd", "cpu")).write_text("{not json")
    paths.train_log(Job("pytorch", "explicit", "cpu")).unlink()
    paths.timing_result(Job("pytorch", "explicit", "cpu", 0)).write_text(json.dumps({"measurements": {}}))
    paths.matmul_peak().unlink()
    paths.prepared_summary().unlink()
    shutil.copy(
        paths.timing_result(Job("chainer", "autograd", "cpu", 1)),
        paths.timing_result(Job("chainer", "autograd", "cpu", 0)),
    )
    from deeppose.report import render
    from deeppose.report.load import load_results

    findings, _, markdown = render(load_results(load_params("params.yaml")))
    reasons = {(m.kind, m.job): m.reason for m in findings.missing}
    assert reasons["training", "chainer/autograd/cpu"].startswith("unusable: not valid JSON")
    assert reasons["timing", "pytorch/explicit/cpu"] == "unusable: kind is None, expected 'time'"
    assert (
        reasons["timing", "chainer/autograd/cpu"]
        == "unusable: it holds the result of chainer/autograd/cpu b1, not of this job"
    )
    assert reasons["fp32 peak", "peak"].startswith("no result file")
    assert next(r for r in findings.devices[0].training if r.loss == "explicit").compute.source == (
        "metrics.json iteration_time_s"
    )
    assert "no training comparison, autograd not run." in markdown
    assert "No measured peak" in markdown and "No data summary" in markdown
    assert all(c.fraction_of_peak is None for c in findings.devices[0].cells)
    assert not (root / "reports").exists()  # render writes nothing


@pytest.mark.parametrize(
    ("function", "value", "text"),
    [
        ("seconds", 0.9996, "1.00 s"),
        ("seconds", 0.0123456, "12.3 ms"),
        ("seconds", 4.2e-5, "42.0 µs"),
        ("seconds", 1234.0, "20.6 min"),
        ("seconds", 171360.0, "47.6 h"),
        ("seconds", None, "—"),
        ("sig", 1.6449, "1.64"),
        ("percent", 0.8773, "87.7 %"),
        ("flops", 1.5e11, "150 GFLOP/s"),
        ("sig", 1234.5, "1230"),
    ],
)
def test_formatting(function, value, text):
    from deeppose import fmt

    assert getattr(fmt, function)(value) == text


def report_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "reports").rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize(
    "result, field, where",
    [
        (
            lambda: paths.train_metrics(Job("pytorch", "autograd", "cpu")),
            "train_time_s",
            "training pytorch/autograd/cpu",
        ),
        (
            lambda: paths.timing_result(Job("pytorch", "explicit", "cpu", 0)),
            "flops_per_s",
            "timing pytorch/explicit/cpu",
        ),
    ],
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
    reasons = {f"{r['job']}": r["reason"] for r in tables_under(markdown, "### Jobs without results")[0]}
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

    findings = build(load_params("params.yaml"))
    reasons = {(m.kind, m.job): m.reason for m in findings.missing}
    assert (
        reasons["timing", "pytorch/explicit/cpu"]
        == "unusable: blocks[2].samples_s[1]: nan is not a finite number"
    )


def test_four_frameworks_build_with_compile_break_even_and_no_invented_breakdown(tmp_path, monkeypatch):
    """JAX and compiled PyTorch in every table and figure; their compile time against eager PyTorch;
    no per-layer breakdown for them (their compilers fuse across layers): said, not invented."""
    from deeppose import fmt
    from deeppose.grid import NO_BREAKDOWN
    from deeppose.report.analysis import StudyVerdict

    root = make_project(tmp_path, devices=("cpu",), frameworks=report_project.ALL_FRAMEWORKS)
    monkeypatch.chdir(root)
    from deeppose.report import build

    findings = build(load_params("params.yaml"))
    markdown = (root / "reports" / "report.md").read_text()
    cpu = findings.devices[0]
    assert {c.framework for c in cpu.cells} == set(report_project.ALL_FRAMEWORKS)
    jax = {c.batch_size: c for c in cpu.cells if (c.framework, c.loss) == ("jax", "autograd")}
    assert jax[1].compile_s == 5.0 and jax[1].eager_s == pytest.approx(0.05, rel=0.02)
    assert jax[1].break_even == pytest.approx(5.0 / 0.01, rel=0.05) and jax[32].break_even == pytest.approx(
        16, abs=1
    )
    assert all(c.break_even is None and c.eager_s for c in cpu.cells if c.framework == "pytorch_compile")
    section = markdown.split("## 3.")[1].split("## 4.")[0]
    compile_rows = {(r["batch"], r["framework"], r["loss"]): r for r in tables_under(section, "### cpu")[1]}
    assert compile_rows["1", "JAX", "autograd"]["compile (s)"] == "5.00"
    assert compile_rows["1", "JAX", "autograd"]["then per step (ms)"] == "40.0"
    assert compile_rows["1", "JAX", "autograd"]["eager PyTorch per step (ms)"] == "50.0"
    assert int(compile_rows["1", "JAX", "autograd"]["break-even (steps)"]) == jax[1].break_even
    assert compile_rows["1", "PyTorch compiled", "autograd"]["compile (s)"] == "20.0"
    assert compile_rows["1", "PyTorch compiled", "autograd"]["break-even (steps)"] == "never"
    breakdown = markdown.split("## 4.")[1].split("## 5.")[0]
    for fw, why in NO_BREAKDOWN.items():
        assert f"{fmt.FRAMEWORK_NAMES[fw]}: no per-layer breakdown: {why}." in breakdown
    assert {j.framework for b in cpu.breakdown for j in b.jobs} == {"pytorch", "chainer"}
    assert findings.no_breakdown == NO_BREAKDOWN
    study = {(r.quantity, r.basis, r.framework): r for r in findings.study if r.device == "cpu"}
    assert study["per_iteration", "timing", "jax"].verdict is StudyVerdict.NOT_COMPARABLE
    assert study["per_iteration", "timing", "jax"].why_not == "not measured by the study"
    assert study["per_iteration", "timing", "jax"].ours == pytest.approx(
        (1.28 + 0.0004) / (1.6 + 0.0005), rel=0.02
    )
    env = tables_under(markdown, "### Environment")[0]
    assert [r["framework"] for r in env] == ["PyTorch", "Chainer", "JAX", "PyTorch compiled"]
    assert (root / "reports" / "figures" / "core_time_cpu.png").exists()


def test_summary_json_holds_no_raw_series(built):
    """The learning curves live in learning_curves.csv and the figure; summary.json keeps the numbers the
    report states, each object on one line where it fits."""
    root, _, _, _ = built
    text = (root / "reports" / "summary.json").read_text()
    assert "elapsed_s" not in text and "smoothed" not in text and "rounds_used" not in text
    assert max(len(line) for line in text.splitlines()) <= 200
    assert len(text) < 40_000


def test_the_report_refuses_to_combine_two_machines_measurements(tmp_path, monkeypatch):
    root = make_project(tmp_path)
    monkeypatch.chdir(root)
    moved = root / "results" / "time" / "chainer" / "explicit" / "cpu" / "b1.json"
    record = json.loads(moved.read_text())
    record["provenance"]["machine"]["model"] = "elsewhere"
    moved.write_text(json.dumps(record))
    from deeppose.report import build

    with pytest.raises(DeepPoseError) as error:
        build(load_params("params.yaml"))
    lines = str(error.value).splitlines()
    assert lines[0] == "the results were measured on 2 machines; a report combines one machine's:"
    assert lines[2].endswith("results/time/chainer/explicit/cpu/b1.json") and "model elsewhere" in lines[2]
    assert not (root / "reports" / "report.md").exists()  # nothing written
