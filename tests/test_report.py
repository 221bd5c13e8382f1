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
    CONTROLS,
    ITERATIONS,
    MISSING_TIMING,
    NOISY_TIMING,
    PEAK,
    PLANTED,
    PLANTED_CELL,
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
        "1. Findings",
        "2. Effect of automatic differentiation",
        "3. Impact of the network implementation",
        "4. Per-layer breakdown of the core process",
        "5. Accuracy",
        "6. Against the original study",
        "7. Appendix: set-up, environment, fairness and cost",
    ]


def test_every_table_has_at_most_eight_columns(built):
    _, _, markdown, _ = built
    headers = [line for line in markdown.splitlines() if line.startswith("| ---") or line.startswith("| :")]
    widths = [line.count("|") - 1 for line in headers]
    assert widths and max(widths) <= 8, max(widths)


def test_the_first_screen_answers_the_studys_questions(built):
    """Findings first: each answer a verdict of the four, an interval (or two significant digits
    marked single run) and one caveat, within the first screen; a neutral title."""
    from deeppose.verdicts import Verdict

    _, findings, markdown, _ = built
    title = markdown.splitlines()[0]
    assert title.startswith("# ") and "why" not in title.lower() and "faster" not in title.lower()
    first = markdown.split("## 2.")[0]
    assert "## 1. Findings" in first and len(first.splitlines()) <= 40
    lines = [line for line in first.splitlines() if line.startswith("- ")]
    assert 1 <= len(lines) <= 10 and len(lines) == len(findings.answers)
    verdicts = r"slower|faster|equivalent|inconclusive|the convolutions explain (most|less than half) of the difference"
    assert all(re.search(rf"\*\*({verdicts})\*\*", line) for line in lines)
    by = {(a.question, a.subject.split(" ")[0]): a for a in findings.answers}
    # the study asked about the iteration: Chainer's 50 µs are slower for the loss itself, but a
    # negligible share of its core process: equivalent at the group's margin
    assert by["loss backward", "Chainer"].verdict is Verdict.EQUIVALENT
    assert by["loss backward", "PyTorch"].verdict is Verdict.EQUIVALENT
    assert "as a share of the core process" in by["loss backward", "Chainer"].subject
    assert "against the loss's own time: slower" in by["loss backward", "Chainer"].caveat
    assert (
        by["framework", "Chainer"].verdict is Verdict.SLOWER
        and "batch 2" in by["framework", "Chainer"].subject
    )
    # one training run per framework: no claim that the frameworks differ in accuracy
    assert by["accuracy", "Chainer"].verdict is Verdict.INCONCLUSIVE
    assert "training variability is not measured" in first
    # the breakdown's replicates: the share of Chainer's extra time in convolutions with its interval,
    # which lies above 50 % (one profiled process per arm gave "inconclusive, 96 % (single run)")
    (layers,) = [a for a in findings.answers if a.question == "layers"]
    assert layers.interval.low > 0.5 and "(single run)" not in first
    assert re.search(
        r"\*\*the convolutions explain most of the difference\*\*, 96\.\d+ \[9\d\.\d+, 9\d\.\d+\] %", first
    )
    assert "Checks of the timing: A/A pairs called slower or faster 0 of 4 times (0 [0, 60] %)" in first


def test_summary_json_is_the_serialised_findings(built):
    from deeppose.report.analysis import to_json

    _, findings, _, summary = built
    assert summary == json.loads(json.dumps(to_json(findings)))
    assert summary["setup"]["peak"]["best_observed"] == PEAK
    controls = summary["controls"]
    assert controls["false_verdicts"] == 0 and controls["false_rate"][0] == 0.0 < controls["false_rate"][2]
    aa = controls["aa"]  # a table: one row per A/A pair
    assert aa["columns"] == [
        "framework",
        "loss",
        "device",
        "batch_size",
        "ratio",
        "verdict",
        "false",
        "rounds",
    ]
    assert len(aa["rows"]) == len(findings.controls.aa) == 4
    assert {row[5] for row in aa["rows"]} == {"equivalent"} and not any(row[6] for row in aa["rows"])
    assert [row[7] for row in controls["planted"]["rows"]] == [True, True]  # found, at batch 1 and 2


