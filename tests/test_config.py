"""params.yaml validation: every problem is one clear line naming the parameter."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from pathlib import Path

import pytest
import yaml

from deeppose import cli, memory
from deeppose.config import Params, load_params, validate
from deeppose.errors import DeepPoseError
from deeppose.model import ModelConfig

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def raw() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def problems(raw: dict) -> list[str]:
    """What `load_params` refuses in `raw`, else what the measuring stages refuse on this machine."""
    try:
        validate(raw)
    except DeepPoseError as error:
        return str(error).splitlines()
    with pytest.raises(DeepPoseError) as error:
        memory.check_machine(Params.from_raw(Path("params.yaml"), raw))
    return str(error.value).splitlines()


@pytest.mark.parametrize("name", ["params.yaml", "params-study.yaml", "params-pr.yaml"])
def test_shipped_parameter_files_are_valid(name):
    params = load_params(ROOT / name)
    assert params.train_jobs() and params.timing_jobs()


def test_grid_expands_to_every_combination(raw):
    params = load_params(ROOT / "params.yaml")
    grid = raw["grid"]
    n_cells = len(grid["frameworks"]) * len(grid["loss_modes"]) * len(grid["devices"])
    assert len(params.train_jobs()) == n_cells
    assert len(params.timing_jobs()) == n_cells * len(grid["batch_exponents"])
    assert len(set(params.timing_jobs())) == len(params.timing_jobs())


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            lambda r: r["grid"].update(frameworks=["pytorch", "tensorflow"]),
            "grid.frameworks[1]: unknown framework 'tensorflow'; allowed: pytorch, chainer, jax, pytorch_compile",
        ),
        (
            lambda r: r["grid"].update(batch_exponents=[0, -1]),
            "grid.batch_exponents[1]: -1 is less than the minimum of 0",
        ),
        (lambda r: r["grid"].update(loss_modes=[]), "grid.loss_modes: [] should be non-empty"),
        (
            lambda r: r["grid"].update(devices=["tpu"]),
            "grid.devices[0]: 'tpu' is not allowed; allowed: cpu, cuda",
        ),
        (lambda r: r["train"].update(lr="fast"), "train.lr: 'fast' is not of type 'number'"),
        (lambda r: r["timing"].update(repeat=3), "timing: unknown key(s) repeat; allowed:"),
        (
            lambda r: r["timing"].update(blocks=5, max_blocks=4),
            "timing.max_blocks: must be at least timing.blocks",
        ),
        (
            lambda r: r["timing"].update(margin=0),
            "timing.margin: 0 is less than or equal to the minimum of 0",
        ),
        (lambda r: r.update(extra=1), "(top level): unknown key(s) extra"),
        (
            lambda r: r["data"].update(source="coco"),
            "data.source: 'coco' is not allowed; allowed: synthetic, lsp",
        ),
        (
            lambda r: r["breakdown"].update(batch_exponents=[9]),
            "breakdown.batch_exponents: [9] not in grid.batch_exponents",
        ),
        (
            lambda r: r["breakdown"].update(processes=1),
            "breakdown.processes: 1 is less than the minimum of 2",
        ),
        (
            lambda r: r["allocator"].update(mmap_threshold_mib=4096),
            "allocator.mmap_threshold_mib: 4096 is greater than the maximum of 2047",
        ),
    ],
)
def test_each_problem_is_one_line(raw, edit, expected):
    edit(raw)
    lines = problems(raw)
    assert len(lines) == 1
    assert lines[0].startswith("params.yaml: ") and expected in lines[0]


def train_command(params_file: Path) -> list[str]:
    """One training job's command line, reading `params_file`."""
    return [
        "train",
        "--params",
        str(params_file),
        "--framework",
        "pytorch",
        "--loss",
        "autograd",
        "--device",
        "cpu",
    ]


