"""Import Chainer 7.8.1 (the last release) on today's Python stack: the one compatibility shim.

`chainer/__init__.py` runs `chainer._environment_check.check()`, which imports `pkg_resources`
(gone from setuptools 81+) and `numpy.distutils` (gone from NumPy 2 and Python 3.12) only to print
warnings about the environment. Registering a stand-in module with a no-op `check()` before the
first import skips that check and nothing else: no other part of Chainer's runtime imports them.
Doing it here, in code, means no user has to export a variable, whoever starts the process
(a shell, pytest, snakemake or dvc). For code outside deeppose (a notebook, `python -c "import
chainer"`), `make setup` installs the same stand-in as a startup hook of the project's environment:
a `.pth` line (`install_startup_hook`) that registers it when the interpreter starts, importing
nothing but `sys` and `types`. Chainer also needs NumPy < 2 (`np.sctypes`): pinned in
requirements/lock.txt.
"""

from __future__ import annotations

import sys
import sysconfig
import types
from pathlib import Path
from typing import Any

_CHECK_MODULE = "chainer._environment_check"
HOOK_FILE = "deeppose_chainer_compat.pth"
# One line, as site.py runs `import` lines of .pth files: the stand-in, unless Chainer is loaded.
STARTUP_LINE = (
    "import sys, types; sys.modules.setdefault("
    f"{_CHECK_MODULE!r}, types.SimpleNamespace(check=lambda: None))\n"
)


def import_chainer() -> Any:
    """Import and return the `chainer` module, skipping its environment check."""
    if "chainer" not in sys.modules and _CHECK_MODULE not in sys.modules:
        stand_in = types.ModuleType(_CHECK_MODULE)
        stand_in.check = lambda: None  # type: ignore[attr-defined]
        sys.modules[_CHECK_MODULE] = stand_in
    import chainer

    _drop_stored_tracebacks()
    return chainer


# Module-level names under which Chainer keeps the ImportError of an optional dependency (iDeep,
# CuPy, SciPy, ...) to raise it later, when that dependency is asked for.
_STORED_ERRORS = ("_error", "_resolution_error", "_import_error", "_mock_error")


def _drop_stored_tracebacks() -> None:
    """Each stored error's traceback holds the frames of the first import, and through them every
    caller up the stack: imported inside `train()`, a whole network, its gradients and optimiser
    state (0.9 GB) stayed alive for the rest of the process. The errors keep their messages."""
    for name, module in list(sys.modules.items()):
        if name == "chainer" or name.startswith("chainer."):
            for attribute in _STORED_ERRORS:
                error = getattr(module, attribute, None)
                while isinstance(error, BaseException):
                    error.__traceback__ = None
                    error = error.__context__


def install_startup_hook(site_packages: str | None = None) -> Path:
    """Write the .pth startup hook into the environment's site-packages; returns its path."""
    path = Path(site_packages or sysconfig.get_paths()["purelib"]) / HOOK_FILE
    path.write_text(STARTUP_LINE, encoding="utf-8")
    return path
