"""Where fairness manifests (deeppose.measure.fairness) differ, and what each difference may bias.

Apart from the collection so that the report and `compare`, which only read manifests, run none of
the code that inspects a live process (thread pools, native libraries, a framework's settings).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# What a difference in a field may bias, by the field's leading path. Loss-mode comparisons run
# both arms in one framework's processes with one manifest, so none of these touch them.
EFFECTS = (
    ("cpu", "every comparison between these manifests: they come from different machines"),
    ("env", "the libraries' kernel choice or thread pools: compare `native` and `common`"),
    (
        "common.kernel_isa",
        "framework time ratios, most at large batches, where matrix products and "
        "convolutions dominate: one side runs narrower vector kernels",
    ),
    (
        "common.kernel_library",
        "framework time ratios: different kernel implementations, not only "
        "different frameworks, are being compared",
    ),
    ("common.threads", "framework time ratios at every batch size: unequal parallelism"),
    ("native", "framework time ratios: BLAS/OpenMP pools differ in kernels or threads"),
    ("common.dtype", "every framework ratio: different arithmetic"),
    (
        "common.fp32_math",
        "cuda framework ratios: reduced-precision (TF32) float32 kernels on one side "
        "only; faster and less accurate",
    ),
    (
        "common.runtime_checks",
        "framework time ratios, most at small batches: per-call checking "
        "overhead on one side only (Chainer's type_check)",
    ),
    (
        "common.allocator",
        "framework time ratios, most at large batches: one side faults in and zeroes its "
        "big arrays afresh every iteration (deeppose.measure.allocator)",
    ),
    (
        "common.optimizer_kernel",
        "the update step's times and training time per iteration (not the core "
        "process): different optimiser implementations",
    ),
    ("device", "everything: these manifests describe different devices"),
)


@dataclass(frozen=True)
class Asymmetry:
    """One field in which manifests differ, their values, and what it may bias."""

    field: str  # dotted path, e.g. "common.kernel_isa" or "env.OPENBLAS_CORETYPE"
    values: dict[str, Any]  # manifest name -> value (None: not set / not present)
    comparisons: tuple[str, ...]  # "a vs b" for each pair of manifests that differ
    may_bias: str


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def _effect(field: str) -> str:
    for prefix, effect in EFFECTS:
        if field == prefix or field.startswith(prefix + "."):
            return effect
    return "framework time ratios (a setting that differs between the sides)"


def asymmetries(manifests: Mapping[str, Mapping[str, Any]]) -> list[Asymmetry]:
    """Every field in which the manifests (name -> manifest, e.g. "pytorch/cpu") differ.

    Compared: the machine (`cpu`), `device`, `common`, the steering environment (a variable set on
    one side only counts as a difference) and each native library both sides loaded. A framework's
    own section (`pytorch`, `chainer`) is compared only between manifests that both have it.
    """
    names = list(manifests)
    flat = {
        name: _flatten({k: v for k, v in manifests[name].items() if k not in ("framework", "numpy")})
        for name in names
    }
    fields = sorted(set().union(*(f.keys() for f in flat.values()))) if flat else []
    found = []
    for field in fields:
        values = {name: flat[name].get(field) for name in names}
        if not field.startswith("env."):  # elsewhere an absent field is another framework's, not a difference
            values = {name: value for name, value in values.items() if field in flat[name]}
        pairs = tuple(f"{a} vs {b}" for a, b in itertools.combinations(values, 2) if values[a] != values[b])
        if pairs:
            found.append(Asymmetry(field, values, pairs, _effect(field)))
    return found
