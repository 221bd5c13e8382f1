"""The layer breakdown: grouping of hand-made profiles (both frameworks' names), the sum rule,
real tiny profiles of both backends, the `breakdown` stage end to end and its report section
(rendered from the report's Findings; tests/test_report.py checks it inside the whole report)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from scipy import stats as scipy_stats

from deeppose import cli, layer_groups
from deeppose import model as spec
from deeppose.config import Params, load_params
from deeppose.grid import Job
from deeppose.layer_groups import CONV_LAYERS, FC_LAYERS, classify, resolve, sum_rule, summarize
from deeppose.records import paths

REPO = Path(__file__).resolve().parents[1]
NETWORK_LAYERS = (*CONV_LAYERS, *FC_LAYERS)
RESULT_KEYS = {
    "kind",
    "schema_version",
    "job",
    "provenance",
    "batch_size",
    "repeats",
    "warmup",
    "seed",
    "input",
    "model",
    "tool",
    "time_basis",
    "core_time_s",
    "core_samples_s",
    "profiled_core_time_s",
    "profiled_core_samples_s",
    "layers",
    "layers_time_s",
    "phase_time_s",
    "overhead_s",
    "profiled_overhead_s",
    "profiler_slowdown",
    "sum_rule",
    "events",
    "grouping_notes",
    "processes",
    "peak_flops_per_s",
    "peak",
    "threads",
    "versions",
    "environment",
}
LAYER_KEYS = {"layer", "phase", "time_s", "samples_s", "flops", "flops_per_s"}  # no share of a peak


def ev(
    name: str, phase: str = "forward", layer: str | None = None, time_s: float = 0.001, repeat: int = 0
) -> dict:
    return {"repeat": repeat, "phase": phase, "name": name, "layer": layer, "time_s": time_s}


# --- grouping ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "kind"),
    [
        # PyTorch (top-level ops and autograd nodes, with and without the engine's prefix)
        ("aten::conv2d", "conv"),
        ("ConvolutionBackward0", "conv"),
        ("autograd::engine::evaluate_function: ConvolutionBackward0", "conv"),
        ("aten::linear", "linear"),
        ("AddmmBackward0", "linear"),
        ("aten::relu", "relu"),
        ("ReluBackward0", "relu"),
        ("aten::max_pool2d", "pool"),
        ("MaxPool2DWithIndicesBackward0", "pool"),
        ("aten::dropout", "dropout"),
        ("MaskedMSEBackward", "loss"),
        ("torch::autograd::AccumulateGrad", "grad_accumulate"),
        ("aten::flatten", None),
        ("ViewBackward0", None),
        ("TBackward0", None),
        # Chainer (FunctionNode names)
        ("Convolution2DFunction", "conv"),
        ("Convolution2DGradW", "conv"),
        ("LinearFunction", "linear"),
        ("ReLU", "relu"),
        ("MaxPoolingND", "pool"),
        ("MaxPooling2D", "pool"),
        ("Dropout", "dropout"),
        ("LocalResponseNormalization", "lrn"),
        ("MaskedMSE", "loss"),
        ("Reshape", None),
        ("MulConstant", None),
    ],
)
def test_classify_maps_both_frameworks_names(name: str, kind: str | None) -> None:
    assert classify(name) == kind


def chainer_like_run(repeat: int = 0) -> list[dict]:
    """Chainer's call sequence without any layer given: order decides conv/fc layers."""
    forward = []
    for conv in spec.CONVS:
        forward += [ev("Convolution2DFunction", repeat=repeat), ev("ReLU", repeat=repeat)]
        if conv.pool:
            forward.append(ev("MaxPoolingND", repeat=repeat))
    forward.append(ev("Reshape", repeat=repeat))
    for fc in spec.linears():
        forward.append(ev("LinearFunction", repeat=repeat))
        if fc.relu_dropout:
            forward += [ev("ReLU", repeat=repeat), ev("Dropout", repeat=repeat)]
    backward = [dict(e, phase="backward") for e in reversed(forward)]
    return forward + backward