def test_setup_shows_parameters_data_environment_and_ceilings(built):
    _, findings, markdown, _ = built
    section = markdown.split("## 7.")[1]
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
    fairness = {
        r["setting"]: r for r in tables_under(section, "#### What the timing processes ran with on cpu")[0]
    }
    assert fairness["kernel_isa"]["Chainer"] == "Haswell" and fairness["kernel_isa"]["PyTorch"] == "AVX512"
    assert fairness["steering variables"]["Chainer"] == "OPENBLAS_CORETYPE Haswell"
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
    from deeppose.verdicts import Verdict

    _, findings, markdown, _ = built
    effects = {e.framework: e for e in findings.devices[0].loss_effects}
    # the same cost and a tight interval: equivalent within the margin, not merely "not different"
    assert effects["pytorch"].c.verdict is Verdict.EQUIVALENT and effects["pytorch"].batch_size == 2
    assert effects["chainer"].c.verdict is Verdict.SLOWER
    assert effects["chainer"].c.difference.low < 50e-6 < effects["chainer"].c.difference.high
    # as a share of the core process: over the low end of the autograd core time, so it errs large
    chainer = effects["chainer"]
    core = next(
        c.time
        for c in findings.devices[0].cells
        if (c.framework, c.loss, c.batch_size) == ("chainer", "autograd", 2)
    )
    assert chainer.share.high == pytest.approx(chainer.c.difference.high / core.low)
    assert chainer.share.estimate > chainer.c.difference.estimate / core.estimate
    assert chainer.share_verdict is Verdict.EQUIVALENT
    assert "of the autograd core process (equivalent)" in markdown.split("## 3.")[0]
    section = markdown.split("## 2.")[1].split("## 3.")[0]
    assert "no verdict; identical arms in the timing's A/A control came up to" in section
    assert "![Training loss against elapsed time on cpu](figures/learning_curves_cpu.png)" in section


def test_core_time_cells_ratios_and_controls(built):
    from deeppose.verdicts import Verdict

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
    # every A/A twin of every complete group (batch 32 lacks a cell), each equivalent to its cell
    aa = findings.controls.aa
    assert [(p.batch_size, f"{p.framework}/{p.loss}") for p in aa] == [
        (b, cell) for b in (1, 2) for cell in CONTROLS
    ]
    assert all(p.verdict is Verdict.EQUIVALENT and p.rounds == ROUNDS and not p.false for p in aa)
    c = findings.controls
    assert (c.false_verdicts, c.judged, c.rounds) == (0, 4, (ROUNDS,))
    assert c.false_rate.estimate == 0 and c.false_rate.high == pytest.approx(1 - 0.025 ** (1 / 4))
    pair = c.aa[0]
    assert (pair.framework, pair.loss, pair.device, pair.batch_size) == (*CONTROLS[0].split("/"), "cpu", 1)
    # the positive control: the planted arm against its cell, found with its ratio and the expected one
    assert [(p.batch_size, f"{p.framework}/{p.loss}") for p in c.planted] == [
        (1, PLANTED_CELL),
        (2, PLANTED_CELL),
    ]
    for p in c.planted:
        assert p.found and p.verdict is Verdict.SLOWER and p.expected == 1 + PLANTED
        assert p.ratio.estimate == pytest.approx(1 + PLANTED, rel=0.005)
    # explicit / autograd of one framework: near-A/A; PyTorch's cost the same, Chainer's too (core)
    near = {n.framework: n for n in c.near_aa}
    assert near["pytorch"].pairs == 2 and near["pytorch"].slower == near["pytorch"].faster == 0
    # each group's noise and the ratio it could detect, from its own comparisons
    (b1, b2) = cpu.groups
    assert (b1.batch_size, b1.rounds, b1.margin, b1.level, b1.pairing) == (1, ROUNDS, 0.05, 0.90, "turns")
    assert 0 < b1.sd_log < 0.02 and 1.05 < b1.detectable < 1.1
    cpu_md = markdown.split("## 3.")[1].split("## 4.")[0]
    assert "![Core-process time against batch size on cpu](figures/core_time_cpu.png)" in cpu_md
    assert "0 called slower or faster, a false-verdict rate of 0 [0, 60] %" in cpu_md
    assert "found (called slower) in 2 of 2 groups" in cpu_md
    groups = next(t for t in tables_under(cpu_md, "### cpu") if "minimum detectable ratio" in t[0])
    assert [r["batch"] for r in groups] == ["1", "2"] and groups[0]["margin"] == "± 5 %"
    assert float(groups[0]["minimum detectable ratio"]) == pytest.approx(b1.detectable, rel=0.01)
    planted = next(t for t in tables_under(cpu_md, "### cpu") if "planted / cell" in t[0])
    assert [(r["cell"], r["expected"], r["verdict"], r["found"]) for r in planted] == [
        (PLANTED_CELL, "1.10", "slower", "yes")
    ] * 2


