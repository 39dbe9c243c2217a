"""The gate ablation across seeds: per variant, every seed's value as a point, the mean as a bar, the paper's as a mark."""

from __future__ import annotations

import matplotlib.pyplot as plt

from . import style

PANELS = (("f_attn", "F-Attn (first-token share)", False, "paper_f_attn"),
          ("f_attn_dormant", "F-Attn, dormant queries", False, None),
          ("mean_gate", "mean gate score", False, "paper_mean_gate"),
          ("m_act", "M-Act (max |h|)", True, "paper_m_act"))


def seeds_figure(runs, summary, title: str):
    """runs: one row per (variant, seed); summary: one row per variant with the paper's numbers (pandas frames)."""
    style.apply()
    variants = list(summary["variant"])
    fig, axes = plt.subplots(1, len(PANELS), figsize=(style.FULL_WIDTH, 2.6))
    for ax, (col, label, log, paper) in zip(axes, PANELS):
        marked = False
        for i, v in enumerate(variants):
            xs = runs[runs["variant"] == v][col].dropna()
            if len(xs):
                ax.bar(i, xs.mean(), color=style.color(i), alpha=0.5, width=0.7)
                ax.scatter([i] * len(xs), xs, s=6, color="black", zorder=3)
            if paper is not None:
                p = summary[summary["variant"] == v][paper].iloc[0]
                if p is not None and p == p:  # None / NaN: the paper reports no number
                    ax.scatter([i], [p], marker="_", s=120, color="crimson", zorder=4,
                               label=None if marked else "paper (15B MoE)")
                    marked = True
        ax.set_xticks(range(len(variants)), variants, rotation=35, ha="right", fontsize=6)
        ax.set_title(label, fontsize=8)
        if log:
            ax.set_yscale("log")
    handles, labels = axes[0].get_legend_handles_labels()
    axes[1].legend(handles, labels, frameon=False, fontsize=6, loc="upper right")  # a panel with no paper marks
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
