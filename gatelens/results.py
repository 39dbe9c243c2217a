"""Result dataclasses: what every measurement returns. CLI, report, plots and notebooks consume these."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pandas as pd


@dataclass
class LayerSink:
    layer: int
    f_attn_heads: list[float]     # per head: mean weight on key 0 over sequences and queries >= 1
    sink_rate_heads: list[float]  # per head: share of sequences whose mean weight on key 0 > eps

    @property
    def f_attn(self) -> float:
        return sum(self.f_attn_heads) / len(self.f_attn_heads)

    @property
    def sink_rate(self) -> float:
        return sum(self.sink_rate_heads) / len(self.sink_rate_heads)


@dataclass
class SinkResult:
    """First-token attention share (F-Attn) and sink rate of one model on one input set."""

    model: dict
    settings: dict
    layers: list[LayerSink] = field(default_factory=list)

    @property
    def f_attn(self) -> float:
        """Model F-Attn: mean over attention layers and heads (the paper's number)."""
        return sum(layer.f_attn for layer in self.layers) / len(self.layers)

    @property
    def sink_rate(self) -> float:
        """Share of (sequence, layer, head) whose mean weight on key 0 exceeds eps (Gu et al. 2024)."""
        return sum(layer.sink_rate for layer in self.layers) / len(self.layers)

    def to_frame(self) -> pd.DataFrame:
        """One row per (layer, head)."""
        rows = [{"layer": ly.layer, "head": h, "f_attn": f, "sink_rate": s}
                for ly in self.layers for h, (f, s) in enumerate(zip(ly.f_attn_heads, ly.sink_rate_heads))]
        return pd.DataFrame(rows)

    def layer_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{"layer": ly.layer, "f_attn": ly.f_attn, "sink_rate": ly.sink_rate}
                             for ly in self.layers])

    def to_dict(self) -> dict:
        return {
            "f_attn": self.f_attn,
            "sink_rate": self.sink_rate,
            "layers": [{"layer": ly.layer, "f_attn": ly.f_attn, "sink_rate": ly.sink_rate,
                        "heads": [{"head": h, "f_attn": f, "sink_rate": s}
                                  for h, (f, s) in enumerate(zip(ly.f_attn_heads, ly.sink_rate_heads))]}
                       for ly in self.layers],
            "model": self.model,
            "settings": self.settings,
        }


def as_dict(obj) -> dict:
    return obj.to_dict() if hasattr(obj, "to_dict") else asdict(obj)


@dataclass
class Activation:
    value: float      # |h|
    seq: int
    pos: int
    channel: int
    token: str


@dataclass
class LayerMassive:
    layer: int
    max_abs: float
    median_abs: float
    top: list[Activation]
    n_massive: int
    top_channels: list[tuple[int, int]]       # (channel, count of massive values)
    top_tokens: list[tuple[str, int]]         # (token text, count of massive values)
    massive_at_first: int                     # massive values at position 0
    first_norm: float                         # mean L2 norm of the hidden state at position 0
    other_norm: float                         # mean L2 norm at positions >= 1

    @property
    def ratio(self) -> float:
        return self.max_abs / self.median_abs if self.median_abs > 0 else float("inf")


@dataclass
class MassiveResult:
    """Largest |values| of the residual stream after each layer (the paper's M-Act)."""

    model: dict
    settings: dict
    layers: list[LayerMassive] = field(default_factory=list)

    @property
    def m_act(self) -> float:
        """Maximum over layers of each layer's max |hidden| (one reading of the paper's M-Act)."""
        return max(ly.max_abs for ly in self.layers)

    @property
    def m_act_layer_mean(self) -> float:
        """Mean over layers of each layer's max |hidden| (the other reading; fits the paper's appendix curve)."""
        return sum(ly.max_abs for ly in self.layers) / len(self.layers)

    @property
    def n_massive(self) -> int:
        return sum(ly.n_massive for ly in self.layers)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{"layer": ly.layer, "max_abs": ly.max_abs, "median_abs": ly.median_abs,
                              "ratio": ly.ratio, "n_massive": ly.n_massive, "pos": ly.top[0].pos,
                              "token": ly.top[0].token, "channel": ly.top[0].channel,
                              "first_token_norm": ly.first_norm, "other_norm": ly.other_norm}
                             for ly in self.layers])

    def channel_frame(self) -> pd.DataFrame:
        """Channels that carry massive values, summed over layers."""
        counts: dict[int, int] = {}
        layers: dict[int, int] = {}
        for ly in self.layers:
            for ch, c in ly.top_channels:
                counts[ch] = counts.get(ch, 0) + c
                layers[ch] = layers.get(ch, 0) + 1
        rows = [{"channel": ch, "n_massive": c, "n_layers": layers[ch]} for ch, c in counts.items()]
        return pd.DataFrame(rows, columns=["channel", "n_massive", "n_layers"]).sort_values(
            ["n_massive", "channel"], ascending=[False, True], ignore_index=True)

    def to_dict(self) -> dict:
        return {
            "m_act": self.m_act,
            "m_act_layer_mean": self.m_act_layer_mean,
            "n_massive": self.n_massive,
            "layers": [{"layer": ly.layer, "max_abs": ly.max_abs, "median_abs": ly.median_abs, "ratio": ly.ratio,
                        "n_massive": ly.n_massive, "massive_at_first_token": ly.massive_at_first,
                        "first_token_norm": ly.first_norm, "other_norm": ly.other_norm,
                        "top": [asdict(a) for a in ly.top],
                        "channels": [{"channel": c, "count": n} for c, n in ly.top_channels],
                        "tokens": [{"token": t, "count": n} for t, n in ly.top_tokens]}
                       for ly in self.layers],
            "model": self.model,
            "settings": self.settings,
        }