@pytest.mark.parametrize(
    "seeds, expected",
    [
        (0, "train.seeds: 0 is less than the minimum of 1"),
        (-2, "train.seeds: -2 is less than the minimum of 1"),
        (1.5, "train.seeds: 1.5 is not of type 'integer'"),
        ("3", "train.seeds: '3' is not of type 'integer'"),
        (True, "train.seeds: True is not of type 'integer'"),
    ],
)
def test_a_bad_seed_count_is_one_line_from_the_cli(tmp_path, raw, capsys, seeds, expected):
    raw["train"]["seeds"] = seeds
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert cli.main(train_command(path)) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"deeppose train: error: {path}: {expected}"]


def test_seeds_default_to_one_and_the_study_runs_three(raw):
    del raw["train"]["seeds"]
    validate(raw)
    assert Params.from_raw(Path("params.yaml"), raw).train.seeds == 1
    assert load_params(ROOT / "params.yaml").train.seeds == 1
    assert load_params(ROOT / "params-study.yaml").train.seeds == 3


def test_all_problems_are_reported_at_once(raw):
    bad = copy.deepcopy(raw)
    bad["train"]["epochs"] = 0
    bad["timing"]["warmup"] = "two"
    bad["unknown"] = True
    assert len(problems(bad)) == 3


def test_cli_prints_one_line_per_problem_and_no_traceback(tmp_path, raw, capsys):
    raw["grid"]["batch_exponents"] = [-2]
    raw["seed"] = "x"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert cli.main(train_command(path)) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith(f"deeppose train: error: {path}: ") for line in err)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(DeepPoseError, match="nope.yaml: parameter file not found"):
        load_params(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("seed: [1, 2\n")
    with pytest.raises(DeepPoseError, match=r"broken.yaml: line \d+ not valid YAML"):
        load_params(broken)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            lambda r: r["train"].update(lr=float("nan")),
            "train.lr: nan is not allowed; allowed: a finite number",
        ),
        (
            lambda r: r["train"].update(lr=float("inf")),
            "train.lr: inf is not allowed; allowed: a finite number",
        ),
        (
            lambda r: r["model"].update(dropout=float("nan")),
            "model.dropout: nan is not allowed; allowed: a finite number",
        ),
        (
            lambda r: r.update(seed=2**70),
            "seed: 1180591620717411303424 is greater than the maximum of 4294967295",
        ),
        (lambda r: r.update(seed=2**32), "seed: 4294967296 is greater than the maximum of 4294967295"),
        (
            lambda r: r["timing"].update(threads=100000),
            f"timing.threads: 100000 is more than the {len(os.sched_getaffinity(0))} cores this process may use; "
            f"allowed: 0 (all) to {len(os.sched_getaffinity(0))}",
        ),
        (
            lambda r: r["train"].update(batch_size=2**20),
            f"train.batch_size: batch 1048576 needs about {memory.gib(memory.estimate_bytes(2**20, 'chainer', 'adam'))} "
            "of memory with chainer (estimated from the layer shapes), more than this machine's",
        ),
    ],
)
def test_numbers_out_of_range_for_the_code_or_the_machine_are_one_line(raw, edit, expected):
    """Each of these gave a traceback, a segfault, an out-of-memory kill or (inf) was accepted."""
    edit(raw)
    lines = problems(raw)
    assert len(lines) == 1 and expected in lines[0], lines


def test_the_machine_is_checked_by_the_stages_that_run_on_it_not_by_every_reader(raw, tmp_path):
    """A report or a status may be read on a laptop: only a measuring stage needs the cores."""
    raw["timing"]["threads"] = 100000
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(raw))
    params = load_params(path)
    assert cli.main(["peak", "--params", str(path)]) == 2
    with pytest.raises(DeepPoseError, match="timing.threads: 100000 is more than the"):
        memory.check_machine(params)


def test_the_largest_seed_numpy_takes_is_allowed(raw):
    raw["seed"] = 2**32 - 1
    validate(raw)


