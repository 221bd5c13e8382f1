"""The report's figures, functions of `Findings`, and the plan of those the findings support."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from deeppose.fmt import framework_name as name
from deeppose.grid import REFERENCE
from deeppose.report import plot_style as style
from deeppose.report.analysis import Findings
from deeppose.report.device import Device
from deeppose.report.layer_figures import layer_rates, roofline_figure, stacked
from deeppose.report.training import Curve


def learning_curves(f: Findings, d: Device, curves: dict[tuple[str, str, str], Curve]) -> Figure:
    """Every run on one elapsed-time axis: the framework gap is the horizontal distance between curves."""
    figure = style.canvas(10, 4.6)
    ax = figure.add_subplot()
    for r in d.training:
        curve = curves.get((d.device, r.framework, r.loss))
        if curve is None:
            continue
        c, (line, marker) = style.colour(r.framework, f.frameworks), style.mode(r.loss)
        ax.plot(curve.elapsed_s, curve.loss, color=c, linewidth=0.6, alpha=0.22)
        ax.plot(curve.elapsed_s, curve.smoothed, color=c, linestyle=line)
        hollow = {"markersize": 8, "markerfacecolor": "white", "markeredgecolor": c, "markeredgewidth": 1.8}
        ax.plot(curve.eval_s, curve.eval_loss, linestyle="none", marker=marker, **hollow)
    ax.set_xscale("log")
    ax.set_yscale("log")
    style.log_axis(ax.xaxis, style.tick_seconds)
    ax.set_xlabel("elapsed training time (log scale; evaluations excluded)")
    ax.set_ylabel("loss (masked MSE of coordinates / 227, log scale)")
    ax.set_title(f"Training loss against training time on {d.device} (faint: every iteration)")
    # one entry per framework (colour) and per loss mode (line and marker), not one per run and series
    handles = [
        Line2D([], [], color=style.colour(fw, f.frameworks), label=name(fw))
        for fw in dict.fromkeys(r.framework for r in d.training)
    ]
    for loss in dict.fromkeys(r.loss for r in d.training):
        line, marker = style.mode(loss)
        evaluated = f"{loss}: test loss at an evaluation"
        handles += [
            Line2D([], [], color="0.3", linestyle=line, label=f"{loss}: training loss, smoothed"),
            Line2D(
                [], [], color="0.3", linestyle="none", marker=marker, markerfacecolor="white", label=evaluated
            ),
        ]
    figure.legend(handles=handles, loc="outside right upper", frameon=False)
    return figure


def core_times(f: Findings, d: Device) -> Figure:
    """Left: core-process time with its interval from the blocks. Right: ratio to PyTorch, paired by round."""
    figure = style.canvas(12, 4.6)
    left, right = figure.subplots(1, 2)
    series = list(dict.fromkeys((c.framework, c.loss) for c in d.cells))
    for i, (fw, loss) in enumerate(series):
        cells = [c for c in d.cells if (c.framework, c.loss) == (fw, loss) and c.time.estimate is not None]
        shift = 2 ** (0.04 * (i - (len(series) - 1) / 2))  # keeps the error bars apart
        est = np.array([c.time.estimate for c in cells])
        low = np.array([c.time.low or c.time.estimate for c in cells])
        high = np.array([c.time.high or c.time.estimate for c in cells])
        look = style.series(fw, loss, f.frameworks)
        xs = [c.batch_size * shift for c in cells]
        left.errorbar(xs, est, yerr=[est - low, high - est], label=f"{name(fw)}, {loss}", **look)
    left.set_yscale("log")
    style.log_axis(left.yaxis, style.tick_seconds)
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
        right.errorbar([s for s, _ in points], est, yerr=err, **style.series(fw, loss, f.frameworks))
    right.axhline(1.0, color="0.4", linewidth=1, linestyle=":")
    right.set_ylabel("time ratio to PyTorch (90 % CI, paired by round)")
    right.set_title("Ratio to PyTorch (above 1: slower)")
    for ax in (left, right):
        style.batch_axis(ax, f.batch_sizes)
    style.outside_legend(figure, left)
    return figure


def _per_batch(f: Findings, d: Device, value: Callable, ylabel: str, title: str) -> Figure:
    figure = style.canvas(8.5, 4.4)
    ax = figure.add_subplot()
    for fw, loss in dict.fromkeys((c.framework, c.loss) for c in d.cells):
        points = [
            (c.batch_size, v) for c in d.cells if (c.framework, c.loss) == (fw, loss) and (v := value(c))
        ]
        if points:
            ax.plot(*zip(*points), label=f"{name(fw)}, {loss}", **style.series(fw, loss, f.frameworks))
    style.batch_axis(ax, f.batch_sizes)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    style.outside_legend(figure, ax)
    return figure


def memory(f: Findings, d: Device) -> Figure:
    title = f"Memory of one core process on {d.device} (median of blocks)"
    mib = "peak memory above set-up (MiB, log scale)"
    figure = _per_batch(f, d, lambda c: c.memory_bytes and c.memory_bytes / 2**20, mib, title)
    figure.axes[0].set_yscale("log")
    style.log_axis(figure.axes[0].yaxis, lambda v: f"{v:g}")
    return figure


def achieved(f: Findings, d: Device) -> Figure:
    title = f"Achieved throughput of the core process on {d.device}"
    gflops = "achieved GFLOP/s (forward + backward)"
    figure = _per_batch(f, d, lambda c: c.flops_per_s and c.flops_per_s / 1e9, gflops, title)
    ax, peak = figure.axes[0], f.setup.peak.ceiling
    style.peak_line(ax, f.setup.peak)
    ax.set_ylim(0, max([peak or 0] + [c.flops_per_s or 0 for c in d.cells]) / 1e9 * 1.15)
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