GATE_STATS = ("mean", "std", "median", "min", "max", "frac_below_0.1", "frac_below_0.5", "frac_above_0.9",
              "token_var_share", "channel_var_share", "first_token_mean", "rest_mean")
OUTPUT_STATS = ("mean_abs_sdpa", "mean_abs_gated", "mean_abs_mean_scaled", "frac_small_sdpa",
                "frac_small_gated", "frac_small_mean_scaled")


@dataclass
class LayerGates:
    layer: int
    heads: dict[str, list[float]]     # GATE_STATS (and OUTPUT_STATS for G1 gates) -> one value per head
    hist: list[float]                 # counts in N_BINS equal bins on [0, 1], all heads of the layer
    n_scores: int

    def mean_of(self, key: str) -> float:
        xs = self.heads[key]
        return sum(xs) / len(xs)


@dataclass
class GatesResult:
    """Sigmoid gate scores of every gated attention layer: sparsity, query dependence, effect on W_O's input."""

    model: dict
    settings: dict
    layers: list[LayerGates] = field(default_factory=list)

    @property
    def mean_gate(self) -> float:
        """Mean gate score over all layers, heads, dimensions and tokens (the paper's 'gate score')."""
        return sum(ly.mean_of("mean") for ly in self.layers) / len(self.layers)

    def overall(self, key: str) -> float:
        return sum(ly.mean_of(key) for ly in self.layers) / len(self.layers)

    def to_frame(self) -> pd.DataFrame:
        rows = []
        for ly in self.layers:
            for h in range(len(ly.heads["mean"])):
                rows.append({"layer": ly.layer, "head": h, **{k: v[h] for k, v in ly.heads.items()}})
        return pd.DataFrame(rows)

    def layer_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{"layer": ly.layer, **{k: ly.mean_of(k) for k in ly.heads}} for ly in self.layers])

    def hist_frame(self) -> pd.DataFrame:
        n = len(self.layers[0].hist)
        return pd.DataFrame([{"layer": ly.layer, "bin_lo": i / n, "bin_hi": (i + 1) / n, "count": c}
                             for ly in self.layers for i, c in enumerate(ly.hist)])

    def to_dict(self) -> dict:
        summary = {k: self.overall(k) for k in self.layers[0].heads}
        return {"mean_gate": self.mean_gate, "summary": summary,
                "layers": [{"layer": ly.layer, **{k: ly.mean_of(k) for k in ly.heads}, "n_scores": ly.n_scores,
                            "hist": ly.hist, "heads": [{"head": h, **{k: v[h] for k, v in ly.heads.items()}}
                                                       for h in range(len(ly.heads["mean"]))]}
                           for ly in self.layers],
                "model": self.model, "settings": self.settings}


RANK_STATS = ("ov_effective_rank", "ov_stable_rank", "ov_numerical_rank", "out_effective_rank",
              "out_effective_rank_linearized")


@dataclass
class LayerRank:
    layer: int
    heads: dict[str, list[float]]   # RANK_STATS present for this model -> one value per head
    ov_singular_values: list[list[float]]

    def mean_of(self, key: str) -> float:
        xs = self.heads[key]
        return sum(xs) / len(xs)


@dataclass
class RankResult:
    """Effective rank of each head's W_V W_O (weights) and of its actual outputs (tokens)."""

    model: dict
    settings: dict
    layers: list[LayerRank] = field(default_factory=list)

    def overall(self, key: str) -> float | None:
        if key not in self.layers[0].heads:
            return None
        return sum(ly.mean_of(key) for ly in self.layers) / len(self.layers)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{"layer": ly.layer, "head": h, **{k: v[h] for k, v in ly.heads.items()}}
                             for ly in self.layers for h in range(len(ly.ov_singular_values))])

    def layer_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{"layer": ly.layer, **{k: ly.mean_of(k) for k in ly.heads}} for ly in self.layers])

    def to_dict(self) -> dict:
        keys = list(self.layers[0].heads)
        return {"summary": {k: self.overall(k) for k in keys},
                "layers": [{"layer": ly.layer, **{k: ly.mean_of(k) for k in keys},
                            "heads": [{"head": h, **{k: ly.heads[k][h] for k in keys},
                                       "ov_singular_values": ly.ov_singular_values[h]}
                                      for h in range(len(ly.ov_singular_values))]} for ly in self.layers],
                "model": self.model, "settings": self.settings}


@dataclass
class PerplexityResult:
    model: dict
    settings: dict
    nll_sum: float
    n_tokens: int

    @property
    def loss(self) -> float:
        return self.nll_sum / max(self.n_tokens, 1)

    @property
    def perplexity(self) -> float:
        import math

        return math.exp(self.loss)

    def to_dict(self) -> dict:
        return {"perplexity": self.perplexity, "loss": self.loss, "n_tokens": self.n_tokens,
                "model": self.model, "settings": self.settings}


@dataclass
class QueryTrace:
    """Per-query numbers, one tensor per sequence: weight on key 0 and mean gate score (layers, heads averaged)."""

    model: dict
    settings: dict
    first_token: list  # per sequence: [query] float64, weight on key 0 (query 0 is trivially 1)
    gate: list | None  # per sequence: [query], mean sigmoid gate score; None for models without gates

    def split(self, masks: list) -> dict:
        """Means over the queries selected by `masks` (per sequence, bool [query]) and over the rest (from 1 on).

        Returns {"selected": {...}, "rest": {...}} with the first-token share, the mean gate score and the count.
        """
        import torch

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
