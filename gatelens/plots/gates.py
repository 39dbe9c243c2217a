"""Figures for gate scores: histograms per layer, layer x head mean heatmap, per-layer mean/std/min/max."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from ..metrics.gates import GatesResult
from . import draws, style


def _title(r: GatesResult, what: str) -> str:
    return f"{what}: {style.short_label(r.model)}\n{style.input_line(r.settings)}"


def histograms(r: GatesResult):
    """One panel per gated layer: share of gate scores per bin on [0, 1] (the mass near 0)."""
    style.apply()
    n = len(r.layers)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(style.FULL_WIDTH, 1.5 * rows + 0.6), sharex=True, squeeze=False)
    for ax, ly in zip(axes.flat, r.layers):
        counts = np.array(ly.extra["hist"])
        edges = np.linspace(0, 1, len(counts) + 1)
        ax.bar(edges[:-1], counts / max(counts.sum(), 1), width=np.diff(edges), align="edge", color=style.color(0))
        ax.set_title(f"layer {ly.layer}: mean {ly.mean_of('mean'):.3f}", fontsize=7)
        ax.set_xlim(0, 1)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("gate score")
    for ax in axes[:, 0]:
        ax.set_ylabel("share")
    fig.suptitle(_title(r, f"Gate scores (mean {r.mean_gate:.3f})"), fontsize=9)
    fig.tight_layout()
    return fig


def heatmap(r: GatesResult):
    return style.head_heatmap(r, "mean", "cividis", "mean gate score", _title(r, "Mean gate score"))


def per_layer(r: GatesResult):
    style.apply()
    fig, ax = plt.subplots(figsize=(style.COLUMN_WIDTH * 1.3, 2.4))
    xs = [ly.layer for ly in r.layers]
    mean = np.array([ly.mean_of("mean") for ly in r.layers])
    std = np.array([ly.mean_of("std") for ly in r.layers])
    ax.plot(xs, mean, marker="o", ms=3, color=style.color(0), label="mean")
    ax.fill_between(xs, mean - std, mean + std, color=style.color(0), alpha=0.2, label="mean ± std")
    ax.plot(xs, [min(ly.heads["min"]) for ly in r.layers], ls="--", color=style.color(1), label="min")
    ax.plot(xs, [max(ly.heads["max"]) for ly in r.layers], ls="--", color=style.color(2), label="max")
    ax.set_ylim(0, 1)
    style.layer_axis(ax, xs)
    ax.set_xlabel("layer")
    ax.set_ylabel("gate score")
    ax.set_title(_title(r, "Gate scores per layer"))
    style.legend_below(ax, ncol=2)
    return fig


@draws(GatesResult)
def figures(result: GatesResult) -> dict:
    """The figures `gatelens gates` writes for one result, by file stem."""
    return {"gates_hist": histograms(result), "gates_heatmap": heatmap(result), "gates_layers": per_layer(result)}
