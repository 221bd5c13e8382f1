"""Report section: where one core process spends its time, layer by layer, in each framework.

The study guessed that "the dominant influence on the learning time is the implementation of each
layer such as convolution" without measuring it. The `breakdown` stage measures it: each
framework's own profiler times every top-level call of forward + loss + backward, and
`deeppose.layer_groups` groups the calls into the same layers for every framework. For every
device x breakdown batch size this section shows a stacked bar of each job's forward and backward
time by layer with the unattributed overhead beside it, the sum rule of each job, the layers whose
time differs most between each framework and PyTorch (the reference, as in the study), and achieved
FLOP/s per layer against the peak measured in the same stage. From the numbers it writes whether
the measurements confirm the study's guess, and passes each verdict to the Summary.

Layer colours are Okabe-Ito based (colour-blind safe; conv and fc layers vary in lightness within
one hue); framework colours are the report's own (`deeppose.report.figures.colour`).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from deeppose import layer_groups
from deeppose.grid import NO_BREAKDOWN, Job
from deeppose.report import fmt
from deeppose.report.analysis import REFERENCE
from deeppose.report.figures import colour, new_figure
from deeppose.report.fmt import MISSING, framework_name, join_words
from deeppose.report.load import Loaded
from deeppose.report.markdown import Context, missing_note, show_figure

TOP_ROWS = 8  # rows of the "differ most" table
CONFIRM_SHARE = 0.5  # convolutions must explain at least half of the extra time to confirm

CONV_COLOURS = ("#08306b", "#1f6fb4", "#4f9bd9", "#8cc2ea", "#c3e0f5")  # dark to light blue
FC_COLOURS = ("#7f2704", "#d55e00", "#f4a261")  # dark to light vermillion
DARK = {"conv1", "conv2", "conv3", "fc6", "fc7", "loss"}  # segments labelled in white
GROUP_COLOURS = {
    **dict(zip(layer_groups.CONV_LAYERS, CONV_COLOURS)),
    **dict(zip(layer_groups.FC_LAYERS, FC_COLOURS)),
    "relu": "#009e73",
    "pool": "#cc79a7",
    "lrn": "#56b4e9",
    "dropout": "#f0e442",
    "loss": "#000000",
    "other": "#999999",
}
ELEMENTWISE = ("relu", "pool", "lrn", "dropout", "loss", "other")

# The usable results of one device and batch size, in the grid's order.
Cells = list[tuple[Job, dict[str, Any]]]


# --- the numbers ------------------------------------------------------------------------
def times(result: Mapping[str, Any]) -> dict[tuple[str, str], float]:
    """(layer, phase) -> median time (s)."""
    return {(row["layer"], row["phase"]): float(row["time_s"]) for row in result["layers"]}


def group_time(result: Mapping[str, Any], layers: tuple[str, ...]) -> float:
    return sum(t for (layer, _), t in times(result).items() if layer in layers)


def attribute(reference: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    """Split `other`'s extra core time over `reference` into conv, fc, element-wise layers and
    overhead; the four add up to the extra time exactly (overhead = core - sum of layers)."""
    extra = float(other["core_time_s"]) - float(reference["core_time_s"])
    parts = {
        "conv": group_time(other, layer_groups.CONV_LAYERS) - group_time(reference, layer_groups.CONV_LAYERS),
        "fc": group_time(other, layer_groups.FC_LAYERS) - group_time(reference, layer_groups.FC_LAYERS),
        "elementwise": group_time(other, ELEMENTWISE) - group_time(reference, ELEMENTWISE),
        "overhead": float(other["overhead_s"]) - float(reference["overhead_s"]),
    }
    shares = {key: value / extra for key, value in parts.items()} if extra > 0 else dict.fromkeys(parts)
    ref_t, other_t = times(reference), times(other)
    keys = sorted(set(ref_t) | set(other_t))
    largest = max(keys, key=lambda k: other_t.get(k, 0.0) - ref_t.get(k, 0.0)) if keys else None
    if extra <= 0:
        verdict = "cannot test"
    elif shares["conv"] >= CONFIRM_SHARE:
        verdict = "confirms"
    elif 1.0 - shares["overhead"] >= CONFIRM_SHARE:
        verdict = "partly confirms"
    else:
        verdict = "refutes"
    return {
        "extra_s": extra,
        "parts_s": parts,
        "shares": shares,
        "largest": largest,
        "largest_s": other_t.get(largest, 0.0) - ref_t.get(largest, 0.0) if largest else None,
        "verdict": verdict,
    }


def verdict_sentence(reference: Mapping[str, Any], other: Mapping[str, Any], attribution: Mapping[str, Any]) -> str:
    """One paragraph, written from the numbers (`attribution` is `attribute(reference, other)`),
    on the study's conclusion for this machine."""
    a = attribution
    ref_name, other_name = framework_name(reference["framework"]), framework_name(other["framework"])
    where = f"On {other['device']} at batch {other['batch_size']} ({other['loss']} loss)"
    totals = (
        f"{other_name}'s core process took {fmt.seconds(other['core_time_s'])} against {ref_name}'s "
        f"{fmt.seconds(reference['core_time_s'])} ({fmt.ratio(other['core_time_s'] / reference['core_time_s'])}x)"
    )
    if a["verdict"] == "cannot test":
        return (
            f"{where}, {totals}: {other_name} is not slower, so there is no extra time to attribute and "
            "the study's conclusion (that layer implementations such as convolution explain the gap) "
            "cannot be tested on this machine."
        )
    s = a["shares"]
    layer, phase = a["largest"]
    text = (
        f"{where}, {totals}. Convolutions account for {fmt.percent(s['conv'])} of {other_name}'s extra "
        f"time over {ref_name} ({fmt.seconds(a['extra_s'])}), fully-connected layers for "
        f"{fmt.percent(s['fc'])}, element-wise layers (ReLU, pooling, dropout, loss, reshapes) for "
        f"{fmt.percent(s['elementwise'])} and unattributed overhead for {fmt.percent(s['overhead'])}; the "
        f"largest single difference is {layer} {phase} ({fmt.seconds(a['largest_s'], signed=True)}). "
    )
    if a["verdict"] == "confirms":
        text += (
            "This confirms the study's conclusion for this machine: the implementation of the layers, "
            "convolution above all, dominates the difference in learning time."
        )
    elif a["verdict"] == "partly confirms":
        text += (
            "This partly confirms the study's conclusion: the layers' implementations explain most of "
            "the difference, but convolution alone does not."
        )
    else:
        text += (
            "This refutes the study's conclusion for this machine: most of the difference lies outside "
            "the layers, in framework overhead."
        )
    failed = [r["framework"] for r in (reference, other) if not r["sum_rule"].get("ok", False)]
    if failed:
        text += (
            f" (The layers of {join_words([framework_name(f) for f in failed])} do not add up to "
            "the measured core time within the stated tolerance, so this attribution is uncertain.)"
        )
    return text


