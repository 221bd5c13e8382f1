"""The report's figures, drawn with matplotlib's Agg canvas (no pyplot, no display) and saved as
PNGs whose bytes depend only on the data: fixed rcParams, no Software/date metadata.

Colour tells the framework apart (Okabe-Ito, safe for colour-blind readers), line style and
marker the loss mode. Each `draw_*` function returns a Figure; `png_bytes` renders one.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator

import matplotlib
import matplotlib.style
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator

from deeppose.grid import Job
from deeppose.report.analysis import REFERENCE, Analysis, TimingCell
from deeppose.report.fmt import flops, framework_name

# Okabe & Ito (2008) colours, by framework; further frameworks take the next unused one.
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
FRAMEWORK_COLOURS = {"pytorch": OKABE_ITO[0], "chainer": OKABE_ITO[1]}
MODE_STYLES = {"autograd": ("-", "o"), "explicit": ("--", "s")}  # (line style, marker)

RC = {
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "savefig.facecolor": "white",
    "figure.facecolor": "white",
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.35,
    "grid.linestyle": ":",
    "lines.linewidth": 1.6,
    "errorbar.capsize": 3,
}


def colour(framework: str, frameworks: list[str]) -> str:
    if framework in FRAMEWORK_COLOURS:
        return FRAMEWORK_COLOURS[framework]
    spare = [c for c in OKABE_ITO if c not in FRAMEWORK_COLOURS.values()]
    return spare[frameworks.index(framework) % len(spare)]


def mode_style(loss: str) -> tuple[str, str]:
    return MODE_STYLES.get(loss, (":", "^"))


@contextlib.contextmanager
def style() -> Iterator[None]:
    """matplotlib's defaults (ignoring any matplotlibrc) plus the report's fixed settings."""
    with matplotlib.style.context("default"), matplotlib.rc_context(RC):
        yield


def new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def png_bytes(draw: Callable[[], Figure]) -> bytes:
    """Draw one figure and render it as PNG; byte-identical for identical data. The report writes
    the bytes with every other file of the report at once (deeppose.atomic.write_together)."""
    with style():
        figure = draw()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def draw_placeholder(title: str, message: str) -> Figure:
    """A small figure that says why there is nothing to plot (keeps the set of outputs fixed)."""
    figure = new_figure(6, 1.6)
    ax = figure.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, wrap=True)
    return figure


def _batch_axis(ax, batch_sizes: list[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(batch_sizes))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(b) for b in batch_sizes])
    ax.set_xlabel("batch size (images, log scale)")


def _seconds_axis(ax, which: str) -> None:
    """Make `ax`'s `which` ("x" or "y") axis a log time axis ticked at 1, 2, 5 x 10^k with units."""
    getattr(ax, f"set_{which}scale")("log")
    axis = getattr(ax, f"{which}axis")
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda value, _: tick_seconds(value)))


def tick_seconds(value: float) -> str:
    """A round tick value with a unit: 50 ms, 2 s, 5000 s (minutes would give 16.6667 min)."""
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if value >= scale * 0.9999:
            return f"{value / scale:.6g} {unit}"
    return f"{value / 1e-6:.6g} µs"


def draw_learning_curves(analysis: Analysis, device: str) -> Figure:
    """Training loss against elapsed training time, one panel per framework, both modes in each."""
    results = analysis.results
    frameworks = results.frameworks
    figure = new_figure(5.2 * len(frameworks), 4.2)
    axes = figure.subplots(1, len(frameworks), sharey=True, squeeze=False)[0]
    for ax, fw in zip(axes, frameworks):
        c = colour(fw, frameworks)
        absent = []
        for loss in results.loss_modes:
            run = results.train[Job(fw, loss, device)]
            points = [(r["elapsed_s"], r["loss"]) for r in run.iterations if r["elapsed_s"] > 0] if run.ok else []
            evals = [
                (r["elapsed_s"], r["test_loss"])
                for r in (run.evals if run.ok else [])
                if r["elapsed_s"] > 0 and isinstance(r.get("test_loss"), (int, float))
            ]
            if not points and not evals:
                absent.append(loss)
                continue
            line, marker = mode_style(loss)
            if points:
                x, y = zip(*points)
                # the first mode is drawn wide and pale so that a later one lying on it stays visible
                wide = loss == results.loss_modes[0] and len(results.loss_modes) > 1
                ax.plot(
                    x, y, linestyle=line, color=c, linewidth=3.2 if wide else 1.4, alpha=0.45 if wide else 1.0,
                    label=f"{loss}: training loss (per iteration)",
                )
            if evals:
                x, y = zip(*evals)
                ax.plot(
                    x, y, linestyle="none", marker=marker, markersize=7, markerfacecolor="white",
                    markeredgecolor=c, markeredgewidth=1.5, label=f"{loss}: test loss (evaluation)",
                )
        _seconds_axis(ax, "x")
        ax.set_title(f"{framework_name(fw)} on {device}")
        ax.set_xlabel("elapsed training time (log scale; evaluations excluded)")
        if absent:
            ax.text(
                0.02, 0.02, f"no log for: {', '.join(absent)}", ha="left", va="bottom",
                transform=ax.transAxes, color="0.3",
            )
        if ax.has_data():
            ax.legend(loc="upper right")
    axes[0].set_yscale("log")  # the first Adam steps overshoot; learning shows below them
    axes[0].set_ylabel("loss (masked MSE of coordinates / 227, log scale)")
    figure.suptitle(f"Training loss against training time, {device}: autograd (solid) vs explicit (dashed)")
    return figure


