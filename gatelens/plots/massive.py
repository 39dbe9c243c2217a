"""Figures for massive activations: per-layer max |hidden| on a log scale, models overlaid."""

from __future__ import annotations

from ..metrics.massive import MassiveResult
from . import draws, draws_comparison, style


def per_layer(results: list[MassiveResult]):
    fig, ax = style.layer_curves(results, lambda ly: ly.max_abs,
                                 lambda r: f"{style.short_label(r.model)}: M-Act {r.m_act:.1f}",
                                 "|hidden state| (max solid, median dotted)", "Max activation per layer", log=True)
    for i, r in enumerate(results):
        ax.plot([ly.layer for ly in r.layers], [ly.median_abs for ly in r.layers], ls=":", lw=0.9, marker="x", ms=3,
                color=style.color(i))   # a marker, so that a one-layer model shows its median too
    style.legend_below(ax)
    return fig


@draws(MassiveResult)
def figures(result: MassiveResult) -> dict:
    """The figures `gatelens massive` writes for one result, by file stem."""
    return {"massive_layers": per_layer([result])}


@draws_comparison(MassiveResult)
def compare_figures(results: list[MassiveResult]) -> dict:
    """What `compare` draws of massive activations across models."""
    return {"compare_massive_layers": per_layer(results)}