def common_peak(cells: Cells) -> float | None:
    """The best peak any job of these cells measured: one ceiling for every framework, so that
    fractions compare across frameworks (each job's own, noisier, peak stays in its JSON)."""
    peaks = [float(r["peak_flops_per_s"]) for _, r in cells if r.get("peak_flops_per_s")]
    return max(peaks) if peaks else None


# --- figures ----------------------------------------------------------------------------
def _bar_label(job: Job, losses: list[str]) -> str:
    name = framework_name(job.framework)
    return f"{name} · {job.loss}" if len(losses) > 1 else name


def draw_stacked(cells: Cells, title: str, losses: list[str]) -> Figure:
    """Horizontal bars, three per job: forward and backward stacked by layer, then overhead."""
    rows: list[tuple[str, dict[str, float] | float]] = []
    for job, result in cells:
        t = times(result)
        for phase in layer_groups.PHASES:
            by_group = {g: t.get((g, phase), 0.0) for g in layer_groups.GROUPS}
            rows.append((f"{_bar_label(job, losses)} — {phase}", by_group))
        rows.append((f"{_bar_label(job, losses)} — overhead", float(result["overhead_s"])))
    figure = new_figure(9.0, 1.4 + 0.32 * len(rows))  # inches: fixed margins plus one band per row
    axes = figure.add_subplot()
    span = max((sum(v.values()) if isinstance(v, dict) else abs(v)) for _, v in rows) or 1.0
    used: set[str] = set()
    for index, (_, value) in enumerate(rows):
        y = len(rows) - 1 - index
        if isinstance(value, dict):
            left = 0.0
            for group in layer_groups.GROUPS:
                width = value[group]
                if width <= 0:
                    continue
                used.add(group)
                axes.barh(y, width, left=left, height=0.72, color=GROUP_COLOURS[group], edgecolor="white",
                          linewidth=0.5)
                if width >= 0.06 * span:
                    axes.text(left + width / 2, y, group, ha="center", va="center", fontsize=7,
                              color="white" if group in DARK else "black")
                left += width
            axes.text(left + 0.01 * span, y, fmt.seconds(left), ha="left", va="center", fontsize=7)
        else:
            axes.barh(y, value, height=0.72, color="white", edgecolor="#555555", hatch="///", linewidth=0.8)
            axes.text(max(value, 0.0) + 0.01 * span, y, fmt.seconds(value, signed=True), ha="left", va="center",
                      fontsize=7)
    axes.axvline(0.0, color="black", linewidth=0.8)
    axes.set_xlim(min(0.0, *(v for _, v in rows if not isinstance(v, dict))) * 1.1 - 0.02 * span, span * 1.15)
    axes.set_ylim(-0.6, len(rows) - 0.4)
    axes.set_yticks(range(len(rows)))
    axes.set_yticklabels([label for label, _ in reversed(rows)], fontsize=8)
    axes.set_xlabel("time per core process (s): median over repeats")
    axes.set_title(title, fontsize=10)
    axes.grid(axis="y", visible=False)
    axes.set_axisbelow(True)
    handles = [Patch(facecolor=GROUP_COLOURS[g], edgecolor="white", label=g) for g in layer_groups.GROUPS if g in used]
    handles.append(Patch(facecolor="white", edgecolor="#555555", hatch="///", label="overhead (core − Σ layers)"))
    figure.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)
    return figure


