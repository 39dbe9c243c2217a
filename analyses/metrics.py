"""Any registered metric a group names (`metrics = ["entropy"]` in figures.toml): its tables and figures per model.

The metric's result says what its tables are (`tables()`) and the plots registry what its figures are
(`gatelens.plots.figures`), so a metric added to the registry, by a module of gatelens or by another package's
entry point, appears in `gatelens figures` without a script of its own.
"""

from pathlib import Path

from gatelens import plots
from gatelens.errors import GatelensError
from gatelens.figures import main_for_script
from gatelens.metrics import METRICS


def make(ctx, group):
    files = []
    for name in group.metrics:
        if name not in METRICS or not METRICS[name].standard:
            raise GatelensError(f"figures group {group.name}: {name!r} is not a standard metric of the registry "
                                f"({', '.join(n for n, c in METRICS.items() if c.standard)})")
        for spec, measured in zip(group.models, ctx.group_results(group)):
            r = measured.results.get(name)
            if r is None:           # not applicable, or not exact on this model (compare says which)
                continue
            stem = f"{group.name}_{Path(spec).name}"
            for part, frame in r.tables().items():
                files += ctx.write(f"{stem}_{part}", frame, None, [r.model], r.settings)
            for part, fig in plots.figures(r).items():
                files += ctx.write(f"{stem}_{part}", None, fig, [r.model], r.settings)
    return files


if __name__ == "__main__":
    main_for_script("metrics")
