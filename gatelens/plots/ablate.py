"""Figures for `gatelens ablate`: loss change per ablated layer, and F-Attn per layer with and without it."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..ablate import AblationResult
from . import draws, style


def loss_change(results: list):
    """Loss change (nats per token) of each single-layer ablation and of all layers at once, one bar group per model."""
    style.apply()
    labels = list(dict.fromkeys(r.layers for res in results for r in res.runs[1:]))
    fig, ax = plt.subplots(figsize=(style.COLUMN_WIDTH * (1.4 if len(labels) <= 13 else 2.0), 2.6))
    width = 0.8 / max(1, len(results))
    for i, res in enumerate(results):
        by = {r.layers: r.loss_change for r in res.runs[1:]}
        xs = np.arange(len(labels)) + (i - (len(results) - 1) / 2) * width
        ax.bar(xs, [by.get(label, np.nan) for label in labels], width=width, color=style.color(i),
               label=f"{style.short_label(res.model)} (loss {res.clean.loss:.3f})")
    ax.axhline(0, color="grey", lw=0.8)
    step = 1 if len(labels) <= 13 else 2 if len(labels) <= 26 else 5   # deep models: every k-th layer named
    ticks = [i for i, label in enumerate(labels) if not label.isdigit() or int(label) % step == 0]
    ax.set_xticks(ticks, [labels[i] for i in ticks])
    if "all" in labels:   # the all-layer bar set apart from the per-layer ones
        ax.axvline(labels.index("all") - 0.5, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("ablated layer")
    ax.set_ylabel("loss change (nats / token)")
    what = results[0].settings["what"]
    ax.set_title(f"Ablation: {what}\n{style.input_line(results[0].settings)}")
    style.legend_below(ax)
    return fig


def f_attn_layers(result):
    """F-Attn per layer of the unablated model and under the all-layer ablation (or the last one run)."""
    style.apply()
    fig, ax = plt.subplots(figsize=(style.COLUMN_WIDTH * 1.3, 2.4))
    layers = result.model["attention_layers"]
    for i, r in enumerate([result.clean, result.runs[-1]] if len(result.runs) > 1 else [result.clean]):
        name = "unablated" if r.what == "none" else f"{r.what} in layer(s) {r.layers}"
        ax.plot(layers, r.f_attn_layers, marker="o", ms=3, color=style.color(i), label=f"{name}: {r.f_attn:.3f}")
    ax.set_ylim(0, 1)
    style.layer_axis(ax, layers)
    ax.set_xlabel("layer")
    ax.set_ylabel("F-Attn")
    ax.set_title(f"F-Attn under ablation, {style.short_label(result.model)}")
    style.legend_below(ax)
    return fig


@draws(AblationResult)
def figures(result: AblationResult) -> dict:
    return {"ablate_loss": loss_change([result]), "ablate_f_attn": f_attn_layers(result)}
