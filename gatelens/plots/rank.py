"""Figures for rank: per layer, the distribution over heads of the effective rank (models side by side)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from ..metrics.rank import RankResult
from . import draws, draws_comparison, style

LABELS = {"ov_effective_rank": "W_V·W_O (weights)", "out_effective_rank": "head outputs (gate on)",
          "out_effective_rank_linearized": "head outputs (gate linearised)"}


def per_layer(results: list[RankResult], key: str = "ov_effective_rank"):
    import seaborn as sns  # box and strip plots; imported here, not by every figure (see style)

    style.apply()
    frames = []
    for r in results:
        if key in r.layers[0].heads:
            df = r.to_frame()[["layer", key]].copy()
            df["model"] = style.short_label(r.model)
            frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    fig, ax = plt.subplots(figsize=(style.FULL_WIDTH * 0.75, 2.6))
    sns.boxplot(data=df, x="layer", y=key, hue="model", ax=ax, palette=style.PALETTE[: len(frames)],
                fliersize=0, linewidth=0.6)
    # no jitter: seaborn draws it from numpy's global random state, so the same numbers made a different PNG
    sns.stripplot(data=df, x="layer", y=key, hue="model", dodge=True, jitter=False, ax=ax, size=2,
                  palette="dark:black", legend=False, alpha=0.6)
    ax.set_ylabel(f"effective rank, {LABELS.get(key, key)}")
    ax.set_title(f"Effective rank per head: {LABELS.get(key, key)}")
    style.legend_below(ax)
    return fig


def gate_effect(r: RankResult):
    """Gated model: effective rank of head outputs with the gate on vs linearised, per layer (mean over heads)."""
    style.apply()
    lf = r.layer_frame()
    fig, ax = plt.subplots(figsize=(style.COLUMN_WIDTH * 1.3, 2.4))
    for i, key in enumerate(("out_effective_rank", "out_effective_rank_linearized")):
        ax.plot(lf["layer"], lf[key], marker="o", ms=3, color=style.color(i), label=LABELS[key])
    style.layer_axis(ax, lf["layer"].tolist())
    ax.set_xlabel("layer")
    ax.set_ylabel("effective rank (mean over heads)")
    ax.set_title(f"Non-linearity of the gate: {style.short_label(r.model)}")
    style.legend_below(ax)
    return fig


@draws(RankResult)
def figures(result: RankResult) -> dict:
    """The figures `gatelens rank` writes for one result, by file stem."""
    figs = {"rank_ov": per_layer([result], "ov_effective_rank")}
    if "out_effective_rank_linearized" in result.layers[0].heads:
        figs["rank_gate_effect"] = gate_effect(result)
    return figs


@draws_comparison(RankResult)
def compare_figures(results: list[RankResult]) -> dict:
    """What `compare` draws of the ranks across models: W_V·W_O's and the head outputs'."""
    return {"compare_rank_ov": per_layer(results, "ov_effective_rank"),
            "compare_rank_outputs": per_layer(results, "out_effective_rank")}
