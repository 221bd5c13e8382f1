"""A figure of prepared samples with their labels, to check by eye that joints sit on limbs.

Shows the network's view (the 227x227 centre crop) of a few train and test samples, evenly spaced
through each split, with the skeleton drawn: the person's right side orange, left side blue;
visible joints as filled dots, invisible ones as hollow circles. Rendered with matplotlib's Agg
backend (no pyplot) at a fixed size and dpi, without the software tag, so equal data gives equal bytes.
"""

from __future__ import annotations

import io

import numpy as np

from deeppose.data.lsp import SKELETON

INPUT = 227
OFFSET = (256 - INPUT) // 2  # the centre crop's offset in the 256 crop
COLORS = {"right": "#ff7f0e", "left": "#1f77b4", "centre": "#2ca02c"}
PER_SPLIT = 4
DPI = 100


def _pick(n: int, k: int) -> list[int]:
    return sorted(set(np.linspace(0, n - 1, num=min(k, n)).round().astype(int).tolist())) if n else []


def preview_png(arrays: dict[str, np.ndarray], per_split: int = PER_SPLIT) -> bytes:
    """PNG bytes of `per_split` samples from each of train and test (keys `{split}_{name}`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [
        (split, i) for split in ("train", "test") for i in _pick(len(arrays[f"{split}_images"]), per_split)
    ]
    cols = per_split
    rows = max(1, -(-len(panels) // cols))
    fig = Figure(figsize=(2.3 * cols, 2.5 * rows + 0.3), dpi=DPI)
    FigureCanvasAgg(fig)  # no pyplot: no global state, no GUI backend
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (split, i) in zip(axes.flat, panels):
        image = np.asarray(arrays[f"{split}_images"][i])[:, OFFSET : OFFSET + INPUT, OFFSET : OFFSET + INPUT]
        joints = arrays[f"{split}_joints"][i] - OFFSET
        visible = arrays[f"{split}_visible"][i] > 0.5
        ax.imshow(image.transpose(1, 2, 0), interpolation="nearest")
        for a, b, side in SKELETON:
            if visible[a] and visible[b]:
                ax.plot(joints[[a, b], 0], joints[[a, b], 1], color=COLORS[side], linewidth=1.0, alpha=0.9)
        for k, (x, y) in enumerate(joints):
            side = "right" if k in (0, 1, 2, 6, 7, 8) else "left" if k < 12 else "centre"
            face = COLORS[side] if visible[k] else "none"
            ax.plot(x, y, "o", markersize=3.5, markerfacecolor=face, markeredgecolor=COLORS[side],
                    markeredgewidth=1.0)  # fmt: skip
        ax.set_xlim(-0.5, INPUT - 0.5)
        ax.set_ylim(INPUT - 0.5, -0.5)
        ax.set_title(f"{split} #{i}", fontsize=8)
    fig.suptitle("prepared samples (227 centre crop): right orange, left blue, hollow = invisible",
                 fontsize=8)  # fmt: skip
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.45 / (2.5 * rows + 0.3),
                        wspace=0.04, hspace=0.12)  # fmt: skip
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()
