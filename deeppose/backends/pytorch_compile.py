"""Compiled PyTorch: the eager PyTorch backend with its forward + loss under `torch.compile`.

Everything but the core step is inherited from `deeppose.backends.pytorch` (model, weights,
losses, optimisers, evaluation forward). The compiled region is `_train_loss`: the network in
train mode and the loss of the chosen mode. Dynamo captures it, AOTAutograd derives the joint
forward/backward graph, and Inductor (CPU: C++/OpenMP kernels built with the system compiler;
convolutions and matrix products stay library calls) generates both; `loss.backward()` outside
the region runs the compiled backward. The explicit loss's `torch.autograd.Function` is traced
into the graph when Dynamo can; any graph break it causes is counted in `compile_info()`, never
hidden. Shapes are static (`dynamic=False`): timing uses one batch size per process, and a new
shape recompiles rather than switching to a slower dynamic-shape graph.

Caches: `compile_core` clears Dynamo's in-process cache (`torch._dynamo.reset()`), so its call
compiles. Inductor's on-disk FX graph cache and AOTAutograd's cache are left as configured
(TORCHINDUCTOR_FX_GRAPH_CACHE, TORCHINDUCTOR_AUTOGRAD_CACHE, TORCHINDUCTOR_CACHE_DIR); a hit there
skips code generation, so `compile_info()` records the settings and the hits and misses of each
first call: a compile time is "cold" only where it shows misses.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from deeppose import model as spec
from deeppose.backends import base, pytorch
from deeppose.errors import DeepPoseError

# the Dynamo/Inductor counter groups worth keeping for each first call
_COUNTER_GROUPS = ("graph_break", "stats", "frames", "recompiles", "aot_autograd", "inductor")


def _counters() -> dict[str, dict[str, int]]:
    from torch._dynamo.utils import counters

    return {group: dict(counters[group]) for group in _COUNTER_GROUPS if group in counters}


def _counter_delta(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    delta: dict[str, dict[str, int]] = {}
    for group, values in after.items():
        changed = {k: v - before.get(group, {}).get(k, 0) for k, v in values.items()}
        changed = {k: v for k, v in changed.items() if v}
        if changed:
            delta[group] = changed
    return delta


class Backend(pytorch.Backend):
    name = "pytorch_compile"

    def __init__(self, device: str = "cpu", threads: int = 0, dtype: str = "float32") -> None:
        super().__init__(device, threads, dtype)
        self._compiled: Any = None
        self._first_calls: dict[str, dict[str, Any]] = {}

    def load_weights(self, weights: Mapping[str, np.ndarray], config: spec.ModelConfig) -> None:
        super().load_weights(weights, config)
        self._compiled = None

    def _train_loss(
        self, images: torch.Tensor, target: torch.Tensor, visible: torch.Tensor, mode: str
    ) -> torch.Tensor:
        if self._compiled is None:
            # the parent's region, bound to this backend; Dynamo specialises on `mode` and dtype
            self._compiled = torch.compile(super()._train_loss, dynamic=False)
        return self._compiled(images, target, visible, mode)

    # --- compile time -------------------------------------------------------------------
    def compile_core(
        self, images: torch.Tensor, target: torch.Tensor, visible: torch.Tensor, mode: str
    ) -> float:
        """The first call of a cold Dynamo cache: capture, AOTAutograd, Inductor, one forward +
        backward; synchronised wall time in seconds (see the module docstring for the caches)."""
        base.check_loss_mode(mode)
        torch._dynamo.reset()
        self._compiled = None
        self.zero_grad()
        self.synchronize()
        before = _counters()
        start = time.perf_counter_ns()
        self.forward_backward(images, target, visible, mode)
        self.synchronize()
        seconds = (time.perf_counter_ns() - start) / 1e9
        self._first_calls[mode] = {"seconds": seconds, "counters": _counter_delta(before, _counters())}
        return seconds

    def compile_info(self) -> dict[str, Any]:
        """Graph breaks, recompiles and cache traffic: of each `compile_core` call, and the
        process's totals so far (Dynamo's counters are process-wide); the cache settings."""
        from torch._functorch import config as functorch_config
        from torch._inductor import config as inductor_config
        from torch._inductor.runtime.cache_dir_utils import cache_dir

        totals = _counters()
        breaks = sum(totals.get("graph_break", {}).values())
        return {
            "compiler": "torch.compile (dynamo + aot_autograd + inductor), dynamic=False",
            "compiled_region": "network forward (train mode) + loss; backward runs the compiled backward",
            "graph_breaks": breaks,
            "graph_break_reasons": dict(totals.get("graph_break", {})),
            "unique_graphs": totals.get("stats", {}).get("unique_graphs", 0),
            "first_calls": dict(self._first_calls),
            "process_counters": totals,
            "fx_graph_cache": bool(inductor_config.fx_graph_cache),
            "autograd_cache": bool(functorch_config.enable_autograd_cache),
            "cache_dir": cache_dir(),
        }

    # --- environment --------------------------------------------------------------------
    def thread_info(self) -> dict[str, Any]:
        from torch._inductor import config as inductor_config

        # cpp.threads -1: Inductor's OpenMP kernels use torch.get_num_threads() at code generation
        return {
            **super().thread_info(),
            "inductor_cpp_threads": inductor_config.cpp.threads,
            "inductor_compile_threads": inductor_config.compile_threads,
        }

    def versions(self) -> dict[str, str]:
        from torch._inductor import config as inductor_config

        info = super().versions()
        info["compile"] = "torch.compile, backend inductor"
        info["inductor_cxx"] = str(inductor_config.cpp.cxx)
        return info

    # --- profiling ----------------------------------------------------------------------
    def profile_core(self, images: Any, target: Any, visible: Any, mode: str, repeats: int) -> dict[str, Any]:
        raise DeepPoseError(
            "the per-layer breakdown is unavailable for pytorch_compile: Inductor fuses the element-wise "
            "work of neighbouring layers into shared kernels, so per-layer times would be invented"
        )
