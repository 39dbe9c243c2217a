"""One module per measurement: its pure tensor maths, its probe (hooks + streaming state) and its result.

`METRICS` names them, in the order of the paper's table (and of `compare`'s columns). Adding a metric is
one new module plus one line here; `compare`, `figures`, the trainer's evaluation and the zoo scripts
read this registry. `standard_probes(loaded)` gives a fresh probe of every standard metric that applies
to a model (gate statistics only for gated models).
"""

from __future__ import annotations

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

METRICS: dict[str, type[Probe]] = {p.name: p for p in (Sink, Massive, Gates, Rank, Perplexity, Queries,
                                                          Received, Contribution, Norms, Heads)}


def standard_probes(loaded, options: dict[str, dict] | None = None) -> list[Probe]:
    """A new probe of every standard metric that applies to `loaded`; options by metric name ({"sink": {"eps": .3}})."""
    options = options or {}
    return [cls(**options.get(name, {})) for name, cls in METRICS.items() if cls.standard and cls.applies(loaded)]


__all__ = ["METRICS", "Probe", "standard_probes", *(cls.__name__ for cls in METRICS.values())]