def test_order_rule_maps_unlabelled_calls_forward_and_reversed_backward() -> None:
    resolved, notes = resolve(chainer_like_run())
    assert notes == []
    convs = [(e["phase"], e["layer"]) for e in resolved if e["name"] == "Convolution2DFunction"]
    assert convs == [("forward", c) for c in CONV_LAYERS] + [("backward", c) for c in reversed(CONV_LAYERS)]
    fcs = [(e["phase"], e["layer"]) for e in resolved if e["name"] == "LinearFunction"]
    assert fcs == [("forward", f) for f in FC_LAYERS] + [("backward", f) for f in reversed(FC_LAYERS)]
    assert {e["layer"] for e in resolved if e["name"] == "ReLU"} == {"relu"}
    assert {e["layer"] for e in resolved if e["name"] == "MaxPoolingND"} == {"pool"}
    assert {e["layer"] for e in resolved if e["name"] == "Dropout"} == {"dropout"}
    assert {e["layer"] for e in resolved if e["name"] == "Reshape"} == {"other"}
    assert {e["layer_source"] for e in resolved if e["name"] == "Convolution2DFunction"} == {"order"}


def test_backend_layer_wins_and_accumulate_grad_joins_the_previous_layer() -> None:
    events = [
        ev("aten::conv2d", layer="conv3"),  # the backend knows better than the order
        ev("aten::sub+aten::mul+aten::sum", layer="loss"),
        ev("AddmmBackward0", "backward", layer="fc8"),
        ev("torch::autograd::AccumulateGrad", "backward"),
        ev("ReluBackward0", "backward"),
        ev("torch::autograd::AccumulateGrad", "backward"),  # after relu: joins relu (rule 4 is positional)
        ev("ConvolutionBackward0", "backward", layer="conv1"),
        ev("torch::autograd::AccumulateGrad", "backward"),
        ev("aten::ones_like", "backward"),
    ]
    resolved, notes = resolve(events)
    assert [e["layer"] for e in resolved] == [
        "conv3",
        "loss",
        "fc8",
        "fc8",
        "relu",
        "relu",
        "conv1",
        "conv1",
        "other",
    ]
    assert [e["layer_source"] for e in resolved][:4] == ["backend", "backend", "backend", "previous"]
    assert notes == []


def test_count_mismatch_goes_to_other_with_a_note() -> None:
    events = [ev("Convolution2DFunction") for _ in range(3)] + [ev("LinearFunction", "backward")]
    resolved, notes = resolve(events)
    assert {e["layer"] for e in resolved} == {"other"}
    assert len(notes) == 2 and "3 unlabelled conv calls for 5" in notes[0]


def test_unknown_layer_or_phase_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown layer"):
        resolve([ev("aten::conv2d", layer="conv9")])
    with pytest.raises(ValueError, match="phase"):
        resolve([ev("aten::conv2d", phase="sideways")])


# --- sum rule ---------------------------------------------------------------------------
def test_sum_rule_within_and_outside_the_tolerance() -> None:
    ok = sum_rule(1.0, 0.9, tolerance=0.15)
    assert ok["ok"] and ok["overhead_s"] == pytest.approx(0.1) and ok["relative_gap"] == pytest.approx(0.1)
    missing = sum_rule(1.0, 0.7, tolerance=0.15)
    assert not missing["ok"] and missing["overhead_s"] == pytest.approx(0.3)
    over = sum_rule(1.0, 1.2, tolerance=0.15)  # profiled layers longer than the whole: negative overhead
    assert not over["ok"] and over["overhead_s"] == pytest.approx(-0.2)
    assert sum_rule(1.0, 0.86)["tolerance"] == layer_groups.SUM_RULE_TOLERANCE
    with pytest.raises(ValueError):
        sum_rule(0.0, 0.1)


