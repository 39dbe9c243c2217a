"""First-token attention share (the paper's F-Attn) and the sink rate (Gu et al. 2024).

F-Attn of a head: the mean, over sequences and query positions i >= 1, of the softmax weight of
query i on key 0. Position 0 is no query here: it can attend only to itself (weight 1).
Sink rate: the share of (sequence, head) pairs whose mean weight on key 0 exceeds eps (0.3).

The weights come from the attention kernel's per-query log-sum-exp and one dot product with key 0
(`kernels.key_weight`): no n x n pattern. `Sink` streams per-head sums; `SinkResult` divides them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..errors import GatelensError
from ..kernels import key_weight
from .base import HeadLayer, HeadResult, Probe, check_finite

Tensor = torch.Tensor
DEFAULT_EPS = 0.3


def first_token_weights(query: Tensor, key0: Tensor, lse: Tensor, scale: float, mask: Tensor | None = None,
                        softcap: float | None = None) -> Tensor:
    """Weight of every query on key 0, [batch, head, query], from q [b,h,q,d], key 0 [b,h,d] and LSE [b,h,q]."""
    mask0 = None if mask is None else mask[..., 0]
    return key_weight(query, key0, lse, scale, mask0, softcap)  # NaN stays NaN: the probe reports non-finite input


def query_mask(lengths: Tensor, n: int) -> Tensor:
    """Which query positions count, [batch, query]: 1 <= i < length of each (right-padded) sequence."""
    pos = torch.arange(n, device=lengths.device)
    return (pos[None, :] >= 1) & (pos[None, :] < lengths[:, None])


def sums(weights: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sequence sums of first-token weight over counted queries and their counts.

    weights: [batch, head, query]; valid: [batch, query] -> (sum [batch, head], count [batch])
    """
    v = valid.to(weights.dtype)
    return torch.einsum("bhq,bq->bh", weights, v), v.sum(-1)


def f_attn_reference(pattern: Tensor, lengths: Tensor | None = None) -> Tensor:
    """Slow reference from a full pattern [batch, head, query, key]: per-head F-Attn [head].

    Averages over all counted (sequence, query) pairs, the same weighting as the streaming path.
    """
    b, _, n, _ = pattern.shape
    lengths = torch.full((b,), n, device=pattern.device) if lengths is None else lengths
    valid = query_mask(lengths, n).to(pattern.dtype)
    return torch.einsum("bhq,bq->h", pattern[..., 0], valid) / valid.sum()


def sink_rate_reference(pattern: Tensor, eps: float = DEFAULT_EPS) -> Tensor:
    """Slow reference: share of (sequence, head) whose mean weight on key 0 over queries >= 1 exceeds eps."""
    per = pattern[:, :, 1:, 0].mean(-1)  # [batch, head]
    return (per > eps).float().mean()


def check_eps(eps: float) -> float:
    if not 0 < eps < 1:
        raise GatelensError(f"--eps {eps:g} is outside (0, 1): the sink-rate threshold is a share of attention")
    return eps


class Sink(Probe):
    """F-Attn and sink rate per attention layer and head, from LSE + one dot product per query."""

    name = "sink"
    in_training = True
    listens_to_attention = True
    exact_with = frozenset({"softcap", "learned_sink"})

    def __init__(self, eps: float = DEFAULT_EPS):
        super().__init__()
        self.eps = check_eps(eps)

    def on_attention(self, ev, batch):
        w = first_token_weights(ev.query, ev.first_key(), ev.lse, ev.scale, ev.mask, ev.softcap)  # [b, h, q]
        check_finite(f"attention of layer {ev.layer}", w)
        valid = query_mask(batch.lengths.to(w.device), w.shape[-1])
        s, c = sums(w.double(), valid)  # [b, h], [b]
        per_seq = s / c.clamp(min=1)[:, None]
        counted = c > 0
        sink = ((per_seq > self.eps) & counted[:, None]).sum(0)
        self.add(ev.layer, weight_sum=s.sum(0).cpu(), count=float(c.sum()), sink_seqs=sink.cpu(),
                 n_seqs=int(counted.sum()))
        if ev.sink_logit is not None:  # share of each query's attention the learned sink absorbs: exp(s - lse)
            ls = torch.exp(ev.sink_logit.to(ev.lse.device) - ev.lse)                     # [b, h, q]
            self.add(ev.layer, learned_sum=sums(ls.double(), valid)[0].sum(0).cpu())

    def finish(self, loaded, settings):
        layers = []
        for layer in sorted(self.acc):
            a = self.acc[layer]
            heads = {"f_attn": (a["weight_sum"] / max(a["count"], 1)).tolist(),
                     "sink_rate": (a["sink_seqs"].double() / max(a["n_seqs"], 1)).tolist()}
            if "learned_sum" in a:  # the model's learned sink logits (gpt-oss ...): their share, beside F-Attn
                heads["learned_sink"] = (a["learned_sum"] / max(a["count"], 1)).tolist()
            layers.append(HeadLayer(layer, heads))
        return SinkResult(model=loaded.info.to_dict(), settings={**settings, "eps": self.eps}, layers=layers)


@dataclass(repr=False)
class SinkResult(HeadResult):
    """First-token attention share (F-Attn) and sink rate of one model on one input set."""

    COLUMNS: ClassVar = ("f_attn", "sink_rate")
    LABELS: ClassVar = {"f_attn": "F-Attn", "sink_rate": "sink rate", "learned_sink": "learned sink"}
    RATIOS: ClassVar = ("f_attn", "sink_rate")

    @property
    def f_attn(self) -> float:
        """Model F-Attn: mean over attention layers and heads (the paper's number)."""
        return self.overall("f_attn")

    @property
    def sink_rate(self) -> float:
        """Share of (sequence, layer, head) whose mean weight on key 0 exceeds eps (Gu et al. 2024)."""
        return self.overall("sink_rate")

    @property
    def learned_sink(self) -> float | None:
        """Mean share of attention absorbed by learned sink logits (None: the model has none)."""
        return self.overall("learned_sink") if self.layers else None

    def headline(self) -> dict:
        return self.columns()

    def columns(self) -> dict:
        """The table's columns; `learned_sink` only for models with learned sink logits (`compare` leaves it empty
        for the others)."""
        extra = {} if self.learned_sink is None else {"learned_sink": self.learned_sink}
        return {**super().columns(), **extra}

    def tables(self) -> dict:
        return {"sink_heads": self.to_frame(), "sink_layers": self.layer_frame()}

    def display(self) -> dict:
        """What the terminal shows: a title, per-layer columns (name -> label) and the model row."""
        s = self.settings
        columns = {"layer": "layer", "f_attn": "F-Attn", "sink_rate": f"sink rate (>{s['eps']})"}
        total = {"layer": "model", "f_attn": self.f_attn, "sink_rate": self.sink_rate}
        if self.learned_sink is not None:
            columns["learned_sink"], total["learned_sink"] = "learned sink", self.learned_sink
        return {"title": f"F-Attn of {self.model['spec']} ({s['input']}, {s['n_seqs']} x {s['seq_len']} tokens)",
                "frame": self.layer_frame(), "columns": columns, "total": total, "notes": []}


def length_frame(results: list[SinkResult]):
    """F-Attn and sink rate per context length (one row per length)."""
    import pandas as pd

    return pd.DataFrame([{"seq_len": r.settings["seq_len"], "n_seqs": r.settings["n_seqs"], "f_attn": r.f_attn,
                          "sink_rate": r.sink_rate} for r in results])


Sink.result_type = SinkResult