def test_no_verdict_reads_no_difference(built):
    """Four verdicts everywhere: what is not decided is inconclusive, never "no difference"."""
    root, _, markdown, _ = built
    for text in (markdown, (root / "reports" / "summary.json").read_text()):
        assert "no difference" not in text and "no_difference" not in text


def test_a_false_aa_verdict_and_a_missed_positive_control_are_reported(tmp_path, monkeypatch):
    """A twin 30 % slower than its identical cell is a false verdict, counted with its interval; a
    planted slowdown that did not show (the planted arm as fast as its cell) is a control not found."""
    root = make_project(tmp_path, devices=("cpu",))
    monkeypatch.chdir(root)
    for exp, key, factor in ((0, "control_blocks", 1.3), (1, "planted_blocks", 1 / (1 + PLANTED))):
        path = paths.timing_result(Job(*CONTROLS[1].split("/"), "cpu", exp))
        data = json.loads(path.read_text())
        for block in data[key]:
            block["samples_s"] = [x * factor for x in block["samples_s"]]
        path.write_text(json.dumps(data))
    from deeppose.report import render
    from deeppose.report.load import load_results

    findings, _, markdown = render(load_results(load_params("params.yaml")))
    c = findings.controls
    assert c.false_verdicts == 1 and c.judged == 4 and c.false_rate.estimate == 0.25
    assert [p.found for p in c.planted] == [True, False]
    assert "1 called slower or faster, a false-verdict rate of 25 [1, 81] %" in markdown
    assert "slower (false)" in markdown and "found (called slower) in 1 of 2 groups" in markdown


def test_breakdown_comparison(built):
    from deeppose.report.layer_replicates import ShareVerdict
    from deeppose.verdicts import Verdict

    root, findings, markdown, _ = built
    (batch,) = findings.devices[0].breakdown
    assert batch.batch_size == 2 and batch.absent == (("chainer", "explicit"),)
    (c,) = batch.comparisons
    assert c.pairs == 3 and c.verdict is Verdict.SLOWER  # chainer autograd against pytorch autograd
    assert c.conv_share.low < 0.13 / 0.135 < c.conv_share.high and c.conv_share.low > 0.5
    assert c.share_verdict is ShareVerdict.MOST
    assert sum(c.shares[p].estimate for p in ("conv", "fc", "elementwise", "overhead")) == pytest.approx(1)
    assert batch.not_compared == (("chainer", "explicit"),)
    assert [(a.framework, a.loss, a.core.n) for a in batch.agreement] == [
        ("pytorch", "autograd", 3),
        ("pytorch", "explicit", 3),
        ("chainer", "autograd", 3),
    ]
    section = markdown.split("## 4.")[1].split("## 5.")[0]
    assert "so the convolutions explain most of the difference" in section
    assert "(single run)" not in section and "3 pairs of processes, 90 % intervals" in section
    for name in ("breakdown_cpu_b2.png", "breakdown_peak_cpu_b2.png", "roofline_cpu_b2.png"):
        assert f"](figures/{name})" in section
        assert (root / "reports" / "figures" / name).read_bytes().startswith(b"\x89PNG")
    assert batch.memory_bound == ("fc6", "fc7", "fc8")  # below the ridge point (3.7 FLOP/byte) at batch 2
    assert "fc6, fc7 and fc8 lie below the ridge point in both phases: they are memory-bound" in section


