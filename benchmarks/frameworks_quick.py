"""A quick look at every registered framework: first-call (compile) time, steady-state core time
and the core step's host memory peak, one fresh process per framework.

    .venv/bin/python benchmarks/frameworks_quick.py [--frameworks pytorch chainer jax pytorch_compile]
        [--batches 8 32] [--repeats 5] [--threads 0] [--mode autograd]

For each framework and batch size: build the backend from the seeded neutral weights (no
dropout), put a seeded random batch on the device, call `compile_core` (None for eager
frameworks), run one untimed warm-up, then time `--repeats` core steps (forward + loss +
backward) through `deeppose.measure.harness.measure` exactly as the `time` stage does, and probe the
host memory peak of one more step (`deeppose.measure.memory_probe`): "step peak" is above the resident
set before that step, which after warm-up leaves out whatever memory the framework's allocator
kept resident from earlier steps (XLA's buffers largely are), so "RSS peak", the process's
high-water mark during the step, is printed beside it. Prints one JSON line per framework
and a table. Not a substitute for the `time` stage: few samples, one block, and no control of
what else runs on the machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any


def one_framework(
    framework: str, batches: list[int], repeats: int, threads: int, mode: str
) -> dict[str, Any]:
    import numpy as np

    from deeppose import model as spec
    from deeppose.backends import create_backend
    from deeppose.measure.harness import measure
    from deeppose.measure.memory_probe import peak_memory
    from deeppose.timing import synthetic_batch

    backend = create_backend(framework, "cpu", threads=threads)
    result: dict[str, Any] = {"framework": framework, "mode": mode, "batches": {}}
    for batch in batches:
        backend.load_weights(spec.init_weights(0), spec.ModelConfig(dropout=0.0))
        images, targets, visible = (backend.to_device(a) for a in synthetic_batch(batch, seed=0))
        compile_s = backend.compile_core(images, targets, visible, mode)
        samples = measure(
            lambda: backend.forward_backward(images, targets, visible, mode),
            repeats=repeats,
            warmup=1,
            setup=backend.zero_grad,
            sync=backend.synchronize,
        ).samples_s
        backend.zero_grad()
        peak = peak_memory(backend, lambda: backend.forward_backward(images, targets, visible, mode))
        result["batches"][batch] = {
            "compile_s": compile_s,
            "core_median_s": float(np.median(samples)),
            "core_samples_s": samples,
            "peak_above_baseline_mb": peak.above_baseline_bytes / 2**20 if peak else None,
            "peak_mb": peak.peak_bytes / 2**20 if peak else None,
        }
    result["compile_info"] = backend.compile_info()
    result["threads"] = backend.thread_info()
    result["versions"] = backend.versions()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", nargs="+", default=["pytorch", "chainer", "jax", "pytorch_compile"])
    parser.add_argument("--batches", nargs="+", type=int, default=[8, 32])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--mode", default="autograd")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(
            json.dumps(
                one_framework(args.child, args.batches, args.repeats, args.threads, args.mode), default=str
            )
        )
        return 0
    rows = []
    for framework in args.frameworks:
        command = [
            sys.executable,
            __file__,
            "--child",
            framework,
            "--batches",
            *map(str, args.batches),
            "--repeats",
            str(args.repeats),
            "--threads",
            str(args.threads),
            "--mode",
            args.mode,
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{framework}: failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        line = done.stdout.strip().splitlines()[-1]
        print(line)
        rows.append(json.loads(line))
    print(
        f"\n{'framework':16} {'batch':>5} {'compile s':>10} {'core median s':>14} {'step peak MB':>12} {'RSS peak MB':>11}"
    )
    for row in rows:
        for batch, cell in row["batches"].items():
            compile_s = "-" if cell["compile_s"] is None else f"{cell['compile_s']:.2f}"
            peak = "-" if cell["peak_above_baseline_mb"] is None else f"{cell['peak_above_baseline_mb']:.0f}"
            rss = "-" if cell["peak_mb"] is None else f"{cell['peak_mb']:.0f}"
            print(
                f"{row['framework']:16} {batch:>5} {compile_s:>10} {cell['core_median_s']:>14.3f} {peak:>12} {rss:>11}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
