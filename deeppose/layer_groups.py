"""Group raw profiler events into the network's layers, once for every framework, and check the sum.

A backend's `profile_core` (see `deeppose.backends.base.Backend.profile_core`) returns *raw events*:
one per top-level framework call of the core process, each

    {"repeat": int, "phase": "forward" | "backward", "name": <framework op/function name>,
     "layer": <a group name below, or None>, "time_s": float}

`layer` is set when the framework itself says where the call belongs (PyTorch: a
`record_function` range opened by a module hook, and the autograd sequence number that ties a
backward node to its forward op; Chainer: the link whose forward created the function, and the
same function object in backward). Everything else is grouped here, by these rules:

1. A `layer` given by the backend wins (source "backend").
2. Otherwise the name is classified (`classify`, case-insensitive patterns that cover PyTorch's
   `aten::`/`...Backward0` names and Chainer's function names):
   convolution, linear, relu, pool, lrn, dropout, loss, gradient accumulation, reshape/other.
3. Unlabelled convolution (linear) calls of one repeat and phase are matched to conv1..conv5
   (fc6..fc8) by their order, forward in network order and backward in reverse, but only when
   their count equals the number of such layers; otherwise they go to "other" with a note
   (source "order").
4. Gradient accumulation (PyTorch's AccumulateGrad, which adds a parameter's gradient into
   `.grad`) takes the layer of the event just before it in the same repeat and phase: the autograd
   engine runs it right after the node that produced the gradient (source "previous").
5. ReLU, pooling, LRN, dropout and the loss are one group each; reshapes, transposes and anything
   unrecognised are "other" (source "name").

The *sum rule*: the per-layer times (medians over repeats) must add up to the core-process time
measured without the profiler in the same stage, within `SUM_RULE_TOLERANCE`; the remainder is
reported as overhead, never dropped. Nothing here imports a framework.
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from deeppose import model as spec

PHASES: tuple[str, ...] = ("forward", "backward")
CONV_LAYERS: tuple[str, ...] = tuple(conv.name for conv in spec.CONVS)
FC_LAYERS: tuple[str, ...] = tuple(fc.name for fc in spec.linears())
OTHER = "other"
# Every group a time can land in, in the order tables and figures show them.
GROUPS: tuple[str, ...] = (*CONV_LAYERS, *FC_LAYERS, "relu", "pool", "lrn", "dropout", "loss", OTHER)
LAYER_KINDS = {"conv": CONV_LAYERS, "linear": FC_LAYERS}

# The per-layer medians must add up to the un-profiled core time within this fraction of it. The
# profiler adds a few microseconds per call and the repeats are noisy (2 shared cores), so a
# tighter bound would flag noise; a looser one would hide a missing layer.
SUM_RULE_TOLERANCE = 0.15

# (kind, pattern) in order; the first match wins. Names are matched after stripping PyTorch's
# "autograd::engine::evaluate_function: " prefix.
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern, re.IGNORECASE))
    for kind, pattern in (
        ("grad_accumulate", r"accumulategrad"),
        ("loss", r"maskedmse|mse_loss|mean_squared"),
        ("lrn", r"local_?response|lrn"),
        ("conv", r"conv"),  # aten::conv2d, ConvolutionBackward0, Convolution2DFunction, Convolution2DGradW
        ("linear", r"linear|addmm|^(aten::)?mm$|^mmbackward"),  # aten::linear, AddmmBackward0, LinearFunction
        ("relu", r"relu|clamp_min"),
        ("pool", r"pool"),  # aten::max_pool2d, MaxPool2DWithIndicesBackward0, MaxPooling2D(Grad)
        ("dropout", r"dropout|bernoulli"),
    )
)
_EVALUATE_PREFIX = "autograd::engine::evaluate_function: "


def classify(name: str) -> str | None:
    """The kind of a framework call from its name: one of conv, linear, relu, pool, lrn, dropout,
    loss, grad_accumulate, or None (reshape/other)."""
    bare = name.removeprefix(_EVALUATE_PREFIX).strip()
    for kind, pattern in _PATTERNS:
        if pattern.search(bare):
            return kind
    return None


def _kind_group(kind: str | None) -> str:
    return kind if kind in ("relu", "pool", "lrn", "dropout", "loss") else OTHER


def resolve(events: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Each event with its group in `layer` and how it was found in `layer_source` (see the
    module docstring); plus notes on anything that could not be matched as expected."""
    out = [dict(event) for event in events]
    notes: list[str] = []
    by_run: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for event in out:
        if event["phase"] not in PHASES:
            raise ValueError(
                f"event {event.get('name')!r}: phase must be one of {PHASES}, got {event['phase']!r}"
            )
        by_run[int(event.get("repeat", 0)), event["phase"]].append(event)

    for (repeat, phase), run in sorted(
        by_run.items(), key=lambda item: (item[0][0], PHASES.index(item[0][1]))
    ):
        pending: dict[str, list[dict[str, Any]]] = {"conv": [], "linear": []}
        for event in run:
            given = event.get("layer")
            if given is not None:
                if given not in GROUPS:
                    raise ValueError(
                        f"event {event['name']!r}: unknown layer {given!r}; allowed: {', '.join(GROUPS)}"
                    )
                event["layer_source"] = "backend"
                continue
            kind = classify(event["name"])
            event["kind"] = kind
            if kind in pending:
                pending[kind].append(event)
            elif kind != "grad_accumulate":
                event["layer"], event["layer_source"] = _kind_group(kind), "name"
        for kind, calls in pending.items():
            if not calls:
                continue
            layers = LAYER_KINDS[kind] if phase == "forward" else tuple(reversed(LAYER_KINDS[kind]))
            if len(calls) == len(layers):
                for event, layer in zip(calls, layers):
                    event["layer"], event["layer_source"] = layer, "order"
            else:
                notes.append(
                    f"repeat {repeat} {phase}: {len(calls)} unlabelled {kind} calls for {len(layers)} "
                    f"{kind} layers; counted as '{OTHER}'"
                )
                for event in calls:
                    event["layer"], event["layer_source"] = OTHER, "order"
        previous: str | None = None
        for event in run:  # rule 4, after the others so that `previous` is always resolved
            if event.get("kind") == "grad_accumulate" and event.get("layer") is None:
                event["layer"], event["layer_source"] = previous or OTHER, "previous"
            previous = event["layer"]
    for event in out:
        event.pop("kind", None)
    return out, notes


