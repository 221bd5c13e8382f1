"""Property-based tests (Hypothesis) of `compare --fail-on-regression` on mutated result sets: a field
dropped, a type changed, a sample out of range, a file duplicated or renamed, timestamps shifted.
Whatever the mutation, the command ends in a correct verdict or in one line per problem with exit
status 2, never a traceback; identical samples are never called slower.

Kept in the fast tier: EXAMPLES examples per property, each a copy of the small project of
tests/report_project.py and one `compare` (about 0.2 s an example on 2 cores).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from report_project import make_project

from deeppose.cli import main

EXAMPLES = 25
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every run: a fast-tier test must not flake
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("properties"), devices=("cpu",)) / "results"


def record_files(results: Path) -> list[str]:
    """Every per-cell record (timing, training metrics, breakdown), relative to the results folder."""
    found = [*results.glob("time/*/*/*/b*.json"), *results.glob("train/*/*/*/metrics.json")]
    found += results.glob("breakdown/*/*/*/b*.json")
    return sorted(p.relative_to(results).as_posix() for p in found)


def run_gate(base: Path, head: Path) -> tuple[int, dict | None, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["compare", str(base), str(head), "--fail-on-regression", "--json"])
    text = out.getvalue()
    return status, json.loads(text) if text else None, err.getvalue()


def check_outcome(status: int, found: dict | None, err: str) -> None:
    """A verdict, or one line per problem with exit 2; identical samples never make a regression."""
    assert "Traceback" not in err
    assert status in (0, 2), (status, err)
    if status == 2:
        lines = err.strip().splitlines()
        assert lines and all(line.startswith("deeppose compare: error: ") for line in lines), err
    if found is not None:
        assert not [row for row in found["timing"] + found["training"] if row["verdict"] == "slower"]
        for row in found["timing"]:
            estimate = row["change"]["estimate"]
            assert estimate is None or 0.5 < estimate < 2, row  # no effect invented


@contextlib.contextmanager
def mutated(results: Path):
    """BASE and a HEAD copy of `results`, for one example."""
    with tempfile.TemporaryDirectory(prefix="deeppose-property-") as tmp:
        head = Path(tmp) / "results"
        shutil.copytree(results, head)
        yield results, head


def load(path: Path) -> dict:
    return json.loads(path.read_text())


@SETTINGS
@given(data=st.data())
def test_a_dropped_field_or_changed_type_is_refused_in_one_line(results, data):
    with mutated(results) as (base, head):
        path = head / data.draw(st.sampled_from(record_files(results)), label="file")
        record = load(path)
        field = data.draw(st.sampled_from(sorted(record)), label="field")
        if data.draw(st.booleans(), label="drop"):
            del record[field]
        else:
            record[field] = data.draw(
                st.sampled_from(["x", 7, -1.5, None, [], {}, True, [1, "a"]]), label="value"
            )
        path.write_text(json.dumps(record))
        status, found, err = run_gate(base, head)
        check_outcome(status, found, err)


@SETTINGS
@given(data=st.data())
def test_a_sample_out_of_range_is_named_with_its_file_and_field(results, data):
    with mutated(results) as (base, head):
        name = data.draw(st.sampled_from([f for f in record_files(results) if f.startswith("time/")]))
        record = load(head / name)
        block = data.draw(st.integers(0, len(record["blocks"]) - 1), label="block")
        bad = data.draw(st.sampled_from([0.0, -0.001, -1e9, 1e6, 1e308]), label="value")
        record["blocks"][block]["samples_s"][0] = bad
        (head / name).write_text(json.dumps(record))
        status, found, err = run_gate(base, head)
        check_outcome(status, found, err)
        assert status == 2 and f"blocks[{block}].samples_s[0]" in err and name in err


@SETTINGS
@given(data=st.data())
def test_a_file_duplicated_or_renamed_is_named_or_refused(results, data):
    with mutated(results) as (base, head):
        name = data.draw(st.sampled_from(record_files(results)), label="file")
        path = head / name
        suffix = data.draw(st.sampled_from([".old.json", ".json.bak", "~", ".json.orig"]), label="suffix")
        stray = path.with_name(path.name.removesuffix(".json") + suffix)
        moved = data.draw(st.booleans(), label="renamed")
        (shutil.move if moved else shutil.copy)(path, stray)
        status, found, err = run_gate(base, head)
        check_outcome(status, found, err)
        if moved:  # the cell is missing on HEAD: no gate passes
            assert status == 2 and "HEAD lacks" in err
        else:  # the copy is named and never read
            assert status == 0 and any(stray.relative_to(head).as_posix() in n for n in found["notes"])


@SETTINGS
@given(data=st.data())
def test_shifted_timestamps_never_invent_an_effect(results, data):
    with mutated(results) as (base, head):
        names = [f for f in record_files(results) if f.startswith("time/")]
        chosen = data.draw(
            st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True), label="files"
        )
        shift = data.draw(
            st.one_of(st.floats(-1e8, 1e8, allow_nan=False), st.sampled_from([600.0, 86400.0])), label="s"
        )
        for name in chosen:
            record = load(head / name)
            for block in record["blocks"] + record["control_blocks"]:
                block["started_at"] += shift
                block["ended_at"] += shift
            (head / name).write_text(json.dumps(record))
        status, found, err = run_gate(base, head)
        check_outcome(status, found, err)

        def group(name: str) -> tuple[str, str]:  # time/<fw>/<loss>/<device>/b<n>.json
            _, _, _, device, file = name.split("/")
            return device, file

        moved = {group(name) for name in chosen}
        split = any(group(n) in moved and n not in chosen for n in names)  # part of a group moved
        if abs(shift) > 10 and split:  # beyond a round and a block of the fixture, for part of a group
            assert status == 2 and "outside the time span of its timing group" in err
        elif not split:  # a whole group moved together is still interleaved: nothing to refuse
            assert status == 0