def test_no_finding_is_stated_twice(built):
    """The findings open the report and each section states its own once: no bullet repeats
    another's text (the old Summary section restated sections 2 to 6)."""
    _, _, markdown, _ = built
    lines = [line[2:] for line in markdown.splitlines() if line.startswith("- ")]
    assert lines and len(lines) == len(set(lines))
    assert "## 7. Summary" not in markdown and "*Jobs without results* in the Summary" not in markdown


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
    # one training run per framework: an interval over test images never reads as "the frameworks differ"
    one_run = (
        "one training run each: training variability is not measured, so no claim that the frameworks differ"
    )
    assert f"no interval excludes zero; {one_run}." in section
    assert section.count("frameworks differ") == section.count(one_run)


def test_accuracy_gaps_resample_images_and_need_an_interval_clear_of_zero():
    from deeppose.report.training import accuracy_gaps

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
    """Section 6 lists the set-up's differences from params and records, judges the study's findings
    by direction and magnitude from paired ratios, quotes the study's own caveat and never invents an
    unpinned measurement."""
    _, findings, markdown, _ = built
    differences = {x.aspect: x for x in findings.study.differences}
    assert differences["training batch"].here == "16" and differences["training batch"].study == "32"
    assert differences["dropout (fc6, fc7)"].study == "0.5"
    assert "LRN" not in differences  # no LRN in either: not a difference
    assert "inside the training wall time" in differences["data loading"].here
    allocator = differences["C allocator"]
    assert "pinned" in allocator.here and allocator.measured.startswith("not measured in this run")
    assert "optimiser" not in differences  # trained with the study's MomentumSGD
    judged = {x.finding.split(" (")[0]: x for x in findings.study.judged}
    # batch 1: the study saw "almost the same"; here Chainer is 2x slower, with a decided verdict
    one = judged["Chainer / PyTorch at batch 1"]
    assert one.here.endswith("slower") and one.direction == "differs: the study saw none"
    # chainer/explicit/cpu/b32 is missing, so the batch-32 group has no paired ratio: not invented
    assert judged["Chainer / PyTorch at batch 32"].here == "not measured"
    assert judged["Chainer / PyTorch on cuda"].here == "no result"  # in the grid, nothing ran there
    section = markdown.split("## 6.")[1].split("## 7.")[0]
    assert "PyTorch 0.1.12" in section and "Chainer was rather faster" in section
    assert "as in the study, the network's implementation changes the core process" in section
    headlines = json.loads((built[0] / "reports" / "headlines.json").read_text())
    assert headlines["cpu_pck_pytorch"] == pytest.approx(0.45, abs=0.05)
    values = [key for key in headlines if not key.endswith(("_low", "_high", "_verdict"))]
    verdicts = {key: value for key, value in headlines.items() if key.endswith("_verdict")}
    assert verdicts["cpu_b2_chainer_x_pytorch_verdict"] == "slower"
    assert verdicts["cpu_loss_alone_chainer_share_of_core_pct_verdict"] == "equivalent"
    assert set(verdicts.values()) <= {"slower", "faster", "equivalent", "inconclusive"}
    assert any(key.startswith("cpu_b") and key.endswith("_chainer_x_pytorch") for key in values), headlines
    assert any("_loss_alone_" in key for key in values), headlines
    for key in values:  # every headline comes with its interval, and only with one
        assert headlines[f"{key}_low"] <= headlines[key] <= headlines[f"{key}_high"], key
    assert not any("explicit_x_autograd" in key for key in headlines)  # no single-run training ratio


def test_direction_and_magnitude_are_judged_apart():
    """The committed run's batch-32 ratio, 1.97 [1.83, 2.13], against the study's 1.64: the same
    direction, a larger magnitude; an interval across the margin decides neither."""
    from deeppose.report.study import direction, magnitude
    from deeppose.stats import Interval
    from deeppose.verdicts import Verdict

    ratio = Interval(1.97, 1.83, 2.13, 6, 0.95, "t")
    assert direction(Verdict.SLOWER, 1.64, 0.05) == "as in the study"
    assert direction(Verdict.FASTER, 1.64, 0.05) == "opposite to the study"
    assert direction(Verdict.INCONCLUSIVE, 1.64, 0.05).startswith("undecided")
    assert direction(Verdict.SLOWER, 1.0, 0.05) == "differs: the study saw none"
    assert magnitude(ratio, 1.64) == "1.201 [1.116, 1.299] x the study's: larger than the study's"
    assert magnitude(Interval(1.7, 1.6, 1.8, 6, 0.95, "t"), 1.64).endswith("agrees (within 10 %)")


