"""One style for every gatelens figure: seaborn paper context, colour-blind-safe palette, column width."""

from __future__ import annotations

import matplotlib.pyplot as plt  # headless machines get Agg by default, notebooks their inline backend
import seaborn as sns

PALETTE = sns.color_palette("colorblind")
COLUMN_WIDTH = 3.4   # inches: one column of a two-column paper
FULL_WIDTH = 7.0


def apply() -> None:
    sns.set_theme(context="paper", style="whitegrid", palette=PALETTE, font_scale=0.9)
    plt.rcParams.update({"figure.dpi": 150, "savefig.dpi": 150, "pdf.fonttype": 42, "ps.fonttype": 42,
                         "axes.titlesize": 9, "axes.labelsize": 8, "legend.fontsize": 7})


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
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}\n{input_line(results[0].settings)}")
    return fig, ax
