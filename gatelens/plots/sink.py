"""Figures for F-Attn: a layer x head heatmap and per-layer curves (several models overlaid)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..metrics.sink import SinkResult
from . import draws, draws_comparison, style


def heatmap(result: SinkResult):
    """Layer x head heatmap of F-Attn, values printed where the grid is small."""
    return style.head_heatmap(result, "f_attn", "viridis", "first-token attention share",
                              f"F-Attn of {style.short_label(result.model)} = {result.f_attn:.3f}\n"
                              f"{style.input_line(result.settings)}")


def learned_sink_heatmap(result: SinkResult):
    """Layer x head heatmap of the share of attention absorbed by learned sink logits (gpt-oss `sinks` ...)."""
    return style.head_heatmap(result, "learned_sink", "cividis", "share absorbed by the learned sink",
                              f"Learned sink of {style.short_label(result.model)} = {result.learned_sink:.3f} "
                              f"(F-Attn {result.f_attn:.3f})\n{style.input_line(result.settings)}")


def per_layer(results: list[SinkResult]):
    """F-Attn per layer, one line per model (baseline vs gated), uniform-attention level for reference. Models
    with learned sink logits get a dashed line of the share the learned sink absorbs, in the same colour."""
    fig, ax = style.layer_curves(results, lambda ly: ly.mean_of("f_attn"),
                                 lambda r: f"{style.short_label(r.model)}: {r.f_attn:.3f}",
                                 "first-token attention share", "Attention sink per layer", ylim=(0, 1))
    for i, r in enumerate(results):
        if r.learned_sink is not None:
            ax.plot([ly.layer for ly in r.layers], [ly.mean_of("learned_sink") for ly in r.layers], ls="--",
                    marker="s", ms=3, color=style.color(i),
                    label=f"{style.short_label(r.model)}: learned sink {r.learned_sink:.3f}")
            ax.set_ylabel("share: first token (solid), learned sink (dashed)")
    n = results[0].settings.get("seq_len", 0)
    if n and n > 1:
        uniform = float(np.mean([1.0 / (i + 1) for i in range(1, n)]))
        ax.axhline(uniform, color="grey", ls=":", lw=0.8, label=f"uniform causal attention ({uniform:.3f})")
    style.legend_below(ax)
    return fig


def per_length(results: list[SinkResult]):
    """F-Attn against context length (log x axis): the paper's long-context argument."""
    style.apply()
    fig, ax = plt.subplots(figsize=(style.COLUMN_WIDTH * 1.3, 2.4))
    groups: dict[str, list[SinkResult]] = {}
    for r in results:
        groups.setdefault(style.short_label(r.model), []).append(r)
    for i, (name, rs) in enumerate(groups.items()):
        rs = sorted(rs, key=lambda r: r.settings["seq_len"])
        ax.plot([r.settings["seq_len"] for r in rs], [r.f_attn for r in rs], marker="o", ms=3,
                color=style.color(i), label=name)
    ax.set_xscale("log", base=2)
    ax.set_ylim(0, 1)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("F-Attn (mean first-token share)")
    ax.set_title(f"Attention sink vs context length\n{results[0].settings.get('input')}")
    style.legend_below(ax)
    return fig


@draws(SinkResult)
def figures(result: SinkResult) -> dict:
    """The figures `gatelens sink` writes for one result, by file stem."""
    figs = {"sink_heatmap": heatmap(result), "sink_layers": per_layer([result])}
    if result.learned_sink is not None:
        figs["learned_sink_heatmap"] = learned_sink_heatmap(result)
    return figs


@draws_comparison(SinkResult)
def compare_figures(results: list[SinkResult]) -> dict:
    """What `compare` draws of F-Attn across models."""
    return {"compare_sink_layers": per_layer(results)}
