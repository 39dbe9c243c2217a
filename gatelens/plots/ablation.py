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


KERNEL_PANELS = (("f_attn", "F-Attn (first-token share)"), ("f_attn_dormant", "F-Attn, dormant queries"),
                 ("val_loss", "validation loss"))


def kernels_figure(runs, order: list[str], title: str):
    """runs: one row per (model, kernel set, seed) of the seed x kernel-set grid. Per model, each run as a point, the
    two kernel sets side by side (circles: ATen's default kernels, triangles: AVX2), a bar at each set's mean."""
    style.apply()
    kernels = [k for k in ("default", "avx2") if k in set(runs["kernel"])]
    fig, axes = plt.subplots(1, len(KERNEL_PANELS), figsize=(style.FULL_WIDTH, 2.8))
    for ax, (col, label) in zip(axes, KERNEL_PANELS):
        for i, model in enumerate(order):
            for j, kernel in enumerate(kernels):
                xs = runs[(runs["model"] == model) & (runs["kernel"] == kernel)][col].dropna()
                x = i + (j - (len(kernels) - 1) / 2) * 0.36
                if len(xs) and col == "val_loss":   # a loss is read against its neighbours, not against 0
                    ax.hlines(xs.mean(), x - 0.16, x + 0.16, color=style.color(i), lw=2)
                if len(xs):
                    if col != "val_loss":
                        ax.bar(x, xs.mean(), width=0.34, color=style.color(i), alpha=0.35 if j else 0.6)
                    cap = runs[runs["kernel"] == kernel]["capability"].iloc[0]
                    ax.scatter([x] * len(xs), xs, s=8, color="black", marker="o" if j == 0 else "^", zorder=3,
                               label=f"{kernel} ({cap})" if i == 0 else None)
        ax.set_xticks(range(len(order)), [m.removeprefix("ablate-").replace("mech-value", "value, 1 head")
                                          for m in order], rotation=35, ha="right", fontsize=6)
        ax.set_title(label, fontsize=8)
    axes[0].legend(frameon=False, fontsize=6, loc="upper right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