def test_summarize_medians_flops_and_overhead() -> None:
    events = []
    for repeat, scale in enumerate((1.0, 3.0, 2.0)):
        run = chainer_like_run(repeat)
        for e in run:
            e["time_s"] = 0.01 * scale if e["name"] == "Convolution2DFunction" else 0.001
        events += run
    result = summarize(
        events,
        core_samples_s=[0.5, 0.6, 0.4],
        profiled_core_samples_s=[0.5, 0.6, 0.55],
        batch_size=2,
    )
    rows = {(r["layer"], r["phase"]): r for r in result["layers"]}
    assert set(rows) >= {(layer, phase) for layer in NETWORK_LAYERS for phase in ("forward", "backward")}
    assert all(set(r) == LAYER_KEYS for r in result["layers"])
    conv2 = rows["conv2", "forward"]
    assert conv2["samples_s"] == pytest.approx([0.01, 0.03, 0.02])
    assert conv2["time_s"] == pytest.approx(0.02)  # the median over repeats
    assert conv2["flops"] == spec.layer_flops(2)["conv2"]["forward"]
    assert conv2["flops_per_s"] == pytest.approx(conv2["flops"] / 0.02)
    assert rows["relu", "forward"]["flops"] is None and rows["relu", "forward"]["flops_per_s"] is None
    total = sum(r["time_s"] for r in result["layers"])
    assert result["layers_time_s"] == pytest.approx(total)
    assert result["core_time_s"] == pytest.approx(0.5)
    assert result["overhead_s"] == pytest.approx(0.5 - total)
    assert result["sum_rule"]["overhead_s"] == pytest.approx(result["overhead_s"])
    assert result["profiled_overhead_s"] == pytest.approx(0.55 - total)
    assert sum(result["phase_time_s"].values()) == pytest.approx(total)


# --- real profiles of both backends -----------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(("framework", "mode"), [("pytorch", "autograd"), ("chainer", "explicit")])
def test_profile_core_attributes_every_layer_in_both_phases(framework: str, mode: str) -> None:
    from deeppose.backends import create_backend
    from deeppose.core import synthetic_batch

    backend = create_backend(framework, "cpu", threads=1)
    backend.seed(0)
    backend.load_weights(spec.init_weights(0), spec.ModelConfig(dropout=0.5))
    arrays = [backend.to_device(a) for a in synthetic_batch(1, 0)]
    backend.zero_grad()
    backend.forward_backward(*arrays, mode)  # warm-up

    profile = backend.profile_core(*arrays, mode, 1)
    assert set(profile) >= {"tool", "time_basis", "core_time_s", "events"}
    assert len(profile["core_time_s"]) == 1
    resolved, notes = resolve(profile["events"])
    assert notes == []
    times: dict[tuple[str, str], float] = {}
    for e in resolved:
        times[e["layer"], e["phase"]] = times.get((e["layer"], e["phase"]), 0.0) + e["time_s"]
    for layer in NETWORK_LAYERS:
        for phase in ("forward", "backward"):
            assert times.get((layer, phase), 0.0) > 0, f"{framework}: no {phase} time for {layer}"
    # the framework itself located every conv/fc call (no fallback on order was needed)
    located = {
        e["layer_source"]
        for e in resolved
        if e["layer"] in NETWORK_LAYERS and classify(e["name"]) != "grad_accumulate"
    }
    assert located == {"backend"}
    assert times.get(("dropout", "forward"), 0) > 0 and times.get(("loss", "backward"), 0) > 0
    # top-level calls do not overlap: they fit in the run that contains them, and cover most of it
    covered = sum(e["time_s"] for e in resolved)
    assert covered <= profile["core_time_s"][0] * 1.001
    assert covered >= 0.5 * profile["core_time_s"][0]


# --- the stage ---------------------------------------------------------------------------
def tiny_params(folder: Path, **breakdown: Any) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["timing"].update(threads=1, warmup=1)
    raw["grid"].update(frameworks=["pytorch", "chainer"], loss_modes=["autograd"])
    raw["breakdown"].update({"repeats": 1, "batch_exponents": [0], "processes": 2, **breakdown})
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


STAGE_ARGV = ["breakdown", "--device", "cpu", "--batch-exp", "0", "--synthetic-input", "--peak-size", "64"]


def test_rounds_run_every_arm_once_in_alternating_order() -> None:
    from deeppose.breakdown import rounds

    assert rounds(["a", "b", "c"], 3) == [["a", "b", "c"], ["c", "b", "a"], ["a", "b", "c"]]
    with pytest.raises(ValueError, match="at least 1"):
        rounds(["a"], 0)