def test_a_batch_exponent_beyond_the_machines_memory_is_refused_with_the_figure(raw):
    need = memory.estimate_bytes(2**12, "chainer", raw["train"]["optimizer"])
    if need <= memory.meminfo("MemTotal"):
        pytest.skip(f"this machine holds batch 4096 ({memory.gib(need)})")
    raw["grid"]["batch_exponents"] = [3, 12]
    lines = problems(raw)
    assert len(lines) == 1 and lines[0].startswith(
        f"params.yaml: grid.batch_exponents: batch 4096 needs about {memory.gib(need)} of memory with chainer"
    ), lines


def test_a_duplicate_key_is_an_error_naming_both_lines(tmp_path):
    text = (ROOT / "params.yaml").read_text()
    first = next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith("  lr:"))
    duplicated = text.replace("\n  lr:", "\n  lr: 0.5\n  lr:", 1)
    path = tmp_path / "dup.yaml"
    path.write_text(duplicated)
    with pytest.raises(DeepPoseError) as error:
        load_params(path)
    assert str(error.value) == (
        f"{path}: line {first + 1} not valid YAML: duplicate key 'lr' (first on line {first}); give each key once"
    )


def test_a_nan_reaches_the_cli_as_one_line(tmp_path, raw, capsys):
    raw["train"]["lr"] = float("nan")
    path = tmp_path / "nan.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert cli.main(train_command(path)) == 2
    assert (
        capsys.readouterr().err
        == f"deeppose train: error: {path}: train.lr: nan is not allowed; allowed: a finite number\n"
    )


def _params_read_before(stage, raw: dict) -> dict:
    """provenance.params_read as it was when Params held the file's dict: the recorded form."""
    values = {}
    for key in stage.params:
        node = raw
        for part in key.split("."):
            node = node[part]
        values[key] = node
    return values


@pytest.mark.parametrize("name", ["params.yaml", "params-study.yaml", "params-pr.yaml"])
def test_recorded_parameter_values_keep_their_form(name):
    """Results record the values a stage reads; typed Params must not change their JSON, or every
    committed result would read as stale."""
    from deeppose import provenance
    from deeppose.stages import STAGES

    params = load_params(ROOT / name)
    raw = yaml.safe_load((ROOT / name).read_text())
    for stage in STAGES.values():
        before, after = _params_read_before(stage, raw), provenance.params_read(stage, params)
        assert after == before
        assert json.dumps(after, sort_keys=True) == json.dumps(before, sort_keys=True)


def test_params_are_typed_and_frozen(raw):
    raw["model"]["dropout"] = 0  # YAML gives an int; the model's field is a float
    path = ROOT / "params.yaml"
    params = Params.from_raw(path, raw)
    assert params.seed == raw["seed"] and params.model == ModelConfig(dropout=0.0, lrn=raw["model"]["lrn"])
    assert isinstance(params.model.dropout, float)
    assert params.grid.batch_exponents == tuple(raw["grid"]["batch_exponents"])
    assert params.grid.frameworks == tuple(raw["grid"]["frameworks"])
    assert params.timing.optimizers == tuple(raw["timing"]["optimizers"])
    assert params.breakdown.batch_exponents == tuple(raw["breakdown"]["batch_exponents"])
    assert params.breakdown.processes == raw["breakdown"]["processes"] == 3
    assert params.data.synthetic.images == raw["data"]["synthetic"]["images"]
    assert params.data.lsp.lsp is None and isinstance(params.train.lr, float)
    assert params.allocator.mmap_threshold_mib == raw["allocator"]["mmap_threshold_mib"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.timing.blocks = 9  # type: ignore[misc]
    assert hash(params) == hash(Params.from_raw(path, raw))


def test_value_is_the_files_content_and_a_copy(raw):
    params = Params.from_raw(ROOT / "params.yaml", raw)
    assert params.value() == raw and params.value("train.lr") == raw["train"]["lr"]
    assert params.value("grid.frameworks") == raw["grid"]["frameworks"]
    assert isinstance(params.value("grid.frameworks"), list)
    params.value("timing")["blocks"] = 99
    raw["timing"]["blocks"] = 99  # the file's dict, edited after the fact
    assert params.value("timing.blocks") == params.timing.blocks != 99
