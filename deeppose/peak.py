"""Stage `peak`: the machine's fp32 throughput and memory-bandwidth ceilings, for the report's
achieved-FLOP/s figures and its roofline.

    python -m deeppose peak [--size 2048] [--warmup 2] [--repeats 5]

Times four standard fp32 kernels of about the same work with `timing.threads` threads (0 = all
cores) set in both frameworks and every BLAS/OpenMP pool, exactly as the `time` stage sets them:
an n x n matrix product through numpy (OpenBLAS in the pinned wheels) and through `torch.matmul`
(MKL on CPU), and two convolutions through torch (oneDNN on CPU, cuDNN on CUDA): the same GEMM as a
1x1 convolution and a 3x3 convolution of the shape those libraries are tuned for. Each kernel gets
untimed warm-ups and `repeats` timed runs through `deeppose.measure.harness.measure`; its rate is FLOPs /
median, and `peak_flops_per_s` is the best rate. A matrix product alone is no ceiling here: on AMD
CPUs MKL runs far below oneDNN, and the network's convolutions would exceed "the peak". The
`breakdown` stage measures the same kernels (`measure_rates`) beside its layers. The result goes to
`results/machine/matmul_peak.json`; a library that cannot be imported leaves its kernels null.

Beside the best observed rate the stage records two more ceilings. The memory bandwidth is a
STREAM triad (McCalpin), a = b + s c through one fused `torch.add`, on arrays at least four times
the last-level cache, counting 3 x 4 bytes per element as STREAM does (no write-allocate traffic).
The theoretical fp32 peak is cores x clock x FLOPs per cycle, where the microarchitecture is known
from /proc/cpuinfo's vendor, family and model (`FLOPS_PER_CYCLE`); the clock is the one the kernel
reports, which under a hypervisor is usually the nominal one, so boosting cores can exceed it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from deeppose import provenance
from deeppose.config import load_params
from deeppose.errors import DeepPoseError
from deeppose.measure.environment import describe as describe_environment
from deeppose.measure.fairness import cpu_description, first_cpu
from deeppose.measure.harness import measure
from deeppose.measure.lock import measurement_lock
from deeppose.memory import check_machine
from deeppose.records import paths
from deeppose.records.results import PeakResult
from deeppose.stats import describe

DEFAULT_SIZE = 2048  # ~17 GFLOP a product: ~0.1 s at 150 GFLOP/s, big enough to reach the BLAS peak
TRIAD_MIN_ELEMENTS = 2**26  # 256 MiB a float32 array: beyond any last-level cache seen on these machines
TRIAD_BYTES_PER_ELEMENT = 3 * 4  # read b and c, write a (STREAM's count)

# fp32 FLOPs per cycle per core (FMA pipes x lanes x 2) by (vendor, family, models): the
# microarchitectures seen on these machines and their neighbours. Intel's Xeon Silver and Bronze
# parts have one 512-bit FMA unit, not two; their model numbers do not tell them apart.
FLOPS_PER_CYCLE: tuple[tuple[str, int, range, str, int], ...] = (
    ("AuthenticAMD", 0x19, range(0x00, 0x10), "Zen 3", 32),  # 2 x 256-bit FMA
    ("AuthenticAMD", 0x19, range(0x10, 0x20), "Zen 4", 32),  # AVX-512 on 2 x 256-bit FMA pipes
    ("AuthenticAMD", 0x19, range(0xA0, 0xB0), "Zen 4c", 32),
    ("AuthenticAMD", 0x1A, range(0x00, 0x20), "Zen 5", 64),  # 2 x 512-bit FMA (server parts)
    ("GenuineIntel", 6, range(0x55, 0x56), "Skylake/Cascade Lake-SP", 64),  # 2 x 512-bit FMA (Gold, Platinum)
    ("GenuineIntel", 6, range(0x6A, 0x6D), "Ice Lake-SP", 64),
    ("GenuineIntel", 6, range(0x8F, 0x90), "Sapphire Rapids", 64),
    ("GenuineIntel", 6, range(0xCF, 0xD0), "Emerald Rapids", 64),
    ("GenuineIntel", 6, range(0xAD, 0xAF), "Granite Rapids", 64),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--size", type=int, default=DEFAULT_SIZE, help=f"matrix size n (default {DEFAULT_SIZE})"
    )
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


def _set_threads(threads: int) -> tuple[int, Any]:
    """`threads` (0 = all cores) in torch and every BLAS/OpenMP pool, as the `time` stage sets
    them; returns the count and torch, or None where it cannot be imported."""
    from deeppose.measure.threads import limit_native_threads, resolve_threads

    n_threads = resolve_threads(threads)
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(n_threads)
    limit_native_threads(n_threads)
    return n_threads, torch


def measure_rates(
    device: str, size: int, threads: int, warmup: int = 2, repeats: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Set threads, time every kernel on `device`, return the rates and the best one."""
    from deeppose.measure.threads import native_thread_info

    n_threads, torch = _set_threads(threads)

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
            timed(
                "torch_conv3x3",
                lambda: conv2d(image, weight, padding=1),
                2 * 16 * 32 * 32 * channels**2 * 9,
                sync,
            )
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


