"""Does the fast tier still exercise every deeppose module?

    .venv/bin/python benchmarks/fast_tier_coverage.py [pytest arguments...]

Runs `pytest -m "not slow"` (or the arguments given) with a call tracer in the test process and in
every Python process the tests start (a `sitecustomize` put first on PYTHONPATH): each traces
function calls only (no line events, so the run is about 1.5x slower, not 10x) and records which
deeppose source files ran code. A module counts as *exercised* when a function defined in it ran,
as *imported only* when just its top level did. Prints both lists; exit status 1 when a module of
deeppose/ was not exercised (a module that defines no function, such as `__init__.py` or
`__main__.py`, counts once imported). The tests' own verdicts are pytest's as usual.

Not seen: processes that bypass PYTHONPATH (the engines' jobs: `engine_env` drops it, and they run
in the slow tier only) and forked children that end with `os._exit` before writing (their parent
ran the same module's code).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "deeppose"

# Installed as sitecustomize.py: records (file, "module" | "function") for deeppose's files.
TRACER = """
import atexit, os, sys, threading
_PACKAGE = {package!r}
_SEEN = set()

def _on_call(frame, event, arg):
    path = frame.f_code.co_filename
    if path.startswith(_PACKAGE):
        _SEEN.add((path, "module" if frame.f_code.co_name == "<module>" else "function"))
    return None

def _write():
    with open(os.path.join({out!r}, f"{{os.getpid()}}.txt"), "a", encoding="utf-8") as handle:
        handle.writelines(f"{{kind}} {{path}}\\n" for path, kind in sorted(_SEEN))

sys.setprofile(None)
sys.settrace(_on_call)
threading.settrace(_on_call)
atexit.register(_write)
"""


def defines_a_function(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) for node in ast.walk(tree))


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as site, tempfile.TemporaryDirectory() as out:
        Path(site, "sitecustomize.py").write_text(TRACER.format(package=str(PACKAGE), out=out))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (site, str(ROOT), env.get("PYTHONPATH")) if p)
        pytest_args = argv or ["-m", "not slow", "-q", "-p", "no:cacheprovider"]
        result = subprocess.run([sys.executable, "-m", "pytest", *pytest_args], cwd=ROOT, env=env)
        seen: dict[str, set[str]] = {}
        for record in Path(out).glob("*.txt"):
            for line in record.read_text(encoding="utf-8").splitlines():
                kind, path = line.split(" ", 1)
                seen.setdefault(path, set()).add(kind)
    modules = sorted(PACKAGE.rglob("*.py"))
    unexercised = [
        path
        for path in modules
        if "function" not in seen.get(str(path), set())
        and not ("module" in seen.get(str(path), set()) and not defines_a_function(path))
    ]
    print(
        f"\npytest exit status {result.returncode}; {len(modules) - len(unexercised)} of {len(modules)} modules exercised"
    )
    for path in unexercised:
        how = "imported only" if seen.get(str(path)) else "never imported"
        print(f"  {path.relative_to(ROOT)}: {how}")
    return 1 if unexercised or result.returncode else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
