"""How much time does deeppose's timing harness add to what it measures?

    .venv/bin/python benchmarks/harness_overhead.py [--framework pytorch] [--batch-exp 0] [--pairs 40]

Times the same step two ways, interleaved sample by sample (in alternating order, so that drift
and any first-or-second effect fall equally on both):

* harness: `deeppose.measure.harness.measure(step, setup=zero_grad, sync=synchronize)`, exactly as the
  `time` stage calls it;
* bare:    a hand-written loop with the harness's rules (collector off, a collection of the young
           generation before the step, the step's result released after the clock stops): zero_grad(); gc.collect(0);
           synchronize(); t0 = perf_counter_ns(); result = step(); synchronize();
           t1 = perf_counter_ns(); del result.

The step is the core process (forward + loss + backward) at batch 2^N, the smallest being the
hardest case for the harness. It prints both medians, their ratio, and the median of the paired
ratios with a bootstrap 95% interval. Because a shared machine moves the medians of a ~0.1 s step by
a few percent, it also times an empty step both ways (many samples, nanoseconds): that difference
is exactly what the harness adds inside the timed region, whatever the load, and is reported as a
fraction of the real step's median.

Verdict (exit status 1 on FAIL): the empty-step overhead must be under --max-overhead (default 1%)
of the step, and the paired ratios must not show an overhead above it (the lower end of their 95%
interval <= 1 + max-overhead). A script, not a test.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time

import numpy as np

from deeppose.backends import create_backend
from deeppose.core import synthetic_batch
from deeppose.measure.harness import measure
from deeppose.model import ModelConfig, init_weights


def bare_sample(step, setup, sync) -> int:
    was_enabled = gc.isenabled()
    gc.disable()
    setup()
    gc.collect(0)
    sync()
    start = time.perf_counter_ns()
    result = step()
    sync()
    end = time.perf_counter_ns()
    del result
    if was_enabled:
        gc.enable()
    return end - start


def harness_sample(step, setup, sync) -> int:
    return measure(step, repeats=1, setup=setup, sync=sync).samples_ns[0]


def interleaved(step, setup, sync, pairs: int) -> tuple[list[int], list[int]]:
    harness, bare = [], []
    for i in range(pairs):
        if i % 2 == 0:
            harness.append(harness_sample(step, setup, sync))
            bare.append(bare_sample(step, setup, sync))
        else:
            bare.append(bare_sample(step, setup, sync))
            harness.append(harness_sample(step, setup, sync))
    return harness, bare


def paired_median_ci(ratios: np.ndarray, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap 95% interval of the median of the paired ratios."""
    rng = np.random.Generator(np.random.PCG64(seed))
    medians = np.median(ratios[rng.integers(0, ratios.size, (resamples, ratios.size))], axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    return float(low), float(high)


def null_overhead_ns(samples: int) -> tuple[float, float]:
    """Median duration of an empty step through the harness and through the bare loop."""

    def nothing() -> None:
        return None

    harness = measure(nothing, repeats=samples, setup=nothing, sync=nothing).samples_ns
    bare = [bare_sample(nothing, nothing, nothing) for _ in range(samples)]
    return statistics.median(harness), statistics.median(bare)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", default="pytorch")
    parser.add_argument("--loss", default="autograd")
    parser.add_argument("--batch-exp", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="0 = all cores")
    parser.add_argument("--pairs", type=int, default=40, help="interleaved (harness, bare) pairs")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--null-samples", type=int, default=20000)
    parser.add_argument("--max-overhead", type=float, default=0.01)
    args = parser.parse_args()

    backend = create_backend(args.framework, "cpu", args.threads)
    backend.seed(0)
    backend.load_weights(init_weights(0), ModelConfig(dropout=0.0))
    images, targets, visible = (backend.to_device(a) for a in synthetic_batch(2**args.batch_exp, 0))

    def step() -> None:
        backend.forward_backward(images, targets, visible, args.loss)

    measure(step, repeats=args.warmup, setup=backend.zero_grad, sync=backend.synchronize)
    harness, bare = interleaved(step, backend.zero_grad, backend.synchronize, args.pairs)
    harness_median, bare_median = statistics.median(harness), statistics.median(bare)
    ratio = harness_median / bare_median
    ratios = np.asarray(harness, float) / np.asarray(bare, float)
    paired = float(np.median(ratios))
    paired_low, paired_high = paired_median_ci(ratios)
    null_harness, null_bare = null_overhead_ns(args.null_samples)
    null_fraction = (null_harness - null_bare) / bare_median

    print(
        f"step: {args.framework}/{args.loss} forward+loss+backward, batch {2**args.batch_exp}, "
        f"{backend.threads} thread(s), {args.pairs} interleaved pairs"
    )
    print(
        f"harness median {harness_median / 1e6:.3f} ms   bare median {bare_median / 1e6:.3f} ms   "
        f"ratio {ratio:.4f}"
    )
    print(
        f"paired ratios: median {paired:.4f}, 95% interval [{paired_low:.4f}, {paired_high:.4f}]   "
        f"IQR harness {np.subtract(*np.percentile(harness, [75, 25])) / 1e6:.3f} ms, "
        f"bare {np.subtract(*np.percentile(bare, [75, 25])) / 1e6:.3f} ms"
    )
    print(
        f"empty step: harness {null_harness:.0f} ns, bare {null_bare:.0f} ns: the harness adds "
        f"{null_harness - null_bare:.0f} ns = {100 * null_fraction:.2e}% of the step's median"
    )
    ok = null_fraction < args.max_overhead and paired_low <= 1 + args.max_overhead
    print(
        f"overhead: {100 * null_fraction:+.2e}% measured directly, ratio of medians {100 * (ratio - 1):+.2f}% "
        f"(limit {100 * args.max_overhead:.0f}%): {'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
