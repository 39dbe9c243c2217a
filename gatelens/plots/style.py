"""One style for every gatelens figure: seaborn's paper context and whitegrid style, its colour-blind-safe
palette, column width; plus the layer x head heatmap every metric draws.

The theme is seaborn's `set_theme(context="paper", style="whitegrid", palette="colorblind", font_scale=0.9)`
written out as rcParams (tests/test_figures.py checks it still equals seaborn's), so that drawing a figure does
not import seaborn (about 1.3 s); the plots that need seaborn's statistics (rank's box plots) import it there.
"""

from __future__ import annotations

import matplotlib.pyplot as plt  # headless machines get Agg by default, notebooks their inline backend
import numpy as np
from cycler import cycler
from matplotlib.colors import to_rgb

# seaborn.color_palette("colorblind")
PALETTE = [to_rgb(c) for c in ("#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#fbafe4",
                               "#949494", "#ece133", "#56b4e9")]
COLUMN_WIDTH = 3.4   # inches: one column of a two-column paper
FULL_WIDTH = 7.0
# seaborn.axes_style("whitegrid") | seaborn.plotting_context("paper", font_scale=0.9), image.cmap excepted
# (seaborn's "rocket" exists only once seaborn is imported; every gatelens heatmap names its colour map)
THEME = {
    "figure.facecolor": "white", "axes.labelcolor": ".15", "xtick.direction": "out", "ytick.direction": "out",
    "xtick.color": ".15", "ytick.color": ".15", "axes.axisbelow": True, "grid.linestyle": "-", "text.color": ".15",
    "font.family": ["sans-serif"],
    "font.sans-serif": ["Arial", "DejaVu Sans", "Liberation Sans", "Bitstream Vera Sans", "sans-serif"],
    "lines.solid_capstyle": "round", "patch.edgecolor": "w", "patch.force_edgecolor": True, "xtick.top": False,
    "ytick.right": False, "axes.grid": True, "axes.facecolor": "white", "axes.edgecolor": ".8", "grid.color": ".8",
    "axes.spines.left": True, "axes.spines.bottom": True, "axes.spines.right": True, "axes.spines.top": True,
    "xtick.bottom": False, "ytick.left": False,
    "axes.linewidth": 1.0, "grid.linewidth": 0.8, "lines.linewidth": 1.2, "lines.markersize": 4.8,
    "patch.linewidth": 0.8, "xtick.major.width": 1.0, "ytick.major.width": 1.0, "xtick.minor.width": 0.8,
    "ytick.minor.width": 0.8, "xtick.major.size": 4.8, "ytick.major.size": 4.8, "xtick.minor.size": 3.2,
    "ytick.minor.size": 3.2, "font.size": 8.64, "axes.labelsize": 8.64, "axes.titlesize": 8.64,
    "xtick.labelsize": 7.92, "ytick.labelsize": 7.92, "legend.fontsize": 7.92, "legend.title_fontsize": 8.64,
}


def apply() -> None:
    plt.rcParams.update(THEME)
    plt.rcParams.update({"axes.prop_cycle": cycler(color=PALETTE), "patch.facecolor": PALETTE[0]})
    plt.rcParams.update({"figure.dpi": 150, "savefig.dpi": 150, "pdf.fonttype": 42, "ps.fonttype": 42,
                         "axes.titlesize": 9, "axes.labelsize": 8, "legend.fontsize": 7})