def test_group_interleaves_fresh_processes_and_keeps_each_one(tmp_path: Path, monkeypatch) -> None:
    """Every arm's processes run in rounds (never one arm's all at once), and the result keeps every
    process's own per-layer times beside the pooled ones."""
    from report_project import measured_processes

    from deeppose import breakdown
    from deeppose.grid import Group

    params = load_params(tiny_params(tmp_path, processes=3))
    group = Group.of(params.grid, "cpu", 0, breakdown=True)
    events = chainer_like_run()
    order: list[str] = []

    def run_one(job: Job) -> dict[str, Any]:
        order.append(job.framework)
        (measured,) = measured_processes(events, 0.5 if job.framework == "chainer" else 0.3, (1.0,))
        return {**measured, "tool": "test", "time_basis": "wall", "threads": {}, "versions": {}}

    monkeypatch.setattr(breakdown, "peak_record", lambda *args: {"peak_flops_per_s": 1e11})
    results = breakdown.breakdown_group(params, group, synthetic=True, run_one=run_one)
    assert order == ["pytorch", "chainer", "chainer", "pytorch", "pytorch", "chainer"]
    chainer = results[Job("chainer", "autograd", "cpu", 0)]
    assert [(p.round, p.position) for p in chainer.processes] == [(0, 1), (1, 0), (2, 1)]
    assert all(len(p.layers) == len(chainer.layers) and p.core_time_s == 0.5 for p in chainer.processes)
    assert chainer.core_samples_s == [0.5] * 3 and {e["process"] for e in chainer.events} == {0, 1, 2}
    assert sorted({e["repeat"] for e in chainer.events}) == [0, 1, 2]  # counted over the pooled repeats


