"""One module per measurement: its pure tensor maths, its probe (hooks + streaming state) and its result.

`METRICS` names them, in the order of the paper's table (and of `compare`'s columns). Adding a metric is
one new module plus one `register(...)` line here, or an entry point in the `gatelens.metrics` group of another
package; `compare`, `figures`, the trainer's evaluation, `gatelens measure` and the zoo scripts read this registry.
`standard_probes(loaded)` gives a fresh probe of every standard metric that applies to a model (gate statistics
only for gated models) and measures it exactly (`exact_for`: soft-capped or learned-sink attention needs the
metric to say so).
"""

from __future__ import annotations

from ..errors import GatelensError
from .base import Probe
from .contribution import Contribution
from .gates import Gates
from .heads import Heads
from .massive import Massive
from .norms import Norms
from .perplexity import Perplexity
from .queries import Queries
from .rank import Rank
from .received import Received
from .sink import Sink

METRICS: dict[str, type[Probe]] = {}
ENTRY_POINTS = "gatelens.metrics"   # metrics from other packages: [project.entry-points."gatelens.metrics"]


def register(cls: type[Probe]) -> type[Probe]:
    """Put a probe class in the registry (its `name`), and tell its result type which metric it is."""
    if not cls.name or cls.result_type is None:
        raise GatelensError(f"{cls.__name__} needs a `name` and a `result_type` to be a gatelens metric")
    METRICS[cls.name] = cls
    cls.result_type.metric = cls.name
    return cls


def discover(strict: bool = True) -> list[str]:
    """Register the metrics other installed packages declare in the `gatelens.metrics` entry-point group
    (`name = "package.module:ProbeClass"`); returns their names. A broken one is a one-line error naming it, or with
    strict=False (as when gatelens is imported) one logged line, so that another package's bug never stops gatelens."""
    import logging
    from importlib.metadata import entry_points

    found = []
    for ep in entry_points(group=ENTRY_POINTS):
        if ep.name in METRICS:
            continue
        try:
            register(ep.load())
        except Exception as e:  # noqa: BLE001 - any failure of a third-party metric is reported, in one line
            msg = f"metric {ep.name!r} ({ep.value}) from an installed package failed to load: {type(e).__name__}: {e}"
            if strict:
                raise GatelensError(msg) from None
            logging.getLogger("gatelens").warning(msg)
            continue
        found.append(ep.name)
    return found


for _cls in (Sink, Massive, Gates, Rank, Perplexity, Queries, Received, Contribution, Norms, Heads):
    register(_cls)
discover(strict=False)


def exact_for(cls: type[Probe], loaded) -> str | None:
    """None if the metric measures `loaded` exactly; else why not (an attention variant it does not model)."""
    if not cls.listens_to_attention:
        return None
    from ..models.load import attention_variants

    missing = sorted(attention_variants(loaded) - cls.exact_with)
    return None if not missing else f"not exact with {' and '.join(v.replace('_', ' ') for v in missing)} attention"


def check_runs_on(cls, loaded) -> None:
    """Refuse, in one line, a metric that does not apply to `loaded` (gate scores of a model without gates) or does
    not declare itself exact for its attention (soft-capped logits, learned sinks: `exact_with`)."""
    from ..errors import GatelensError

    if not cls.applies(loaded):
        raise GatelensError(f"{cls.name} does not apply to {loaded.info.spec}")
    why = exact_for(cls, loaded)
    if why:
        raise GatelensError(f"{cls.name} is {why} ({loaded.info.spec}); its module must say it measures that exactly "
                            "(exact_with) before it runs here")


def standard_probes(loaded, options: dict[str, dict] | None = None) -> list[Probe]:
    """A new probe of every standard metric that applies to `loaded`; options by metric name ({"sink": {"eps": .3}})."""
    options = options or {}
    return [cls(**options.get(name, {})) for name, cls in METRICS.items()
            if cls.standard and cls.applies(loaded) and exact_for(cls, loaded) is None]


__all__ = ["METRICS", "Probe", "check_runs_on", "discover", "exact_for", "register", "standard_probes", "Contribution", "Gates",
           "Heads", "Massive", "Norms", "Perplexity", "Queries", "Rank", "Received", "Sink"]
