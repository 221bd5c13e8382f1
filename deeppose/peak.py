"""Stage `peak`: the machine's fp32 compute ceiling and memory bandwidth, for the report's
"% of peak" and its roofline.

    python -m deeppose peak --params params.yaml     # the design: params.yaml's `peak` section

The ceiling is the best rate a kernel sustains here, measured so that it is stable and replicated:
`peak.processes` fresh interpreters, one after another, each running `peak.blocks` blocks; a block times
every kernel once, in a seeded random order (so that no kernel always runs first, cold, or after
the same neighbour), with `peak.warmup` untimed and `peak.repeats` timed runs through
`deeppose.measure.harness.measure`. A kernel's rate in a block is its FLOPs / the block's median; its
rate is the best block's, its spread the range of its block rates over their median, and every
sample is recorded. `peak_flops_per_s` is the best kernel's rate. The kernels, with `timing.threads`
threads (0 = all cores) set in torch and every BLAS/OpenMP pool as the `time` stage sets them:

- the network's own: every conv and fc layer of `deeppose.model` at batch `peak.batch`, forward
  (`conv2d`, `linear`) and backward (`aten.convolution_backward` for the input and weight gradients,
  conv1 without the input's; for fc the two matrix products autograd runs), FLOPs as
  `deeppose.model.layer_flops` counts them: the kernels the `time` and `breakdown` stages run;
- standard ones of about the same work (`STANDARD`): an n x n matrix product through numpy
  (OpenBLAS) and `torch.matmul` (MKL), the same GEMM as a 1x1 convolution and a 3x3 convolution of
  the shape oneDNN is tuned for;
- register-resident FMA loops (`deeppose.measure.registers`), AVX2 and AVX-512 where the CPU has
  them: FMA throughput with no memory traffic, on every core at once.

The `breakdown` stage measures the standard kernels once (`measure_rates`) beside its layers. No
measured ceiling is a hard one: the report's ceiling is the larger of this stage's and every rate
achieved in the same run (`deeppose.report.ceilings`).

Each block also measures the all-core clock (`registers.Clock`: a dependent add chain, one cycle an
add) and a STREAM triad (McCalpin), a = b + s c through one fused `torch.add`, on arrays at least
four times the last-level cache, counting 3 x 4 bytes per element as STREAM does. The theoretical
fp32 peak is cores x the measured clock (the highest over blocks and cores: another process
taking a core only lowers it) x FLOPs per cycle, where
the microarchitecture is known from /proc/cpuinfo's vendor, family and model (`FLOPS_PER_CYCLE`);
without a measured clock it is not given (the kernel's "cpu MHz" is recorded as the nominal clock
only: under a hypervisor boosting cores run faster). The result goes to
`results/machine/matmul_peak.json`; a kernel that cannot run here is null or says why.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deeppose import model, provenance
from deeppose.config import PeakParams, load_params
from deeppose.errors import DeepPoseError
from deeppose.measure import registers
from deeppose.measure.environment import describe as describe_environment
from deeppose.measure.fairness import cpu_description, first_cpu
from deeppose.measure.harness import measure
from deeppose.measure.lock import measurement_lock
from deeppose.memory import check_machine
from deeppose.records import paths
from deeppose.records.peak import PeakResult
from deeppose.stats import describe

CHILD_TIMEOUT_S = 900
TRIAD_MIN_ELEMENTS = 2**26  # 256 MiB a float32 array: beyond any last-level cache seen on these machines
TRIAD_BYTES_PER_ELEMENT = 3 * 4  # read b and c, write a (STREAM's count)
TRIAD = "stream_triad"

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

STANDARD = ("numpy_matmul", "torch_matmul", "torch_conv1x1", "torch_conv3x3")
NETWORK = tuple(
    f"{layer}_{phase}"
    for layer in (*(c.name for c in model.CONVS), *(f.name for f in model.linears()))
    for phase in ("forward", "backward")
)
REGISTER = tuple(f"fma_{isa}" for isa in registers.LANES)
KERNELS = (*STANDARD, *NETWORK, *REGISTER)

Kernel = tuple[Callable[[], Any], int, Callable[[], Any] | None]  # run, FLOPs (bytes for the triad), sync


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options of its own: the design is params.yaml's `peak` section."""


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