def draw_core_times(analysis: Analysis, device: str) -> Figure:
    """Left: core-process time (median of block medians, with its interval from the blocks)
    against batch size, log-log. Right: ratio to PyTorch."""
    results = analysis.results
    frameworks, modes, exps = results.frameworks, results.loss_modes, results.batch_exponents
    batch_sizes = [2**e for e in exps]
    series = [(fw, loss) for fw in frameworks for loss in modes]
    figure = new_figure(11, 4.4)
    left, right = figure.subplots(1, 2)
    for index, (fw, loss) in enumerate(series):
        cells = [c for e in exps if (c := analysis.timing_cell(fw, loss, device, e)) is not None
                 and c.time.estimate is not None]
        if not cells:
            continue
        # a small horizontal offset per series keeps the error bars apart
        shift = 2 ** (0.04 * (index - (len(series) - 1) / 2))
        line, marker = mode_style(loss)
        left.errorbar(
            [c.batch_size * shift for c in cells], [c.time.estimate for c in cells],
            yerr=[[c.time.estimate - (c.time.low or c.time.estimate) for c in cells],
                  [(c.time.high or c.time.estimate) - c.time.estimate for c in cells]],
            color=colour(fw, frameworks), linestyle=line, marker=marker, markersize=5,
            label=f"{framework_name(fw)}, {loss}",
        )
    _seconds_axis(left, "y")
    _batch_axis(left, batch_sizes)
    left.set_ylabel("time of forward + loss + backward (log scale)")
    left.set_title("Core-process time (median of blocks, 95 % CI)")
    if left.has_data():
        left.legend(loc="upper left")
    for fw in analysis.compared_frameworks:
        for loss in modes:
            points = [(2**e, r) for e in exps if (r := analysis.core_ratio(fw, loss, device, e)) is not None]
            if not points:
                continue
            line, marker = mode_style(loss)
            x, y = zip(*points)
            right.plot(
                x, y, color=colour(fw, frameworks), linestyle=line, marker=marker, markersize=5,
                label=f"{framework_name(fw)} / {framework_name(REFERENCE)}, {loss}",
            )
    right.axhline(1.0, color="0.4", linewidth=1, linestyle=":")
    _batch_axis(right, batch_sizes)
    right.set_ylabel(f"time ratio to {framework_name(REFERENCE)} (mean / mean)")
    right.set_title(f"Ratio to {framework_name(REFERENCE)} (above 1: slower)")
    if right.has_data():
        right.legend(loc="best")
    else:
        right.text(0.5, 0.5, "no pair of results to compare", ha="center", va="center", transform=right.transAxes)
    figure.suptitle(f"Core process on {device}: forward + loss + backward on a batch already on the device")
    return figure


def _plot_cells(ax, analysis: Analysis, device: str, value: Callable[[TimingCell], float | None]) -> None:
    """One line per framework x loss mode: `value` of each timing cell that has one, against batch size."""
    results = analysis.results
    for fw in results.frameworks:
        for loss in results.loss_modes:
            points = [(c.batch_size, v) for e in results.batch_exponents
                      if (c := analysis.timing_cell(fw, loss, device, e)) is not None and (v := value(c))]
            if not points:
                continue
            line, marker = mode_style(loss)
            x, y = zip(*points)
            ax.plot(x, y, color=colour(fw, results.frameworks), linestyle=line, marker=marker, markersize=5,
                    label=f"{framework_name(fw)}, {loss}")


def draw_memory(analysis: Analysis, device: str) -> Figure:
    """Peak memory of one core process above the block's set-up, against batch size."""
    figure = new_figure(7.5, 4.4)
    ax = figure.add_subplot()
    _plot_cells(ax, analysis, device, lambda c: None if c.memory_bytes is None else c.memory_bytes / 2**20)
    _batch_axis(ax, [2**e for e in analysis.results.batch_exponents])
    ax.set_yscale("log", base=2)
    ax.set_ylabel("peak memory above set-up (MiB, log scale)")
    ax.set_title(f"Memory of one core process on {device} (median of blocks)")
    if ax.has_data():
        ax.legend(loc="upper left")
    return figure


def draw_flops(analysis: Analysis, device: str) -> Figure:
    """Achieved FLOP/s of the core process against batch size, with the measured fp32 peak."""
    exps = analysis.results.batch_exponents
    figure = new_figure(7.5, 4.4)
    ax = figure.add_subplot()
    _plot_cells(ax, analysis, device, lambda c: c.flops_per_s and c.flops_per_s / 1e9)
    peak = analysis.peak_for(device)
    if peak:
        label = f"measured fp32 peak ({flops(peak)})"
        ax.axhline(peak / 1e9, color="black", linewidth=1.2, linestyle="-.", label=label)
        highest = max([peak / 1e9] + [y for line in ax.get_lines() for y in line.get_ydata()])
        ax.set_ylim(0, highest * 1.12)  # a rate above the peak stays visible
    else:
        ax.set_ylim(bottom=0)
    _batch_axis(ax, [2**e for e in exps])
    ax.set_ylabel("achieved GFLOP/s (forward + backward)")
    ax.set_title(f"Achieved throughput of the core process on {device}")
    if ax.has_data():
        ax.legend(loc="upper left")
    else:
        ax.text(0.5, 0.5, "no FLOP counts in the timing results", ha="center", va="center", transform=ax.transAxes)
    return figure

