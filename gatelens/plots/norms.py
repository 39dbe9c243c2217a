"""Figures for `gatelens norms`: position 0's hidden-state, key and value norm against the median, per layer."""

from __future__ import annotations

import matplotlib.pyplot as plt

from ..metrics.norms import QUANTITIES, NormsResult
from . import draws, style


def first_to_median(results: list):
    """Per layer: ||x_0|| / median_j ||x_j|| for the hidden state (solid), key (dashed) and value (dotted), one colour
    per model, log y axis; 1 is an ordinary token."""
    style.apply()
    fig, ax = plt.subplots(figsize=(style.COLUMN_WIDTH * 1.3, 2.6))
    for i, r in enumerate(results):
        for q, ls, marker in zip(QUANTITIES, ("-", "--", ":"), ("o", "s", "^")):
            rows = [ly for ly in r.layers if q in ly]
            if rows:
                ax.plot([ly["layer"] for ly in rows], [ly[q]["ratio"] for ly in rows], ls=ls, marker=marker, ms=2.5,
                        color=style.color(i), label=f"{style.short_label(r.model)}: {q} {r.ratio(q):.2f}")
    ax.axhline(1.0, color="0.6", lw=0.6)
    ax.set_yscale("log")
    ax.set_xticks(sorted({ly["layer"] for r in results for ly in r.layers}))
    ax.set_xlabel("layer")
    ax.set_ylabel("position 0 / median norm")
    ax.set_title(f"The first token's norms against the median token's\n{style.input_line(results[0].settings)}")
    ax.legend(frameon=False, fontsize=6, loc="best")
    fig.tight_layout()
    return fig


@draws(NormsResult)
def figures(result: NormsResult) -> dict:
    """The figures `gatelens norms` writes, by file stem."""
    return {"norms_first_to_median": first_to_median([result])}
