"""The allocator pin: a pinned process stops faulting in its big arrays afresh, and says so."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from deeppose import asymmetries
from deeppose.measure import allocator, fairness

# A child process allocates and frees a 64 MiB array ten times (after one to warm the heap) and
# prints the minor page faults per allocation, pinned or not.
PROBE = """
import json, resource, sys
import numpy as np
from deeppose.measure import allocator, fairness
allocator.pin(None if sys.argv[1] == "none" else int(sys.argv[1]))
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones(8 << 20).sum()
before = faults()
for _ in range(10):
    a = np.ones(8 << 20)
    del a
print(json.dumps({"faults": (faults() - before) / 10, "allocator": fairness.collect()["common"]["allocator"]}))
"""


def probe(threshold: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, threshold], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)


@pytest.mark.skipif(allocator.libc_version() is None, reason="mallopt is glibc's")
def test_a_pinned_process_reuses_its_freed_big_arrays_and_the_manifest_records_it():
    default, pinned = probe("none"), probe("1024")
    # glibc's default maps a 64 MiB array afresh each time: at least one fault per 2 MiB huge page
    assert default["faults"] >= 32, default
    assert pinned["faults"] <= default["faults"] / 100, (default, pinned)
    assert default["allocator"]["mmap_threshold_bytes"] == "library default (glibc: dynamic)"
    assert pinned["allocator"] == {
        "library": allocator.libc_version(),
        "mmap_threshold_bytes": 1 << 30,
        "trim_threshold_bytes": 1 << 30,
    }


def test_frameworks_pinned_differently_are_an_asymmetry_naming_the_allocator():
    common = {"dtype": "float32", "allocator": {"library": "glibc 2.36", "mmap_threshold_bytes": 1 << 30}}
    other = {
        **common,
        "allocator": {"library": "glibc 2.36", "mmap_threshold_bytes": "library default (glibc: dynamic)"},
    }
    found = asymmetries.asymmetries({"pytorch/cpu": {"common": common}, "chainer/cpu": {"common": other}})
    assert [a.field for a in found] == ["common.allocator.mmap_threshold_bytes"]
    assert "faults in" in found[0].may_bias


def test_allocator_variables_in_the_environment_are_recorded():
    env = {
        "MALLOC_ARENA_MAX": "2",
        "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=1",
        "LD_PRELOAD": "libjemalloc.so",
        "HOME": "/root",
    }
    assert fairness.steering_env(env) == {k: v for k, v in env.items() if k != "HOME"}
