"""Per-query trace: each query's weight on key 0 and its mean gate score, for splitting queries by role.

Unlike the streaming metrics this keeps O(tokens) numbers (one per query and sequence), for the small
evaluations where a reader wants to split queries by role (e.g. a task's trigger tokens against the
dormant ones: `QueryTrace.split`). Not in the standard set that `compare` runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.gate_logits import gate_logits, hook_gates
from .base import Probe, Result, check_finite
from .sink import first_token_weights


class Queries(Probe):
    """State per sequence id: lists (one entry per layer) of [query] tensors, averaged over heads (and dims)."""

    name = "queries"
    listens_to_attention = True
    exact_with = frozenset({"softcap", "learned_sink"})
    standard = False

    def attach(self, loaded):
        super().attach(loaded)
        if not loaded.info.gated:
            return []
        return hook_gates(loaded, lambda layer: self._hook(loaded))

    def _hook(self, loaded):
        def hook(module, args, output):
            s = torch.sigmoid(gate_logits(loaded, output, module).float()).mean((-2, -1))  # [batch, pos]
            for i in range(s.shape[0]):
                self.add(self.batch.seq_id(i), gate=[s[i, : int(self.batch.lengths[i])].cpu()])
        return hook

    def on_attention(self, ev, batch):
        w = first_token_weights(ev.query, ev.first_key(), ev.lse, ev.scale, ev.mask, ev.softcap)  # [b, h, q]
        check_finite(f"attention of layer {ev.layer}", w)
        for i in range(w.shape[0]):
            self.add(batch.seq_id(i), first=[w[i, :, : int(batch.lengths[i])].double().mean(0).cpu()])

    def finish(self, loaded, settings):
        ids = sorted(self.acc)
        first = [torch.stack(self.acc[i]["first"]).mean(0) for i in ids]
        gate = [torch.stack(self.acc[i]["gate"]).mean(0) for i in ids] if loaded.info.gated else None
        return QueryTrace(model=loaded.info.to_dict(), settings=settings, first_token=first, gate=gate)


@dataclass(repr=False)
class QueryTrace(Result):
    """Per-query numbers, one tensor per sequence: weight on key 0 and mean gate score (layers, heads averaged)."""

    model: dict
    settings: dict
    first_token: list  # per sequence: [query] float64, weight on key 0 (query 0 is trivially 1)
    gate: list | None  # per sequence: [query], mean sigmoid gate score; None for models without gates

    def split(self, masks: list) -> dict:
        """Means over the queries selected by `masks` (per sequence, bool [query]) and over the rest (from 1 on).

        Returns {"selected": {...}, "rest": {...}} with the first-token share, the mean gate score and the count.
        """
        sel = torch.cat([m.bool() for m in masks])
        rest = torch.cat([torch.arange(len(m)) >= 1 for m in masks]) & ~sel
        first = torch.cat(self.first_token)
        gate = None if self.gate is None else torch.cat(self.gate)

        def part(mask):
            return {"first_token": float(first[mask].mean()) if mask.any() else float("nan"),
                    "gate": None if gate is None or not mask.any() else float(gate[mask].mean()),
                    "n": int(mask.sum())}

        return {"selected": part(sel), "rest": part(rest)}

    def to_dict(self) -> dict:
        return {"first_token": [t.tolist() for t in self.first_token],
                "gate": None if self.gate is None else [t.tolist() for t in self.gate],
                "model": self.model, "settings": self.settings}


Queries.result_type = QueryTrace
