"""`sinks`: which tokens are sinks and what they contribute, in one forward per batch.

Runs `metrics.received.Received` (attention received per key position, top keys, sink tokens) and
`metrics.contribution.Contribution` (value drain, norm-weighted F-Attn) on the same pass and returns both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .measure import Inputs, as_loaded, run_probes
from .metrics.base import Result
from .metrics.contribution import Contribution, ContributionResult
from .metrics.received import DEFAULT_MIN_QUERIES, DEFAULT_TOP_K, Received, ReceivedResult
from .metrics.sink import DEFAULT_EPS
from .models.load import Loaded


@dataclass(repr=False)
class SinksResult(Result):
    received: ReceivedResult
    contribution: ContributionResult

    @property
    def settings(self) -> dict:
        return self.received.settings

    @property
    def model(self) -> dict:
        return self.received.model

    def layer_frame(self):
        return self.received.layer_frame().merge(self.contribution.layer_frame(), on="layer")

    def tables(self) -> dict:
        return {**self.received.tables(), **self.contribution.tables(), "sinks_layers": self.layer_frame()}

    def to_dict(self) -> dict:
        r, c = self.received.to_dict(), self.contribution.to_dict()
        return {"received": {k: v for k, v in r.items() if k not in ("model", "settings")},
                "contribution": {k: v for k, v in c.items() if k not in ("model", "settings")},
                "model": self.model, "settings": self.settings}

    @classmethod
    def from_dict(cls, d: dict) -> SinksResult:
        common = {"model": d["model"], "settings": d["settings"]}
        return cls(ReceivedResult.from_dict({**d["received"], **common}),
                   ContributionResult.from_dict({**d["contribution"], **common}))

    def display(self) -> dict:
        view = self.received.display()
        cols = self.contribution.display()["columns"]
        view["frame"] = self.layer_frame()
        view["title"] = view["title"].replace("Attention received of", "Sinks of")
        view["columns"] = {"layer": "layer", "received_first": "received @0", "top_not_first": "top key not 0",
                           **{k: v for k, v in cols.items() if k != "layer"}}
        view["total"] = {"layer": "model", **self.received.display()["total"], **self.contribution.summary()}
        view["notes"] += self.contribution.display()["notes"]
        return view


def sinks(model: Loaded | str, inputs: Inputs | None = None, *, top_k: int = DEFAULT_TOP_K,
          min_queries: int | None = DEFAULT_MIN_QUERIES, eps: float = DEFAULT_EPS, batch_size: int = 4, on_batch: Callable[[int], None] | None = None,
          **input_kw) -> SinksResult:
    """Attention received per key and the sink's contribution of `model` on `inputs`, one forward per batch."""
    loaded = as_loaded(model)
    probes = [Received(top_k=top_k, min_queries=min_queries, eps=eps), Contribution()]
    rec, con = run_probes(loaded, probes, inputs, batch_size=batch_size, on_batch=on_batch, **input_kw)
    return SinksResult(rec, con)