def heatmap(grid: np.ndarray, cmap: str, label: str, yticklabels: list, vmin: float = 0.0, vmax: float = 1.0):
    """A layer x head grid [layer, head] as coloured cells, values printed where the grid is small (<= 160 cells)
    in a colour readable on the cell; returns (fig, ax). Like seaborn.heatmap, row 0 at the top."""
    h, w = grid.shape
    fig, ax = plt.subplots(figsize=(min(FULL_WIDTH, 1.2 + 0.45 * w), min(9.0, 1.0 + 0.3 * h)))
    mesh = ax.pcolormesh(np.ma.masked_invalid(grid), cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xticks(np.arange(w) + 0.5, [str(i) for i in range(w)])
    ax.set_yticks(np.arange(h) + 0.5, [str(y) for y in yticklabels], rotation=0)
    fig.colorbar(mesh, ax=ax, label=label)
    if h * w <= 160:
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):
                r, g, b, _ = mesh.cmap(mesh.norm(v))
                dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
                ax.text(j + 0.5, i + 0.5, f"{v:.2f}", ha="center", va="center", size=6,
                        color="white" if dark else ".15")
    return fig, ax


def head_heatmap(result, key: str, cmap: str, label: str, title: str):
    """The layer x head heatmap of one per-head quantity of a result (`ly.heads[key]`), axes named, titled."""
    apply()
    grid = np.array([ly.heads[key] for ly in result.layers])
    fig, ax = heatmap(grid, cmap, label, [ly.layer for ly in result.layers])
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(title)
    return fig


def head_heatmaps(result) -> dict:
    """The figures of a per-head result whose type draws nothing of its own: a layer x head heatmap of each
    statistic, by file stem (`<metric>_<statistic>`)."""
    return {f"{result.metric}_{k}": head_heatmap(result, k, "viridis", result.label(k),
                                                 f"{result.label(k)} of {short_label(result.model)}")
            for k in result.keys()}  # noqa: SIM118 - the statistics (HeadResult.keys), not a dict


def color(i: int):
    return PALETTE[i % len(PALETTE)]


def short_label(model: dict) -> str:
    """Display name without the folder path."""
    from pathlib import Path

    gate = model.get("gate", "none")
    name = Path(model.get("spec", "model")).name or model.get("spec", "model")
    return name + ("" if gate == "none" else f" ({gate} gate)")


def input_line(settings: dict) -> str:
    """What was measured, for a figure title: input, sequences x tokens."""
    return f"{settings.get('input')}, {settings.get('n_seqs')} x {settings.get('seq_len')} tokens"


def layer_axis(ax, layers) -> None:
    """An x axis of layer indices: integer ticks (every layer when there are few), and a single layer centred
    with room either side, not a float axis around it (-0.04 ... 0.04)."""
    from matplotlib.ticker import MaxNLocator

    layers = sorted(set(layers))
    if len(layers) <= 13:
        ax.set_xticks(layers)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(layers) == 1:
        ax.set_xlim(layers[0] - 1, layers[0] + 1)


def legend_below(ax, **kwargs) -> None:
    """The legend under the axes and their x tick labels and label, so it never covers data; lays the figure
    out first (tight_layout), since the legend's place is measured from the drawn x axis. Saving with
    bbox_inches="tight" (report.Writer, notebooks' inline backend) keeps it in the picture."""
    fig = ax.figure
    fig.tight_layout()
    below = ax.xaxis.get_tightbbox(fig.canvas.get_renderer()).transformed(ax.transAxes.inverted()).y0
    n = len(ax.get_legend_handles_labels()[1])
    kwargs = {"frameon": False, "fontsize": 6, "ncol": 1 if n <= 3 else 2, **kwargs}
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, below - 0.02), **kwargs)


def layer_curves(results: list, value, label, ylabel: str, title: str, ylim=None, log: bool = False):
    """One line per model of `value(layer)` against the layer index, labelled `label(result)`; returns fig, ax."""
    apply()
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH * 1.3, 2.4))
    for i, r in enumerate(results):
        ax.plot([ly.layer for ly in r.layers], [value(ly) for ly in r.layers], marker="o", ms=3, color=color(i),
                label=label(r))
    if log:
        ax.set_yscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    layer_axis(ax, [ly.layer for r in results for ly in r.layers])
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}\n{input_line(results[0].settings)}")
    return fig, ax