def draw_peak(cells: Cells, title: str, frameworks: list[str]) -> Figure:
    """Achieved FLOP/s of each conv/fc layer per framework, with the measured peak as a line."""
    layers = (*layer_groups.CONV_LAYERS, *layer_groups.FC_LAYERS)
    peak = common_peak(cells)
    figure = new_figure(9.0, 3.8)
    panels = figure.subplots(1, len(layer_groups.PHASES), sharey=True, squeeze=False)[0]
    width = 0.8 / max(len(cells), 1)
    x = np.arange(len(layers))
    for axes, phase in zip(panels, layer_groups.PHASES):
        for index, (job, result) in enumerate(cells):
            rows = {(r["layer"], r["phase"]): r for r in result["layers"]}
            values = [(rows.get((layer, phase), {}).get("flops_per_s") or 0.0) / 1e9 for layer in layers]
            axes.bar(x + (index - (len(cells) - 1) / 2) * width, values, width=width * 0.95,
                     color=colour(job.framework, frameworks), label=framework_name(job.framework))
        if peak:
            axes.axhline(peak / 1e9, color="black", linewidth=0.8, linestyle="--", label="measured peak")
        axes.set_xticks(x)
        axes.set_xticklabels(layers, fontsize=8)
        axes.set_title(phase, fontsize=9)
        axes.set_xlabel("layer")
        axes.grid(axis="x", visible=False)
        axes.set_axisbelow(True)
    panels[0].set_ylabel("achieved GFLOP/s")
    panels[0].set_ylim(bottom=0.0)
    panels[-1].legend(fontsize=8, frameon=False)
    figure.suptitle(title, fontsize=10)
    return figure


