"""Framework backends, registered by name and imported only when asked for.

Adding a framework means writing one module here that defines a `Backend` subclass called
`Backend`, and adding one line to `REGISTRY`.
"""

from __future__ import annotations

import importlib

from deeppose.backends.base import DEVICES, LOSS_MODES, Backend
from deeppose.errors import DeepPoseError

# framework name -> module that defines its `Backend`
REGISTRY: dict[str, str] = {
    "pytorch": "deeppose.backends.pytorch",
    "chainer": "deeppose.backends.chainer",
}

FRAMEWORKS: tuple[str, ...] = tuple(REGISTRY)

__all__ = ["DEVICES", "FRAMEWORKS", "LOSS_MODES", "Backend", "create_backend", "backend_class"]


def backend_class(framework: str) -> type[Backend]:
    """The backend class for `framework`; imports the framework itself."""
    if framework not in REGISTRY:
        raise DeepPoseError(
            f"unknown framework {framework!r}; allowed: {', '.join(FRAMEWORKS)}"
        )
    try:
        module = importlib.import_module(REGISTRY[framework])
    except ImportError as error:
        raise DeepPoseError(f"framework {framework!r} cannot be imported: {error}") from error
    return module.Backend


def create_backend(framework: str, device: str = "cpu", threads: int = 0, dtype: str = "float32") -> Backend:
    """A ready backend for `framework` on `device`, using `threads` CPU threads (0 = all cores),
    computing in `dtype` (float64 only for numerical tests)."""
    return backend_class(framework)(device=device, threads=threads, dtype=dtype)
