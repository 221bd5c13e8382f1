"""How far do the cross-framework agreement checks sit from their bounds on this machine?

    .venv/bin/python benchmarks/agreement_margins.py

The tests in tests/test_backends.py and tests/test_new_backends.py compare PyTorch, Chainer and
JAX on one batch (seed 7) and one set of weights (seed 3): exactly in float64 (bound 1e-10; the
PyTorch/Chainer check on AlexNet with fc6 and fc7 64 wide, to bound the test process's memory), and
in float32 for outputs and losses only (bound 1e-4), because a float32 pre-activation this close
to zero (2e-8 in conv3) changes sign with the CPU's kernels and reroutes a gradient. This prints,
on the full network,
for both dtypes, each framework's largest relative difference from PyTorch (output, loss, worst
gradient) and between its own loss modes, and the float64 distance of every ReLU and max-pool
choice from a flip, so the margin of each bound can be read on whatever CPU runs it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from deeppose import model as spec
from deeppose.backends import create_backend

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' own helpers, not copies
from test_backends import EXACT, rel_err, relu_and_pool_margins, run_core  # noqa: E402

FRAMEWORKS = ("pytorch", "chainer", "jax")


def worst(a: tuple, b: tuple) -> tuple[float, float, str, float]:
    """Output and loss differences and the worst gradient's, relative to `b`."""
    (out_a, loss_a, grads_a), (out_b, loss_b, grads_b) = a, b
    grads = {name: rel_err(grads_a[name], grads_b[name]) for name in grads_b}
    name = max(grads, key=grads.get)
    return rel_err(out_a, out_b), abs(loss_a - loss_b) / abs(loss_b), name, grads[name]


def main() -> None:
    rng = np.random.default_rng(7)  # tests/conftest.py's batch
    batch = (
        rng.random((2, 3, 227, 227), dtype=np.float32),
        rng.random((2, 28), dtype=np.float32),
        (rng.random((2, 14)) > 0.3).astype(np.float32),
    )
    weights = spec.init_weights(seed=3)
    for dtype in ("float64", "float32"):
        results = run_core(
            {n: create_backend(n, "cpu", threads=2, dtype=dtype) for n in FRAMEWORKS}, weights, batch
        )
        for framework in FRAMEWORKS:
            pairs = [(f"{framework} explicit vs autograd", (framework, "explicit"), (framework, "autograd"))]
            if framework != "pytorch":
                pairs += [
                    (f"{framework} vs pytorch, {mode}", (framework, mode), ("pytorch", mode))
                    for mode in ("autograd", "explicit")
                ]
            for label, a, b in pairs:
                output, loss, name, grad = worst(results[a], results[b])
                print(
                    f"{dtype} {label}: output {output:.1e}, loss {loss:.1e}, worst gradient {name} {grad:.1e}"
                )
    relu, pool = relu_and_pool_margins(weights, batch[0])
    print(f"float64 distance from a routing flip: ReLU {relu:.2e}, max-pool {pool:.2e} (test bound 1e-12)")
    print(f"float64 agreement bound: {EXACT:.0e}; float32 output and loss bound: 1e-04")


if __name__ == "__main__":
    main()
