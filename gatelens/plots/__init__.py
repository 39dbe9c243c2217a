"""Plotting only: functions take result objects (or frames read from saved CSVs) and return figures."""


def figures(result) -> dict:   # TEMPORARY until the figure registry lands
    return result.figures()


def compare_figures_of(c) -> dict:   # TEMPORARY until the figure registry lands
    return c.figures()
