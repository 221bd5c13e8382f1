"""Typed result records: round trips, one-line errors naming file and field, provenance and
staleness, the stage table's code dependencies."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import yaml

from deeppose import provenance
from deeppose.config import SCHEMA_PATH, load_params
from deeppose.grid import DEVICES, LOSS_MODES, MAX_BATCH_EXP, OPTIMIZERS, Group, Job
from deeppose.measure import machine
from deeppose.records import results
from deeppose.records.data import PrepareSummary
from deeppose.records.peak import PeakResult
from deeppose.records.summary import ReportSummary
from deeppose.records.timing import TimingResult
from deeppose.records.training import IterationLine, TrainMetrics, log_line
from deeppose.stages import STAGES

ROOT = Path(__file__).resolve().parent.parent
ENV = {"cpu": "Test CPU", "cores": 2}
BLOCK = {
    "round": 0,
    "position": 1,
    "arm": "pytorch/autograd",
    "attempt": 0,
    "samples_s": [1.0, 1.0],
    "warmup_s": [2.0],
    "waiting_cpu_s": [0.0, 0.0],
    "settle_s": [0.01, 0.01],
    "optimizer_steps_s": {},
    "loss_s": [1e-4],
    "compile_s": None,
    "memory_bytes": 2**20,
    "started_at": 1.0,
    "ended_at": 3.0,
    "disturbed": False,
    "reasons": [],
    "interference": {
        "wall_s": 2.0,
        "machine_busy_s": 2.0,
        "own_s": 2.0,
        "other_cpu_s": 0.0,
        "other_cores": 0.0,
        "load_before": [0.0, 0.0, 0.0],
        "cores": 2,
    },
}
STATS = {"n": 2, "mean": 1.0, "median": 1.0, "variance": 0.0, "iqr_over_median": 0.0, "noisy": False}


def params():
    return load_params(ROOT / "params.yaml")


def examples() -> dict[type, results.Record]:
    """One record of every file kind, built the way the stages build them."""
    p = params()
    job, cell = Job("chainer", "explicit", "cpu"), Job("pytorch", "autograd", "cpu", 3)
    scores = {"loss": 0.1, "pcp": 0.5, "pdj": None, "pck": 0.25}
    common = dict(threads={"requested": 2}, environment=ENV)
    return {
        PrepareSummary: PrepareSummary.create(
            source="synthetic",
            seed=0,
            inputs=[{"name": "synthetic"}],
            crop={"size": 256},
            kept={"train": 3, "test": 1},
            filtering={"test": {"drop_rules": ["no visible joint"], "dropped": 0}},
            dropped={"total": 0, "by_reason": {}, "samples": []},
            arrays={},
            sha256="ab",
            provenance=provenance.record("prepare", p),
        ),
        TrainMetrics: TrainMetrics.create(
            job=results.job_id(job),
            seed=0,
            params={},
            epochs=1,
            iterations=2,
            batch_size=2,
            train_samples=4,
            test_samples=1,
            resumed_from_epoch=0,
            train_time_s=1.5,
            eval_time_s=0.1,
            iteration_time_s=STATS,
            final_train_loss=0.2,
            final_test=scores,
            baseline_test=scores,
            scored_joints="annotated",
            test_per_image={},
            versions={"chainer": "7.8.1"},
            provenance=provenance.record("train", p, job),
            **common,
        ),
        TimingResult: TimingResult.create(
            job=results.job_id(cell),
            batch_size=8,
            warmup=1,
            repeats=2,
            rounds=1,
            loss_repeats=4,
            seed=0,
            schedule_seed=3,
            input="synthetic",
            group=["pytorch/autograd"],
            design={
                "preset": None,
                "pairing": "turns",
                "first_rounds": 2,
                "max_rounds": 3,
                "looks": 1,
                "stopped": "decided",
                "margin": 0.05,
                "decision_level": 0.93,
                "planted": 0.15,
            },
            controls=["pytorch/autograd"],
            planted_cell="pytorch/autograd",
            blocks=[BLOCK],
            control_blocks=[{**BLOCK, "arm": "pytorch/autograd#1"}],
            planted_blocks=[{**BLOCK, "arm": "pytorch/autograd#planted"}],
            time_s={"estimate": 1.0, "low": None, "high": None, "n": 1, "level": 0.95, "method": "one block"},
            flops=10,
            flops_per_s=None,
            versions={},
            compile={},
            memory_source="host",
            provenance=provenance.record("time", p, cell),
            **common,
        ),
        PeakResult: PeakResult.create(
            device="cpu",
            n=64,
            kernels={"numpy_matmul": None},
            rates_flops_per_s={"numpy_matmul": None},
            best=None,
            peak_flops_per_s=None,
            bandwidth=None,
            bandwidth_bytes_per_s=None,
            theoretical={"flops_per_s": None},
            theoretical_flops_per_s=None,
            provenance=provenance.record("peak", p),
            **common,
        ),
        ReportSummary: ReportSummary.create(
            headlines={"cpu": {"ratio": 1.5}},
            stale={},
            inputs={"results/machine/matmul_peak.json": "ab"},
            provenance=provenance.record("report", p),
        ),
    }


@pytest.mark.parametrize("kind", list(examples()), ids=lambda k: k.__name__)
def test_every_record_round_trips_through_its_file(tmp_path, kind):
    record = examples()[kind]
    record.write(tmp_path / "r.json")
    assert kind.read(tmp_path / "r.json") == record
    assert json.loads((tmp_path / "r.json").read_text())["schema_version"] == results.SCHEMA_VERSION


def test_log_lines_are_records():
    line = {"kind": "iteration", "epoch": 1, "iteration": 1, "loss": 0.5, "elapsed_s": 1.0, "compute_s": 0.9}
    assert log_line(line, "log.jsonl line 1") == IterationLine(**line)
    with pytest.raises(results.RecordError, match=r"^log.jsonl line 2: missing field 'compute_s'$"):
        log_line({k: v for k, v in line.items() if k != "compute_s"}, "log.jsonl line 2")


def _damage(tmp_path: Path, change) -> Path:
    data = examples()[TimingResult].to_dict()
    change(data)
    path = tmp_path / "b3.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(extra=1), "unknown field 'extra'"),
        (lambda d: d.pop("flops"), "missing field 'flops'"),
        (lambda d: d.update(schema_version=0), f"schema_version 0, this code reads {results.SCHEMA_VERSION}"),
        (lambda d: d.update(kind="train"), "kind is 'train', expected 'time'"),
        (lambda d: d.update(batch_size="8"), "batch_size: expected an integer"),
        (lambda d: d["blocks"][0].pop("loss_s"), "blocks[0]: missing field 'loss_s'"),
        (
            lambda d: d["blocks"][0]["samples_s"].append(float("nan")),
            "blocks[0].samples_s[2]: nan is not a finite",
        ),
        (
            lambda d: d["environment"].update(load=float("inf")),
            "environment.load: inf is not a finite number",
        ),
    ],
)
def test_a_damaged_or_foreign_file_is_one_line_naming_the_file_and_field(tmp_path, change, message):
    path = _damage(tmp_path, change)
    with pytest.raises(results.RecordError) as error:
        TimingResult.read(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_stage_cannot_write_what_a_reader_would_refuse():
    with pytest.raises(results.RecordError, match="PeakResult being written: n: expected an integer"):
        PeakResult.create(**{**examples()[PeakResult].to_dict(), "n": 1.5})


def test_code_dependencies_follow_imports_and_only_the_jobs_backend():
    train = STAGES["train"]
    chainer = provenance.code_files(train, Job("chainer", "autograd", "cpu"))
    pytorch = provenance.code_files(train, Job("pytorch", "autograd", "cpu"))
    assert "deeppose/backends/chainer.py" in chainer and "deeppose/backends/chainer.py" not in pytorch
    assert "deeppose/backends/pytorch.py" in pytorch and "deeppose/backends/chainer_import.py" not in pytorch
    assert {"deeppose/train.py", "deeppose/data/batches.py", "requirements/lock.txt"} <= set(pytorch)
    report = provenance.code_files(STAGES["report"])
    assert "deeppose/report/sections.py" in report and not any("backends/pytorch" in f for f in report)
    assert "deeppose/report/report.md.j2" in report  # read at run time, named by no import
    assert not any(f.startswith("deeppose/report/") for f in pytorch)
    assert "deeppose/peak.py" in provenance.code_files(
        STAGES["breakdown"], Job("pytorch", "autograd", "cpu", 0)
    )


def test_stale_reasons_name_the_changed_file_and_parameter():
    p = params()
    job = Job("chainer", "autograd", "cpu", 1)
    recorded = provenance.record("breakdown", p, STAGES["breakdown"].group(p.grid, "cpu", 1))
    assert provenance.stale_reasons(recorded, p, job) == []  # a breakdown cell: judged by its group
    older = dataclasses.replace(
        recorded,
        code={**recorded.code, "deeppose/backends/chainer.py": "0" * 64},
        params={**recorded.params, "breakdown": {**recorded.params["breakdown"], "repeats": 99}},
    )
    assert provenance.stale_reasons(older, p, job) == [
        "code changed: deeppose/backends/chainer.py",
        "parameters changed: breakdown",
    ]


def test_a_timing_cell_is_judged_by_its_groups_code():
    """A group ran every framework: editing either backend makes every cell of it stale."""
    p = params()
    group = Group.of(p.grid, "cpu", 1)
    recorded = provenance.record("time", p, group)
    assert {"deeppose/backends/chainer.py", "deeppose/backends/pytorch.py"} <= set(recorded.code)
    for job in group.jobs():
        assert provenance.stale_reasons(recorded, p, job) == []
    older = dataclasses.replace(recorded, code={**recorded.code, "deeppose/backends/pytorch.py": "0" * 64})
    assert provenance.stale_reasons(older, p, Job("chainer", "explicit", "cpu", 1)) == [
        "code changed: deeppose/backends/pytorch.py"
    ]


@pytest.mark.parametrize("change", ["model", "isa", "kernel_pins", "absent", "unrecorded"])
def test_a_measurement_from_another_machine_is_stale_and_names_it(change):
    p = params()
    recorded = provenance.record("peak", p)
    elsewhere = dict(recorded.machine)
    if change == "model":
        elsewhere["model"] = "17" if elsewhere["model"] != "17" else "1"
    elif change == "isa":
        elsewhere["isa"] = [*elsewhere["isa"], "avx512f"] if "avx512f" not in elsewhere["isa"] else ["avx2"]
    elif change == "kernel_pins":
        elsewhere["kernel_pins"] = {"OPENBLAS_CORETYPE": "Prescott"}
    elif change == "absent":
        del elsewhere["isa"]  # a field missing on one side is a difference, not a match
    older = dataclasses.replace(recorded, machine=None if change == "unrecorded" else elsewhere)
    (reason,) = provenance.stale_reasons(older, p)
    assert reason.startswith("measured on another machine: ")
    assert (
        "no machine recorded" if change == "unrecorded" else ("isa" if change == "absent" else change)
    ) in reason


def test_a_stage_that_measures_nothing_records_no_machine():
    p = params()
    assert provenance.record("report", p).machine is None
    assert provenance.record("prepare", p).machine is None
    assert provenance.record("train", p, Job("pytorch", "autograd", "cpu")).machine == machine.fingerprint()


def test_the_machine_fingerprint_tells_zen_3_from_zen_4():
    zen3 = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx avx2 fma\n\n"
    zen4 = zen3.replace("model\t\t: 1", "model\t\t: 17").replace("fma", "fma avx512f avx512_bf16")
    a, b = machine.fingerprint(zen3), machine.fingerprint(zen4)
    assert a["cpu"] == b["cpu"] == "AMD EPYC"
    assert machine.differences(a, b) == [
        "isa: ['avx', 'avx2', 'fma'] -> ['avx', 'avx2', 'fma', 'avx512f', 'avx512_bf16']",
        "model: '1' -> '17'",
    ]


def test_the_schema_speaks_the_grid_vocabulary():
    schema = yaml.safe_load(SCHEMA_PATH.read_text())["properties"]
    grid = schema["grid"]["properties"]
    assert grid["loss_modes"]["items"]["enum"] == list(LOSS_MODES)
    assert grid["devices"]["items"]["enum"] == list(DEVICES)
    assert schema["train"]["properties"]["optimizer"]["enum"] == list(OPTIMIZERS)
    assert grid["batch_exponents"]["items"]["maximum"] == MAX_BATCH_EXP
    assert schema["breakdown"]["properties"]["batch_exponents"]["items"]["maximum"] == MAX_BATCH_EXP


def test_the_fingerprint_command_rewrites_only_what_changed(tmp_path, monkeypatch, capsys):
    """The files both engines depend on: written once, then left alone (their modification time
    is Snakemake's signal) until a stage's code or machine changes."""
    from deeppose import cli

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["fingerprint"]) == 0
    written = sorted((tmp_path / "workflow" / "fingerprints").glob("*.json"))
    assert {path.stem for path in written} == set(provenance.fingerprint_jobs(params()))
    times = {path: path.stat().st_mtime_ns for path in written}
    capsys.readouterr()
    assert cli.main(["fingerprint"]) == 0
    assert capsys.readouterr().out.strip() == "every fingerprint is current"
    assert {path: path.stat().st_mtime_ns for path in written} == times
    peak = tmp_path / "workflow" / "fingerprints" / "peak.json"
    peak.write_text(peak.read_text().replace('"model"', '"model_elsewhere"'))
    assert cli.main(["fingerprint"]) == 0
    assert capsys.readouterr().out.strip() == f"updated {peak.relative_to(tmp_path)}"