@pytest.mark.slow
def test_stage_writes_the_documented_result(tmp_path: Path, monkeypatch, capsys) -> None:
    params = tiny_params(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert cli.main([*STAGE_ARGV, "--params", str(params)]) == 0
    printed = capsys.readouterr().out
    for framework in ("pytorch", "chainer"):
        out = paths.breakdown_result(Job(framework, "autograd", "cpu", 0))
        assert str(out) in printed
        result = json.loads(out.read_text())
        assert set(result) == RESULT_KEYS
        assert result["job"] == {"framework": framework, "loss": "autograd", "device": "cpu", "batch_exp": 0}
        assert result["batch_size"] == 1 and result["input"] == "synthetic"
        assert result["repeats"] == 1 and len(result["core_samples_s"]) == 2  # 2 processes, 1 repeat each
        assert [p["round"] for p in result["processes"]] == [0, 1]
        assert all(set(row) == LAYER_KEYS for p in result["processes"] for row in p["layers"])
        assert all(set(row) == LAYER_KEYS for row in result["layers"])
        assert {row["layer"] for row in result["layers"]} >= set(NETWORK_LAYERS)
        assert set(result["sum_rule"]) >= {"tolerance", "relative_gap", "ok"}
        assert result["overhead_s"] == pytest.approx(
            result["core_time_s"] - sum(r["time_s"] for r in result["layers"])
        )
        assert (
            result["peak_flops_per_s"] > 0 and result["peak"]["best"] in result["peak"]["rates_flops_per_s"]
        )
        assert result["events"] and {"name", "layer", "phase", "time_s", "repeat", "process"} <= set(
            result["events"][0]
        )
        assert result["threads"]["requested"] == 1
        assert "cpu" in result["environment"]


def test_stage_rejects_a_bad_device(tmp_path: Path, monkeypatch, capsys) -> None:
    params = tiny_params(tmp_path)
    monkeypatch.chdir(tmp_path)
    argv = [*STAGE_ARGV, "--params", str(params)]
    argv[argv.index("cpu")] = "tpu"
    assert cli.main(argv) == 2
    assert "unknown device 'tpu'" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("value", [1, 0, "three"])
def test_stage_rejects_a_bad_processes_value(value: Any, tmp_path: Path, monkeypatch, capsys) -> None:
    """One process per arm gives no interval: refused in one line naming the parameter."""
    params = tiny_params(tmp_path, processes=value)
    monkeypatch.chdir(tmp_path)
    assert cli.main([*STAGE_ARGV, "--params", str(params)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "breakdown.processes" in line and str(value) in line
    assert not (tmp_path / "results").exists()


# --- the report section -----------------------------------------------------------------
def hand_made_result(
    loss: str, conv_s: float, fc_s: float, core_s: float, factors: tuple[float, ...] = (1.0, 1.02, 0.99)
) -> dict[str, Any]:
    """A breakdown result's fields as the stage writes them, from a hand-made Chainer-like profile
    in one fresh process per factor (deeppose.breakdown.combine)."""
    from report_project import measured_processes

    from deeppose.breakdown import combine

    events = chainer_like_run()
    for e in events:
        kind = classify(e["name"])
        e["time_s"] = conv_s / 10 if kind == "conv" else fc_s / 6 if kind == "linear" else 0.0005
    processes = [dict(p, round=r) for r, p in enumerate(measured_processes(events, core_s, factors))]
    return {
        "batch_size": 16,
        "repeats": 1,
        "peak_flops_per_s": 2e11,
        "peak": {
            "best": "torch_conv3x3",
            "rates_flops_per_s": {"numpy_matmul": 1.2e11, "torch_conv3x3": 2e11},
        },
        **combine(processes, 16),
    }


def write_record(params: Params, job: Job, result: dict[str, Any]) -> None:
    """`result` (hand_made_result's fields) as the stage writes it: a typed, current record."""
    from deeppose import provenance
    from deeppose.records.breakdown import BreakdownResult
    from deeppose.records.results import job_id
    from deeppose.stages import STAGES

    group = STAGES["breakdown"].group(params.grid, job.device, job.batch_exp)
    BreakdownResult.create(
        job=job_id(job),
        warmup=1,
        seed=0,
        input="synthetic",
        model={"dropout": 0.0, "lrn": False},
        tool="test",
        time_basis="host wall time",
        threads={},
        versions={},
        environment={},
        provenance=provenance.record("breakdown", params, group),
        **result,
    ).write(paths.breakdown_result(job))


def test_a_process_with_a_negative_time_is_refused(
    report_params: Params, tmp_path: Path, monkeypatch
) -> None:
    from deeppose.records import ranges
    from deeppose.records.breakdown import BreakdownResult
    from deeppose.records.results import RecordError

    monkeypatch.chdir(tmp_path)
    job = Job("pytorch", "autograd", "cpu", 4)
    write_record(report_params, job, hand_made_result("autograd", 0.2, 0.1, 0.35))
    path = paths.breakdown_result(job)
    ranges.read(BreakdownResult, path)  # as written: in range
    data = json.loads(path.read_text())
    data["processes"][1]["core_samples_s"] = [-0.3]
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=r"processes\[1\]: core_samples_s\[0\]"):
        ranges.read(BreakdownResult, path)


@pytest.fixture()
def report_params() -> Params:
    params = load_params(REPO / "params.yaml")
    raw = params.value()
    raw["breakdown"]["batch_exponents"] = [4]
    raw["grid"].update(
        frameworks=["pytorch", "chainer"], loss_modes=["autograd", "explicit"], devices=["cpu"]
    )
    return Params.from_raw(params.path, raw)


def replicates(loss: str, cores: list[float], convs: list[float]):
    """One Replicate per round: the core time, the convolutions' time; fc 10 ms, the rest ReLU."""
    from deeppose.report.layer_replicates import Replicate

    return [
        Replicate(
            loss,
            r,
            core,
            0.001,
            {
                **{n: conv / 5 for n in CONV_LAYERS},
                **{n: 0.01 / 3 for n in FC_LAYERS},
                "relu": core - conv - 0.011,
            },
        )
        for r, (core, conv) in enumerate(zip(cores, convs))
    ]


def t_interval(values: np.ndarray, level: float) -> tuple[float, float, float]:
    half = scipy_stats.t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size)
    return float(values.mean()), float(values.mean() - half), float(values.mean() + half)


def test_replicated_comparison_by_hand() -> None:
    """The paired ratio, the share of the extra time in convolutions and a layer's time, each with
    the interval computed here from the pooled pairs (loss mode, round)."""
    from deeppose.report.layer_replicates import ShareVerdict, compare
    from deeppose.verdicts import DECISION_LEVEL, Verdict

    torch_core, chainer_core = [0.30, 0.32, 0.31, 0.29], [0.60, 0.66, 0.58, 0.63]
    chainer_conv = [0.45, 0.50, 0.44, 0.47]
    torch = replicates("autograd", torch_core[:2], [0.2] * 2) + replicates(
        "explicit", torch_core[2:], [0.2] * 2
    )
    chainer = replicates("autograd", chainer_core[:2], chainer_conv[:2])
    chainer += replicates("explicit", chainer_core[2:], chainer_conv[2:])
    c = compare("chainer", torch, chainer, margin=0.05)
    assert c.pairs == 4
    centre, low, high = t_interval(np.log(np.array(chainer_core) / torch_core), DECISION_LEVEL)
    assert (c.ratio.estimate, c.ratio.low, c.ratio.high) == pytest.approx(
        (np.exp(centre), np.exp(low), np.exp(high))
    )
    assert c.verdict is Verdict.SLOWER
    shares = (np.array(chainer_conv) - 0.2) / (np.array(chainer_core) - torch_core)
    assert (c.conv_share.estimate, c.conv_share.low, c.conv_share.high) == pytest.approx(
        t_interval(shares, DECISION_LEVEL)
    )
    assert c.conv_share.low > 0.5 and c.share_verdict is ShareVerdict.MOST
    conv1 = next(r for r in c.rows if r.row == "conv1")
    logs = np.log(np.array(chainer_conv) / 5)
    _, low, high = t_interval(logs, DECISION_LEVEL)
    assert (conv1.other.estimate, conv1.other.low, conv1.other.high) == pytest.approx(
        (float(np.median(np.array(chainer_conv) / 5)), np.exp(low), np.exp(high))
    )
    assert sum(c.shares[p].estimate for p in ("conv", "fc", "elementwise", "overhead")) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "chainer_conv, verdict",
    [
        ([0.30, 0.50, 0.26, 0.42], "inconclusive"),  # shares 0.33 .. 0.88: the interval spans 50 %
        ([0.25, 0.26, 0.24, 0.25], "the convolutions explain less than half of the difference"),
    ],
)
def test_the_conv_share_says_most_only_above_half(chainer_conv: list[float], verdict: str) -> None:
    from deeppose.report.layer_replicates import compare

    torch = replicates("autograd", [0.30, 0.32, 0.31, 0.29], [0.2] * 4)
    c = compare("chainer", torch, replicates("autograd", [0.60, 0.66, 0.58, 0.63], chainer_conv), 0.05)
    assert c.share_verdict.value == verdict


