"""The breakdown's figures: time stacked by layer, each layer's achieved rate, and the roofline."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from deeppose import layer_groups
from deeppose.fmt import flops
from deeppose.fmt import framework_name as name
from deeppose.report import plot_style as style
from deeppose.report.analysis import Findings
from deeppose.report.breakdown import BreakdownBatch
from deeppose.report.device import Device
from deeppose.report.plot_style import plotted


def stacked(f: Findings, d: Device, b: BreakdownBatch) -> Figure:
    """Per job, forward and backward stacked by layer in milliseconds, then the overhead."""
    rows = []
    for j in b.jobs:
        label = f"{name(j.framework)} · {j.loss}" if len(f.loss_modes) > 1 else name(j.framework)
        for phase in layer_groups.PHASES:
            rows.append(
                (f"{label} — {phase}", {x.layer: x.time_s * 1e3 for x in j.layers if x.phase == phase})
            )
        rows.append((f"{label} — overhead", j.overhead_s * 1e3))
    figure = style.canvas(10, 1.4 + 0.32 * len(rows))
    ax = figure.add_subplot()
    span = max(sum(v.values()) if isinstance(v, dict) else abs(v) for _, v in rows) or 1.0
    used = []
    for y, (_, value) in zip(range(len(rows) - 1, -1, -1), rows):
        if not isinstance(value, dict):
            ax.barh(y, value, height=0.72, color="white", edgecolor="#555555", hatch="///", linewidth=0.8)
            ax.text(max(value, 0) + 0.01 * span, y, f"{value:+.0f} ms", va="center", fontsize=7)
            continue
        left = 0.0
        for group in layer_groups.GROUPS:
            width = value.get(group, 0.0)
            if width <= 0:
                continue
            used += [group] if group not in used else []
            colour, text = style.LAYER_COLOURS[group], "white" if group in style.WHITE_TEXT else "black"
            ax.barh(y, width, left=left, height=0.72, color=colour, edgecolor="white", linewidth=0.5)
            if width >= 0.05 * span:
                ax.text(left + width / 2, y, group, ha="center", va="center", fontsize=7, color=text)
            left += width
        ax.text(left + 0.01 * span, y, f"{left:.0f} ms", va="center", fontsize=7)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlim(min([0.0] + [v for _, v in rows if not isinstance(v, dict)]) * 1.1 - 0.02 * span, span * 1.15)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([label for label, _ in reversed(rows)], fontsize=8)
    ax.set_xlabel("time per core process (ms, median over repeats)")
    ax.set_title(f"Time per layer of one core process ({d.device}, batch {b.batch_size})")
    ax.grid(axis="y", visible=False)
    handles = [Patch(facecolor=style.LAYER_COLOURS[g], label=g) for g in layer_groups.GROUPS if g in used]
    handles.append(
        Patch(facecolor="white", edgecolor="#555555", hatch="///", label="overhead (core − Σ layers)")
    )
    figure.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)
    return figure


def layer_rates(f: Findings, d: Device, b: BreakdownBatch) -> Figure:
    """Achieved FLOP/s of each conv/fc layer per framework, against the compute ceiling."""
    layers = (*layer_groups.CONV_LAYERS, *layer_groups.FC_LAYERS)
    jobs = [j for j in b.jobs if j.loss == b.rate_loss]
    figure = style.canvas(10, 4.0)
    panels = figure.subplots(1, len(layer_groups.PHASES), sharey=True)
    width, x = 0.8 / len(jobs), np.arange(len(layers))
    for ax, phase in zip(panels, layer_groups.PHASES):
        for i, j in enumerate(jobs):
            rates = {r.layer: (r.flops_per_s or 0) / 1e9 for r in j.layers if r.phase == phase}
            heights = [rates.get(layer, 0.0) for layer in layers]
            ax.bar(
                x + (i - (len(jobs) - 1) / 2) * width,
                heights,
                width=width * 0.95,
                color=style.colour(j.framework, f.frameworks),
                label=name(j.framework),
            )
        style.peak_line(ax, f.setup.peak)
        ax.set_xticks(x, layers, fontsize=8)
        ax.set_title(phase)
        ax.grid(axis="x", visible=False)
    panels[0].set_ylabel("achieved GFLOP/s")
    figure.suptitle(f"Achieved FLOP/s per layer ({d.device}, batch {b.batch_size}, {b.rate_loss} loss)")
    style.outside_legend(figure, panels[0])
    return figure


def roofline_points(b: BreakdownBatch) -> list[tuple[str, str, float, float, str]]:
    """(framework, phase, intensity, GFLOP/s, layer) of every rated conv/fc layer-phase, as plotted."""
    intensity = {(p.layer, p.phase): p.intensity for p in b.roofline}
    return [
        (
            j.framework,
            x.phase,
            plotted(intensity[x.layer, x.phase]),
            plotted(x.flops_per_s / 1e9),
            x.layer,
        )
        for j in b.jobs
        if j.loss == b.rate_loss
        for x in j.layers
        if (x.layer, x.phase) in intensity and x.flops_per_s
    ]


def roofline_figure(f: Findings, d: Device, b: BreakdownBatch) -> Figure:
    """Every coordinate is `plotted`, the limits too: matplotlib's own would come from numpy's logarithms."""
    peak, bandwidth = f.setup.peak.ceiling, f.setup.peak.bandwidth
    figure = style.canvas(10, 5.2)
    ax = figure.add_subplot()
    points = roofline_points(b)
    for phase, marker in zip(layer_groups.PHASES, ("o", "^")):
        for fw in dict.fromkeys(p[0] for p in points):
            mine = [p for p in points if p[:2] == (fw, phase)]
            colour, label = style.colour(fw, f.frameworks), f"{name(fw)}, {phase}"
            xs, ys = [p[2] for p in mine], [p[3] for p in mine]
            ax.scatter(xs, ys, marker=marker, s=36, color=colour, label=label, zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    style.log_axis(ax.yaxis, lambda v: f"{v:g}")
    # room below the slowest point for the layer names
    ax.set_ylim(
        plotted(min(p[3] for p in points) / 3),
        plotted(max([(peak or 0) / 1e9] + [p[3] for p in points]) * 1.6),
    )
    low, high = min(p[2] for p in points) / 2, max(p[2] for p in points) * 2
    ridge = f.setup.peak.ridge
    if ridge:
        low = min(low, ridge / 4)  # room left of the ridge, so the bandwidth roof reads as a slope
    low, high = plotted(low), plotted(high)
    # the layer names along the bottom, at their forward intensity, in three rows where intensities crowd;
    # a faint line leads up to the layer's points (labels beside the points covered other points)
    forward = sorted({(x, layer) for _, phase, x, _, layer in points if phase == "forward"})
    for k, (x, layer) in enumerate(forward):
        ax.axvline(x, color="0.75", linewidth=0.6, linestyle=":", zorder=1)
        box = {"facecolor": "white", "edgecolor": "none", "pad": 0.5}
        y, below = 0.02 + 0.045 * (k % 3), ax.get_xaxis_transform()
        ax.text(x, y, layer, transform=below, fontsize=8, ha="center", color="0.2", bbox=box)
    style.peak_line(ax, f.setup.peak, right=False)
    if bandwidth:
        # a straight line on log-log axes: its two ends, no sampled curve
        end = plotted(min(high, ridge)) if ridge else high
        bound = " (lower bound)" if f.setup.peak.bandwidth_lower_bound else ""
        label = f"memory bandwidth ceiling{bound}, {flops(bandwidth, 'B/s')}"  # in the legend, off the points
        ys = [plotted(bandwidth * low / 1e9), plotted(bandwidth * end / 1e9)]
        ax.plot([low, end], ys, color="black", linewidth=1.1, linestyle="-.", label=label)
    else:
        unmeasured = "memory bandwidth not measured by this run: no bandwidth ceiling"
        ax.text(0.99, 0.02, unmeasured, transform=ax.transAxes, ha="right", fontsize=8, color="0.3")
    ax.set_xlim(low, high)
    ax.set_xlabel("arithmetic intensity (FLOP per byte moved, fp32, log scale)")
    ax.set_ylabel("achieved GFLOP/s (log scale)")
    ax.set_title(f"Roofline of the conv and fc layers ({d.device}, batch {b.batch_size}, {b.rate_loss} loss)")
    style.outside_legend(figure, ax)
    return figure