def test_adam_training_still_compares_with_the_study_through_the_timed_momentum_update(tmp_path, monkeypatch):
    """Trained with Adam, but timing.optimizers includes MomentumSGD: section 6 uses its update."""
    root = make_project(tmp_path, devices=("cpu",), optimizer="adam")
    monkeypatch.chdir(root)
    from deeppose.report import build

    findings = build(load_params("params.yaml"))
    optimiser = next(x for x in findings.study.differences if x.aspect == "optimiser")
    assert optimiser.here == "adam" and "momentum_sgd" in optimiser.measured
    assert (
        "(single run)" in optimiser.measured and "core + MomentumSGD update at batch 32" in optimiser.measured
    )
    markdown = (root / "reports" / "report.md").read_text()
    assert "adam (lr 0.01)," in markdown and "momentum 0.9" not in markdown.split("<details>")[0]
    outside = tables_under(markdown.split("## 3.")[1], "### cpu")[1]  # beside the core-time table
    assert {"momentum_sgd update (ms)", "adam update (ms)", "loss alone (µs)"} <= outside[0].keys()


def test_without_the_momentum_update_timed_the_study_row_says_so(tmp_path, monkeypatch):
    root = make_project(tmp_path, devices=("cpu",), optimizer="adam", optimizers=("adam",))
    monkeypatch.chdir(root)
    from deeppose.report import build

    findings = build(load_params("params.yaml"))
    optimiser = next(x for x in findings.study.differences if x.aspect == "optimiser")
    assert "momentum" not in optimiser.measured and "MomentumSGD" not in optimiser.measured


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
    assert "Device cuda: not in this run's grid" in markdown
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
    compile_rows = {(r["batch"], r["framework"], r["loss"]): r for r in tables_under(section, "### cpu")[2]}
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
    judged = {x.finding.split(" (")[0] for x in findings.study.judged}
    assert "Chainer / PyTorch at batch 1" in judged and not any("JAX" in x for x in judged)
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
    summary = json.loads(text)
    provenance = json.dumps(
        summary.pop("provenance"), indent=1
    )  # two hashes of every module: grows with the package
    assert len(text) - len(provenance) < 40_000


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


def test_a_trend_needs_separated_intervals_of_the_paired_ratios(built):
    """One estimator per quantity: section 3's trend quotes the paired ratios of section 3, and
    says "rises" or "falls" only when the first and last batches' intervals do not overlap (the old
    trend compared ratios of medians and called 1.46 -> 2.86 a rise whatever the intervals)."""
    from deeppose.compare_stats import Interval
    from deeppose.report.core_time import Trend, ratio_trend

    _, findings, _, _ = built
    cpu = findings.devices[0]
    for t in cpu.trends:
        quoted = {(r.batch_size, r.ratio) for r in cpu.ratios if r.a == f"{t.framework}/{t.loss}"}
        assert {t.first, t.last} <= quoted

    def at(estimate: float, low: float, high: float) -> Interval:
        return Interval(estimate, low, high, 3, 0.9, "t")

    overlapping = [(1, at(1.46, 1.0, 2.2)), (32, at(2.86, 2.1, 3.9))]
    assert ratio_trend("chainer", "autograd", overlapping).trend is Trend.OVERLAP
    rising = [(1, at(1.59, 1.14, 2.23)), (8, at(1.2, 1.1, 1.3)), (32, at(2.91, 2.6, 3.2))]
    trend = ratio_trend("chainer", "autograd", rising)
    assert trend.trend is Trend.RISES and trend.lowest[0] == 8 and trend.highest[0] == 32
    assert ratio_trend("chainer", "autograd", rising[::-1]).trend is Trend.FALLS
    assert ratio_trend("chainer", "autograd", [(1, at(1.5, None, None)), (2, at(3.0, None, None))]).trend is (
        Trend.OVERLAP
    )