def theoretical_peak(cores: int, cpuinfo: str | None = None) -> dict[str, Any]:
    """cores x clock x FLOPs per cycle, with what it assumed; `flops_per_s` None when the
    microarchitecture or the clock is unknown. `cpuinfo`: /proc/cpuinfo's text (read when None)."""
    fields = first_cpu(cpuinfo)
    cpu = cpu_description(fields)
    try:
        mhz: float | None = float(fields["cpu MHz"])
    except (KeyError, ValueError):
        mhz = None
    known = next(
        (
            (name, per_cycle)
            for vendor, family, models, name, per_cycle in FLOPS_PER_CYCLE
            if cpu.get("vendor") == vendor
            and cpu.get("family") == family
            and cpu.get("model_number") in models
        ),
        None,
    )
    clock_hz = mhz * 1e6 if mhz else None
    record: dict[str, Any] = {
        "cpu_model": cpu.get("model"),
        "microarchitecture": known[0] if known else None,
        "cores": cores,
        "clock_hz": clock_hz,
        "flops_per_cycle_per_core": known[1] if known else None,
        "flops_per_s": cores * clock_hz * known[1] if known and clock_hz else None,
    }
    if not known:
        record["how"] = (
            f"unknown microarchitecture ({cpu.get('vendor')}, family {cpu.get('family')}, model "
            f"{cpu.get('model_number')}): no theoretical peak"
        )
    else:
        record["how"] = (
            f"{cores} cores x {clock_hz / 1e9 if clock_hz else float('nan'):.2f} GHz (the clock the kernel "
            f"reports; boost may exceed it) x {known[1]} fp32 FLOPs per cycle ({known[0]})"
        )
    return record


def last_level_cache_bytes() -> int | None:
    """The largest cache of CPU 0 as sysfs gives it (e.g. "32768K"), None when unreadable."""
    sizes = []
    for size in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        try:
            text = size.read_text().strip()
        except OSError:
            continue
        scale = {"K": 1024, "M": 1024**2}.get(text[-1:], 1)
        digits = text.rstrip("KM")
        if digits.isdigit():
            sizes.append(int(digits) * scale)
    return max(sizes, default=None)


def measure_bandwidth(device: str, threads: int, warmup: int = 2, repeats: int = 5) -> dict[str, Any] | None:
    """A STREAM triad on `device` (see the module docstring); None without torch."""
    _, torch = _set_threads(threads)
    if torch is None:
        return None
    llc = last_level_cache_bytes() if device == "cpu" else None
    # every array at least 4x the cache (STREAM's rule): n float32 elements are 4 n bytes
    n = max(TRIAD_MIN_ELEMENTS, llc or 0)
    dev = torch.device(device)
    b, c = torch.ones(n, device=dev), torch.full((n,), 2.0, device=dev)
    a = torch.empty(n, device=dev)
    sync = torch.cuda.synchronize if device == "cuda" else None
    samples = measure(
        lambda: torch.add(b, c, alpha=3.0, out=a), repeats=repeats, warmup=warmup, sync=sync
    ).samples_s
    stats = describe(samples)
    moved = TRIAD_BYTES_PER_ELEMENT * n
    return {
        "n": n,
        "last_level_cache_bytes": llc,
        "bytes": moved,
        "samples_s": samples,
        "stats": stats,
        "bytes_per_s": moved / stats["median"] if stats["median"] > 0 else None,
    }


def run(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    check_machine(params)
    if args.size < 1:
        raise DeepPoseError(f"--size: {args.size} must be a positive matrix size, e.g. {DEFAULT_SIZE}")
    if args.warmup < 0:
        raise DeepPoseError(f"--warmup: {args.warmup} must be >= 0")
    if args.repeats < 2:
        raise DeepPoseError(f"--repeats: {args.repeats} must be >= 2 (a spread needs two samples)")
    threads = params.timing.threads
    with measurement_lock("peak"):
        rates = measure_rates("cpu", args.size, threads, args.warmup, args.repeats, params.seed)
        bandwidth = measure_bandwidth("cpu", threads, args.warmup, args.repeats)
    theoretical = theoretical_peak(rates["threads"]["requested"])
    result = PeakResult.create(
        **rates,
        bandwidth=bandwidth,
        bandwidth_bytes_per_s=bandwidth["bytes_per_s"] if bandwidth else None,
        theoretical=theoretical,
        theoretical_flops_per_s=theoretical["flops_per_s"],
        environment=describe_environment(),
        provenance=provenance.record("peak", params),
    )
    out = paths.matmul_peak()
    result.write(out)
    parts = [f"{name} {rate / 1e9:.1f} GFLOP/s" for name, rate in result.rates_flops_per_s.items() if rate]
    peak = result.peak_flops_per_s
    triad = result.bandwidth_bytes_per_s
    print(
        f"fp32 kernels (n = {args.size}) with {result.threads['requested']} thread(s): {', '.join(parts)}; "
        f"peak {peak / 1e9 if peak else float('nan'):.1f} GFLOP/s ({result.best}); "
        f"triad {triad / 1e9 if triad else float('nan'):.1f} GB/s -> {out}"
    )