# --- tables -----------------------------------------------------------------------------
def sum_rule_table(jobs: dict[Job, Loaded]) -> str:
    """Core time, profiled time, Σ layers and overhead of every job of one device x batch size."""
    rows = []
    for job, loaded in jobs.items():
        if not loaded.ok:
            rows.append([framework_name(job.framework), job.loss, "not run", *[MISSING] * 5])
            continue
        r, rule = loaded.data, loaded.data["sum_rule"]
        met = "yes" if rule.get("ok") else "NO"
        rows.append([
            framework_name(job.framework), job.loss, fmt.seconds(r["core_time_s"]),
            fmt.seconds(r["profiled_core_time_s"]), fmt.seconds(r["layers_time_s"]),
            fmt.seconds(r["overhead_s"], signed=True), fmt.percent(rule.get("relative_gap")),
            f"{met} (±{fmt.percent(rule.get('tolerance'))})",
        ])
    return fmt.table(
        ["Framework", "Loss", "Core time", "Profiled core", "Σ layers", "Overhead", "Gap / core", "Sum rule met"],
        rows, right=(2, 3, 4, 5, 6),
    )


def differ_table(reference: Mapping[str, Any], other: Mapping[str, Any]) -> str:
    """The TOP_ROWS (layer, phase) pairs whose time differs most, then overhead and the total."""
    ref_t, other_t = times(reference), times(other)
    extra = float(other["core_time_s"]) - float(reference["core_time_s"])
    # ties in name order: a set's order varies with Python's hash seed, the report's bytes must not
    keys = sorted(set(ref_t) | set(other_t), key=lambda k: (-abs(other_t.get(k, 0.0) - ref_t.get(k, 0.0)), k))
    ref_name, other_name = framework_name(reference["framework"]), framework_name(other["framework"])
    rows = []
    for layer, phase in keys[:TOP_ROWS]:
        a, b = ref_t.get((layer, phase), 0.0), other_t.get((layer, phase), 0.0)
        rows.append([
            layer, phase, fmt.seconds(a), fmt.seconds(b), fmt.ratio(b / a) if a > 0 else MISSING,
            fmt.seconds(b - a, signed=True), fmt.percent((b - a) / extra) if extra > 0 else MISSING,
        ])
    overhead = float(other["overhead_s"]) - float(reference["overhead_s"])
    rows.append([
        "overhead", "both", fmt.seconds(reference["overhead_s"]), fmt.seconds(other["overhead_s"]), MISSING,
        fmt.seconds(overhead, signed=True), fmt.percent(overhead / extra) if extra > 0 else MISSING,
    ])
    rows.append([
        "core process", "both", fmt.seconds(reference["core_time_s"]), fmt.seconds(other["core_time_s"]),
        fmt.ratio(other["core_time_s"] / reference["core_time_s"]), fmt.seconds(extra, signed=True),
        fmt.percent(1.0) if extra > 0 else MISSING,
    ])
    return fmt.table(
        ["Layer", "Phase", ref_name, other_name, f"{other_name}/{ref_name}", "Difference", "Share of extra time"],
        rows, right=(2, 3, 4, 5, 6),
    )


def flops_table(cells: Cells) -> str:
    """GFLOP of each conv/fc layer, and each framework's FLOP/s (% of `common_peak`)."""
    layers = (*layer_groups.CONV_LAYERS, *layer_groups.FC_LAYERS)
    peak = common_peak(cells)
    headers = ["Layer", "Phase", "GFLOP"] + [framework_name(job.framework) for job, _ in cells]
    rows = []
    for phase in layer_groups.PHASES:
        for layer in layers:
            found = [
                next((r for r in result["layers"] if r["layer"] == layer and r["phase"] == phase), {})
                for _, result in cells
            ]
            work = found[0].get("flops") if found else None
            row = [layer, phase, fmt.sig(work / 1e9) if work else MISSING]
            for record in found:
                rate = record.get("flops_per_s")
                row.append(f"{fmt.flops(rate)} ({fmt.percent(rate / peak if peak else None)})" if rate else MISSING)
            rows.append(row)
    return fmt.table(headers, rows, right=tuple(range(2, len(headers))))


