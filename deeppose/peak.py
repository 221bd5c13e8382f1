"""Stage `peak`: the machine's fp32 throughput ceiling, for the report's achieved-FLOP/s figures.

    python -m deeppose peak [--size 2048] [--warmup 2] [--repeats 5]

Times four standard fp32 kernels of about the same work with `timing.threads` threads (0 = all
cores) set in both frameworks and every BLAS/OpenMP pool, exactly as the `time` stage sets them:
an n x n matrix product through numpy (OpenBLAS in the pinned wheels) and through `torch.matmul`
(MKL on CPU), and two convolutions through torch (oneDNN on CPU, cuDNN on CUDA): the same GEMM as a
1x1 convolution and a 3x3 convolution of the shape those libraries are tuned for. Each kernel gets
untimed warm-ups and `repeats` timed runs through `deeppose.harness.measure`; its rate is FLOPs /
median, and `peak_flops_per_s` is the best rate. A matrix product alone is no ceiling here: on AMD
CPUs MKL runs far below oneDNN, and the network's convolutions would exceed "the peak". The
`breakdown` stage measures the same kernels (`measure_rates`) beside its layers. The result goes to
`results/machine/matmul_peak.json`; a library that cannot be imported leaves its kernels null.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from deeppose import paths, provenance
from deeppose.config import load_params
from deeppose.environment import describe as describe_environment
from deeppose.errors import DeepPoseError
from deeppose.harness import measure
from deeppose.lock import measurement_lock
from deeppose.results import PeakResult
from deeppose.stats import describe

DEFAULT_SIZE = 2048  # ~17 GFLOP a product: ~0.1 s at 150 GFLOP/s, big enough to reach the BLAS peak


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help=f"matrix size n (default {DEFAULT_SIZE})")
    parser.add_argument("--warmup", type=int, default=2, help="untimed products per library (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed products per library (default 5)")


KERNELS = ("numpy_matmul", "torch_matmul", "torch_conv1x1", "torch_conv3x3")


def _kernel_record(samples_s: list[float], flops: int) -> dict[str, Any]:
    stats = describe(samples_s)
    return {
        "samples_s": samples_s,
        "stats": stats,
        "flops": flops,
        "flops_per_s": flops / stats["median"] if stats["median"] > 0 else None,
    }


def measure_rates(
    device: str, size: int, threads: int, warmup: int = 2, repeats: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Set threads, time every kernel on `device`, return the rates and the best one."""
    from deeppose.threads import limit_native_threads, native_thread_info, resolve_threads

    n_threads = resolve_threads(threads)
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(n_threads)
    limit_native_threads(n_threads)

    gemm_flops = 2 * size**3
    rng = np.random.Generator(np.random.PCG64(seed))
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    kernels: dict[str, dict[str, Any] | None] = dict.fromkeys(KERNELS)

    def timed(name: str, run: Any, flops: int, sync: Any = None) -> None:
        samples = measure(run, repeats=repeats, warmup=warmup, sync=sync).samples_s
        kernels[name] = _kernel_record(samples, flops)

    thread_info: dict[str, Any] = {"requested": n_threads}
    if device == "cpu":
        c = np.empty_like(a)
        timed("numpy_matmul", lambda: np.matmul(a, b, out=c), gemm_flops)
    if torch is not None:
        dev = torch.device(device)
        sync = torch.cuda.synchronize if device == "cuda" else None
        conv2d = torch.nn.functional.conv2d
        ta, tb = torch.from_numpy(a).to(dev), torch.from_numpy(b).to(dev)
        timed("torch_matmul", lambda: torch.matmul(ta, tb), gemm_flops, sync)
        with torch.no_grad():
            # the same GEMM as a 1x1 convolution: (n out, n in) weights over n positions
            image = ta.t().contiguous().reshape(1, size, size, 1)
            weight = tb.reshape(size, size, 1, 1)
            timed("torch_conv1x1", lambda: conv2d(image, weight), gemm_flops, sync)
            channels = max(size // 8, 1)
            generator = torch.Generator().manual_seed(seed)
            image = torch.randn(16, channels, 32, 32, generator=generator).to(dev)
            weight = torch.randn(channels, channels, 3, 3, generator=generator).to(dev)
            timed("torch_conv3x3", lambda: conv2d(image, weight, padding=1), 2 * 16 * 32 * 32 * channels**2 * 9, sync)
        thread_info["torch_intra_op"] = torch.get_num_threads()
    thread_info["native"] = native_thread_info()

    rates = {name: (record["flops_per_s"] if record else None) for name, record in kernels.items()}
    best = max((name for name in rates if rates[name]), key=lambda name: rates[name], default=None)
    return {
        "device": device,
        "n": size,
        "kernels": kernels,
        "rates_flops_per_s": rates,
        "best": best,
        "peak_flops_per_s": rates[best] if best else None,
        "threads": thread_info,
    }


def run(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    if args.size < 1:
        raise DeepPoseError(f"--size: {args.size} must be a positive matrix size, e.g. {DEFAULT_SIZE}")
    if args.warmup < 0:
        raise DeepPoseError(f"--warmup: {args.warmup} must be >= 0")
    if args.repeats < 2:
        raise DeepPoseError(f"--repeats: {args.repeats} must be >= 2 (a spread needs two samples)")
    threads = int(params.section("timing")["threads"])
    with measurement_lock("peak"):
        rates = measure_rates("cpu", args.size, threads, args.warmup, args.repeats, params.seed)
    result = PeakResult.create(
        **rates, environment=describe_environment(), provenance=provenance.record("peak", params)
    )
    out = paths.matmul_peak()
    result.write(out)
    parts = [f"{name} {rate / 1e9:.1f} GFLOP/s" for name, rate in result.rates_flops_per_s.items() if rate]
    peak = result.peak_flops_per_s
    print(
        f"fp32 kernels (n = {args.size}) with {result.threads['requested']} thread(s): {', '.join(parts)}; "
        f"peak {peak / 1e9 if peak else float('nan'):.1f} GFLOP/s ({result.best}) -> {out}"
    )
