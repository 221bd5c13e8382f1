"""What a result depends on, and whether it still matches the tree and the machine.

The code a job runs is found by reading import statements (not by importing): the command line's
entry point, the stage's module, every `deeppose` module they import at any depth (function-level
imports included), the one backend module its framework names, and the lock file of pinned
packages. Other backends are loaded by name at run time and so never appear: editing `chainer.py`
touches only Chainer's jobs.

Staleness compares behaviour, not bytes: a Python file is hashed as its syntax tree with docstrings
removed (comments and formatting never reach the tree), so a docstring edit stales nothing while a
one-token change stales exactly the jobs that run the file. The stage table, which every job runs,
counts for a stage as its own entry without its help text, so editing one stage reruns that stage
only. The byte hashes are recorded beside, for forensics. A measurement also records the machine
(deeppose.measure.machine) and is stale on another.

Both engines see the same thing through one fingerprint file per stage, or per stage and framework
(`workflow/fingerprints/`), rewritten only when its content changes (`write_fingerprints`): the
Snakefile refreshes them when it is read, DVC's `fingerprint` stage whenever the package or the
lock file changed, and each stage depends on its own file instead of on the code files.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from deeppose.config import Params
from deeppose.grid import Group, Job
from deeppose.measure import machine
from deeppose.records import paths
from deeppose.records.atomic import holds, write_text
from deeppose.records.results import Provenance
from deeppose.stages import STAGES, Stage, backend_module

ROOT = Path(__file__).resolve().parent.parent
LOCK_FILE = "requirements/lock.txt"
ENTRY_POINT = "deeppose.cli"  # runs before every stage: parses the command, pins the allocator
STAGE_TABLE = "deeppose/stages.py"


def _module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def _imports(module: str) -> tuple[str, ...]:
    """The deeppose modules `module` imports, with the packages each import runs."""
    path = _module_file(module)
    if path is None:
        return ()
    return tuple(sorted(m for m in imported_modules(module, path) if _module_file(m)))


def imported_modules(module: str, path: Path) -> set[str]:
    """Every `deeppose` module or package an import statement of `module` (in `path`) names,
    with the packages above each (importing `a.b.c` runs `a` and `a.b` first)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1]) if node.level else ""
            source = ".".join(p for p in (base, node.module or "") if p)
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)
    modules: set[str] = set()
    for name in found:
        if name == "deeppose" or name.startswith("deeppose."):
            parts = name.split(".")
            modules.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return modules


