"""The figures of a `compare` run: each standard metric's own comparison figures, across the models."""

from __future__ import annotations

from ..compare import Comparison
from . import compare_figures, draws


@draws(Comparison)
def figures(c: Comparison) -> dict:
    """What `gatelens compare` writes besides its table, by file stem."""
    figs = {}
    for result_type, results in c.by_metric().items():
        figs.update(compare_figures(result_type, results))
    return figs
