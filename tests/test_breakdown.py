"""The layer breakdown: grouping of hand-made profiles (both frameworks' names), the sum rule,
real tiny profiles of both backends, the `breakdown` stage end to end and its report section
(rendered from the report's Findings; tests/test_report.py checks it inside the whole report)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

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
    "peak_flops_per_s",
    "peak",
    "threads",
    "load_average",
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


# --- the stage --------------------------------------------------------------------------
def tiny_params(folder: Path) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["timing"].update(threads=1, warmup=1)
    raw["breakdown"].update(repeats=1, batch_exponents=[0])
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["pytorch", "chainer"])
def test_stage_writes_the_documented_result(framework: str, tmp_path: Path, monkeypatch, capsys) -> None:
    params = tiny_params(tmp_path)
    monkeypatch.chdir(tmp_path)
    argv = [
        "breakdown",
        "--params",
        str(params),
        "--framework",
        framework,
        "--loss",
        "autograd",
        "--device",
        "cpu",
        "--batch-exp",
        "0",
        "--synthetic-input",
        "--peak-size",
        "64",
    ]
    assert cli.main(argv) == 0
    out = paths.breakdown_result(Job(framework, "autograd", "cpu", 0))
    assert str(out) in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert set(result) == RESULT_KEYS
    assert result["job"] == {"framework": framework, "loss": "autograd", "device": "cpu", "batch_exp": 0}
    assert result["batch_size"] == 1
    assert result["repeats"] == 1 and len(result["core_samples_s"]) == 1 and result["input"] == "synthetic"
    assert all(set(row) == LAYER_KEYS for row in result["layers"])
    assert {row["layer"] for row in result["layers"]} >= set(NETWORK_LAYERS)
    assert set(result["sum_rule"]) >= {"tolerance", "relative_gap", "ok"}
    assert result["overhead_s"] == pytest.approx(
        result["core_time_s"] - sum(r["time_s"] for r in result["layers"])
    )
    assert result["peak_flops_per_s"] > 0 and result["peak"]["best"] in result["peak"]["rates_flops_per_s"]
    assert result["events"] and {"name", "layer", "phase", "time_s", "repeat"} <= set(result["events"][0])
    assert result["threads"]["requested"] == 1
    assert "cpu" in result["environment"]


def test_stage_rejects_a_bad_job(tmp_path: Path, monkeypatch, capsys) -> None:
    params = tiny_params(tmp_path)
    monkeypatch.chdir(tmp_path)
    argv = [
        "breakdown",
        "--params",
        str(params),
        "--framework",
        "theano",
        "--loss",
        "autograd",
        "--batch-exp",
        "0",
        "--synthetic-input",
    ]
    assert cli.main(argv) == 2
    assert "unknown framework 'theano'" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


# --- the report section -----------------------------------------------------------------
def hand_made_result(framework: str, loss: str, conv_s: float, fc_s: float, core_s: float) -> dict[str, Any]:
    """A breakdown result as the stage writes it, from a hand-made Chainer-like profile."""
    events = chainer_like_run()
    for e in events:
        kind = classify(e["name"])
        e["time_s"] = conv_s / 10 if kind == "conv" else fc_s / 6 if kind == "linear" else 0.0005
    summary = summarize(events, [core_s], [core_s * 1.02], batch_size=16)
    return {
        "framework": framework,
        "loss": loss,
        "device": "cpu",
        "batch_exp": 4,
        "batch_size": 16,
        "repeats": 1,
        "peak_flops_per_s": 2e11,
        "peak": {
            "best": "torch_conv3x3",
            "rates_flops_per_s": {"numpy_matmul": 1.2e11, "torch_conv3x3": 2e11},
        },
        **summary,
    }


def write_record(params: Params, job: Job, result: dict[str, Any]) -> None:
    """`result` (hand_made_result's fields) as the stage writes it: a typed, current record."""
    from deeppose import provenance
    from deeppose.records.results import BreakdownResult, job_id

    fields = {k: v for k, v in result.items() if k not in ("framework", "loss", "device", "batch_exp")}
    BreakdownResult.create(
        job=job_id(job),
        warmup=1,
        seed=0,
        input="synthetic",
        model={"dropout": 0.0, "lrn": False},
        tool="test",
        time_basis="host wall time",
        core_samples_s=[result["core_time_s"]],
        profiled_core_samples_s=[result["profiled_core_time_s"]],
        threads={},
        versions={},
        environment={},
        load_average={"before": [0.0] * 3, "after": [0.0] * 3},
        provenance=provenance.record("breakdown", params, job),
        **fields,
    ).write(paths.breakdown_result(job))


@pytest.fixture()
def report_params() -> Params:
    params = load_params(REPO / "params.yaml")
    raw = params.value()
    raw["breakdown"]["batch_exponents"] = [4]
    raw["grid"].update(
        frameworks=["pytorch", "chainer"], loss_modes=["autograd", "explicit"], devices=["cpu"]
    )
    return Params.from_raw(params.path, raw)


def breakdown_job(result: dict[str, Any]):
    """hand_made_result as the report's analysis holds it."""
    from deeppose.report.breakdown import BreakdownJob, Layer

    layers = tuple(
        Layer(r["layer"], r["phase"], r["time_s"], r.get("flops_per_s"), None) for r in result["layers"]
    )
    return BreakdownJob(
        result["framework"],
        result["loss"],
        result["core_time_s"],
        result["profiled_core_time_s"],
        result["layers_time_s"],
        result["overhead_s"],
        0.0,
        0.15,
        True,
        layers,
    )


def test_attribution_adds_up_and_gives_the_verdict() -> None:
    from deeppose.report.breakdown import LayerVerdict, attribute

    torch_like = breakdown_job(hand_made_result("pytorch", "autograd", conv_s=0.2, fc_s=0.1, core_s=0.35))
    conv_heavy = breakdown_job(hand_made_result("chainer", "autograd", conv_s=1.5, fc_s=0.12, core_s=1.7))
    a = attribute(torch_like, conv_heavy)
    assert sum(a.parts_s.values()) == pytest.approx(a.extra_s) and a.extra_s == pytest.approx(1.35)
    assert a.verdict is LayerVerdict.CONFIRMS and a.largest.layer in CONV_LAYERS
    fc_heavy = breakdown_job(hand_made_result("chainer", "autograd", conv_s=0.3, fc_s=1.0, core_s=1.4))
    assert attribute(torch_like, fc_heavy).verdict is LayerVerdict.PARTLY
    overhead_heavy = breakdown_job(hand_made_result("chainer", "autograd", conv_s=0.25, fc_s=0.1, core_s=1.5))
    assert attribute(torch_like, overhead_heavy).verdict is LayerVerdict.REFUTES
    assert attribute(conv_heavy, torch_like).verdict is LayerVerdict.CANNOT_TEST


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
        ("pytorch", "autograd"): hand_made_result("pytorch", "autograd", 0.2, 0.1, 0.35),
        ("chainer", "autograd"): hand_made_result("chainer", "autograd", 1.5, 0.12, 1.7),
        ("pytorch", "explicit"): hand_made_result("pytorch", "explicit", 0.2, 0.1, 0.36),
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
    assert "| Layer | Phase | PyTorch (ms) | Chainer (ms) | Chainer/PyTorch |" in markdown
    assert "convolutions account for" in markdown and "confirms the study's conclusion" in markdown
    assert (
        "| Chainer | explicit | not run |" in markdown
        and "1 of 4 per-layer breakdown jobs on cpu" in markdown
    )
    (a,) = findings.devices[0].breakdown[0].attributions
    assert a.other_s / a.reference_s == pytest.approx(1.7 / 0.35)
    assert a.parts_s["conv"] / a.extra_s == pytest.approx(1.3 / 1.35)
    first = [plot_style.png(drawn[name]) for name in sorted(drawn)]
    assert all(b.startswith(b"\x89PNG") for b in first)
    again = findings_of(report_params)
    assert sections.section(BREAKDOWN, again, set(drawn)) == markdown
    assert [
        plot_style.png(figures.plan(again)[name]) for name in sorted(drawn)
    ] == first  # deterministic bytes


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