def module_closure(roots: tuple[str, ...]) -> list[str]:
    """Every deeppose module reachable from `roots` through import statements."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(_imports(module))
    return sorted(seen)


@functools.cache
def package_data(module: str) -> tuple[Path, ...]:
    """The non-Python files a package ships beside its `__init__.py` (the report's template): code
    the package reads at run time, which no import statement names."""
    path = _module_file(module)
    if path is None or path.name != "__init__.py":
        return ()
    return tuple(sorted(f for f in path.parent.iterdir() if f.is_file() and f.suffix not in (".py", ".pyc")))


def code_files(stage: Stage, job: Job | Group | None = None) -> list[str]:
    """Project-relative paths of the code a job of `stage` runs: its modules, the data files of
    their packages and the lock file."""
    modules = module_closure((ENTRY_POINT, stage.module, *stage.extra_modules, *backend_module(job)))
    found = [_module_file(m) for m in modules] + [f for m in modules for f in package_data(m)]
    files = {p.relative_to(ROOT).as_posix() for p in found if p is not None}
    if (ROOT / LOCK_FILE).is_file():
        files.add(LOCK_FILE)
    return sorted(files)


def _without_docstrings(tree: ast.AST) -> ast.AST:
    """`tree` less the docstrings of its module, classes and functions (a body left empty keeps a
    `pass`, so that the tree stays valid)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return tree


def behaviour_hash(relative: str | Path, root: Path = ROOT) -> str:
    """sha256 of what a file does: a Python file's syntax tree without docstrings (comments and
    formatting are not in the tree), any other file's bytes."""
    path = root / relative
    stat = path.stat()
    return _behaviour_hash(str(path), stat.st_mtime_ns, stat.st_size)


def _behaviour_tree(path: str) -> ast.AST:
    return _without_docstrings(ast.parse(Path(path).read_text(encoding="utf-8"), path))


def _tree_hash(tree: ast.AST) -> str:
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()


@functools.cache
def _behaviour_hash(path: str, mtime_ns: int, size: int) -> str:
    if not path.endswith(".py"):
        return _content_hash(path, mtime_ns, size)
    return _tree_hash(_behaviour_tree(path))


def code_hashes(stage: Stage, files: list[str], root: Path = ROOT) -> dict[str, str]:
    """The behaviour hash of each of a stage's code files, the stage table's as that stage sees it."""
    return {
        path: stage_entry_hash(stage.name, root) if path == STAGE_TABLE else behaviour_hash(path, root)
        for path in files
    }


def stage_entry_hash(name: str, root: Path = ROOT) -> str:
    """sha256 of the stage table as stage `name` runs it: the module's syntax tree without
    docstrings, without the other stages' entries and without any stage's help text."""
    path = root / STAGE_TABLE
    stat = path.stat()
    return _stage_entry_hash(str(path), stat.st_mtime_ns, stat.st_size, name)


def _stage_name(node: ast.AST) -> str | None:
    """The name a `Stage(...)` call declares, None for any other node."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Stage":
        first = node.args[0] if node.args else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return None


@functools.cache
def _stage_entry_hash(path: str, mtime_ns: int, size: int, name: str) -> str:
    tree = _behaviour_tree(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple) and node.elts and all(_stage_name(e) for e in node.elts):
            node.elts = [e for e in node.elts if _stage_name(e) == name]
        if _stage_name(node) is not None:
            assert isinstance(node, ast.Call)
            node.args = node.args[:2]
            node.keywords = [k for k in node.keywords if k.arg != "help"]
    return _tree_hash(tree)


def file_hash(relative: str | Path, root: Path = ROOT) -> str:
    """sha256 of a file's bytes, read once per version of the file: the report checks every
    result's provenance, and the results share most of their code files."""
    path = root / relative
    stat = path.stat()
    return _content_hash(str(path), stat.st_mtime_ns, stat.st_size)


@functools.cache
def _content_hash(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def params_read(stage: Stage, params: Params) -> dict[str, Any]:
    """The values of the dotted keys `stage` reads."""
    return {key: params.value(key) for key in stage.params}


def record(stage_name: str, params: Params, job: Job | Group | None = None) -> Provenance:
    """The provenance a result of `stage_name` for `job` carries."""
    stage = STAGES[stage_name]
    files = code_files(stage, job)
    return Provenance(
        stage=stage_name,
        code=code_hashes(stage, files),
        code_bytes={path: file_hash(path) for path in files},
        params=params_read(stage, params),
        params_file=params.path.as_posix(),
        machine=machine.fingerprint() if stage.measures else None,
    )


def stale_reasons(provenance: Provenance, params: Params, job: Job | None = None) -> list[str]:
    """Why a result no longer matches the current code, parameters and machine (empty when
    current); a timing cell is judged by its group's code (every framework of the grid ran in it)."""
    stage = STAGES.get(provenance.stage)
    if stage is None:
        return [f"written by an unknown stage {provenance.stage!r}; known: {', '.join(STAGES)}"]
    if stage.grouped and job is not None and job.batch_exp is not None:
        current = record(provenance.stage, params, stage.group(params.grid, job.device, job.batch_exp))
    else:
        current = record(provenance.stage, params, job)
    changed = sorted(
        path
        for path in set(current.code) | set(provenance.code)
        if current.code.get(path) != provenance.code.get(path)
    )
    keys = sorted(
        key
        for key in set(current.params) | set(provenance.params)
        if current.params.get(key) != provenance.params.get(key)
    )
    reasons = []
    if changed:
        reasons.append("code changed: " + ", ".join(changed))
    if keys:
        reasons.append("parameters changed: " + ", ".join(keys))
    if current.machine is not None and provenance.machine != current.machine:
        where = machine.describe(provenance.machine) if provenance.machine else "an unrecorded machine"
        reasons.append(
            f"measured on another machine: {where}, not this {machine.describe(current.machine)} "
            f"({'; '.join(machine.differences(provenance.machine, current.machine))})"
        )
    return reasons


# --- the engines' view: one fingerprint file per stage (and framework) ----------------------------
def fingerprint_jobs(params: Params) -> dict[str, tuple[Stage, Job | Group | None]]:
    """Fingerprint name -> the stage and a job whose code stands for all of its jobs: one per
    framework for stages with a job per framework, one for the others (a timing group runs every
    framework)."""
    grid = params.grid
    found: dict[str, tuple[Stage, Job | Group | None]] = {}
    for stage in STAGES.values():
        jobs: list[Job | Group | None] = [None]
        if stage.jobs == "train":
            jobs = [Job(framework, "", "") for framework in grid.frameworks]
        elif stage.grouped:
            jobs = [stage.group(grid, "", 0)]
        found.update({fingerprint_name(stage, job): (stage, job) for job in jobs})
    return found


def fingerprint_name(stage: Stage, job: Job | Group | None) -> str:
    """The fingerprint file a job of `stage` depends on (fingerprint_jobs' key)."""
    return f"{stage.name}-{job.framework}" if isinstance(job, Job) else stage.name


def fingerprint_text(stage: Stage, job: Job | Group | None) -> str:
    """What a fingerprint file holds: the behaviour hash of every code file the stage's job runs
    and, for a measuring stage, the machine. Parameters are not in it: both engines track those."""
    files = code_files(stage, job)
    content = {
        "stage": stage.name,
        "code": code_hashes(stage, files),
        "machine": machine.fingerprint() if stage.measures else None,
    }
    return json.dumps(content, indent=1, sort_keys=True) + "\n"


def outdated_fingerprints(params: Params) -> dict[Path, str]:
    """The fingerprint files whose content is not what this tree and machine would write now
    (absent or unreadable ones too), each with the text it should hold."""
    outdated = {}
    for name, (stage, job) in fingerprint_jobs(params).items():
        path = paths.fingerprint(name)
        text = fingerprint_text(stage, job)
        if not holds(path, text):
            outdated[path] = text
    return outdated


def write_fingerprints(params: Params) -> list[Path]:
    """Bring every fingerprint file up to date, rewriting only those whose content changed (an
    unchanged file keeps its modification time, so Snakemake reruns nothing for it); returns the
    files rewritten."""
    outdated = outdated_fingerprints(params)
    for path, text in outdated.items():
        write_text(path, text)
    return list(outdated)
