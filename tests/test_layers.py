"""The package's layers run one way, and each stage's code set is what it runs.

Layers, lowest first; a module may import its own layer and those below, never one above. A
measuring stage's provenance is then exactly the code it runs (deeppose.provenance), so an edit to
the report or to `compare` never stales a measurement. A new module must be placed in a layer here
(`package.*` places a package and everything in it; an exact name wins over it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deeppose import provenance
from deeppose.config import load_params
from deeppose.stages import STAGES

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "deeppose"
CODE_SETS = Path(__file__).with_name("stage_code_sets.json")

LAYERS: dict[str, tuple[str, ...]] = {
    # pure functions and process-level facilities, knowing nothing of the pipeline
    "foundation": (
        "deeppose",
        "deeppose.errors",
        "deeppose.measure",  # the packages' own modules hold only their maps
        "deeppose.records",
        "deeppose.records.atomic",
        "deeppose.records.output_set",
        "deeppose.fmt",
        "deeppose.measure.machine",
        "deeppose.model",
        "deeppose.measure.harness",
        "deeppose.measure.registers",
        "deeppose.measure.turns",
        "deeppose.stats",
        "deeppose.verdicts",
        "deeppose.metrics",
        "deeppose.measure.threads",
        "deeppose.measure.allocator",
        "deeppose.measure.memory_probe",
        "deeppose.measure.environment",
        "deeppose.roofline",
        "deeppose.layer_groups",
        "deeppose.asymmetries",
        "deeppose.data",
        "deeppose.data.lsp",
        "deeppose.backends.chainer_import",
    ),
    # what results are, where they live, the grid's words and the stage table
    "records and vocabulary": (
        "deeppose.grid",
        "deeppose.records.paths",
        "deeppose.records.results",
        "deeppose.records.training",
        "deeppose.records.timing",
        "deeppose.records.breakdown",
        "deeppose.records.summary",
        "deeppose.records.data",
        "deeppose.records.peak",
        "deeppose.records.ranges",
        "deeppose.stages",
        "deeppose.optimizer",
        "deeppose.measure.blocks",
        "deeppose.measure.lock",
        "deeppose.measure.cost",
    ),
    # reading parameters, the frameworks, the data and the machinery the stages share
    "configuration and backends": (
        "deeppose.config",
        "deeppose.memory",
        "deeppose.provenance",
        "deeppose.backends.*",
        "deeppose.data.dataset",
        "deeppose.data.batches",
        "deeppose.data.preview",
        "deeppose.measure.fairness",
        "deeppose.checkpoint",
        "deeppose.resume",
        "deeppose.core",
        "deeppose.measure.block_server",
    ),
    # one module per pipeline stage (and the timing stage's block process)
    "stages": (
        "deeppose.data.synthetic",
        "deeppose.data.prepare",
        "deeppose.train",
        "deeppose.timing",
        "deeppose.timing_block",
        "deeppose.peak",
        "deeppose.breakdown",
        "deeppose.breakdown_process",
    ),
    # what reads results, and the command line over everything
    "report and tools": (
        "deeppose.report.*",
        "deeppose.compare",
        "deeppose.compare_stats",
        "deeppose.replicates",
        "deeppose.status",
        "deeppose.snakemake_times",
        "deeppose.fingerprint",
        "deeppose.table",
        "deeppose.dvc_yaml",
        "deeppose.cli",
        "deeppose.__main__",
    ),
}


def modules_of(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package folder `package`."""
    found = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def layer_of(module: str, layers: dict[str, tuple[str, ...]]) -> int | None:
    """The index of the layer that names `module`, else of the closest `package.*` above it."""
    best: tuple[int, int] | None = None
    for index, names in enumerate(layers.values()):
        for name in names:
            if module == name:
                return index
            package = name.removesuffix(".*")
            if name.endswith(".*") and (module == package or module.startswith(package + ".")):
                best = max(best or (-1, -1), (package.count("."), index))
    return None if best is None else best[1]


