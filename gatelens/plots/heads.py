"""Figures for `gatelens heads`: the share of dormant queries of every head."""

from __future__ import annotations

from ..metrics.heads import HeadsResult
from . import draws, style


def dormant(result):
    """Layer x head heatmap: share of queries on which the head is dormant (sink-parked, small output)."""
    return style.head_heatmap(result, "dormant", "magma", "dormant share of queries",
                              f"Dormant heads of {style.short_label(result.model)}: {result.dormant:.2f} of queries")


@draws(HeadsResult)
def figures(result: HeadsResult) -> dict:
    """The figures `gatelens heads` writes, by file stem."""
    return {"heads_dormant": dormant(result)}
