"""Plotting only: functions take result objects (or frames read from saved CSVs) and return figures.

Which function draws which result is said here, in one registry. A plots module marks its function with
`@draws(ResultType)` (`fn(result) -> {file stem: Figure}`, the figures of one result) or with
`@draws_comparison(ResultType)` (`fn(results) -> {file stem: Figure}`, what `compare` draws across models, one
result per model). `figures(result)` and `compare_figures(result_type, results)` call the function registered for
the type or for its nearest base that has one (so a subclass draws like its parent unless it says otherwise):
every per-head result (`metrics.base.HeadResult`) gets a layer x head heatmap of each statistic, and a result
nothing draws gets no figures. Results never import plots; the drawing imports what it draws. A metric from
another package registers its own function with the same decorator, in its own module (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable

_FIGURES: dict[type, Callable[[object], dict]] = {}      # result type -> the figures of one result
_COMPARISONS: dict[type, Callable[[list], dict]] = {}    # result type -> the figures across models
_builtins_loaded = False


def draws(result_type: type) -> Callable:
    """Decorator: the function draws the figures of one `result_type` result (and of its subclasses')."""
    def register(fn: Callable[[object], dict]) -> Callable[[object], dict]:
        _FIGURES[result_type] = fn
        return fn
    return register


def draws_comparison(result_type: type) -> Callable:
    """Decorator: the function draws `compare`'s figures for a list of `result_type` results, one per model."""
    def register(fn: Callable[[list], dict]) -> Callable[[list], dict]:
        _COMPARISONS[result_type] = fn
        return fn
    return register


def _load_builtins() -> None:
    """gatelens' own plots modules register what they draw when imported; imported once, when first needed (they
    pull in matplotlib and the result types)."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    from ..metrics.base import HeadResult
    from . import ablate, compare, emergence, gates, heads, massive, norms, rank, sink, sinks, style  # noqa: F401

    # The default of every per-head metric; style.py itself stays free of result types (analyses restyle saved
    # CSVs with it without loading the metrics).
    draws(HeadResult)(style.head_heatmaps)
    _builtins_loaded = True


def _find(table: dict, result_type: type) -> Callable | None:
    _load_builtins()
    return next((table[t] for t in result_type.__mro__ if t in table), None)


def figures(result) -> dict:
    """The figures of one result, by file stem (matplotlib figures); {} for a result nothing draws."""
    draw = _find(_FIGURES, type(result))
    return {} if draw is None else draw(result)


def compare_figures(result_type: type, results: list) -> dict:
    """The figures `compare` draws for one metric across models (one result per model), by file stem; {} if none."""
    draw = _find(_COMPARISONS, result_type)
    return {} if draw is None else draw(results)