def test_no_share_where_the_framework_is_not_slower_in_every_pair() -> None:
    from deeppose.report.layer_replicates import ShareVerdict, compare

    torch = replicates("autograd", [0.30, 0.32, 0.31], [0.2] * 3)
    c = compare("chainer", torch, replicates("autograd", [0.60, 0.30, 0.58], [0.45, 0.2, 0.44]), 0.05)
    assert c.conv_share is None and c.share_verdict is ShareVerdict.CANNOT_TEST


BREAKDOWN = "Per-layer breakdown of the core process"


def findings_of(params: Params):
    from deeppose.report.analysis import analyse
    from deeppose.report.load import load_results

    return analyse(load_results(params))


def test_report_section_renders_from_hand_made_results(
    report_params: Params, tmp_path: Path, monkeypatch
) -> None:
    from deeppose.report import figures, plot_style, sections

    monkeypatch.chdir(tmp_path)
    results = {
        ("pytorch", "autograd"): hand_made_result("autograd", 0.2, 0.1, 0.35, (1.0, 1.03, 0.99)),
        ("chainer", "autograd"): hand_made_result("autograd", 1.5, 0.12, 1.7, (1.0, 0.98, 1.04)),
        ("pytorch", "explicit"): hand_made_result("explicit", 0.2, 0.1, 0.36),
        # chainer/explicit missing: shown as not run
    }
    for (framework, loss), result in results.items():
        write_record(report_params, Job(framework, loss, "cpu", 4), result)
    findings = findings_of(report_params)
    drawn = figures.plan(findings)
    assert sorted(drawn) == ["breakdown_cpu_b16.png", "breakdown_peak_cpu_b16.png", "roofline_cpu_b16.png"]
    markdown = sections.section(BREAKDOWN, findings, set(drawn))
    assert "### cpu, batch 16" in markdown and not re.search(r"^#{1,2} ", markdown, flags=re.M)
    assert "](figures/breakdown_cpu_b16.png)" in markdown and "](figures/roofline_cpu_b16.png)" in markdown
    assert "| Layer | PyTorch (ms) | Chainer (ms) | Chainer/PyTorch | Share of extra time (%) |" in markdown
    assert "convolutions account for" in markdown and "explain most of the difference" in markdown
    assert (
        "| Chainer | explicit | not run |" in markdown
        and "1 of 4 per-layer breakdown jobs on cpu" in markdown
    )
    assert "| Chainer | autograd | 3 |" in markdown  # the loss modes apart, with their processes
    (c,) = findings.devices[0].breakdown[0].comparisons
    assert c.pairs == 3 and c.ratio.low < 1.7 / 0.35 < c.ratio.high
    assert c.conv_share.low < 1.3 / 1.35 < c.conv_share.high
    first = [plot_style.png(drawn[name]) for name in sorted(drawn)]
    assert all(b.startswith(b"\x89PNG") for b in first)
    again = findings_of(report_params)
    assert sections.section(BREAKDOWN, again, set(drawn)) == markdown
    assert [
        plot_style.png(figures.plan(again)[name]) for name in sorted(drawn)
    ] == first  # deterministic bytes