def imports_of(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, less its own packages (which run first)."""
    graph = {}
    for module, path in modules.items():
        named = provenance.imported_modules(module, path)
        own = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        graph[module] = {m for m in named if m in modules and m != module and m not in own}
    return graph


def back_arrows(package: Path, layers: dict[str, tuple[str, ...]]) -> list[str]:
    """Every import that runs from a lower layer up to a higher one, and every unplaced module."""
    modules = modules_of(package)
    names = list(layers)
    problems = [f"{m} is in no layer" for m in sorted(modules) if layer_of(m, layers) is None]
    for module, imported in sorted(imports_of(modules).items()):
        here = layer_of(module, layers)
        for target in sorted(imported):
            there = layer_of(target, layers)
            if here is not None and there is not None and there > here:
                problems.append(f"{module} ({names[here]}) imports {target} ({names[there]})")
    return problems


def cycles(package: Path) -> list[list[str]]:
    """Import cycles between modules (a package and its own submodules excepted)."""
    graph = imports_of(modules_of(package))
    found, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                found.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def test_every_import_runs_down_the_layers() -> None:
    assert back_arrows(PACKAGE, LAYERS) == []


def test_no_import_cycles() -> None:
    assert cycles(PACKAGE) == []


def _plant(tmp_path: Path, module: str, line: str) -> Path:
    """A copy of the package with `line` added to `module`'s file."""
    copy = tmp_path / "deeppose"
    subprocess.run(["cp", "-r", str(PACKAGE), str(copy)], check=True)
    target = modules_of(copy)[module]
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")
    return copy


def test_a_planted_back_arrow_and_cycle_are_found(tmp_path: Path) -> None:
    copy = _plant(tmp_path, "deeppose.stats", "from deeppose import compare_stats")
    assert back_arrows(copy, LAYERS) == [
        "deeppose.stats (foundation) imports deeppose.compare_stats (report and tools)"
    ]
    assert ["deeppose.compare_stats", "deeppose.stats", "deeppose.compare_stats"] in cycles(copy)


def test_an_unplaced_module_is_named(tmp_path: Path) -> None:
    copy = tmp_path / "deeppose"
    subprocess.run(["cp", "-r", str(PACKAGE), str(copy)], check=True)
    (copy / "newcomer.py").write_text("X = 1\n", encoding="utf-8")
    assert back_arrows(copy, LAYERS) == ["deeppose.newcomer is in no layer"]


def current_code_sets() -> dict[str, list[str]]:
    """Each fingerprint's code files (a stage, or a stage and framework)."""
    params = load_params(ROOT / "params.yaml")
    return {
        name: provenance.code_files(stage, job)
        for name, (stage, job) in provenance.fingerprint_jobs(params).items()
    }


def test_each_stage_runs_the_code_set_reviewed() -> None:
    """A change to a stage's code set is a reviewed diff of tests/stage_code_sets.json
    (`python tests/test_layers.py` rewrites it)."""
    expected = json.loads(CODE_SETS.read_text(encoding="utf-8"))
    current = current_code_sets()
    differences = {
        name: {
            "added": sorted(set(current.get(name, [])) - set(expected.get(name, []))),
            "removed": sorted(set(expected.get(name, [])) - set(current.get(name, []))),
        }
        for name in sorted(set(current) | set(expected))
        if current.get(name) != expected.get(name)
    }
    assert differences == {}, "code sets changed (review, then `python tests/test_layers.py`)"


def test_no_measuring_stage_runs_report_or_review_code() -> None:
    tools = {m for m in modules_of(PACKAGE) if layer_of(m, LAYERS) == len(LAYERS) - 1} - {"deeppose.cli"}
    files = {modules_of(PACKAGE)[m].relative_to(ROOT).as_posix() for m in tools}
    for name, code in current_code_sets().items():
        if STAGES[name.split("-")[0]].measures:
            assert not files & set(code), name


@pytest.mark.parametrize("edit", ["docstring", "comment", "format"])
def test_an_edit_that_changes_no_behaviour_keeps_the_hash(tmp_path: Path, edit: str) -> None:
    source = (PACKAGE / "timing.py").read_text(encoding="utf-8")
    changed = {
        "docstring": source.replace('"""', '"""Reworded. ', 1),
        "comment": source.replace("\n", "\n# a new comment\n", 1),
        "format": source.replace("import argparse\n", "import argparse  \n\n\n", 1),
    }[edit]
    assert changed != source
    (tmp_path / "deeppose").mkdir()
    (tmp_path / "deeppose" / "timing.py").write_text(changed, encoding="utf-8")
    assert provenance.behaviour_hash("deeppose/timing.py", tmp_path) == provenance.behaviour_hash(
        "deeppose/timing.py"
    )
    assert provenance.file_hash("deeppose/timing.py", tmp_path) != provenance.file_hash("deeppose/timing.py")


def test_a_one_token_edit_changes_the_hash(tmp_path: Path) -> None:
    source = (PACKAGE / "backends" / "chainer.py").read_text(encoding="utf-8")
    (tmp_path / "deeppose" / "backends").mkdir(parents=True)
    (tmp_path / "deeppose" / "backends" / "chainer.py").write_text(
        source + "\n_EDITED = 1\n", encoding="utf-8"
    )
    relative = "deeppose/backends/chainer.py"
    assert provenance.behaviour_hash(relative, tmp_path) != provenance.behaviour_hash(relative)


@pytest.mark.parametrize(
    ("old", "new", "staled"),
    [
        (
            '"time each layer\'s forward and backward in interleaved fresh processes"',
            '"profile each layer"',
            set(),
        ),
        (
            'extra_modules=("deeppose.peak", ',
            'extra_modules=("deeppose.stats", "deeppose.peak", ',
            {"breakdown"},
        ),
        ("def job_label(", "def job_label_renamed(", set(STAGES)),
    ],
    ids=["help text", "one stage's entry", "shared code"],
)
def test_an_edit_to_the_stage_table_stales_the_stages_it_changes(
    tmp_path: Path, old: str, new: str, staled: set[str]
) -> None:
    source = (PACKAGE / "stages.py").read_text(encoding="utf-8")
    assert old in source
    (tmp_path / "deeppose").mkdir()
    (tmp_path / "deeppose" / "stages.py").write_text(source.replace(old, new), encoding="utf-8")
    changed = {
        name
        for name in STAGES
        if provenance.stage_entry_hash(name, tmp_path) != provenance.stage_entry_hash(name)
    }
    assert changed == staled


def test_the_package_is_formatted_and_linted() -> None:
    ruff = [sys.executable, "-m", "ruff"]
    for command in (["format", "--check", "."], ["check", "."]):
        done = subprocess.run(ruff + command, cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


if __name__ == "__main__":
    CODE_SETS.write_text(json.dumps(current_code_sets(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {CODE_SETS}")
