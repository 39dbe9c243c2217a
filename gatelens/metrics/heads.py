"""Dormant and active heads (Guo et al. 2024, arXiv 2410.13835; Sandoval-Segura et al. 2025, arXiv 2504.03889).

A head is dormant on a query when it parks the query's attention on the sink and writes almost nothing: per query
i >= 1 and head h, with a_i0 its weight on key 0 and o_ih = ||y_ih W_O^h|| its output in the residual stream (y_ih
the SDPA output, times the gate scores for G1-gated models),
  dormant(i, h)   a_i0 >= sink_weight (0.5: most attention on the sink)  and  o_ih < output_ratio (0.5) x R,
where R is the layer's typical head output: the mean of o_ih' over its heads and the sequence's counted queries.
Per head: the share of dormant queries, the mean first-token weight, the mean output norm, and the output ratio
(sum over queries of o_ih over sum of R: Sandoval-Segura et al.'s head-output-norm score, < 1 for quiet heads);
heads are ranked by their dormant share. `gatelens ablate MODEL --what head --layers L --heads H` then tests whether
a dormant head matters (its output zeroed before W_O).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..errors import GatelensError
from .base import HeadLayer, HeadResult, check_finite
from .contribution import HeadOutputs, first_weights, image_norms
from .sink import query_mask

Tensor = torch.Tensor
SINK_WEIGHT = 0.5
OUTPUT_RATIO = 0.5


def dormant_reference(pattern: Tensor, values: Tensor, w_o: Tensor, lengths: Tensor | None = None,
                      gate: Tensor | None = None, sink_weight: float = SINK_WEIGHT,
                      output_ratio: float = OUTPUT_RATIO) -> dict[str, Tensor]:
    """Slow reference from the full pattern [b, h, n, n], values [b, h, n, d] (per query head), W_O [h, d, D] and gate
    scores [b, h, n, g] or None: per-head dormant share, first-token weight, output norm and output ratio [h]."""
    b, h, n, _ = pattern.shape
    lengths = torch.full((b,), n) if lengths is None else lengths
    y = pattern.double().nan_to_num() @ values.double()                               # [b, h, n, d]
    if gate is not None:
        y = y * gate.double()
    o = torch.einsum("bhnd,hdD->bhnD", y, w_o.double()).norm(dim=-1)                 # [b, h, n]
    valid = query_mask(lengths, n)[:, None].double()                                  # [b, 1, n]
    ref = (o * valid).sum((1, 2)) / (valid.sum((1, 2)) * h)                           # [b]: the layer's mean head output
    a0 = pattern[..., 0].double()
    dormant = (a0 >= sink_weight) & (o < output_ratio * ref[:, None, None])
    nq = valid.sum((0, 2))
    return {"dormant": (dormant * valid).sum((0, 2)) / nq, "f_attn": (a0 * valid).sum((0, 2)) / nq,
            "out_norm": (o * valid).sum((0, 2)) / nq,
            "out_ratio": (o * valid).sum((0, 2)) / (ref[:, None, None] * valid).sum((0, 2))}


def check_dormant_options(sink_weight: float, output_ratio: float) -> None:
    if not 0 < sink_weight <= 1:
        raise GatelensError(f"--sink-weight {sink_weight:g}: give a share of attention in (0, 1]")
    if not output_ratio > 0:
        raise GatelensError(f"--output-ratio {output_ratio:g}: give a positive fraction of the layer's mean head output")


class Heads(HeadOutputs):
    """Per head: share of dormant queries (most attention on key 0, small output), first-token weight, output norm."""

    name = "heads"
    listens_to_attention = True
    exact_with = frozenset({"learned_sink", "softcap"})

    def __init__(self, sink_weight: float = SINK_WEIGHT, output_ratio: float = OUTPUT_RATIO):
        super().__init__()
        check_dormant_options(sink_weight, output_ratio)
        self.sink_weight, self.output_ratio = sink_weight, output_ratio

    def on_attention(self, ev, batch):
        lengths = batch.lengths.to(ev.query.device)
        b, h, n, _ = ev.query.shape
        valid = query_mask(lengths, n)[:, None].double()                              # [b, 1, n]
        y = ev.output.double()
        s = self.gate_scores(ev.layer)
        if s is not None:
            y = y * s
        o = image_norms(y, self.grams[ev.layer].to(ev.query.device))                  # [b, h, n]
        check_finite(f"the head outputs of layer {ev.layer}", o)
        a0 = first_weights(ev.query, ev.first_key(), ev.lse, ev.scale, ev.mask, getattr(ev, "softcap", None))
        ref = (o * valid).sum((1, 2)) / (valid.sum((1, 2)) * h).clamp(min=1)          # [b]
        dormant = (a0 >= self.sink_weight) & (o < self.output_ratio * ref[:, None, None])
        self.add(ev.layer, dormant=(dormant * valid).sum((0, 2)).cpu(), f_attn=(a0 * valid).sum((0, 2)).cpu(),
                 out_norm=(o * valid).sum((0, 2)).cpu(), ref=(ref[:, None, None] * valid).sum((0, 2)).cpu(),
                 n=float(valid.sum()))

    def finish(self, loaded, settings):
        layers = []
        for layer in sorted(self.acc):
            a = self.acc[layer]
            n = max(a["n"], 1)
            layers.append(HeadLayer(layer, {"dormant": (a["dormant"] / n).tolist(), "f_attn": (a["f_attn"] / n).tolist(),
                                            "out_norm": (a["out_norm"] / n).tolist(),
                                            "out_ratio": (a["out_norm"] / a["ref"]).tolist()}))
        return HeadsResult(model=loaded.info.to_dict(),
                           settings={**settings, "sink_weight": self.sink_weight, "output_ratio": self.output_ratio},
                           layers=layers)


@dataclass(repr=False)
class HeadsResult(HeadResult):
    """Dormant and active heads of one model on one input set."""

    COLUMNS: ClassVar = ()        # in compare's JSON (details), not its table
    RATIOS: ClassVar = ()

    @property
    def dormant(self) -> float:
        """Share of (query, layer, head) that are dormant: mean over layers and heads."""
        return self.overall("dormant")

    def ranked(self):
        """Every head, most dormant first (ties: the quieter output first)."""
        return self.to_frame().sort_values(["dormant", "out_ratio"], ascending=[False, True], kind="stable")

    def headline(self) -> dict:
        top = self.ranked().head(10)
        return {"summary": self.summary(),
                "most_dormant": [{"layer": int(r.layer), "head": int(r.head), "dormant": float(r.dormant),
                                  "f_attn": float(r.f_attn), "out_ratio": float(r.out_ratio)} for r in top.itertuples()]}

    def tables(self) -> dict:
        return {"heads_heads": self.to_frame(), "heads_layers": self.layer_frame(), "heads_ranked": self.ranked()}

    def display(self) -> dict:
        s = self.settings
        top = ", ".join(f"L{int(r.layer)}H{int(r.head)} {r.dormant:.2f}" for r in self.ranked().head(6).itertuples()
                        if r.dormant > 0) or "none"
        return {"title": f"Dormant heads of {self.model['spec']} ({s['input']}, {s['n_seqs']} x {s['seq_len']})",
                "frame": self.layer_frame(),
                "columns": {"layer": "layer", "dormant": "dormant", "f_attn": "F-Attn", "out_norm": "mean |o|",
                            "out_ratio": "|o| / layer mean"},
                "total": {"layer": "model", **self.summary()},
                "notes": [f"dormant: a_i0 >= {s['sink_weight']:g} and |o_ih| < {s['output_ratio']:g} x the layer's mean "
                          "head output (o = the head's output through W_O, after the gate)",
                          f"most dormant heads (layer, head, share of queries): {top}"]}


Heads.result_type = HeadsResult
