"""Figures for `gatelens sinks`: attention received per key position, and norm-weighted vs plain F-Attn."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..sinks import SinksResult
from . import draws, style


def received_profile(results: list, max_pos: int | None = None, tokens: list[str] | None = None):
    """Attention received per key position (mean over layers and heads), one line per model, log y axis.
    With `tokens` (one text, short) the x axis names them."""
    style.apply()
    fig, ax = plt.subplots(figsize=(style.FULL_WIDTH if tokens else style.COLUMN_WIDTH * 1.3, 2.6))
    for i, r in enumerate(results):
        prof = r.profile().numpy()
        n = len(prof) if max_pos is None else min(max_pos, len(prof))
        ax.plot(np.arange(n), np.clip(prof[:n], 1e-6, None), marker="o" if tokens else None, ms=2.5, lw=1.0,
                color=style.color(i), label=f"{style.short_label(r.model)}: @0 {r.overall('received_first'):.3f}, "
                                             f"top not 0: {r.top_not_first:.2f}")
    ax.set_yscale("log")
    ax.set_xlabel("key position")
    ax.set_ylabel("attention received (mean)")
    if tokens:
        ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=5)
        ax.grid(False, axis="x")
    ax.set_title(f"Attention received per key, mean over layers and heads\n{style.input_line(results[0].settings)}")
    style.legend_below(ax)
    return fig


def sink_score(results: list, max_pos: int | None = None):
    """Gu et al.'s sink score per key position: the share of (sequence, layer, head) in which the position's
    received attention exceeds eps, one line per model."""
    style.apply()
    fig, ax = plt.subplots(figsize=(style.COLUMN_WIDTH * 1.3, 2.6))
    for i, r in enumerate(results):
        score = r.sink_score().numpy()
        n = len(score) if max_pos is None else min(max_pos, len(score))
        others = ", ".join(str(p["pos"]) for p in r.sink_positions(4) if p["pos"] != 0) or "none"
        ax.plot(np.arange(n), score[:n], lw=1.0, marker="o" if n <= 64 else None, ms=2.0, color=style.color(i),
                label=f"{style.short_label(r.model)}: @0 {score[0]:.2f}; others: {others}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("key position")
    ax.set_ylabel(f"sink score (share > {results[0].settings.get('eps', 0.3):g})")
    ax.set_title(f"Sink score per key position (Gu et al. 2024)\n{style.input_line(results[0].settings)}")
    ax.legend(frameon=False, fontsize=6, loc="upper right")
    fig.tight_layout()
    return fig


def top_not_first(result):
    """Layer x head heatmap: share of sequences whose top key is not position 0."""
    return style.head_heatmap(result, "top_not_first", "magma", "top key not position 0 (share of sequences)",
                              f"Heads whose top key is not position 0: {result.top_not_first:.2f} of "
                              f"{style.short_label(result.model)}")


def norm_weighted(results: list):
    """Per layer: plain F-Attn (dashed) and norm-weighted F-Attn (solid), one colour per model."""
    style.apply()
    fig, ax = plt.subplots(figsize=(style.COLUMN_WIDTH * 1.3, 2.6))
    for i, r in enumerate(results):
        xs = [ly.layer for ly in r.layers]
        name = style.short_label(r.model)
        ax.plot(xs, [ly.mean_of("f_attn") for ly in r.layers], ls="--", marker="o", ms=2.5, color=style.color(i),
                label=f"{name}: F-Attn {r.overall('f_attn'):.3f}")
        ax.plot(xs, [ly.mean_of("f_attn_norm") for ly in r.layers], ls="-", marker="s", ms=2.5, color=style.color(i),
                label=f"{name}: norm-weighted {r.overall('f_attn_norm'):.3f}")
    ax.set_ylim(0, 1)
    style.layer_axis(ax, [ly.layer for r in results for ly in r.layers])
    ax.set_xlabel("layer")
    ax.set_ylabel("key-0 share")
    ax.set_title(f"F-Attn vs norm-weighted F-Attn (|a v W_O|)\n{style.input_line(results[0].settings)}")
    style.legend_below(ax)
    return fig


@draws(SinksResult)
def figures(result: SinksResult) -> dict:
    """The figures `gatelens sinks` writes for a `SinksResult`, by file stem."""
    return {"sinks_received": received_profile([result.received]), "sinks_top_not_first": top_not_first(result.received),
            "sinks_sink_score": sink_score([result.received]),
            "sinks_norm_weighted": norm_weighted([result.contribution])}
