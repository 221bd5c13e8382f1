"""How the report's figures look and how they are rendered: Agg canvas (no pyplot), fixed rcParams,
no date metadata. Colour tells the framework apart (Okabe-Ito), line and marker the loss mode.

The same findings give the same bytes on any CPU: computed coordinates are rounded (`plotted`), since
numpy's transcendental functions differ in their last bits with the CPU's vector width.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import matplotlib
import matplotlib.style
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator

from deeppose.fmt import flops
from deeppose.report.ceilings import Peak

OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
MODES = {"autograd": ("-", "o"), "explicit": ("--", "s")}  # (line style, marker)
LAYER_GROUPS = "conv1 conv2 conv3 conv4 conv5 fc6 fc7 fc8 relu pool lrn dropout loss other"
COLOURS = "#08306b #2171b5 #6baed6 #41ab5d #a1d99b #7f2704 #d55e00 #fdae6b #6a51a3 #cc79a7 #56b4e9 #f0e442"
LAYER_COLOURS = dict(zip(LAYER_GROUPS.split(), (COLOURS + " #000000 #999999").split(), strict=True))
WHITE_TEXT = {"conv1", "conv2", "fc6", "fc7", "relu", "loss"}
PLOTTED_DIGITS = 4  # 1e-4 relative: a hundredth of a pixel on a log axis of a few decades
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


def mode(loss: str) -> tuple[str, str]:
    return MODES.get(loss, (":", "^"))


def colour(framework: str, frameworks: tuple[str, ...]) -> str:
    return OKABE_ITO[frameworks.index(framework) % len(OKABE_ITO)]


def series(framework: str, loss: str, frameworks: tuple[str, ...]) -> dict[str, Any]:
    """The look of one series: the framework's colour, the loss mode's line and marker."""
    line, marker = mode(loss)
    return {"color": colour(framework, frameworks), "linestyle": line, "marker": marker, "markersize": 5}


def png(draw: Callable[[], Figure]) -> bytes:
    """One figure rendered as PNG; byte-identical for identical data."""
    with matplotlib.style.context("default"), matplotlib.rc_context(RC):
        figure = draw()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def canvas(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def log_axis(axis, unit: Callable[[float], str]) -> None:
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda value, _: unit(value)))


def tick_seconds(value: float) -> str:
    """A round tick with a unit: 50 ms, 2 s, 5000 s."""
    scale, unit = next(((s, u) for s, u in ((1.0, "s"), (1e-3, "ms")) if value >= s * 0.9999), (1e-6, "µs"))
    return f"{value / scale:.6g} {unit}"


def batch_axis(ax, sizes: tuple[int, ...]) -> None:
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(sizes))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(b) for b in sizes])
    ax.set_xlabel("batch size (images, log scale)")


def outside_legend(figure: Figure, ax) -> None:
    figure.legend(*ax.get_legend_handles_labels(), loc="outside right upper", frameon=False)


def peak_line(ax, peak: Peak, right: bool = True) -> None:
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
