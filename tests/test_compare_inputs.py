"""The review tools never answer wrongly in silence (issue 30): `compare`, `report` and `status` on
damaged, stray and foreign inputs end in a correct verdict or one line with exit status 2.

Each test starts from one copy of the hand-made project of tests/report_project.py (BASE) and a
second copy (HEAD) with one thing planted, then runs the command line as CI does.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import statistics
import subprocess
from pathlib import Path

import pytest
from report_project import make_project

from deeppose import compare as C
from deeppose.cli import main
from deeppose.grid import Job
from deeppose.measure.blocks import usable
from deeppose.records import paths

CELL = Job("chainer", "autograd", "cpu", 5)  # a cell of the b5 group (3 cells: one is missing)
FULL = Job("chainer", "autograd", "cpu", 1)  # a cell of the b1 group (all 4 cells)
TRAIN = Job("pytorch", "autograd", "cpu")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("inputs"), devices=("cpu",))


@pytest.fixture
def sides(project, tmp_path) -> tuple[Path, Path]:
    """Two copies of the project's results: BASE and HEAD, identical until a test plants something."""
    base, head = tmp_path / "base", tmp_path / "head"
    shutil.copytree(project / "results", base / "results")
    shutil.copytree(project / "results", head / "results")
    return base / "results", head / "results"


def at(results: Path, path: Path) -> Path:
    return results / path.relative_to(paths.RESULTS)


def edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def gate(base: Path, head: Path, capsys, *extra: str) -> tuple[int, str, str]:
    """compare BASE HEAD --fail-on-regression --json: exit status, stdout, stderr."""
    status = main(["compare", str(base), str(head), "--fail-on-regression", "--json", *extra])
    out, err = capsys.readouterr()
    return status, out, err


def one_line(err: str, *named: str) -> None:
    lines = err.strip().splitlines()
    assert lines and all(line.startswith("deeppose compare: error: ") for line in lines), err
    assert "Traceback" not in err
    for text in named:
        assert any(text in line for line in lines), (text, err)


def test_identical_sides_pass_the_gate(sides, capsys):
    status, out, _ = gate(*sides, capsys)
    found = json.loads(out)
    assert status == 0 and found["problems"] == [] and found["params"] == []
    # the fixture's chainer/explicit log ends with a line cut short (a killed job): named, not fatal
    assert [note.split(": ", 1)[1].split(": ")[0] for note in found["notes"]] == [
        "train/chainer/explicit/cpu/log.jsonl"
    ] * 2
    assert {row["verdict"] for row in found["timing"]} <= set(C.UNCHANGED)


def test_a_slower_cell_is_exit_1(sides, capsys):
    base, head = sides

    def slower(data):
        for block in data["blocks"]:
            block["samples_s"] = [s * 1.5 for s in block["samples_s"]]

    edit(at(head, paths.timing_result(FULL)), slower)
    status, out, _ = gate(base, head, capsys)
    rows = {row["cell"]: row["verdict"] for row in json.loads(out)["timing"]}
    assert status == 1 and rows[FULL.label] == "slower"


# --- drift correction: no extrapolation, cells apart from their group named -------------------------
@pytest.mark.parametrize("seconds", [600.0, 86400.0, -30 * 86400.0], ids=["10 min", "a day", "older run"])
def test_a_cell_apart_from_its_group_is_not_corrected_and_gets_no_verdict(sides, capsys, seconds):
    """Before: identical samples with block timestamps moved by 10 minutes were "1.90 slower", by a
    day "1.6e40 slower", and a cell restored from an older run "0.000347 faster"."""
    base, head = sides

    def moved(data):
        for block in data["blocks"]:
            block["started_at"] += seconds
            block["ended_at"] += seconds

    edit(at(head, paths.timing_result(FULL)), moved)
    status, out, err = gate(base, head, capsys)
    found = json.loads(out)
    row = next(row for row in found["timing"] if row["cell"] == FULL.label)
    assert row["verdict"] == "not interleaved"
    assert row["change"]["estimate"] == pytest.approx(1.0, abs=0.02)  # identical samples: no effect invented
    assert all(r["verdict"] in C.UNCHANGED for r in found["timing"])
    assert any(FULL.label in line and "outside the time span" in line for line in found["problems"])
    assert status == 2
    one_line(err, FULL.label)