def test_a_share_above_100_percent_is_flagged_as_drift(built):
    """A part larger than its whole (the core process at 109 % of a training iteration) is evidence
    of drift between the stages' processes, and the report says so instead of printing it bare."""
    from deeppose.report.lines import core_share_line

    _, findings, _, _ = built
    run = findings.devices[0].training[0]
    over = dataclasses.replace(run, core_s=1.09 * run.per_iteration_s)
    assert "110 % of a training iteration" in core_share_line(over) and "drift" in core_share_line(over)
    under = dataclasses.replace(run, core_s=0.5 * run.per_iteration_s)
    assert "50 % of a training iteration" in core_share_line(under) and "drift" not in core_share_line(under)


def test_the_template_holds_no_arithmetic_and_no_verdict_branching():
    """The view places what Python built: no operator, comparison, sum or verdict inside a tag."""
    text = (ROOT / "deeppose" / "report" / "report.md.j2").read_text()
    tags = [
        re.sub(r'"[^"]*"', '""', t).strip("- ") for t in re.findall(r"\{[{%](.*?)[}%]\}", text, flags=re.S)
    ]
    assert tags and not [t for t in tags if re.search(r"[-+*/<>]|==|!=|verdict|\bsum\b|\bif\b.*\belse\b", t)]


def test_tables_are_built_in_python():
    """The breakdown's shares, the cost's totals and the roofline's classes, decided in Python."""
    from deeppose.report import tables
    from deeppose.report.breakdown import BreakdownBatch, BreakdownJob
    from deeppose.report.layer_replicates import LayerRow, ReplicatedComparison, ShareVerdict
    from deeppose.report.setup import StageCost
    from deeppose.stats import Interval
    from deeppose.verdicts import Verdict

    def interval(estimate: float, low: float, high: float) -> Interval:
        return Interval(estimate, low, high, 3, 0.9, "test")

    conv2 = LayerRow(
        "conv2",
        interval(0.010, 0.009, 0.011),
        interval(0.030, 0.028, 0.032),
        interval(3.0, 2.8, 3.2),
        interval(0.8, 0.7, 0.9),
    )
    shares = {part: interval(0.25, 0.2, 0.3) for part in ("conv", "fc", "elementwise", "overhead")}
    shares["conv"] = interval(0.8, 0.7, 0.9)
    c = ReplicatedComparison(
        "chainer", 3, interval(1.4, 1.3, 1.5), Verdict.SLOWER, (conv2,), shares, ShareVerdict.MOST
    )
    rows = tables.comparison_table(c).splitlines()
    assert rows[2] == "| conv2 | 10.0 [9.0, 11.0] | 30.0 [28.0, 32.0] | 3.00 [2.80, 3.20] | 80 [70, 90] |"
    b = BreakdownBatch(8, (), (), (c,), (), (), (), "autograd", (), ())
    sentence = tables.comparison_sentence(c, b, "cpu")
    assert "took 1.40 [1.30, 1.50] times PyTorch's (slower at the margin)" in sentence
    assert (
        "convolutions account for 80 [70, 90] %" in sentence and "explain most of the difference" in sentence
    )
    assert "uncertain" not in sentence
    missed = BreakdownJob("chainer", "autograd", 0.07, 0.07, 0.05, 0.02, 0.29, 0.15, False, ())
    b = dataclasses.replace(b, jobs=(missed,))
    assert "The layers of Chainer do not add up" in tables.comparison_sentence(c, b, "cpu")
    costs = [StageCost("train", 2, 2, 10.4, 1.0, 0.0, 2**30), StageCost("time", 0, 1, 0.0, 0.0, 0.0, None)]
    assert tables.costs(costs).splitlines()[-1] == "| all of the above | 2 | **10** |  | 0 |  |"
    b = BreakdownBatch(8, (), (), (), (), (), (), "autograd", (), ("fc6", "fc7"))
    assert tables.loss_modes_sentence(b).startswith("No framework ran both loss modes")
    assert tables.roofline_sentence(b, None).startswith("The memory bandwidth was not measured")
    assert "fc6 and fc7 lie below the ridge point" in tables.roofline_sentence(b, 4e10)
    assert "(the fully connected layers" in tables.roofline_sentence(b, 4e10)