def standard_kernels(device: str, size: int, seed: int, torch: Any) -> dict[str, Kernel]:
    """The STANDARD kernels that can run (numpy's on cpu only, torch's where torch imports)."""
    gemm_flops = 2 * size**3
    rng = np.random.Generator(np.random.PCG64(seed))
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    found: dict[str, Kernel] = {}
    if device == "cpu":
        c = np.empty_like(a)
        found["numpy_matmul"] = (lambda: np.matmul(a, b, out=c), gemm_flops, None)
    if torch is None:
        return found
    dev, sync = torch.device(device), torch.cuda.synchronize if device == "cuda" else None
    conv2d = torch.nn.functional.conv2d
    ta, tb = torch.from_numpy(a).to(dev), torch.from_numpy(b).to(dev)
    found["torch_matmul"] = (lambda: torch.matmul(ta, tb), gemm_flops, sync)
    # the same GEMM as a 1x1 convolution: (n out, n in) weights over n positions
    image = ta.t().contiguous().reshape(1, size, size, 1)
    weight = tb.reshape(size, size, 1, 1)
    found["torch_conv1x1"] = (lambda: conv2d(image, weight), gemm_flops, sync)
    channels = max(size // 8, 1)
    generator = torch.Generator().manual_seed(seed)
    image3 = torch.randn(16, channels, 32, 32, generator=generator).to(dev)
    weight3 = torch.randn(channels, channels, 3, 3, generator=generator).to(dev)
    flops3 = 2 * 16 * 32 * 32 * channels**2 * 9
    found["torch_conv3x3"] = (lambda: conv2d(image3, weight3, padding=1), flops3, sync)
    return found


def network_kernels(device: str, batch: int, seed: int, torch: Any) -> dict[str, Kernel]:
    """Every conv and fc layer of the network at `batch`, forward and backward (see the module
    docstring), on seeded random tensors."""
    functional, aten = torch.nn.functional, torch.ops.aten
    dev, sync = torch.device(device), torch.cuda.synchronize if device == "cuda" else None
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> Any:
        return torch.randn(*shape, generator=generator).to(dev)

    flops, found, spatial = model.layer_flops(batch), {}, model.INPUT_SIZE
    for conv, out in zip(model.CONVS, model.feature_sizes()):
        x = rand(batch, conv.in_channels, spatial, spatial)
        w, bias = rand(conv.out_channels, conv.in_channels, conv.kernel, conv.kernel), rand(conv.out_channels)
        grad = rand(batch, conv.out_channels, out, out)
        stride, pad = [conv.stride] * 2, [conv.pad] * 2
        mask = [conv is not model.CONVS[0], True, True]  # the image needs no gradient
        found[f"{conv.name}_forward"] = (
            lambda x=x, w=w, bias=bias, stride=stride, pad=pad: functional.conv2d(x, w, bias, stride, pad),
            flops[conv.name]["forward"],
            sync,
        )
        found[f"{conv.name}_backward"] = (
            lambda grad=grad, x=x, w=w, stride=stride, pad=pad, mask=mask: aten.convolution_backward(
                grad, x, w, [w.shape[0]], stride, pad, [1, 1], False, [0, 0], 1, mask
            ),
            flops[conv.name]["backward"],
            sync,
        )
        spatial = (out - model.POOL_KERNEL) // model.POOL_STRIDE + 1 if conv.pool else out
    for fc in model.linears():
        x, w, bias = rand(batch, fc.in_features), rand(fc.out_features, fc.in_features), rand(fc.out_features)
        grad = rand(batch, fc.out_features)
        found[f"{fc.name}_forward"] = (
            lambda x=x, w=w, bias=bias: functional.linear(x, w, bias),
            flops[fc.name]["forward"],
            sync,
        )
        found[f"{fc.name}_backward"] = (  # the input's and the weights' gradients, as autograd runs them
            lambda grad=grad, x=x, w=w: (torch.mm(grad, w), torch.mm(grad.t(), x)),
            flops[fc.name]["backward"],
            sync,
        )
    return found


def register_kernels(threads: int) -> tuple[dict[str, Kernel], dict[str, str]]:
    """The FMA loops this CPU runs, and why each other one does not."""
    found, why = {}, {}
    for isa in registers.LANES:
        reason = registers.unavailable(isa)
        if reason:
            why[f"fma_{isa}"] = reason
            continue
        fma = registers.FmaKernel(isa, threads)
        found[f"fma_{isa}"] = (fma.run, fma.flops(), None)
    return found, why


def triad_kernel(device: str, torch: Any) -> tuple[Kernel, dict[str, Any]]:
    """A STREAM triad on `device` (see the module docstring), its bytes in the FLOPs' place."""
    llc = last_level_cache_bytes() if device == "cpu" else None
    # every array at least 4x the cache (STREAM's rule): n float32 elements are 4 n bytes
    n = max(TRIAD_MIN_ELEMENTS, llc or 0)
    dev = torch.device(device)
    b, c = torch.ones(n, device=dev), torch.full((n,), 2.0, device=dev)
    a = torch.empty(n, device=dev)
    sync = torch.cuda.synchronize if device == "cuda" else None
    moved = TRIAD_BYTES_PER_ELEMENT * n
    return (lambda: torch.add(b, c, alpha=3.0, out=a), moved, sync), {"n": n, "last_level_cache_bytes": llc}


def measure_rates(
    device: str, size: int, threads: int, warmup: int = 2, repeats: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Set threads, time the STANDARD kernels once each on `device`, return the rates and the best
    one (the `breakdown` stage's measurement)."""
    from deeppose.measure.threads import native_thread_info

    n_threads, torch = _set_threads(threads)
    kernels: dict[str, dict[str, Any] | None] = dict.fromkeys(STANDARD)
    for name, (run, flops, sync) in standard_kernels(device, size, seed, torch).items():
        kernels[name] = _kernel_record(
            measure(run, repeats=repeats, warmup=warmup, sync=sync).samples_s, flops
        )
    thread_info: dict[str, Any] = {"requested": n_threads}
    if torch is not None:
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


def process_blocks(
    device: str, size: int, batch: int, threads: int, warmup: int, repeats: int, blocks: int, seed: int
) -> dict[str, Any]:
    """One fresh process's part (run by `measure_ceiling` in a child): `blocks` blocks, each timing
    every kernel in the order of a generator seeded with `seed` (the process's own), and the clock."""
    from deeppose.measure.threads import native_thread_info

    n_threads, torch = _set_threads(threads)
    kernels = standard_kernels(device, size, seed, torch)
    triad: dict[str, Any] | None = None
    if torch is not None:
        kernels |= network_kernels(device, batch, seed, torch)
        kernels[TRIAD], triad = triad_kernel(device, torch)
    unavailable = {name: "torch cannot be imported" for name in (*STANDARD[1:], *NETWORK) if torch is None}
    clock_why = registers.unavailable() if device == "cpu" else f"no clock measured on {device}"
    if device == "cpu":
        found, why = register_kernels(n_threads)
        kernels |= found
        unavailable |= why
    clock = None if clock_why else registers.Clock(n_threads)
    order_rng = np.random.Generator(np.random.PCG64(seed))
    done = []
    for block in range(blocks):
        order = [str(name) for name in order_rng.permutation(sorted(kernels))]
        samples = {
            name: measure(kernels[name][0], repeats=repeats, warmup=warmup, sync=kernels[name][2]).samples_s
            for name in order
        }
        done.append({"order": order, "samples_s": samples, "clock_hz": clock.hz() if clock else None})
    thread_info: dict[str, Any] = {"requested": n_threads, "native": native_thread_info()}
    if torch is not None:
        thread_info["torch_intra_op"] = torch.get_num_threads()
    return {
        "flops": {name: kernel[1] for name, kernel in kernels.items()},
        "blocks": done,
        "unavailable": unavailable,
        "clock_unavailable": clock_why,
        "triad": triad,
        "threads": thread_info,
    }


def _child(function: str, *args: Any) -> dict[str, Any]:
    """`function(*args)` of this module in a fresh interpreter; its JSON on the last line of stdout."""
    call = f"{function}({', '.join(map(repr, args))})"
    code = f"import json; from deeppose.peak import {function}; print(json.dumps({call}))"
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=True
        )
    except subprocess.CalledProcessError as error:
        tail = (error.stderr or "").strip().splitlines()[-1:] or [f"exit status {error.returncode}"]
        raise DeepPoseError(f"a peak measurement process failed: {tail[0]}") from None
    except subprocess.TimeoutExpired:
        raise DeepPoseError(f"a peak measurement process took over {CHILD_TIMEOUT_S} s") from None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _rates(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """A kernel's blocks -> its block rates (the block's FLOPs / its median), the best, median and spread."""
    rates = [b["flops"] / statistics.median(b["samples_s"]) for b in blocks]
    middle = statistics.median(rates)
    return {
        "block_rates": rates,
        "best": max(rates),
        "median": middle,
        "spread": (max(rates) - min(rates)) / middle,
    }


def measure_ceiling(device: str, design: PeakParams, threads: int, seed: int = 0) -> dict[str, Any]:
    """`design.processes` fresh processes one after another, each `process_blocks`; every kernel's
    blocks, rates and spread, the clock's samples and the triad (see the module docstring)."""
    d = design
    parts = [
        _child("process_blocks", device, d.size, d.batch, threads, d.warmup, d.repeats, d.blocks, seed + p)
        for p in range(d.processes)
    ]
    timed: dict[str, list[dict[str, Any]]] = {}
    for p, part in enumerate(parts):
        for b, block in enumerate(part["blocks"]):
            for position, name in enumerate(block["order"]):
                # FLOPs per block: each process calibrates its own FMA loops' length
                timed.setdefault(name, []).append(
                    {
                        "process": p,
                        "block": b,
                        "position": position,
                        "flops": part["flops"][name],
                        "samples_s": block["samples_s"][name],
                    }
                )
    kernels: dict[str, dict[str, Any] | None] = {}
    for name in KERNELS:
        if name not in timed:
            why = parts[0]["unavailable"].get(name)
            kernels[name] = {"unavailable": why} if why else None
            continue
        rates = _rates(timed[name])
        kernels[name] = {
            "flops": timed[name][0]["flops"],  # the first block's (the FMA loops' vary by process)
            "blocks": timed[name],
            "block_rates_flops_per_s": rates["block_rates"],
            "median_flops_per_s": rates["median"],
            "spread": rates["spread"],
            "flops_per_s": rates["best"],
        }
        if name in NETWORK:
            kernels[name]["batch"] = d.batch
    bandwidth = None
    if TRIAD in timed:
        rates = _rates(timed[TRIAD])
        bandwidth = parts[0]["triad"] | {
            "bytes": timed[TRIAD][0]["flops"],
            "blocks": timed[TRIAD],
            "block_rates_bytes_per_s": rates["block_rates"],
            "median_bytes_per_s": rates["median"],
            "spread": rates["spread"],
            "bytes_per_s": rates["best"],
        }
    clock = [hz for part in parts for block in part["blocks"] for hz in block["clock_hz"] or []]
    rates_found = {name: (record or {}).get("flops_per_s") for name, record in kernels.items()}
    best = max(
        (name for name in rates_found if rates_found[name]), key=lambda n: rates_found[n], default=None
    )
    return {
        "device": device,
        "n": d.size,
        "kernels": kernels,
        "rates_flops_per_s": rates_found,
        "best": best,
        "peak_flops_per_s": rates_found[best] if best else None,
        "bandwidth": bandwidth,
        "clock_samples_hz": clock,
        "clock_unavailable": parts[0]["clock_unavailable"],
        "threads": parts[0]["threads"],
    }


def theoretical_peak(
    cores: int,
    clock_samples_hz: list[float] | None = None,
    cpuinfo: str | None = None,
    clock_unavailable: str | None = None,
) -> dict[str, Any]:
    """cores x measured clock x FLOPs per cycle, with what it assumed; `flops_per_s` None when the
    microarchitecture is unknown or no clock was measured (the kernel's "cpu MHz" is kept as the
    nominal clock, never used). `cpuinfo`: /proc/cpuinfo's text (read when None)."""
    fields = first_cpu(cpuinfo)
    cpu = cpu_description(fields)
    try:
        nominal: float | None = float(fields["cpu MHz"]) * 1e6
    except (KeyError, ValueError):
        nominal = None
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
    clock_hz = max(clock_samples_hz) if clock_samples_hz else None  # interference only lowers it
    record: dict[str, Any] = {
        "cpu_model": cpu.get("model"),
        "microarchitecture": known[0] if known else None,
        "cores": cores,
        "clock_hz": clock_hz,
        "clock_samples_hz": list(clock_samples_hz or []),
        "clock_source": "measured: a dependent add chain on every core at once (deeppose.measure.registers)"
        if clock_hz
        else None,
        "nominal_clock_hz": nominal,
        "flops_per_cycle_per_core": known[1] if known else None,
        "flops_per_s": cores * clock_hz * known[1] if known and clock_hz else None,
    }
    if not known:
        record["how"] = (
            f"unknown microarchitecture ({cpu.get('vendor')}, family {cpu.get('family')}, model "
            f"{cpu.get('model_number')}): no theoretical peak"
        )
    elif not clock_hz:
        record["how"] = f"no measured clock ({clock_unavailable or 'not measured'}): no theoretical peak"
    else:
        record["how"] = (
            f"{cores} cores x {clock_hz / 1e9:.2f} GHz (measured, the highest of "
            f"{len(clock_samples_hz or [])} core-blocks) x {known[1]} fp32 FLOPs per cycle ({known[0]})"
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


def run(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    check_machine(params)
    with measurement_lock("peak"):
        found = measure_ceiling("cpu", params.peak, params.timing.threads, params.seed)
    clock, why = found.pop("clock_samples_hz"), found.pop("clock_unavailable")
    theoretical = theoretical_peak(found["threads"]["requested"], clock, clock_unavailable=why)
    bandwidth = found["bandwidth"]
    result = PeakResult.create(
        **found,
        bandwidth_bytes_per_s=bandwidth["bytes_per_s"] if bandwidth else None,
        theoretical=theoretical,
        theoretical_flops_per_s=theoretical["flops_per_s"],
        environment=describe_environment(),
        provenance=provenance.record("peak", params),
    )
    out = paths.matmul_peak()
    result.write(out)
    peak, triad = result.peak_flops_per_s, result.bandwidth_bytes_per_s
    best = result.kernels[result.best] if result.best else None
    spread = f", spread {100 * best['spread']:.1f} % over {len(best['blocks'])} blocks" if best else ""
    print(
        f"fp32 ceiling with {result.threads['requested']} thread(s): "
        f"{peak / 1e9 if peak else float('nan'):.1f} GFLOP/s ({result.best}{spread}); "
        f"clock {theoretical['clock_hz'] / 1e9 if theoretical['clock_hz'] else float('nan'):.2f} GHz; "
        f"triad {triad / 1e9 if triad else float('nan'):.1f} GB/s -> {out}"
    )