def test_drift_is_not_extrapolated_beyond_the_group_span(sides):
    """_detrended on one group: a cell moved a day away keeps its block medians as measured."""
    base, _ = sides
    results = [
        C.read_side(base, "b").timing[Job(fw, loss, "cpu", 1)]
        for fw in ("pytorch", "chainer")
        for loss in ("autograd", "explicit")
    ]
    moved = results[0].blocks
    shifted = dataclasses.replace(
        results[0],
        blocks=[
            dataclasses.replace(b, started_at=b.started_at + 86400, ended_at=b.ended_at + 86400)
            for b in moved
        ],
    )
    values, apart = C._detrended([shifted, *results[1:]])
    assert apart == [True, False, False, False]
    assert values[0] == pytest.approx([statistics.median(b.samples_s) for b in usable(shifted.blocks)])
    assert max(max(v) / min(v) for v in values) < 1.1  # nothing blown up by a day's extrapolation


# --- one reading of results ------------------------------------------------------------------------
def test_a_stray_backup_beside_a_cell_is_named_and_never_read(sides, capsys):
    """Before: `b1.old.json` (read by the glob b*.json) silently replaced b1.json."""
    base, head = sides
    cell = at(head, paths.timing_result(FULL))
    backup = cell.with_name("b1.old.json")
    shutil.copy(cell, backup)
    edit(backup, lambda d: [b.update(samples_s=[s * 3 for s in b["samples_s"]]) for b in d["blocks"]])
    status, out, _ = gate(base, head, capsys)
    found = json.loads(out)
    assert status == 0
    assert {row["verdict"] for row in found["timing"]} <= set(C.UNCHANGED)
    assert any("stray file time/chainer/autograd/cpu/b1.old.json" in note for note in found["notes"])


def test_a_record_in_another_cells_place_is_one_line(sides, capsys):
    base, head = sides
    shutil.copy(at(head, paths.timing_result(FULL)), at(head, paths.timing_result(CELL)))
    status, _, err = gate(base, head, capsys)
    assert status == 2
    one_line(err, "holds the result of chainer/autograd/cpu/b1, not of chainer/autograd/cpu/b5")


@pytest.mark.parametrize(
    "samples, named",
    [
        ([], "samples_s: no samples"),
        ([0.0, 0.0, 0.0], "samples_s[0]: 0.0 s is outside"),
        ([-1.0, 1.0, 1.0], "samples_s[0]: -1.0 s is outside"),
        ([1e308, 1e308, 1e308], "samples_s[0]: 1e+308 s is outside"),
    ],
    ids=["empty", "zero", "negative", "1e308"],
)
def test_impossible_samples_are_one_line_in_compare(sides, capsys, samples, named):
    """Before: a traceback (empty, zero) or a verdict from nonsense (negative, 1e308)."""
    base, head = sides
    edit(at(head, paths.timing_result(FULL)), lambda d: d["blocks"][1].update(samples_s=samples))
    status, _, err = gate(base, head, capsys)
    assert status == 2
    one_line(err, f"blocks[1].{named}")


def test_a_machine_field_missing_on_one_side_is_a_difference(sides, capsys):
    """Before: a field absent on one side was taken as equal. The provenance's machine fingerprint
    counts as well (deeppose.measure.machine)."""
    base, head = sides
    edit(at(head, paths.timing_result(FULL)), lambda d: d["provenance"]["machine"].pop("isa"))
    edit(at(head, paths.train_metrics(TRAIN)), lambda d: d["environment"].pop("python"))
    status, out, err = gate(base, head, capsys)
    fields = {m["field"]: (m["base"], m["head"]) for m in json.loads(out)["machines"]}
    assert fields["machine.isa"][1] == C.ABSENT and fields["environment.python"] == ("3.11.9", C.ABSENT)
    assert status == 2
    one_line(err, "unlike machines")


def test_a_truncated_log_is_named_and_not_compared(sides, capsys):
    """Before: HEAD's epoch 1 was set against BASE's epoch 2 without a word."""
    base, head = sides
    log = at(head, paths.train_log(TRAIN))
    lines = log.read_text().splitlines()
    log.write_text("\n".join(line for line in lines if json.loads(line)["epoch"] == 1) + "\n")
    status, out, err = gate(base, head, capsys)
    found = json.loads(out)
    assert TRAIN.label not in {row["cell"] for row in found["training"]}
    assert TRAIN.label not in {r["cell"] for r in found["accuracy"] if r["what"] == "final training loss"}
    assert status == 2
    one_line(err, "its last epoch is 1, its metrics.json summarises 2")