def test_the_conv_answer_has_an_interval_from_the_replicates(
    report_params: Params, tmp_path: Path, monkeypatch
) -> None:
    """One process per arm answered "inconclusive, 69 % (single run)": now both loss modes' processes
    pooled give the share an interval, and "explain most" needs its low end above 50 %."""
    from deeppose.report.lines import answer_line

    monkeypatch.chdir(tmp_path)
    for loss in ("autograd", "explicit"):
        write_record(report_params, Job("pytorch", loss, "cpu", 4), hand_made_result(loss, 0.2, 0.1, 0.35))
        chainer = hand_made_result(loss, 1.5, 0.12, 1.7, (1.0, 0.97, 1.05))
        write_record(report_params, Job("chainer", loss, "cpu", 4), chainer)
    findings = findings_of(report_params)
    (a,) = [a for a in findings.answers if a.question == "layers"]
    assert a.interval is not None and 0.5 < a.interval.low < a.interval.high
    line = answer_line(a)
    assert "single run" not in line and "6 pairs of processes" in line
    assert "**the convolutions explain most of the difference**" in line and " [" in line
    # the loss modes as replicates: the same processes' times in both, so each ratio is exactly 1
    modes = findings.devices[0].breakdown[0].loss_modes
    assert [(m.framework, m.ratio.estimate, m.verdict.value) for m in modes] == [
        ("pytorch", pytest.approx(1.0), "equivalent"),
        ("chainer", pytest.approx(1.0), "equivalent"),
    ]


def test_no_comparison_without_a_shared_loss_mode(report_params: Params, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_record(
        report_params, Job("pytorch", "explicit", "cpu", 4), hand_made_result("explicit", 0.2, 0.1, 0.35)
    )
    write_record(
        report_params, Job("chainer", "autograd", "cpu", 4), hand_made_result("autograd", 1.5, 0.1, 1.7)
    )
    (batch,) = findings_of(report_params).devices[0].breakdown
    assert batch.comparisons == () and batch.loss_modes == ()
    assert batch.not_compared == (("chainer", "autograd"), ("chainer", "explicit"))


def test_report_section_without_results(report_params: Params, tmp_path: Path, monkeypatch) -> None:
    from deeppose.report import figures, sections

    monkeypatch.chdir(tmp_path)
    findings = findings_of(report_params)
    markdown = sections.section(BREAKDOWN, findings, set(figures.plan(findings)))
    assert (
        "No per-layer breakdown result on cpu (4 jobs): see *Jobs without results* in the Appendix."
        in markdown
    )
    assert "![" not in markdown and not figures.plan(findings)


def test_one_profiled_process_keeps_its_core_times_and_every_layer_event(tmp_path: Path) -> None:
    """The `breakdown-process` child, in process at batch 1: a timed core run and a profiled one
    per repeat, each repeat's events labelled with it (the fast tier's only run of this module)."""
    from deeppose.breakdown_process import measure_process

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    raw["breakdown"]["repeats"], raw["timing"]["warmup"] = 2, 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    measured = measure_process(
        load_params(tmp_path / "params.yaml"), Job("pytorch", "autograd", "cpu", 0), synthetic=True
    )
    assert len(measured["core_samples_s"]) == len(measured["profiled_core_samples_s"]) == 2
    assert all(t > 0 for t in measured["core_samples_s"] + measured["profiled_core_samples_s"])
    assert {event["repeat"] for event in measured["events"]} == {0, 1}
    assert measured["tool"] and measured["versions"]
