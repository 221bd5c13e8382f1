"""Framework backends, registered by name and imported only when asked for.

Adding a framework means writing one module here that defines a `Backend` subclass called
`Backend`, and adding one line to `deeppose.grid.FRAMEWORK_MODULES`. Outside this package,
only `create_backend` and `backend_class` are used: the names a job can use live in deeppose.grid.
"""

from __future__ import annotations

import importlib

from deeppose.backends.base import Backend
from deeppose.errors import DeepPoseError
from deeppose.grid import FRAMEWORK_MODULES, FRAMEWORKS

__all__ = ["Backend", "create_backend", "backend_class"]


def backend_class(framework: str) -> type[Backend]:
    """The backend class for `framework`; imports the framework itself."""
    if framework not in FRAMEWORK_MODULES:
        raise DeepPoseError(f"unknown framework {framework!r}; allowed: {', '.join(FRAMEWORKS)}")
    try:
        module = importlib.import_module(FRAMEWORK_MODULES[framework])
    except ImportError as error:
        raise DeepPoseError(f"framework {framework!r} cannot be imported: {error}") from error
    return module.Backend


def create_backend(framework: str, device: str = "cpu", threads: int = 0, dtype: str = "float32") -> Backend:
    """A ready backend for `framework` on `device`, using `threads` CPU threads (0 = all cores),
    computing in `dtype` (float64 only for numerical tests)."""
    return backend_class(framework)(device=device, threads=threads, dtype=dtype)