def test_cells_missing_on_head_fail_the_gate_with_exit_2(sides, capsys):
    """Before: exit 0 when HEAD lacked cells."""
    base, head = sides
    at(head, paths.timing_result(FULL)).unlink()
    status, _, err = gate(base, head, capsys)
    assert status == 2
    one_line(err, "HEAD lacks 1 timing cells that BASE has")
    status, _, _ = gate(head, base, capsys)  # a cell new on HEAD is no reason to refuse a verdict
    assert status == 0


def test_parameter_differences_are_shown(sides, capsys):
    base, head = sides
    edit(
        at(head, paths.timing_result(FULL)), lambda d: d["provenance"]["params"].update({"timing.blocks": 99})
    )
    assert main(["compare", str(base), str(head)]) == 0
    text = capsys.readouterr().out
    assert "**Parameters that differ**" in text and "`timing.blocks`" in text and "99" in text


def test_an_unforeseen_failure_is_exit_2_not_a_traceback(sides, capsys, monkeypatch):
    """A crash would exit 1, which the gate reads as "slower"."""
    monkeypatch.setattr(C, "_timing", lambda *a: 1 / 0)
    status, _, err = gate(*sides, capsys)
    assert status == 2
    one_line(err, "ZeroDivisionError")


def test_a_revision_whose_results_hold_an_absolute_symlink_is_one_line(
    project, tmp_path, capsys, monkeypatch
):
    """Before: tarfile's AbsoluteLinkError as a traceback (exit 1: "slower")."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    shutil.copytree(project / "results", repo / "results")
    (repo / "results" / "time" / "elsewhere").symlink_to("/etc/hostname")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    for argv in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "results"]):
        subprocess.run(["git", *argv], cwd=repo, env=env, check=True, capture_output=True)
    monkeypatch.chdir(repo)
    status, _, err = gate(Path("HEAD"), Path("HEAD"), capsys)
    assert status == 2
    one_line(err, "cannot be read safely")


# --- report and status -----------------------------------------------------------------------------
@pytest.fixture
def working(project, tmp_path, monkeypatch) -> Path:
    root = tmp_path / "work"
    shutil.copytree(project, root)
    monkeypatch.chdir(root)
    return root


@pytest.mark.parametrize("samples", [[], [0.0], [-1.0], [1e308]], ids=["empty", "zero", "negative", "1e308"])
def test_the_report_sets_aside_a_record_with_impossible_samples(working, capsys, samples):
    from deeppose.config import load_params
    from deeppose.report import build

    edit(paths.timing_result(FULL), lambda d: d["blocks"][0].update(samples_s=samples))
    findings = build(load_params("params.yaml"))
    reasons = {(m.kind, m.job): m.reason for m in findings.missing}
    assert reasons["timing", "chainer/autograd/cpu"].startswith("unusable: blocks[0].samples_s")


def test_the_report_sets_aside_a_timing_record_without_its_fairness_manifest(working):
    """Before: KeyError 'fairness' when the largest timing record had `environment: {}`."""
    from deeppose.config import load_params
    from deeppose.report import build

    edit(paths.timing_result(Job("chainer", "autograd", "cpu", 5)), lambda d: d.update(environment={}))
    findings = build(load_params("params.yaml"))
    reasons = {(m.kind, m.job): m.reason for m in findings.missing}
    assert "environment.fairness: missing" in reasons["timing", "chainer/autograd/cpu"]


@pytest.mark.parametrize("command", ["status", "report"])
def test_an_unknown_stage_in_a_provenance_is_named(working, capsys, command):
    edit(paths.timing_result(FULL), lambda d: d["provenance"].update(stage="nosuch"))
    assert main([command]) == 0
    if command == "status":
        assert "written by an unknown stage 'nosuch'" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["status", "report"])
@pytest.mark.parametrize("given", ["folder", "binary"])
def test_params_naming_a_folder_or_a_binary_file_is_one_line(working, capsys, command, given):
    path = Path("results") if given == "folder" else Path("binary.yaml")
    if given == "binary":
        path.write_bytes(bytes(range(256)))
    assert main([command, "--params", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "Traceback" not in err