def layer_samples(events: Iterable[Mapping[str, Any]], repeats: int) -> dict[tuple[str, str], list[float]]:
    """(layer, phase) -> the layer's summed time in each repeat (resolved events)."""
    samples: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0] * repeats)
    for event in events:
        repeat = int(event.get("repeat", 0))
        if not 0 <= repeat < repeats:
            raise ValueError(f"event {event['name']!r}: repeat {repeat} outside 0..{repeats - 1}")
        samples[event["layer"], event["phase"]][repeat] += float(event["time_s"])
    return dict(samples)


def sum_rule(
    core_time_s: float, layers_time_s: float, tolerance: float = SUM_RULE_TOLERANCE
) -> dict[str, Any]:
    """Do the layers add up to the core time? overhead = core - layers (negative when the
    profiled layers took longer than the un-profiled whole); ok when |overhead| / core <= tolerance."""
    if core_time_s <= 0:
        raise ValueError(f"core time must be positive, got {core_time_s}")
    overhead = core_time_s - layers_time_s
    gap = overhead / core_time_s
    return {
        "tolerance": tolerance,
        "core_time_s": core_time_s,
        "layers_time_s": layers_time_s,
        "overhead_s": overhead,
        "relative_gap": gap,
        "ok": bool(abs(gap) <= tolerance),
    }


def _ordered(keys: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    keys = set(keys)
    # conv and fc layers always appear (a zero time is itself a finding); the rest when measured
    keys |= {(layer, phase) for layer in (*CONV_LAYERS, *FC_LAYERS) for phase in PHASES}
    return sorted(keys, key=lambda k: (PHASES.index(k[1]), GROUPS.index(k[0])))


def summarize(
    events: Sequence[Mapping[str, Any]],
    core_samples_s: Sequence[float],
    profiled_core_samples_s: Sequence[float],
    batch_size: int,
    n_joints: int = spec.N_JOINTS,
    tolerance: float = SUM_RULE_TOLERANCE,
) -> dict[str, Any]:
    """Per-layer medians with FLOP rates, overhead and the sum rule, from raw events and the core
    times measured without (`core_samples_s`) and with (`profiled_core_samples_s`) the profiler. No
    share of a peak: the report divides by one ceiling for the whole run (deeppose.report.ceilings)."""
    repeats = len(profiled_core_samples_s)
    if repeats < 1 or not core_samples_s:
        raise ValueError("summarize needs at least one profiled and one un-profiled core time")
    resolved, notes = resolve(events)
    samples = layer_samples(resolved, repeats)
    flops = spec.layer_flops(batch_size, n_joints)
    layers = []
    for layer, phase in _ordered(samples):
        values = samples.get((layer, phase), [0.0] * repeats)
        time_s = statistics.median(values)
        layer_flops = flops.get(layer, {}).get(phase)
        rate = layer_flops / time_s if layer_flops is not None and time_s > 0 else None
        layers.append(
            {
                "layer": layer,
                "phase": phase,
                "time_s": time_s,
                "samples_s": values,
                "flops": layer_flops,
                "flops_per_s": rate,
            }
        )
    core = statistics.median(core_samples_s)
    profiled = statistics.median(profiled_core_samples_s)
    layers_total = sum(row["time_s"] for row in layers)
    rule = sum_rule(core, layers_total, tolerance)
    return {
        "core_time_s": core,
        "profiled_core_time_s": profiled,
        "layers": layers,
        "layers_time_s": layers_total,
        "phase_time_s": {p: sum(r["time_s"] for r in layers if r["phase"] == p) for p in PHASES},
        "overhead_s": rule["overhead_s"],
        # under the profiler: the time no profiled call covers (interpreter, framework bookkeeping)
        "profiled_overhead_s": profiled - layers_total,
        "profiler_slowdown": profiled / core - 1.0,
        "sum_rule": rule,
        "events": resolved,
        "grouping_notes": notes,
    }