def _peak_line(cells: Cells) -> str:
    peak = common_peak(cells)
    parts = []
    for job, r in cells:
        record = r.get("peak") or {}
        rates = record.get("rates_flops_per_s") or {}
        detail = ", ".join(f"{name} {fmt.flops(rate)}" for name, rate in rates.items() if rate)
        parts.append(f"{framework_name(job.framework)}'s stage measured {detail or MISSING}")
    text = (
        f"Peak: {fmt.flops(peak)}, the best fp32 rate that numpy/torch matrix products and oneDNN/cuDNN "
        f"convolutions reached in these stages ({'; '.join(parts)})."
    )
    over = sorted({
        f"{framework_name(job.framework)} {row['layer']} {row['phase']}"
        for job, r in cells for row in r["layers"] if peak and (row.get("flops_per_s") or 0) > peak
    })
    if over:
        text += (
            f" Above 100 %: {join_words(over)}: the peak is the best rate a standard kernel reached "
            "in the same stage, not a hard ceiling."
        )
    return text


# --- the section ------------------------------------------------------------------------
BREAKDOWN_METHOD = f"""\
The study concluded that "the dominant influence on the learning time is the implementation of
each layer such as convolution" without timing the layers. Here each framework's own profiler
(torch.profiler; Chainer's function and link hooks) timed every top-level call of one core process
(forward + loss + backward), and `deeppose.layer_groups` grouped the calls into the same layers
for every framework (median over repeats). The layers must add up to the core time measured
without the profiler in the same stage, within the stated tolerance (the *sum rule*); the
remainder is shown as overhead (interpreter and framework bookkeeping between calls, and noise).
Each verdict on the study's conclusion follows one rule: it *confirms* when convolutions explain
at least {fmt.percent(CONFIRM_SHARE)} of a framework's extra time over {framework_name(REFERENCE)},
*partly confirms* when the layers together (not the overhead) do, and *refutes* otherwise."""


def _figure_names(device: str, batch: int) -> tuple[str, str]:
    """(stacked bars, FLOP/s per layer) file names of one device x batch size."""
    return f"breakdown_{device}_b{batch}.png", f"breakdown_peak_{device}_b{batch}.png"


def _alts(device: str, batch: int) -> tuple[str, str]:
    return (f"Per-layer time of one core process, {device}, batch {batch}",
            f"Achieved FLOP/s per layer, {device}, batch {batch}")


def render_breakdown(ctx: Context) -> str:
    """The section's body. Every device x breakdown batch size writes its two figures, placeholders
    when nothing ran, so that `figure_paths` can list them before any result exists."""
    results = ctx.results
    exps = sorted(results.params.raw["breakdown"]["batch_exponents"])
    parts = [BREAKDOWN_METHOD]
    parts += [f"No breakdown for {framework_name(fw)}: {NO_BREAKDOWN[fw]}; its core process is timed whole."
              for fw in results.frameworks if fw in NO_BREAKDOWN]
    if not exps:
        parts.append("Not run: `breakdown.batch_exponents` is empty in this run's parameters.")
        return "\n\n".join(parts)
    for device in results.devices:
        on_device = {job: loaded for job, loaded in results.breakdown.items() if job.device == device}
        if any(loaded.ok for loaded in on_device.values()):
            for exp in exps:
                jobs = {job: loaded for job, loaded in on_device.items() if job.batch_exp == exp}
                parts += _render_batch(ctx, device, exp, jobs)
            continue
        parts += [f"### {device}", missing_note(results.breakdown, device, "per-layer breakdown")]
        for exp in exps:
            for name, alt in zip(_figure_names(device, 2**exp), _alts(device, 2**exp)):
                show_figure(ctx, name, alt, None, f"no per-layer breakdown result on {device}")
        ctx.conclude(device, f"No per-layer breakdown on {device}: the study's conclusion that layer "
                             "implementations explain the difference is not tested there.")
    return "\n\n".join(p for p in parts if p)


