"""Figures for `gatelens emergence`: F-Attn, M-Act and the mean gate of every kept checkpoint against tokens seen."""

from __future__ import annotations

import matplotlib.pyplot as plt

from ..emergence import EmergenceResult
from . import draws, style


def curves(result):
    """Three panels against tokens seen, one line per run: F-Attn, M-Act (log) and the mean gate score."""
    style.apply()
    df = result.to_frame()
    panels = [("f_attn", "F-Attn"), ("m_act", "M-Act (max |h|)"), ("mean_gate", "mean gate score")]
    fig, axes = plt.subplots(1, 3, figsize=(style.FULL_WIDTH, 2.4))
    for i, (run, rows) in enumerate(df.groupby("run", sort=False)):
        rows = rows.dropna(subset=["tokens"])
        for ax, (key, _) in zip(axes, panels):
            ys = rows[key]
            if ys.notna().any():
                ax.plot(rows["tokens"], ys, marker="o", ms=2.5, lw=1.0, color=style.color(i), label=run)
    for ax, (key, label) in zip(axes, panels):
        ax.set_xlabel("tokens seen")
        ax.set_title(label, fontsize=8)
        if key == "m_act":
            ax.set_yscale("log")
        elif key == "f_attn":
            ax.set_ylim(0, 1)
    s = result.settings
    fig.suptitle(f"Sink emergence across training\n{style.input_line(s)}", fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=max(1, len(labels)), frameon=False, fontsize=6)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


@draws(EmergenceResult)
def figures(result: EmergenceResult) -> dict:
    """The figures `gatelens emergence` writes, by file stem."""
    return {"emergence": curves(result)}
