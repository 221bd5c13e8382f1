"""The report's figures, functions of `Findings`, drawn with matplotlib's Agg canvas (no pyplot) as PNGs
whose bytes depend only on the data (fixed rcParams, no date metadata).

Colour tells the framework apart (Okabe-Ito, safe for colour-blind readers), line style and marker
the loss mode; legends sit outside the data and reference lines carry their value.

The same findings give the same bytes on any CPU: computed coordinates (the roofline's, the ceiling
lines) are rounded to PLOTTED_DIGITS significant digits (`plotted`), far below a pixel, and drawn
without transcendental functions of numpy's, whose last bits depend on the CPU's vector width
(numpy dispatches log and power to AVX-512 code where the CPU has it).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import partial

import matplotlib
import matplotlib.style
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator

from deeppose import layer_groups
from deeppose.fmt import flops
from deeppose.fmt import framework_name as name
from deeppose.grid import REFERENCE
from deeppose.report.analysis import Findings
from deeppose.report.breakdown import BreakdownBatch
from deeppose.report.ceilings import Peak
from deeppose.report.device import Device
from deeppose.report.training import Curve

OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
MODES = {"autograd": ("-", "o"), "explicit": ("--", "s")}  # (line style, marker)
LAYER_COLOURS = {
    "conv1": "#08306b",
    "conv2": "#2171b5",
    "conv3": "#6baed6",
    "conv4": "#41ab5d",
    "conv5": "#a1d99b",
    "fc6": "#7f2704",
    "fc7": "#d55e00",
    "fc8": "#fdae6b",
    "relu": "#6a51a3",
    "pool": "#cc79a7",
    "lrn": "#56b4e9",
    "dropout": "#f0e442",
    "loss": "#000000",
    "other": "#999999",
}
PLOTTED_DIGITS = 4  # 1e-4 relative: a hundredth of a pixel on a log axis of a few decades
WHITE_TEXT = {"conv1", "conv2", "fc6", "fc7", "relu", "loss"}
RC = {
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "savefig.facecolor": "white",
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.titlesize": 11,
    "legend.fontsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.35,
    "grid.linestyle": ":",
    "lines.linewidth": 1.6,
    "errorbar.capsize": 3,
}


def plotted(x: float) -> float:
    """`x` to PLOTTED_DIGITS significant digits: a coordinate that does not depend on the last bits."""
    return float(f"{x:.{PLOTTED_DIGITS}g}")


def colour(framework: str, frameworks: tuple[str, ...]) -> str:
    return OKABE_ITO[frameworks.index(framework) % len(OKABE_ITO)]


def png(draw: Callable[[], Figure]) -> bytes:
    """One figure rendered as PNG; byte-identical for identical data."""
    with matplotlib.style.context("default"), matplotlib.rc_context(RC):
        figure = draw()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _log_axis(axis, unit: Callable[[float], str]) -> None:
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda value, _: unit(value)))


def tick_seconds(value: float) -> str:
    """A round tick with a unit: 50 ms, 2 s, 5000 s."""
    scale, unit = next(((s, u) for s, u in ((1.0, "s"), (1e-3, "ms")) if value >= s * 0.9999), (1e-6, "µs"))
    return f"{value / scale:.6g} {unit}"


def _batch_axis(ax, sizes: tuple[int, ...]) -> None:
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(sizes))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(b) for b in sizes])
    ax.set_xlabel("batch size (images, log scale)")


def _outside_legend(figure: Figure, ax) -> None:
    figure.legend(*ax.get_legend_handles_labels(), loc="outside right upper", frameon=False)


def learning_curves(f: Findings, d: Device, curves: dict[tuple[str, str, str], Curve]) -> Figure:
    """Every run on one elapsed-time axis: the framework gap is the horizontal distance between curves."""
    figure = _figure(10, 4.6)
    ax = figure.add_subplot()
    for r in d.training:
        curve = curves.get((d.device, r.framework, r.loss))
        if curve is None:
            continue
        c, (line, marker) = colour(r.framework, f.frameworks), MODES.get(r.loss, (":", "^"))
        ax.plot(curve.elapsed_s, curve.loss, color=c, linewidth=0.6, alpha=0.22)
        ax.plot(curve.elapsed_s, curve.smoothed, color=c, linestyle=line)
        ax.plot(
            curve.eval_s,
            curve.eval_loss,
            linestyle="none",
            marker=marker,
            markersize=8,
            markerfacecolor="white",
            markeredgecolor=c,
            markeredgewidth=1.8,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    _log_axis(ax.xaxis, tick_seconds)
    ax.set_xlabel("elapsed training time (log scale; evaluations excluded)")
    ax.set_ylabel("loss (masked MSE of coordinates / 227, log scale)")
    ax.set_title(f"Training loss against training time on {d.device} (faint: every iteration)")
    # one entry per framework (colour) and per loss mode (line and marker), not one per run and series
    handles = [
        Line2D([], [], color=colour(fw, f.frameworks), label=name(fw))
        for fw in dict.fromkeys(r.framework for r in d.training)
    ]
    for mode in dict.fromkeys(r.loss for r in d.training):
        line, marker = MODES.get(mode, (":", "^"))
        handles += [
            Line2D([], [], color="0.3", linestyle=line, label=f"{mode}: training loss, smoothed"),
            Line2D(
                [],
                [],
                color="0.3",
                linestyle="none",
                marker=marker,
                markerfacecolor="white",
                label=f"{mode}: test loss at an evaluation",
            ),
        ]
    figure.legend(handles=handles, loc="outside right upper", frameon=False)
    return figure


def core_times(f: Findings, d: Device) -> Figure:
    """Left: core-process time with its interval from the blocks. Right: ratio to PyTorch, paired by round."""
    figure = _figure(12, 4.6)
    left, right = figure.subplots(1, 2)
    series = list(dict.fromkeys((c.framework, c.loss) for c in d.cells))
    for i, (fw, loss) in enumerate(series):
        cells = [c for c in d.cells if (c.framework, c.loss) == (fw, loss) and c.time.estimate is not None]
        shift = 2 ** (0.04 * (i - (len(series) - 1) / 2))  # keeps the error bars apart
        est = np.array([c.time.estimate for c in cells])
        low = np.array([c.time.low or c.time.estimate for c in cells])
        high = np.array([c.time.high or c.time.estimate for c in cells])
        line, marker = MODES.get(loss, (":", "^"))
        left.errorbar(
            [c.batch_size * shift for c in cells],
            est,
            yerr=[est - low, high - est],
            color=colour(fw, f.frameworks),
            linestyle=line,
            marker=marker,
            markersize=5,
            label=f"{name(fw)}, {loss}",
        )
    left.set_yscale("log")
    _log_axis(left.yaxis, tick_seconds)
    left.set_ylabel("forward + loss + backward (log scale)")
    left.set_title("Core-process time (median of blocks, 95 % CI)")
    for a, b in dict.fromkeys((r.a, r.b) for r in d.ratios):
        fw, loss = a.split("/")
        if b != f"{REFERENCE}/{loss}":
            continue
        points = [(r.batch_size, r.ratio) for r in d.ratios if (r.a, r.b) == (a, b) and r.ratio.estimate]
        est = np.array([i.estimate for _, i in points])
        err = [
            est - [i.low or i.estimate for _, i in points],
            [i.high or i.estimate for _, i in points] - est,
        ]
        line, marker = MODES.get(loss, (":", "^"))
        right.errorbar(
            [s for s, _ in points],
            est,
            yerr=err,
            color=colour(fw, f.frameworks),
            linestyle=line,
            marker=marker,
            markersize=5,
        )
    right.axhline(1.0, color="0.4", linewidth=1, linestyle=":")
    right.set_ylabel("time ratio to PyTorch (90 % CI, paired by round)")
    right.set_title("Ratio to PyTorch (above 1: slower)")
    for ax in (left, right):
        _batch_axis(ax, f.batch_sizes)
    _outside_legend(figure, left)
    return figure


def _per_batch(f: Findings, d: Device, value: Callable, ylabel: str, title: str) -> Figure:
    figure = _figure(8.5, 4.4)
    ax = figure.add_subplot()
    for fw, loss in dict.fromkeys((c.framework, c.loss) for c in d.cells):
        points = [
            (c.batch_size, v) for c in d.cells if (c.framework, c.loss) == (fw, loss) and (v := value(c))
        ]
        line, marker = MODES.get(loss, (":", "^"))
        if points:
            ax.plot(
                *zip(*points),
                color=colour(fw, f.frameworks),
                linestyle=line,
                marker=marker,
                markersize=5,
                label=f"{name(fw)}, {loss}",
            )
    _batch_axis(ax, f.batch_sizes)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _outside_legend(figure, ax)
    return figure


def _peak_line(ax, peak: Peak, right: bool = True) -> None:
    """The compute ceiling as a dashed line, its value written on it where no data lie."""
    if peak.ceiling:
        y = plotted(peak.ceiling / 1e9)
        ax.axhline(y, color="black", linewidth=1.1, linestyle="--")
        ax.annotate(
            f"ceiling{' (lower bound)' if peak.lower_bound else ''}: {flops(peak.ceiling)}",
            (0.99 if right else 0.01, y),
            fontsize=8,
            xycoords=("axes fraction", "data"),
            xytext=(0, 3),
            textcoords="offset points",
            ha="right" if right else "left",
        )


def memory(f: Findings, d: Device) -> Figure:
    figure = _per_batch(
        f,
        d,
        lambda c: c.memory_bytes and c.memory_bytes / 2**20,
        "peak memory above set-up (MiB, log scale)",
        f"Memory of one core process on {d.device} (median of blocks)",
    )
    figure.axes[0].set_yscale("log")
    _log_axis(figure.axes[0].yaxis, lambda v: f"{v:g}")
    return figure


def achieved(f: Findings, d: Device) -> Figure:
    figure = _per_batch(
        f,
        d,
        lambda c: c.flops_per_s and c.flops_per_s / 1e9,
        "achieved GFLOP/s (forward + backward)",
        f"Achieved throughput of the core process on {d.device}",
    )
    ax, peak = figure.axes[0], f.setup.peak.ceiling
    _peak_line(ax, f.setup.peak)
    ax.set_ylim(0, max([peak or 0] + [c.flops_per_s or 0 for c in d.cells]) / 1e9 * 1.15)
    return figure


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
    figure = _figure(10, 1.4 + 0.32 * len(rows))
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
            ax.barh(
                y, width, left=left, height=0.72, color=LAYER_COLOURS[group], edgecolor="white", linewidth=0.5
            )
            if width >= 0.05 * span:
                ax.text(
                    left + width / 2,
                    y,
                    group,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if group in WHITE_TEXT else "black",
                )
            left += width
        ax.text(left + 0.01 * span, y, f"{left:.0f} ms", va="center", fontsize=7)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlim(min([0.0] + [v for _, v in rows if not isinstance(v, dict)]) * 1.1 - 0.02 * span, span * 1.15)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([label for label, _ in reversed(rows)], fontsize=8)
    ax.set_xlabel("time per core process (ms, median over repeats)")
    ax.set_title(f"Time per layer of one core process ({d.device}, batch {b.batch_size})")
    ax.grid(axis="y", visible=False)
    handles = [Patch(facecolor=LAYER_COLOURS[g], label=g) for g in layer_groups.GROUPS if g in used]
    handles.append(
        Patch(facecolor="white", edgecolor="#555555", hatch="///", label="overhead (core − Σ layers)")
    )
    figure.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)
    return figure


def layer_rates(f: Findings, d: Device, b: BreakdownBatch) -> Figure:
    """Achieved FLOP/s of each conv/fc layer per framework, against the compute ceiling."""
    layers = (*layer_groups.CONV_LAYERS, *layer_groups.FC_LAYERS)
    jobs = [j for j in b.jobs if j.loss == b.rate_loss]
    figure = _figure(10, 4.0)
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
                color=colour(j.framework, f.frameworks),
                label=name(j.framework),
            )
        _peak_line(ax, f.setup.peak)
        ax.set_xticks(x, layers, fontsize=8)
        ax.set_title(phase)
        ax.grid(axis="x", visible=False)
    panels[0].set_ylabel("achieved GFLOP/s")
    figure.suptitle(f"Achieved FLOP/s per layer ({d.device}, batch {b.batch_size}, {b.rate_loss} loss)")
    _outside_legend(figure, panels[0])
    return figure


def roofline_points(b: BreakdownBatch) -> list[tuple[str, str, float, float, str]]:
    """(framework, phase, intensity, GFLOP/s, layer) of every rated conv/fc layer-phase, as plotted
    (`plotted`)."""
    intensity = {(p.layer, p.phase): p.intensity for p in b.roofline}
    return [
        (j.framework, x.phase, plotted(intensity[x.layer, x.phase]), plotted(x.flops_per_s / 1e9), x.layer)
        for j in b.jobs
        if j.loss == b.rate_loss
        for x in j.layers
        if (x.layer, x.phase) in intensity and x.flops_per_s
    ]


def roofline_figure(f: Findings, d: Device, b: BreakdownBatch) -> Figure:
    """Each layer's arithmetic intensity against its achieved FLOP/s, under the compute and bandwidth
    ceilings (deeppose.report.ceilings: every point lies under both). Every coordinate is `plotted`,
    the limits too (matplotlib's own would come from numpy's logarithms)."""
    peak, bandwidth = f.setup.peak.ceiling, f.setup.peak.bandwidth
    figure = _figure(10, 5.2)
    ax = figure.add_subplot()
    points = roofline_points(b)
    for phase, marker in zip(layer_groups.PHASES, ("o", "^")):
        for fw in dict.fromkeys(p[0] for p in points):
            mine = [p for p in points if p[:2] == (fw, phase)]
            ax.scatter(
                [p[2] for p in mine],
                [p[3] for p in mine],
                marker=marker,
                s=36,
                color=colour(fw, f.frameworks),
                label=f"{name(fw)}, {phase}",
                zorder=3,
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    _log_axis(ax.yaxis, lambda v: f"{v:g}")
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
        ax.text(
            x,
            0.02 + 0.045 * (k % 3),
            layer,
            transform=ax.get_xaxis_transform(),
            fontsize=8,
            ha="center",
            color="0.2",
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5},
        )
    _peak_line(ax, f.setup.peak, right=False)
    if bandwidth:
        # a straight line on log-log axes: its two ends, no sampled curve
        end = plotted(min(high, ridge)) if ridge else high
        bound = " (lower bound)" if f.setup.peak.bandwidth_lower_bound else ""
        ax.plot(
            [low, end],
            [plotted(bandwidth * low / 1e9), plotted(bandwidth * end / 1e9)],
            color="black",
            linewidth=1.1,
            linestyle="-.",
            label=f"memory bandwidth ceiling{bound}, {flops(bandwidth, 'B/s')}",
        )  # in the legend, clear of the points
    else:
        ax.text(
            0.99,
            0.02,
            "memory bandwidth not measured by this run: no bandwidth ceiling",
            transform=ax.transAxes,
            ha="right",
            fontsize=8,
            color="0.3",
        )
    ax.set_xlim(low, high)
    ax.set_xlabel("arithmetic intensity (FLOP per byte moved, fp32, log scale)")
    ax.set_ylabel("achieved GFLOP/s (log scale)")
    ax.set_title(f"Roofline of the conv and fc layers ({d.device}, batch {b.batch_size}, {b.rate_loss} loss)")
    _outside_legend(figure, ax)
    return figure


FIGURES = {  # kind -> its alt text; the file is <kind>_<device>[_b<batch>].png (`file_name`)
    "learning_curves": "Training loss against elapsed time on {device}",
    "core_time": "Core-process time against batch size on {device}",
    "memory": "Peak memory of the core process on {device}",
    "flops": "Achieved FLOP/s against batch size on {device}",
    "breakdown": "Per-layer time of the core process (its processes pooled), {device}, batch {batch}",
    "breakdown_peak": "Achieved FLOP/s per layer, {device}, batch {batch}",
    "roofline": "Roofline, {device}, batch {batch}",
}


def file_name(kind: str, device: str, batch: int | None = None) -> str:
    return f"{kind}_{device}" + ("" if batch is None else f"_b{batch}") + ".png"


def link(drawn: set[str], kind: str, device: str, batch: int | None = None) -> str:
    """The Markdown image of a figure the report drew; empty when it drew none."""
    file = file_name(kind, device, batch)
    alt = FIGURES[kind].format(device=device, batch=batch)
    return f"![{alt}](figures/{file})" if file in drawn else ""


def plan(
    f: Findings, curves: dict[tuple[str, str, str], Curve] | None = None
) -> dict[str, Callable[[], Figure]]:
    """File name -> how to draw it, for every figure the findings (and the learning curves) support."""
    found: dict[str, Callable[[], Figure]] = {}
    for d in f.devices:
        if any(key[0] == d.device for key in curves or {}):
            found[file_name("learning_curves", d.device)] = partial(learning_curves, f, d, curves)
        if d.cells:
            found[file_name("core_time", d.device)] = partial(core_times, f, d)
        if any(c.memory_bytes for c in d.cells):
            found[file_name("memory", d.device)] = partial(memory, f, d)
        if any(c.flops_per_s for c in d.cells):
            found[file_name("flops", d.device)] = partial(achieved, f, d)
        for b in d.breakdown:
            found[file_name("breakdown", d.device, b.batch_size)] = partial(stacked, f, d, b)
            found[file_name("breakdown_peak", d.device, b.batch_size)] = partial(layer_rates, f, d, b)
            if b.roofline:
                found[file_name("roofline", d.device, b.batch_size)] = partial(roofline_figure, f, d, b)
    return found
