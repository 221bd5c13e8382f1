"""Stage `peak`: the machine's fp32 matrix-multiply throughput, the roofline's ceiling.

    python -m deeppose peak [--size 2048] [--warmup 2] [--repeats 5]

Times a square fp32 matrix product C = A B (n x n, 2 n^3 FLOPs) through `torch.matmul` and through
numpy (its BLAS, OpenBLAS in the pinned wheels), with `timing.threads` threads (0 = all cores) set
in both frameworks and every BLAS/OpenMP pool, exactly as the `time` stage sets them. Each library
gets a few untimed warm-ups and then `repeats` timed products through `deeppose.harness.measure`;
its rate is 2 n^3 / median. `peak_flops_per_s` is the better of the two. The result goes to
`results/machine/matmul_peak.json`. A library that cannot be imported is recorded as null.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from deeppose import paths
from deeppose.atomic import write_json
from deeppose.config import load_params
from deeppose.errors import DeepPoseError
from deeppose.harness import measure
from deeppose.stats import describe

DEFAULT_SIZE = 2048  # ~17 GFLOP a product: ~0.1 s at 150 GFLOP/s, big enough to reach the BLAS peak


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help=f"matrix size n (default {DEFAULT_SIZE})")
    parser.add_argument("--warmup", type=int, default=2, help="untimed products per library (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed products per library (default 5)")


def _library_record(samples_s: list[float], flops: int) -> dict[str, Any]:
    stats = describe(samples_s)
    return {
        "samples_s": samples_s,
        "stats": stats,
        "flops_per_s": flops / stats["median"] if stats["median"] > 0 else None,
    }


def measure_peak(size: int, warmup: int, repeats: int, threads: int, seed: int = 0) -> dict[str, Any]:
    """Set threads, time both libraries, return the result (see the module docstring)."""
    from deeppose.backends.base import resolve_threads
    from deeppose.environment import describe as describe_environment
    from deeppose.threads import limit_native_threads, native_thread_info

    n_threads = resolve_threads(threads)
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(n_threads)
    limit_native_threads(n_threads)

    flops = 2 * size**3
    rng = np.random.Generator(np.random.PCG64(seed))
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)

    c = np.empty_like(a)
    numpy_run = measure(lambda: np.matmul(a, b, out=c), repeats=repeats, warmup=warmup)
    result: dict[str, Any] = {"numpy": _library_record(numpy_run.samples_s, flops), "torch": None}
    thread_info: dict[str, Any] = {"requested": n_threads}
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        tc = torch.empty_like(ta)
        torch_run = measure(lambda: torch.matmul(ta, tb, out=tc), repeats=repeats, warmup=warmup)
        result["torch"] = _library_record(torch_run.samples_s, flops)
        thread_info["torch_intra_op"] = torch.get_num_threads()
    thread_info["native"] = native_thread_info()

    rates = [r["flops_per_s"] for r in (result["numpy"], result["torch"]) if r and r["flops_per_s"]]
    result.update(
        n=size,
        flops=flops,
        peak_flops_per_s=max(rates) if rates else None,
        threads=thread_info,
        environment=describe_environment(),
    )
    return result


def run(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    if args.size < 1:
        raise DeepPoseError(f"--size: {args.size} must be a positive matrix size, e.g. {DEFAULT_SIZE}")
    if args.warmup < 0:
        raise DeepPoseError(f"--warmup: {args.warmup} must be >= 0")
    if args.repeats < 2:
        raise DeepPoseError(f"--repeats: {args.repeats} must be >= 2 (a spread needs two samples)")
    threads = int(params.section("timing")["threads"])
    result = measure_peak(args.size, args.warmup, args.repeats, threads, params.seed)
    out = paths.matmul_peak()
    write_json(out, result)
    parts = [
        f"{name} {result[name]['flops_per_s'] / 1e9:.1f} GFLOP/s"
        for name in ("torch", "numpy")
        if result[name] and result[name]["flops_per_s"]
    ]
    peak = result["peak_flops_per_s"]
    print(
        f"fp32 matmul {args.size}^3 with {result['threads']['requested']} thread(s): {', '.join(parts)}; "
        f"peak {peak / 1e9 if peak else float('nan'):.1f} GFLOP/s -> {out}"
    )
