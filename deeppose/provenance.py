"""What a result depends on, and whether it still matches the tree.

The code a job runs is found by reading import statements (not by importing): the stage's module,
every `deeppose` module it imports at any depth (function-level imports included), the one backend
module its framework names, and the lock file of pinned packages. Other backends are loaded by name
at run time and so never appear: editing `chainer.py` touches only Chainer's jobs. Content hashes,
not modification times, decide staleness, so a fresh clone of a commit whose results are current
shows nothing stale.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path
from typing import Any

from deeppose.config import Params
from deeppose.grid import Group, Job
from deeppose.results import Provenance
from deeppose.stages import STAGES, Stage, backend_module

ROOT = Path(__file__).resolve().parent.parent
LOCK_FILE = "requirements/lock.txt"


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
            found.update(
                f"{source}.{alias.name}" for alias in node.names if _module_file(f"{source}.{alias.name}")
            )
    modules: set[str] = set()
    for name in found:
        if name == "deeppose" or name.startswith("deeppose."):
            parts = name.split(".")
            modules.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return tuple(sorted(m for m in modules if _module_file(m)))


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


def package_data(module: str) -> list[Path]:
    """The non-Python files a package ships beside its `__init__.py` (the report's template): code
    the package reads at run time, which no import statement names."""
    path = _module_file(module)
    if path is None or path.name != "__init__.py":
        return []
    return [f for f in path.parent.iterdir() if f.is_file() and f.suffix not in (".py", ".pyc")]


def code_files(stage: Stage, job: Job | Group | None = None) -> list[str]:
    """Project-relative paths of the code a job of `stage` runs: its modules, the data files of
    their packages and the lock file."""
    modules = module_closure((stage.module, *stage.extra_modules, *backend_module(job)))
    paths = [_module_file(m) for m in modules] + [f for m in modules for f in package_data(m)]
    files = {p.relative_to(ROOT).as_posix() for p in paths}  # type: ignore[union-attr]
    if (ROOT / LOCK_FILE).is_file():
        files.add(LOCK_FILE)
    return sorted(files)


def file_hash(relative: str | Path, root: Path = ROOT) -> str:
    """sha256 of a file's content, read once per version of the file: the report checks every
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
    return Provenance(
        stage=stage_name,
        code={path: file_hash(path) for path in code_files(stage, job)},
        params=params_read(stage, params),
        params_file=params.path.as_posix(),
    )


def stale_reasons(provenance: Provenance, params: Params, job: Job | None = None) -> list[str]:
    """Why a result no longer matches the current code and parameters (empty when current); a
    timing cell is judged by its group's code (every framework of the grid ran in it)."""
    if STAGES[provenance.stage].jobs == "group" and job is not None and job.batch_exp is not None:
        current = record(provenance.stage, params, Group.of(params.grid, job.device, job.batch_exp))
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
    return reasons