def _render_batch(ctx: Context, device: str, exp: int, jobs: dict[Job, Loaded]) -> list[str]:
    """Figures, tables and verdicts of one device x batch size (`jobs` holds its breakdown jobs)."""
    results, batch = ctx.results, 2**exp
    stacked_name, peak_name = _figure_names(device, batch)
    stacked_alt, peak_alt = _alts(device, batch)
    cells = [(job, loaded.data) for job, loaded in jobs.items() if loaded.ok]
    parts = [f"### {device}, batch {batch}"]
    if not cells:
        parts.append(missing_note(jobs, device, f"per-layer breakdown (batch {batch})"))
        show_figure(ctx, stacked_name, stacked_alt, None, f"no per-layer breakdown result on {device} at batch {batch}")
        show_figure(ctx, peak_name, peak_alt, None, f"no per-layer breakdown result on {device} at batch {batch}")
        return parts
    title = f"Time per layer of one core process ({device}, batch {batch})"
    parts.append(show_figure(ctx, stacked_name, stacked_alt, partial(draw_stacked, cells, title, results.loss_modes)))
    parts += [sum_rule_table(jobs), missing_note(jobs, device, "per-layer breakdown")]
    for loss in results.loss_modes:
        for framework in ctx.analysis.compared_frameworks:
            parts += _comparison(ctx, jobs, Job(REFERENCE, loss, device, exp), Job(framework, loss, device, exp))

    rate_loss = next(job.loss for job, _ in cells)  # the layers' work does not depend on the loss mode
    rate_cells = [(job, r) for job, r in cells if job.loss == rate_loss]
    title = f"Achieved FLOP/s per layer against the measured peak ({device}, batch {batch}, {rate_loss} loss)"
    parts.append(show_figure(ctx, peak_name, peak_alt, partial(draw_peak, rate_cells, title, results.frameworks)))
    parts += [
        f"Achieved FLOP/s per layer ({rate_loss} loss; the layers do not depend on the loss mode), with the "
        "fraction of the peak measured in the same stage:",
        flops_table(rate_cells),
        _peak_line(rate_cells),
    ]
    return parts


def _comparison(ctx: Context, jobs: dict[Job, Loaded], reference_job: Job, other_job: Job) -> list[str]:
    """`other_job` against `reference_job` (PyTorch, same cell): table and verdict; the verdict also
    goes to the Summary, and the core-time ratio and conv share to summary.json."""
    framework, device, loss, batch = other_job.framework, other_job.device, other_job.loss, 2**other_job.batch_exp
    reference, other = jobs[reference_job], jobs[other_job]
    if not (reference.ok and other.ok):
        absent = [f"{framework_name(job.framework)} {loss}" for job in (reference_job, other_job) if not jobs[job].ok]
        sentence = (f"Per-layer breakdown on {device} at batch {batch}: {framework_name(framework)} is not "
                    f"compared with {framework_name(REFERENCE)} ({loss} loss), {join_words(absent)} not run.")
        ctx.conclude(device, sentence)
        return [sentence]
    attribution = attribute(reference.data, other.data)
    sentence = verdict_sentence(reference.data, other.data, attribution)
    ctx.conclude(device, sentence)
    ratio = other.data["core_time_s"] / reference.data["core_time_s"]
    ctx.headline(device, "breakdown", f"{framework}_over_{REFERENCE}_core", loss, f"b{batch}", value=ratio)
    ctx.headline(device, "breakdown", "conv_share_of_extra", framework, loss, f"b{batch}",
                 value=attribution["shares"]["conv"])
    return [
        f"Layers that differ most, {framework_name(framework)} against {framework_name(REFERENCE)} ({loss} loss):",
        differ_table(reference.data, other.data),
        sentence,
    ]
